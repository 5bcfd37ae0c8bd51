//! Static files, as uWSGI serves them (core/static.c, core/protocol.c):
//! `--check-static` roots, `--static-map` / `--static-map2` mounts (a
//! directory or a single file), `--static-index`, `--static-skip-ext`,
//! `--static-safe`, `--static-expires*`, `--static-gzip*` and the content
//! types of `--mimefile`.
//!
//! A request whose file is not found here (no such file, a directory
//! without an index, a method other than GET/HEAD, a path that resolves
//! outside its root) goes on to the app, as in uWSGI. A file is opened
//! first and its real path read back from the open descriptor
//! (`/proc/self/fd`), so what is checked against the root is what is sent:
//! `..` (raw or percent-encoded, decoded before this), symlinks that lead
//! out (unless into a `--static-safe` directory), and a path swapped
//! between check and open all stay outside. NUL bytes never reach a path.
//!
//! Nothing here writes to a socket or knows the request's protocol: it
//! answers "which file" and "which status and headers"; `offload` sends.

mod mime;

use std::fs::{File, Metadata};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use regex_lite::Regex;

use crate::config::values::ExpiresOn;
use crate::config::StaticOptions;

pub use mime::MimeTypes;

/// A `--static-map` / `--static-map2`, its path resolved.
#[derive(Debug)]
struct Map {
    mount: Vec<u8>,
    root: PathBuf,
    /// The map names a single file (`/robots.txt=static/robots.txt`).
    is_file: bool,
    /// `--static-map2`: the whole PATH_INFO is appended to the root.
    append_full_path: bool,
}

#[derive(Debug)]
enum ExpiresMatch {
    Regex(Regex),
    Type(String),
}

#[derive(Debug)]
struct Expires {
    on: ExpiresOn,
    matcher: ExpiresMatch,
    seconds: i64,
    from_mtime: bool,
}

/// The static-file configuration of a worker, paths resolved at start.
#[derive(Debug)]
pub struct Statics {
    check: Vec<PathBuf>,
    maps: Vec<Map>,
    index: Vec<String>,
    skip_ext: Vec<Vec<u8>>,
    safe: Vec<PathBuf>,
    expires: Vec<Expires>,
    gzip_all: bool,
    gzip_dirs: Vec<PathBuf>,
    gzip_exts: Vec<Vec<u8>>,
    mime: MimeTypes,
}

/// A file found for a request, open.
#[derive(Debug)]
pub struct Found {
    pub file: File,
    pub meta: Metadata,
    /// Its real path (for the content type, expiry and gzip rules).
    pub path: PathBuf,
}

/// What the request asks of a static file.
pub struct Ask<'a> {
    pub head_only: bool,
    pub path_info: &'a [u8],
    pub uri: &'a [u8],
    pub if_modified_since: Option<&'a [u8]>,
    pub range: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
    pub accept_encoding: Option<&'a [u8]>,
    /// Unix seconds when the request started.
    pub now: i64,
}

/// The answer for a static file: status, headers in uWSGI's order, and the
/// part of the file to send (None: no body).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<(File, u64, u64)>,
    /// What the access log reports as the body size.
    pub body_len: u64,
}

/// Resolve `p` (relative to the working directory) to its real path.
fn real(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok()
}

fn compile(e: &crate::config::StaticExpires) -> Result<Expires, String> {
    let matcher = match e.on {
        ExpiresOn::ContentType => ExpiresMatch::Type(e.pattern.clone()),
        _ => ExpiresMatch::Regex(
            Regex::new(&e.pattern).map_err(|err| format!("bad regexp {:?}: {err}", e.pattern))?,
        ),
    };
    Ok(Expires {
        on: e.on,
        matcher,
        seconds: i64::try_from(e.seconds).unwrap_or(i64::MAX / 2),
        from_mtime: e.from_mtime,
    })
}

