//! Every user-visible log line: what it looks like, where it goes, and
//! that writing it never stops the server.
//!
//! ```text
//! mod.rs    the API: line, stamped, block, request; escaping
//! setup     options -> outputs, loggers, routes, request-log style (master, once)
//! output    one output and non-blocking whole-line writes (why: see there)
//! router    loggers, routes, drain, reopen, rotation, the dropped-lines report
//! pattern   the routes' and drain's PCRE regexps on regex-lite
//! encode    --log-encoder chains (prefix, suffix, nl, format, json)
//! relay     --log-master: workers hand lines to the master through pipes
//! access    the request line: uWSGI's default or --log-format (pure)
//! clock     ctime/strftime, cached per second
//! fds       descriptors the app cannot take (0-2 kept valid, accepts moved up)
//! daemon    --daemonize / --daemonize2
//! shared    counters all processes share: dropped lines, reopen generation
//! ```
//!
//! A line is one `write(2)` of at most PIPE_BUF bytes, so lines from the
//! master, the workers and their threads never interleave mid-line; a
//! write the output cannot take now is dropped and counted, never waited
//! on. Formatting reuses one buffer per thread: a request line costs no
//! allocation. Request data (URIs, headers) passes through [`escape`]
//! before it reaches a line: no log injection.

pub mod access;
mod clock;
pub mod daemon;
mod encode;
pub mod fds;
mod output;
mod pattern;
mod relay;
mod router;
mod setup;
mod shared;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

#[allow(unused_imports)] // used by tests and the request path
pub use clock::{ctime, unix_micros};
pub use clock::{ctime_now, unix_millis, unix_secs};
use relay::Pipes;
use router::{Kind, Router};

use crate::touch::TouchFiles;

/// What the request log does (from the options, fixed at start).
#[derive(Debug, Default)]
pub struct AccessConfig {
    pub when: access::When,
    pub style: access::Style,
    /// `--log-x-forwarded-for`: the client is the X-Forwarded-For value.
    pub x_forwarded_for: bool,
    /// The format prints memory: read it per request (only then).
    pub needs_memory: bool,
}

/// The log of this server, decided once by the master before it forks.
#[derive(Debug)]
pub struct State {
    router: Router,
    pipes: Option<Pipes>,
    /// `--log-date`: None = no prefix; Some(None) = ctime; Some(Some(f)) = strftime.
    date: Option<Option<String>>,
    access: AccessConfig,
    /// `--log-reopen`: a reload (SIGHUP) also reopens the log files.
    reopen_on_reload: bool,
    /// `--touch-logreopen` / `--touch-logrotate`, looked at by the master's tick.
    touch: Mutex<Touch>,
}

/// The touch files of the log and when they were last looked at.
#[derive(Debug, Default)]
struct Touch {
    reopen: TouchFiles,
    rotate: TouchFiles,
    looked: Option<Instant>,
}

/// Touch files are looked at once a second (a stat each), not every tick.
const TOUCH_EVERY: Duration = Duration::from_secs(1);

/// Set once by [`start`]; until then (and in commands that never start a
/// server) lines go to stderr as they are.
static STATE: OnceLock<State> = OnceLock::new();
static UNCONFIGURED: OnceLock<State> = OnceLock::new();

fn state() -> &'static State {
    STATE.get().unwrap_or_else(unconfigured)
}

fn unconfigured() -> &'static State {
    UNCONFIGURED.get_or_init(|| State {
        router: Router {
            outputs: vec![output::Output::stderr_plain()],
            general: vec![0],
            ..Router::default()
        },
        pipes: None,
        date: None,
        access: AccessConfig {
            when: access::When {
                all: true,
                ..Default::default()
            },
            ..Default::default()
        },
        reopen_on_reload: false,
        touch: Mutex::default(),
    })
}

/// Set up the server's log from its options (the master, before it binds
/// sockets or forks). Returns warnings for the start-up report. With
/// `--daemonize` the calling process stays behind, waiting for
/// [`daemon::started`] or [`daemon::app_loaded`].
pub fn start(cfg: &crate::config::Config) -> anyhow::Result<Vec<String>> {
    let (st, warnings) = setup::start(cfg)?;
    STATE
        .set(st)
        .map_err(|_| anyhow::anyhow!("the log was already set up"))?;
    Ok(warnings)
}

/// In a process forked from the master (loader or worker), right after
/// its fork; again in a worker forked from a loader (a no-op then).
pub fn worker_started() {
    daemon::forget_in_child();
    if let Some(p) = &state().pipes {
        p.enter_worker();
    }
}

/// Write one complete line (a trailing newline is added when missing),
/// with the `--log-date` prefix when asked for.
pub fn line(text: &str) {
    let date = state().date.as_ref();
    with_buf(|buf| {
        if let Some(fmt) = date {
            push_date(buf, fmt.as_deref());
        }
        end_line(buf, text);
        emit(Kind::General, buf);
    });
}

/// `DATE - text`: lines that always carry a date (uWSGI's
/// `uwsgi_log_verbose`: harakiri and the like), in the `--log-date` format.
pub fn stamped(text: &str) {
    let fmt = state().date.as_ref().and_then(|f| f.as_deref());
    with_buf(|buf| {
        push_date(buf, fmt);
        end_line(buf, text);
        emit(Kind::General, buf);
    });
}

