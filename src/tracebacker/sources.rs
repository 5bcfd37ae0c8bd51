//! Source lines for dumped frames, read from disk outside the GIL and kept
//! per file while the file's size and modification time stay the same
//! (so a dump costs one `stat` per file, not a read).
//!
//! Both dump paths leave `Frame::line` empty; [`fill`] fills it. No Python.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use super::format::ThreadStack;

/// Files larger than this are not read for source lines.
const MAX_FILE: u64 = 16 << 20;
/// Files remembered at most (an app with more simply rereads some).
const MAX_FILES: usize = 2048;

struct Cached {
    len: u64,
    mtime: Option<SystemTime>,
    lines: Option<Vec<String>>,
}

#[derive(Default)]
pub struct SourceCache {
    files: HashMap<String, Cached>,
    /// Files already checked during the current dump.
    checked: std::collections::HashSet<String>,
}

impl SourceCache {
    /// The stripped line `lineno` of `filename`, or "" when unreadable.
    pub fn line(&mut self, filename: &str, lineno: u32) -> String {
        if !self.checked.contains(filename) {
            self.refresh(filename);
            self.checked.insert(filename.to_string());
        }
        self.files
            .get(filename)
            .and_then(|c| c.lines.as_ref())
            .and_then(|l| l.get((lineno as usize).checked_sub(1)?))
            .cloned()
            .unwrap_or_default()
    }

    fn refresh(&mut self, filename: &str) {
        let meta = std::fs::metadata(filename).ok();
        let (len, mtime) = meta
            .as_ref()
            .map_or((0, None), |m| (m.len(), m.modified().ok()));
        if let Some(c) = self.files.get(filename) {
            if c.len == len && c.mtime == mtime && meta.is_some() {
                return;
            }
        }
        if self.files.len() >= MAX_FILES {
            self.files.clear();
        }
        let lines = meta
            .filter(|m| m.is_file() && m.len() <= MAX_FILE)
            .and_then(|_| std::fs::read(filename).ok())
            .map(|text| {
                String::from_utf8_lossy(&text)
                    .lines()
                    .map(|l| l.trim().to_string())
                    .collect()
            });
        self.files
            .insert(filename.to_string(), Cached { len, mtime, lines });
    }
}

/// Fill in the source line of every frame that has none.
pub fn fill(stacks: &mut [ThreadStack]) {
    static CACHE: OnceLock<Mutex<SourceCache>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    cache.checked.clear();
    for f in stacks.iter_mut().flat_map(|t| t.frames.iter_mut()) {
        if f.line.is_empty() {
            f.line = cache.line(&f.filename, f.lineno);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_from_the_file_and_follow_its_changes() {
        let path = std::env::temp_dir().join(format!("uwsgi-rs-src-{}.py", std::process::id()));
        let name = path.to_str().unwrap().to_string();
        std::fs::write(&path, "def f():\n    x = 1\n").unwrap();
        let mut c = SourceCache::default();
        assert_eq!(c.line(&name, 2), "x = 1");
        assert_eq!(c.line(&name, 9), "");
        assert_eq!(c.line(&name, 0), "");
        std::fs::write(&path, "def f():\n    y = 22\n").unwrap(); // other size
        c.checked.clear(); // a new dump
        assert_eq!(c.line(&name, 2), "y = 22");
        std::fs::remove_file(path).unwrap();
        assert_eq!(c.line("/nonexistent/x.py", 1), "");
    }
}