impl Statics {
    /// The static files a worker serves, or None when none are configured
    /// (and no route serves a file: `for_routes`).
    /// Paths are resolved now (after `--chdir`), as uWSGI resolves them on
    /// first use; what cannot be resolved is skipped and named in the
    /// returned log lines.
    pub fn new(
        cfg: &StaticOptions,
        for_routes: bool,
    ) -> Result<(Option<Statics>, Vec<String>), String> {
        let mut notes = Vec::new();
        if cfg.maps.is_empty() && cfg.check.is_empty() && !for_routes {
            return Ok((None, notes));
        }
        let mut check = Vec::new();
        for dir in &cfg.check {
            match real(dir) {
                Some(p) => check.push(p),
                None => notes.push(format!(
                    "--check-static {}: no such directory, skipped",
                    dir.display()
                )),
            }
        }
        let mut maps = Vec::new();
        // uWSGI tries every --static-map before any --static-map2.
        for append in [false, true] {
            for m in cfg.maps.iter().filter(|m| m.append_full_path == append) {
                match real(&m.path) {
                    Some(root) => maps.push(Map {
                        mount: m.mount.as_bytes().to_vec(),
                        is_file: root.is_file(),
                        root,
                        append_full_path: append,
                    }),
                    None => notes.push(format!(
                        "--static-map{} {}={}: no such file or directory, skipped",
                        if append { "2" } else { "" },
                        m.mount,
                        m.path.display()
                    )),
                }
            }
        }
        let expires = cfg
            .expires
            .iter()
            .map(compile)
            .collect::<Result<Vec<_>, _>>()?;
        let mimefiles: Vec<&Path> = if cfg.mimefiles.is_empty() {
            vec![Path::new("/etc/mime.types")]
        } else {
            cfg.mimefiles.iter().map(PathBuf::as_path).collect()
        };
        let (mime, unreadable) = MimeTypes::load(&mimefiles);
        if !cfg.mimefiles.is_empty() {
            notes.extend(unreadable.into_iter().map(|u| format!("--mimefile {u}")));
        }
        let absolute = |p: &PathBuf| real(p).unwrap_or_else(|| p.clone());
        Ok((
            Some(Statics {
                check,
                maps,
                index: cfg.index.clone(),
                skip_ext: cfg.skip_ext.iter().map(|e| e.as_bytes().to_vec()).collect(),
                safe: cfg.safe.iter().map(absolute).collect(),
                expires,
                gzip_all: cfg.gzip_all,
                gzip_dirs: cfg.gzip_dirs.iter().map(absolute).collect(),
                gzip_exts: cfg
                    .gzip_exts
                    .iter()
                    .map(|e| e.as_bytes().to_vec())
                    .collect(),
                mime,
            }),
            notes,
        ))
    }

    /// The file a request names, in uWSGI's order: `--static-skip-ext`
    /// (then the app), `--check-static` roots, `--static-map`s, then
    /// `--static-map2`s. `path_info` is decoded.
    pub fn find(&self, path_info: &[u8], method: &[u8]) -> Option<Found> {
        if self.skipped(path_info) {
            return None;
        }
        if method != b"GET" && method != b"HEAD" {
            return None;
        }
        for root in &self.check {
            if let Some(f) = self.serve_from(root, path_info, false) {
                return Some(f);
            }
        }
        for m in &self.maps {
            if !path_info.starts_with(&m.mount) {
                continue;
            }
            let rest = if m.append_full_path {
                path_info
            } else {
                &path_info[m.mount.len()..]
            };
            if let Some(f) = self.serve_from(&m.root, rest, m.is_file) {
                return Some(f);
            }
        }
        None
    }

    /// A route's `static:FILE`: the file itself, refused if it resolves
    /// anywhere else (through a symlink or `..`) unless into a safe
    /// directory, as uWSGI's check does.
    pub fn find_file(&self, path: &[u8]) -> Option<Found> {
        if memchr::memchr(0, path).is_some() {
            return None;
        }
        let p = Path::new(std::ffi::OsStr::from_bytes(path));
        self.open_under(p, p).filter(|f| f.meta.is_file())
    }

    fn skipped(&self, name: &[u8]) -> bool {
        self.skip_ext.iter().any(|e| name.ends_with(e))
    }

    /// uWSGI's `uwsgi_file_serve`: `root` + "/" + `rest` (or `root` itself
    /// for a file map), confined to `root`; a directory is served through
    /// its first `--static-index` file.
    fn serve_from(&self, root: &Path, rest: &[u8], is_file: bool) -> Option<Found> {
        if memchr::memchr(0, rest).is_some() {
            return None;
        }
        let candidate = if is_file {
            root.to_path_buf()
        } else {
            let mut p = root.as_os_str().as_bytes().to_vec();
            p.push(b'/');
            p.extend_from_slice(rest);
            PathBuf::from(std::ffi::OsStr::from_bytes(&p))
        };
        let found = self.open_under(&candidate, root)?;
        let found = if found.meta.is_dir() {
            self.index
                .iter()
                .find_map(|i| self.open_under(&found.path.join(i), root))
                .filter(|f| f.meta.is_file())?
        } else if found.meta.is_file() {
            found
        } else {
            return None;
        };
        if self.skipped(found.path.as_os_str().as_bytes()) {
            return None;
        }
        Some(found)
    }

