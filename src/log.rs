//! The one place user-visible log lines are formatted and written.
//!
//! Every line goes to stderr in a single `write(2)` so that lines from the
//! master, the workers and their threads never interleave mid-line. Nothing
//! here allocates more than the line itself, and nothing here may block on a
//! lock another process could hold. Request data (URIs, headers) must pass
//! through [`escape`] before it reaches a line: no log injection.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Write one complete line (a trailing newline is added when missing).
pub fn line(text: &str) {
    let mut buf = String::with_capacity(text.len() + 1);
    buf.push_str(text);
    if !buf.ends_with('\n') {
        buf.push('\n');
    }
    write_all_stderr(buf.as_bytes());
}

/// Write raw bytes (a multi-line block, e.g. a traceback dump) at once.
pub fn block(bytes: &[u8]) {
    write_all_stderr(bytes);
}

fn write_all_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: fd 2 is valid for the life of the process; the pointer and
        // length come from a live slice.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return; // stderr is gone: nothing sensible left to do
        }
        bytes = &bytes[n as usize..];
    }
}

/// `Fri Nov 27 23:31:14 2026 - ` followed by `text`: uWSGI's master-log style.
pub fn stamped(text: &str) {
    line(&format!("{} - {}", ctime_now(), text));
}

/// The local time as `ctime(3)` prints it, without the newline. Cached per
/// second per thread because access-log lines ask for it on every request.
pub fn ctime_now() -> String {
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = unix_secs();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != now {
            *c = (now, ctime(now as i64));
        }
        c.1.clone()
    })
}

/// Format a unix timestamp like `ctime(3)` in local time.
pub fn ctime(secs: i64) -> String {
    // SAFETY: `tm` is plain data; localtime_r writes it fully or fails.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t: libc::time_t = secs as libc::time_t;
    // SAFETY: both pointers are to live locals.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return secs.to_string();
    }
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[(tm.tm_wday.rem_euclid(7)) as usize],
        MONTHS[(tm.tm_mon.rem_euclid(12)) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_year + 1900
    )
}

pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Render untrusted bytes printable: ASCII graphic characters and space pass,
/// everything else (CR, LF, ESC, NUL, non-ASCII bytes, backslash) becomes `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (b.is_ascii_graphic() || b == b' ') && b != b'\\' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_line_breaks_and_controls() {
        assert_eq!(escape(b"/a b"), "/a b");
        assert_eq!(escape(b"/x\r\nFAKE LINE"), "/x\\x0d\\x0aFAKE LINE");
        assert_eq!(escape(b"\x1b[31m\\"), "\\x1b[31m\\x5c");
        assert_eq!(escape("é".as_bytes()), "\\xc3\\xa9");
    }

    #[test]
    fn ctime_has_the_ctime_shape() {
        let s = ctime(0);
        // e.g. "Thu Jan  1 00:00:00 1970" in UTC; local zone may shift it.
        assert_eq!(s.len(), 24, "{s}");
        assert_eq!(&s[3..4], " ");
        assert_eq!(&s[13..14], ":");
    }
}
