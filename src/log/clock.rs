//! Wall-clock time as log lines print it: unix time, `ctime(3)` and
//! `strftime(3)` in local time. The formatted forms are cached per thread
//! for the current second, because the access log asks on every request
//! and `localtime_r` is not free.
//!
//! Pure formatting on top of the C library; nothing here writes anywhere.

use std::cell::RefCell;
use std::ffi::CString;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn unix_secs() -> u64 {
    unix_micros() / 1_000_000
}

pub fn unix_millis() -> u64 {
    unix_micros() / 1000
}

fn local_tm(secs: i64) -> Option<libc::tm> {
    // SAFETY: `tm` is plain data; localtime_r writes it fully or fails.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t: libc::time_t = secs as libc::time_t;
    // SAFETY: both pointers are to live locals.
    let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
    ok.then_some(tm)
}

/// `ctime(3)` without its newline: always 24 bytes (`Thu Jan  1 00:00:00 1970`)
/// for years 1000..=9999, as uWSGI's `%.*s` of 24 bytes prints it.
pub fn ctime(secs: i64) -> String {
    let Some(tm) = local_tm(secs) else {
        return secs.to_string();
    };
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

/// `strftime(3)` of `secs` in local time with the C library's own format
/// language (what uWSGI's `--log-date FORMAT` and `%(ltime)` use). A format
/// with a NUL byte, or output over 256 bytes, gives an empty string.
pub fn strftime(format: &str, secs: i64) -> String {
    let (Ok(fmt), Some(tm)) = (CString::new(format), local_tm(secs)) else {
        return String::new();
    };
    let mut buf = [0u8; 256];
    // SAFETY: buf is live and its length is passed; fmt is NUL-terminated;
    // tm was filled by localtime_r.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm) };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Per-thread cache of one formatted time for the current second.
struct Cached {
    secs: i64,
    text: String,
}

thread_local! {
    static CTIME: RefCell<Cached> = const { RefCell::new(Cached { secs: i64::MIN, text: String::new() }) };
    static DATE: RefCell<Cached> = const { RefCell::new(Cached { secs: i64::MIN, text: String::new() }) };
}

fn cached(
    cell: &'static std::thread::LocalKey<RefCell<Cached>>,
    secs: i64,
    make: impl FnOnce(i64) -> String,
    f: &mut dyn FnMut(&str),
) {
    cell.with(|c| {
        let mut c = c.borrow_mut();
        if c.secs != secs {
            c.text = make(secs);
            c.secs = secs;
        }
        f(&c.text);
    })
}

/// Call `f` with `ctime(secs)`, formatted at most once per second per thread.
pub fn with_ctime(secs: i64, mut f: impl FnMut(&str)) {
    cached(&CTIME, secs, ctime, &mut f)
}

/// The local time now as `ctime(3)` prints it, without the newline.
pub fn ctime_now() -> String {
    let mut out = String::new();
    with_ctime(unix_secs() as i64, |s| out.push_str(s));
    out
}

/// Call `f` with the date prefix of log lines for `secs`: `ctime` or the
/// `--log-date` strftime format; cached per second per thread.
pub fn with_date(format: Option<&str>, secs: i64, mut f: impl FnMut(&str)) {
    match format {
        None => with_ctime(secs, f),
        Some(fmt) => cached(&DATE, secs, |s| strftime(fmt, s), &mut f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_has_the_ctime_shape() {
        let s = ctime(0);
        // e.g. "Thu Jan  1 00:00:00 1970" in UTC; the local zone may shift it.
        assert_eq!(s.len(), 24, "{s}");
        assert_eq!(&s[3..4], " ");
        assert_eq!(&s[13..14], ":");
    }

    #[test]
    fn strftime_uses_the_c_format_language() {
        let s = strftime("%Y|%%|%m", 86400 * 365);
        assert!(s.starts_with("1971|%|") || s.starts_with("1970|%|"), "{s}");
        assert_eq!(strftime("a\0b", 0), "");
        assert_eq!(strftime("", 0), "");
    }

    #[test]
    fn cached_forms_follow_the_second() {
        let mut a = String::new();
        with_ctime(0, |s| a = s.to_string());
        let mut b = String::new();
        with_ctime(1, |s| b = s.to_string());
        assert_ne!(a, b);
        assert_eq!(a, ctime(0));
        let mut d = String::new();
        with_date(Some("%s"), 12345, |s| d = s.to_string());
        assert_eq!(d, "12345");
    }
}