    /// Open `path` and keep it only if what was opened lies under `root`
    /// (or a `--static-safe` directory).
    fn open_under(&self, path: &Path, root: &Path) -> Option<Found> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            // A FIFO must not block the open; regular files ignore it.
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .ok()?;
        // Never one of 0-2, which an app may have closed (see log::fds).
        let file = File::from(crate::log::fds::off_std(file.into()));
        let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
        let inside = real.starts_with(root) || self.safe.iter().any(|s| real.starts_with(s));
        if !inside {
            crate::log::line(&format!(
                "[uwsgi-fileserve] security error: {} is not under {} or a safe path",
                crate::log::escape(real.as_os_str().as_bytes()),
                crate::log::escape(root.as_os_str().as_bytes())
            ));
            return None;
        }
        let meta = file.metadata().ok()?;
        Some(Found {
            file,
            meta,
            path: real,
        })
    }

    /// The response for a found file, as uWSGI's `uwsgi_real_file_serve`:
    /// 304 when not modified since, 416 for a range past the end, 206 for a
    /// satisfiable single range, else 200; the gzip (or brotli) variant
    /// when the client takes it and a rule asks for it.
    pub fn respond(&self, found: Found, ask: &Ask<'_>) -> Reply {
        let mime = self.mime.of(found.path.as_os_str().as_bytes());
        let (found, encoding) = match self.encoded_variant(&found, ask.accept_encoding) {
            Some((variant, enc)) => (variant, Some(enc)),
            None => (found, None),
        };
        let mtime = found.meta.mtime();
        let size = found.meta.len();
        if let Some(since) = ask.if_modified_since.and_then(crate::httpdate::parse) {
            if mtime <= since {
                return Reply {
                    status: 304,
                    reason: "Not Modified",
                    headers: Vec::new(),
                    body: None,
                    body_len: 0,
                };
            }
        }
        let range = match ask.range.map(|r| byte_range(r, size)) {
            Some(Range::Unsatisfiable) => {
                return Reply {
                    status: 416,
                    reason: "Requested Range Not Satisfiable",
                    headers: vec![
                        ("Content-Range", format!("bytes */{size}")),
                        ("Content-Length", "0".into()),
                    ],
                    body: None,
                    body_len: 0,
                };
            }
            Some(Range::Part(from, to)) if if_range_holds(ask.if_range, mtime) => Some((from, to)),
            _ => None,
        };
        let mut headers = Vec::with_capacity(8);
        if let Some(e) = self.expires_for(&found.path, ask, mime, mtime) {
            headers.push(("Expires", e));
        }
        if let Some(enc) = encoding {
            headers.push(("Content-Encoding", enc.to_string()));
        }
        if let Some(m) = mime {
            headers.push(("Content-Type", m.to_string()));
        }
        let (status, reason, offset, len) = match range {
            Some((from, to)) => (206, "Partial Content", from, to - from + 1),
            None => (200, "OK", 0, size),
        };
        headers.push(("Content-Length", len.to_string()));
        if let Some((from, to)) = range {
            headers.push(("Content-Range", format!("bytes {from}-{to}/{size}")));
        }
        headers.push(("Last-Modified", crate::httpdate::format(mtime)));
        Reply {
            status,
            reason,
            headers,
            body: (!ask.head_only).then_some((found.file, offset, len)),
            body_len: len,
        }
    }

    /// FILE.br or FILE.gz, when the client accepts it and `--static-gzip-all`,
    /// a `--static-gzip-dir` or a `--static-gzip-ext` covers the file. The
    /// variant is confined like the file itself.
    fn encoded_variant(
        &self,
        found: &Found,
        accept: Option<&[u8]>,
    ) -> Option<(Found, &'static str)> {
        let accept = accept?;
        let name = found.path.as_os_str().as_bytes();
        let wanted = self.gzip_all
            || self.gzip_dirs.iter().any(|d| found.path.starts_with(d))
            || self.gzip_exts.iter().any(|e| name.ends_with(e));
        if !wanted {
            return None;
        }
        let parent = found.path.parent()?;
        for (enc, suffix) in [("br", ".br"), ("gzip", ".gz")] {
            if !accepts(accept, enc) {
                continue;
            }
            let mut p = name.to_vec();
            p.extend_from_slice(suffix.as_bytes());
            let variant = self.open_under(Path::new(std::ffi::OsStr::from_bytes(&p)), parent);
            if let Some(v) = variant.filter(|v| v.meta.is_file()) {
                return Some((v, enc));
            }
        }
        None
    }

    /// The first `--static-expires*` rule that matches, in uWSGI's order:
    /// file name, PATH_INFO, REQUEST_URI, then content type.
    fn expires_for(
        &self,
        path: &Path,
        ask: &Ask<'_>,
        mime: Option<&str>,
        mtime: i64,
    ) -> Option<String> {
        let name = path.to_string_lossy();
        let path_info = String::from_utf8_lossy(ask.path_info);
        let uri = String::from_utf8_lossy(ask.uri);
        for on in [
            ExpiresOn::Filename,
            ExpiresOn::PathInfo,
            ExpiresOn::Uri,
            ExpiresOn::ContentType,
        ] {
            // uWSGI tries the rules counted from now before the -mtime ones.
            for from_mtime in [false, true] {
                for e in self
                    .expires
                    .iter()
                    .filter(|e| e.on == on && e.from_mtime == from_mtime)
                {
                    let hit = match (&e.matcher, on) {
                        (ExpiresMatch::Type(t), _) => mime == Some(t.as_str()),
                        (ExpiresMatch::Regex(r), ExpiresOn::Filename) => r.is_match(&name),
                        (ExpiresMatch::Regex(r), ExpiresOn::PathInfo) => r.is_match(&path_info),
                        (ExpiresMatch::Regex(r), _) => r.is_match(&uri),
                    };
                    if hit {
                        let base = if e.from_mtime { mtime } else { ask.now };
                        return Some(crate::httpdate::format(base.saturating_add(e.seconds)));
                    }
                }
            }
        }
        None
    }
}