/// Write raw bytes (a multi-line block, e.g. a traceback dump) at once.
pub fn block(bytes: &[u8]) {
    emit(Kind::General, bytes);
}

/// The request log's configuration (the request path asks what to collect).
pub fn access_config() -> &'static AccessConfig {
    &state().access
}

/// Count one served request for uWSGI's `req: N/TOTAL`; returns TOTAL.
pub fn count_request() -> u64 {
    shared::get().requests.fetch_add(1, Ordering::Relaxed) + 1
}

/// This process's (rss, vsz) in bytes, for `%(rss)` and `%(vsz)`.
pub fn memory() -> (u64, u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let mut pages = statm
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    let (vsz, rss) = (pages.next().unwrap_or(0), pages.next().unwrap_or(0));
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    (rss * page, vsz * page)
}

/// Log one finished request, if the configuration wants it logged.
pub fn request(rec: &access::Record<'_>) {
    let a = &state().access;
    if !a.when.wants(rec) {
        return;
    }
    with_buf(|buf| {
        access::render(&a.style, rec, buf);
        emit(Kind::Request, buf);
    });
}

/// The master's tick: lines were dropped and the log takes lines again:
/// say how many, even if nothing else is logged.
pub fn tick() {
    let st = state();
    st.router.report_drops();
    check_touched(st);
}

/// `--touch-logreopen` / `--touch-logrotate`: a touched file reopens or
/// rotates the log files (the master; workers follow on their next line).
fn check_touched(st: &State) {
    let Ok(mut t) = st.touch.try_lock() else {
        return;
    };
    if t.reopen.is_empty() && t.rotate.is_empty() {
        return;
    }
    let now = Instant::now();
    if t.looked
        .is_some_and(|l| now.duration_since(l) < TOUCH_EVERY)
    {
        return;
    }
    t.looked = Some(now);
    if let Some(path) = t.rotate.touched() {
        let why = format!("{} touched (--touch-logrotate)", path.display());
        drop(t);
        let problems = st.router.rotate();
        for p in &problems {
            stamped(p);
        }
        if problems.is_empty() {
            stamped(&format!("{why}: log files rotated"));
        }
    } else if let Some(path) = t.reopen.touched() {
        let why = format!("{} touched (--touch-logreopen)", path.display());
        drop(t);
        reopen(&why);
    }
}

/// Reopen the log files (logrotate renamed them): the master, on SIGUSR1,
/// or on SIGHUP with `--log-reopen`. Workers follow on their next line.
pub fn reopen(why: &str) {
    let st = state();
    if st.router.files().next().is_none() {
        return;
    }
    let problems = st.router.reopen();
    for p in &problems {
        stamped(p);
    }
    if problems.is_empty() {
        stamped(&format!("{why}: log files reopened"));
    }
}

/// A reload (SIGHUP) begins: with `--log-reopen`, reopen the log files.
pub fn reopen_for_reload() {
    if state().reopen_on_reload {
        reopen("SIGHUP (--log-reopen)");
    }
}

/// With `--log-master`: the pipes the master reads (empty otherwise).
pub fn relay_fds() -> Vec<std::os::fd::RawFd> {
    state()
        .pipes
        .as_ref()
        .map_or(Vec::new(), |p| p.readers().to_vec())
}

/// With `--log-master`, in the master: write what the workers sent.
pub fn relay() {
    thread_local! {
        static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let st = state();
    if let Some(p) = &st.pipes {
        BUF.with(|b| p.drain(&st.router, &mut b.borrow_mut()));
    }
}

fn emit(kind: Kind, bytes: &[u8]) {
    if !relay::to_master(kind, bytes) {
        state().router.deliver(kind, bytes);
    }
}

fn push_date(buf: &mut Vec<u8>, fmt: Option<&str>) {
    clock::with_date(fmt, unix_secs() as i64, |d| {
        buf.extend_from_slice(d.as_bytes())
    });
    buf.extend_from_slice(b" - ");
}

fn end_line(buf: &mut Vec<u8>, text: &str) {
    buf.extend_from_slice(text.as_bytes());
    if !text.ends_with('\n') {
        buf.push(b'\n');
    }
}

/// Run `f` with this thread's line buffer, emptied (a fresh one if the
/// thread is already inside `with_buf`).
fn with_buf(f: impl FnOnce(&mut Vec<u8>)) {
    thread_local! {
        static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    BUF.with(|b| match b.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            f(&mut buf);
            if buf.capacity() > 1 << 16 {
                *buf = Vec::new(); // one huge block does not stay around
            }
        }
        Err(_) => f(&mut Vec::new()),
    });
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

/// [`escape`], appended to a byte buffer.
pub fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let plain = |b: u8| (b.is_ascii_graphic() || b == b' ') && b != b'\\';
    // Almost always nothing to escape: one copy.
    let clean = bytes.iter().position(|&b| !plain(b)).unwrap_or(bytes.len());
    out.extend_from_slice(&bytes[..clean]);
    for &b in &bytes[clean..] {
        if plain(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'\\', b'x', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
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
        let mut v = Vec::new();
        escape_into(&mut v, b"a\r\n\\\xff");
        assert_eq!(v, escape(b"a\r\n\\\xff").as_bytes());
    }
}
