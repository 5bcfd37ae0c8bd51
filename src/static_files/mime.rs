//! Content types of static files, by extension: the `--mimefile` files
//! (default `/etc/mime.types`, as uWSGI), then a built-in table for what
//! they do not name (so a host without mime.types still sends the common
//! types). Read once when the worker starts; lookups take no lock.
//!
//! The file format is mime.types': `type/subtype ext ext ...`, `#` comments.

use std::collections::HashMap;
use std::path::Path;

/// What every host should know, whatever its mime.types says.
const BUILT_IN: &[(&str, &str)] = &[
    ("html", "text/html"),
    ("htm", "text/html"),
    ("css", "text/css"),
    ("js", "text/javascript"),
    ("mjs", "text/javascript"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("xml", "application/xml"),
    ("txt", "text/plain"),
    ("csv", "text/csv"),
    ("md", "text/markdown"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("svg", "image/svg+xml"),
    ("ico", "image/vnd.microsoft.icon"),
    ("bmp", "image/bmp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("eot", "application/vnd.ms-fontobject"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("tar", "application/x-tar"),
    ("wasm", "application/wasm"),
    ("mp3", "audio/mpeg"),
    ("ogg", "audio/ogg"),
    ("wav", "audio/wav"),
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
    ("webmanifest", "application/manifest+json"),
];

#[derive(Debug, Default)]
pub struct MimeTypes {
    by_ext: HashMap<String, String>,
}

impl MimeTypes {
    /// Load `files` (earlier files win for an extension, as the first
    /// match wins in uWSGI), then the built-in table. A file that cannot
    /// be read is skipped; its name is returned for the log.
    pub fn load(files: &[&Path]) -> (MimeTypes, Vec<String>) {
        let mut types = MimeTypes::default();
        let mut unreadable = Vec::new();
        for f in files {
            match std::fs::read_to_string(f) {
                Ok(text) => types.add_text(&text),
                Err(e) => unreadable.push(format!("{}: {e}", f.display())),
            }
        }
        for (ext, ty) in BUILT_IN {
            types
                .by_ext
                .entry((*ext).to_string())
                .or_insert_with(|| (*ty).to_string());
        }
        (types, unreadable)
    }

    fn add_text(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let Some(ty) = words.next() else { continue };
            if !ty.contains('/') || !ty.bytes().all(|b| b.is_ascii_graphic()) {
                continue;
            }
            for ext in words {
                self.by_ext
                    .entry(ext.to_ascii_lowercase())
                    .or_insert_with(|| ty.to_string());
            }
        }
    }

    /// The type of a file name (by what follows its last dot), if known.
    pub fn of(&self, name: &[u8]) -> Option<&str> {
        let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
        let dot = memchr::memrchr(b'.', base)?;
        let ext = std::str::from_utf8(&base[dot + 1..]).ok()?;
        if ext.is_empty() {
            return None;
        }
        if let Some(t) = self.by_ext.get(ext) {
            return Some(t);
        }
        self.by_ext
            .get(&ext.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_entries_win_and_built_ins_fill_gaps() {
        let mut m = MimeTypes::default();
        m.add_text(
            "# comment\ntext/x-custom\tfoo bar\napplication/javascript js\nnot-a-type baz\n",
        );
        let (builtin, _) = MimeTypes::load(&[]);
        for (k, v) in builtin.by_ext {
            m.by_ext.entry(k).or_insert(v);
        }
        assert_eq!(m.of(b"/a/b.foo"), Some("text/x-custom"));
        assert_eq!(m.of(b"x.bar"), Some("text/x-custom"));
        assert_eq!(m.of(b"app.js"), Some("application/javascript"));
        assert_eq!(m.of(b"style.CSS"), Some("text/css"));
        assert_eq!(m.of(b"x.baz"), None);
        assert_eq!(m.of(b"noext"), None);
        assert_eq!(m.of(b"dir.d/noext"), None);
        assert_eq!(m.of(b"trailing."), None);
    }

    #[test]
    fn unreadable_files_are_named() {
        let (m, bad) = MimeTypes::load(&[Path::new("/nonexistent/mime.types")]);
        assert_eq!(bad.len(), 1);
        assert_eq!(m.of(b"a.png"), Some("image/png"));
    }
}