/// Whether an Accept-Encoding value accepts `coding` (not with `q=0`).
fn accepts(header: &[u8], coding: &str) -> bool {
    header.split(|&b| b == b',').any(|item| {
        let mut parts = item.split(|&b| b == b';');
        let name = parts.next().unwrap_or_default().trim_ascii();
        if !name.eq_ignore_ascii_case(coding.as_bytes()) {
            return false;
        }
        !parts.any(|p| {
            let p = p.trim_ascii();
            p.len() >= 2
                && p[..2].eq_ignore_ascii_case(b"q=")
                && p[2..].iter().all(|&c| c == b'0' || c == b'.')
        })
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// Not a byte range we understand, or the whole file: send it all.
    Whole,
    /// Bytes from..=to.
    Part(u64, u64),
    /// A byte range that starts past the end: 416.
    Unsatisfiable,
}

/// The first range of a `Range: bytes=...` header against a file of `size`
/// bytes (uWSGI honours only the first). Anything that is not a byte range
/// is ignored (RFC 9110 §14.2), where uWSGI answers 416.
fn byte_range(header: &[u8], size: u64) -> Range {
    let Ok(h) = std::str::from_utf8(header) else {
        return Range::Whole;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    let first = spec.split(',').next().unwrap_or_default().trim();
    let Some((a, b)) = first.split_once('-') else {
        return Range::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (from, to) = match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            Some(0) => return Range::Unsatisfiable,
            Some(n) => (size.saturating_sub(n), size.saturating_sub(1)),
            None => return Range::Whole,
        },
        (from, "") => match num(from) {
            Some(f) => (f, size.saturating_sub(1)),
            None => return Range::Whole,
        },
        (from, to) => match (num(from), num(to)) {
            (Some(f), Some(t)) if t >= f => (f, t.min(size.saturating_sub(1))),
            _ => return Range::Whole,
        },
    };
    if size == 0 || from >= size {
        return Range::Unsatisfiable;
    }
    if from == 0 && to == size - 1 {
        return Range::Whole;
    }
    Range::Part(from, to)
}

/// `If-Range`: the range is sent only when the validator still holds; with
/// no Last-Modified-equal date (or an ETag, which we never send) the whole
/// file is.
fn if_range_holds(if_range: Option<&[u8]>, mtime: i64) -> bool {
    match if_range {
        None => true,
        Some(v) => crate::httpdate::parse(v) == Some(mtime),
    }
}

#[cfg(test)]
mod tests;
