//! uWSGI's ini files: the magic variables (`%d`, `%n`, `%k`...), which
//! uWSGI substitutes in the whole text of a file before reading it, and the
//! `key = value` lines of one `[section]`, read the way uWSGI's `core/ini.c`
//! reads them: whitespace around keys and values trimmed, `;` and `#` lines
//! are comments, a bare `key` is a switch, and nothing else is interpreted
//! (a `;` after a value is part of the value).
//!
//! [`Host`] holds the facts about the machine the magic variables need, so
//! tests can give fixed ones. Reading files and these facts is the only I/O.

use std::path::{Path, PathBuf};

/// Facts about this process and machine for `%h %k %u %U %g %G %v %t %T %b`.
#[derive(Debug, Clone)]
pub struct Host {
    pub hostname: String,
    pub cpus: usize,
    pub uid: u32,
    pub user: String,
    pub gid: u32,
    pub group: String,
    pub cwd: PathBuf,
    pub binary: String,
    /// Start time: seconds and microseconds since the epoch.
    pub now_secs: u64,
    pub now_micros: u64,
}

impl Host {
    /// The real facts, read once at start (single-threaded).
    pub fn current() -> Host {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Host {
            hostname: hostname(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            uid,
            user: user_name(uid).unwrap_or_else(|| uid.to_string()),
            gid,
            group: group_name(gid).unwrap_or_else(|| gid.to_string()),
            cwd: std::env::current_dir().unwrap_or_default(),
            binary: std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            now_secs: now.as_secs(),
            now_micros: now.as_micros() as u64,
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it when the name fits, and we stop at the first NUL anyway.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn user_name(uid: u32) -> Option<String> {
    // SAFETY: getpwuid returns static storage or NULL; configuration is read
    // before any thread starts.
    let pw = unsafe { libc::getpwuid(uid) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null passwd with a NUL-terminated pw_name.
    let name = unsafe { std::ffi::CStr::from_ptr((*pw).pw_name) };
    Some(name.to_string_lossy().into_owned())
}

fn group_name(gid: u32) -> Option<String> {
    // SAFETY: as in user_name, for getgrgid.
    let gr = unsafe { libc::getgrgid(gid) };
    if gr.is_null() {
        return None;
    }
    // SAFETY: non-null group with a NUL-terminated gr_name.
    let name = unsafe { std::ffi::CStr::from_ptr((*gr).gr_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The per-file magic variables of one config file (uWSGI's magic table).
#[derive(Debug, Clone, Default)]
pub struct FileMagic {
    /// `%o`: the name as given (with `:section`).
    pub o: String,
    /// `%p`: absolute path.
    pub p: String,
    /// `%s`: file name.
    pub s: String,
    /// `%d`: directory, absolute, with a trailing `/`.
    pub d: String,
    /// `%c`: name of the directory.
    pub c: String,
    /// `%e`: extension.
    pub e: String,
    /// `%n`: file name without extension.
    pub n: String,
    /// `%x`: the section asked for (empty when none was named).
    pub x: String,
    /// `%i`: inode number.
    pub i: String,
    /// `%j`: hex of the djb33x hash of `%p`.
    pub j: String,
    /// `%0`..`%9`: components of `%d`.
    pub parts: Vec<String>,
}

impl FileMagic {
    /// The magic table of `file` (as given: `spec` with its `:section`).
    pub fn new(spec: &str, file: &Path, section: Option<&str>, host: &Host) -> FileMagic {
        let is_link = file
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        let abs = if is_link {
            if file.is_absolute() {
                file.to_path_buf()
            } else {
                host.cwd.join(file)
            }
        } else {
            std::fs::canonicalize(file).unwrap_or_else(|_| host.cwd.join(file))
        };
        let p = abs.display().to_string();
        let (dir, s) = match p.rfind('/') {
            Some(i) => (&p[..=i], &p[i + 1..]),
            None => ("", p.as_str()),
        };
        let trimmed = dir.trim_end_matches('/');
        let c = trimmed.rsplit('/').next().unwrap_or("").to_string();
        let parts = trimmed
            .split('/')
            .filter(|x| !x.is_empty())
            .take(10)
            .map(str::to_string)
            .collect();
        let (n, e) = match s.rfind('.') {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => (s, ""),
        };
        let ino = {
            use std::os::unix::fs::MetadataExt;
            abs.symlink_metadata()
                .map(|m| m.ino().to_string())
                .unwrap_or_default()
        };
        FileMagic {
            o: spec.to_string(),
            j: djb33x_hex(p.as_bytes()),
            p: p.clone(),
            s: s.to_string(),
            d: dir.to_string(),
            c,
            e: e.to_string(),
            n: n.to_string(),
            x: section.unwrap_or("").to_string(),
            i: ino,
            parts,
        }
    }
}

/// uWSGI's djb33x hash (bytes as signed chars), as the hex of its
/// little-endian bytes: `%j`.
fn djb33x_hex(key: &[u8]) -> String {
    let mut hash: u32 = 5381;
    for &b in key {
        hash = (hash << 5).wrapping_add(hash) ^ (b as i8 as i32 as u32);
    }
    hash.to_le_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Substitute the magic variables in a file's text, as uWSGI does before
/// reading it: `%X` for a known X is replaced; `%%` is `%`; `%(` stays (a
/// placeholder, expanded later); an unknown `%X` stays as it is (uWSGI would
/// drop it; keeping it is kinder to strftime formats that forgot `%%`).
pub fn substitute(text: &str, m: &FileMagic, first: &FileMagic, host: &Host) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        let Some(&next) = chars.peek() else {
            out.push('%');
            break;
        };
        let value: Option<String> = match next {
            '%' => Some("%".into()),
            'o' => Some(m.o.clone()),
            'p' => Some(m.p.clone()),
            's' => Some(m.s.clone()),
            'd' => Some(m.d.clone()),
            'c' => Some(m.c.clone()),
            'e' => Some(m.e.clone()),
            'n' => Some(m.n.clone()),
            'x' => Some(m.x.clone()),
            'i' => Some(m.i.clone()),
            'j' => Some(m.j.clone()),
            'O' => Some(first.o.clone()),
            'P' => Some(first.p.clone()),
            'S' => Some(first.s.clone()),
            'D' => Some(first.d.clone()),
            'C' => Some(first.c.clone()),
            'E' => Some(first.e.clone()),
            'N' => Some(first.n.clone()),
            'X' => Some(first.x.clone()),
            'I' => Some(first.i.clone()),
            'J' => Some(first.j.clone()),
            '0'..='9' => Some(
                m.parts
                    .get(next as usize - '0' as usize)
                    .cloned()
                    .unwrap_or_default(),
            ),
            'v' => Some(host.cwd.display().to_string()),
            'h' => Some(host.hostname.clone()),
            't' => Some(host.now_secs.to_string()),
            'T' => Some(host.now_micros.to_string()),
            'V' => Some(env!("CARGO_PKG_VERSION").to_string()),
            'k' => Some(host.cpus.to_string()),
            '[' => Some("\x1b".into()),
            'u' => Some(host.uid.to_string()),
            'U' => Some(host.user.clone()),
            'g' => Some(host.gid.to_string()),
            'G' => Some(host.group.clone()),
            'b' => Some(host.binary.clone()),
            _ => None,
        };
        match value {
            Some(v) => {
                chars.next();
                out.push_str(&v);
            }
            None => out.push('%'),
        }
    }
    out
}

/// One `key = value` line of the section asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniLine {
    pub line: usize,
    pub key: String,
    /// `None` for a bare `key` (a switch turned on).
    pub value: Option<String>,
}

/// The lines of every `[section]` block of `text`, in order, and whether the
/// section was there at all.
pub fn section_lines(text: &str, section: &str) -> (Vec<IniLine>, bool) {
    let mut out = Vec::new();
    let mut found = false;
    let mut current = String::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.trim_matches([' ', '\t', '\r']);
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            current = match rest.find(']') {
                Some(end) => rest[..end].trim().to_string(),
                None => rest.to_string(),
            };
            found |= current == section;
            continue;
        }
        if current != section {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (
                k.trim_end_matches([' ', '\t', '\r']),
                Some(v.trim_matches([' ', '\t', '\r'])),
            ),
            None => (line, None),
        };
        out.push(IniLine {
            line: i + 1,
            key: key.to_string(),
            value: value.map(str::to_string),
        });
    }
    (out, found)
}

/// `FILE:SECTION` -> (FILE, Some(SECTION)); `FILE` -> (FILE, None). A colon
/// inside the path (before a `/`) is part of the path. `:SECTION` alone has
/// an empty FILE (the last ini file read).
pub fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.rsplit_once(':') {
        Some((file, section)) if !section.contains('/') => {
            (file, (!section.is_empty()).then_some(section))
        }
        _ => (spec, None),
    }
}

#[cfg(test)]
pub(super) fn test_host() -> Host {
    Host {
        hostname: "web1".into(),
        cpus: 8,
        uid: 1000,
        user: "app".into(),
        gid: 1001,
        group: "staff".into(),
        cwd: PathBuf::from("/srv"),
        binary: "/usr/bin/uwsgi-rs".into(),
        now_secs: 1700000000,
        now_micros: 1700000000123456,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_uwsgi() {
        let text = "# c\n; c\n[other]\nhttp = :1\n[uwsgi]\n  http = :8080  \r\nmaster\nvacuum = true ; delete sockets\nempty =\nkey=a=b\n[uwsgi ]\nthreads = 2\n";
        let (lines, found) = section_lines(text, "uwsgi");
        assert!(found);
        let got: Vec<(usize, &str, Option<&str>)> = lines
            .iter()
            .map(|l| (l.line, l.key.as_str(), l.value.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (6, "http", Some(":8080")),
                (7, "master", None),
                (8, "vacuum", Some("true ; delete sockets")),
                (9, "empty", Some("")),
                (10, "key", Some("a=b")),
                (12, "threads", Some("2")),
            ]
        );
        assert!(!section_lines(text, "prod").1);
    }

    #[test]
    fn specs() {
        assert_eq!(split_spec("a.ini"), ("a.ini", None));
        assert_eq!(split_spec("a.ini:prod"), ("a.ini", Some("prod")));
        assert_eq!(split_spec("a.ini:"), ("a.ini", None));
        assert_eq!(split_spec(":base"), ("", Some("base")));
        assert_eq!(split_spec("/x:y/a.ini"), ("/x:y/a.ini", None));
    }

    #[test]
    fn magic() {
        let host = test_host();
        let dir = std::env::temp_dir().join(format!("uwsgi_rs_magic_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("app.prod.ini");
        std::fs::write(&file, "").unwrap();
        let abs = std::fs::canonicalize(&file).unwrap();
        let spec = format!("{}:web", file.display());
        let m = FileMagic::new(&spec, &file, Some("web"), &host);
        let d = format!("{}/", abs.parent().unwrap().display());
        assert_eq!(m.p, abs.display().to_string());
        assert_eq!(m.d, d);
        assert_eq!(m.s, "app.prod.ini");
        assert_eq!(m.n, "app.prod");
        assert_eq!(m.e, "ini");
        assert_eq!(m.x, "web");
        assert_eq!(m.o, spec);
        assert_eq!(
            m.c,
            abs.parent().unwrap().file_name().unwrap().to_string_lossy()
        );
        assert_eq!(m.j.len(), 8);
        let text = "a=%d%n.sock %s %e %x %c %k %h %u %U %g %G %v 100%% %(base) %q %Y %0 %[";
        let out = substitute(text, &m, &m, &host);
        let first = abs.parent().unwrap().components().nth(1).unwrap();
        assert_eq!(
            out,
            format!(
                "a={d}app.prod.sock app.prod.ini ini web {} 8 web1 1000 app 1001 staff /srv 100% %(base) %q %Y {} \x1b",
                m.c,
                first.as_os_str().to_string_lossy()
            )
        );
        // Uppercase letters are the first file's.
        let other = FileMagic {
            n: "first".into(),
            ..FileMagic::default()
        };
        assert_eq!(substitute("%N/%n", &m, &other, &host), "first/app.prod");
        assert_eq!(substitute("%", &m, &m, &host), "%");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn djb33x() {
        // uWSGI: djb33x_hash("") = 5381 = 0x1505 -> little-endian bytes.
        assert_eq!(djb33x_hex(b""), "05150000");
        let one = (5381u32 << 5).wrapping_add(5381) ^ u32::from(b'a');
        assert_eq!(djb33x_hex(b"a"), hex_le(one));
    }

    fn hex_le(n: u32) -> String {
        n.to_le_bytes().iter().map(|b| format!("{b:02X}")).collect()
    }
}
