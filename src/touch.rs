//! Touch files: paths whose modification time is a signal from the
//! operator (`touch-logreopen`, `touch-logrotate`, attach-daemon2's
//! `touch=`; uWSGI's `touch-*` options). Owns only "has this file been
//! touched since I last looked"; callers decide how often to look and what
//! a touch means.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A set of files and the modification time each had when last looked at.
#[derive(Debug, Default)]
pub struct TouchFiles {
    files: Vec<(PathBuf, Option<SystemTime>)>,
}

impl TouchFiles {
    /// Remember each file's current mtime: only a later touch counts.
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a PathBuf>) -> TouchFiles {
        TouchFiles {
            files: paths.into_iter().map(|p| (p.clone(), mtime(p))).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The first file touched (created, or its mtime changed) since the last
    /// call. A file that disappears is not a touch (as in uWSGI, a file it
    /// cannot stat is skipped); its return is.
    pub fn touched(&mut self) -> Option<&Path> {
        let mut first = None;
        for (i, (path, seen)) in self.files.iter_mut().enumerate() {
            let now = mtime(path);
            if now != *seen {
                if now.is_some() && first.is_none() {
                    first = Some(i);
                }
                *seen = now;
            }
        }
        first.map(|i| self.files[i].0.as_path())
    }
}

/// A file's modification time, None when it cannot be read.
pub fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_touch_is_seen_once() {
        let dir = std::env::temp_dir().join(format!("uwsgi-rs-touch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, "").unwrap();
        let _ = std::fs::remove_file(&b);
        let mut t = TouchFiles::new([&a, &b]);
        assert_eq!(t.touched(), None, "nothing changed yet");
        let later = SystemTime::now() + Duration::from_secs(10);
        std::fs::File::options()
            .write(true)
            .open(&a)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(t.touched(), Some(a.as_path()));
        assert_eq!(t.touched(), None, "seen once");
        std::fs::write(&b, "").unwrap();
        assert_eq!(t.touched(), Some(b.as_path()), "creating it is a touch");
        std::fs::remove_file(&b).unwrap();
        assert_eq!(t.touched(), None, "removing it is not");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
