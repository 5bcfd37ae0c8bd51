//! Collecting stacks without the GIL, for when a thread holds it in C code
//! (or the interpreter is otherwise wedged) and the GIL path cannot answer.
//!
//! Why this way: CPython's signal-safe dumper (`_Py_DumpTracebackThreads`,
//! what `faulthandler` prints on a crash) walks every thread's frames
//! without taking the GIL. Its C symbol is not exported on every version
//! (3.13, some 3.9/3.10 builds), but `faulthandler.register()` is public on
//! all of them: at worker start we register a real-time signal with an
//! in-memory file, and here we raise that signal on the calling thread,
//! which runs the dumper synchronously, then parse its text. Reading the
//! worker's memory from the master (py-spy's way) would need ptrace rights
//! and per-version struct layouts; this needs neither.
//!
//! Catches: faulthandler prints at most 100 frames per thread and 100
//! threads, escapes non-ASCII (undone here), truncates strings at 500
//! characters, and has no thread names or source lines: names come from
//! [`super::names`], source lines from reading the file.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

use pyo3::prelude::*;

use super::format::{Cut, Frame, ThreadStack, UNNAMED};
use super::names;

/// faulthandler prints at most this many frames per thread, innermost
/// first (3.9-3.12 then print `  ...`; 3.13 prints nothing more).
pub const MAX_FRAMES: usize = 100;

struct Dumper {
    /// The memfd faulthandler writes to; guarded so one dump runs at a time.
    file: Mutex<OwnedFd>,
    signal: i32,
}

static DUMPER: OnceLock<Dumper> = OnceLock::new();

/// The signal we give faulthandler: a real-time one, left alone by apps.
fn dump_signal() -> i32 {
    libc::SIGRTMIN() + 7
}

/// Register the dumper; call once per worker, with the GIL, before serving.
pub fn install(py: Python<'_>) -> PyResult<()> {
    // SAFETY: memfd_create with a static NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"uwsgi-rs-traceback".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error().into());
    }
    // SAFETY: fd is new and ours.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let signal = dump_signal();
    let fh = py.import("faulthandler")?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("file", file.as_raw_fd())?;
    kwargs.set_item("all_threads", true)?;
    kwargs.set_item("chain", false)?;
    fh.call_method("register", (signal,), Some(&kwargs))?;
    let _ = DUMPER.set(Dumper {
        file: Mutex::new(file),
        signal,
    });
    Ok(())
}

/// Dump every thread now, without the GIL. Safe from any non-Python thread.
pub fn collect() -> io::Result<Vec<ThreadStack>> {
    let d = DUMPER
        .get()
        .ok_or_else(|| io::Error::other("GIL-free dumper not installed"))?;
    let file = d
        .file
        .lock()
        .map_err(|_| io::Error::other("dumper lock poisoned"))?;
    let fd = file.as_raw_fd();
    // SAFETY: plain syscalls on our memfd.
    unsafe {
        libc::ftruncate(fd, 0);
        libc::lseek(fd, 0, libc::SEEK_SET);
    }
    // Signal this very thread: the handler runs before pthread_kill returns,
    // so the file is complete when we read it.
    // SAFETY: pthread_self is this live thread; the handler was installed by
    // faulthandler.register for this signal.
    let rc = unsafe { libc::pthread_kill(libc::pthread_self(), d.signal) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    let mut text = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0i64;
    loop {
        // SAFETY: reading into a live buffer from our memfd.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off) };
        if n <= 0 {
            break;
        }
        text.extend_from_slice(&buf[..n as usize]);
        off += n as i64;
    }
    Ok(parse(&String::from_utf8_lossy(&text)))
}

/// Parse faulthandler's all-threads output into stacks (outermost first;
/// no source lines: see [`super::sources`]).
pub fn parse(text: &str) -> Vec<ThreadStack> {
    let mut threads: Vec<ThreadStack> = Vec::new();
    for line in text.lines() {
        // In the signal handler, CPython's "current" thread state is the
        // one holding the GIL (this thread holds none): the one to blame.
        let (header, holds_gil) = match line.strip_prefix("Current thread 0x") {
            Some(rest) => (Some(rest), true),
            None => (line.strip_prefix("Thread 0x"), false),
        };
        if let Some(rest) = header {
            let hex = rest.split_whitespace().next().unwrap_or("");
            let ident = u64::from_str_radix(hex, 16).unwrap_or(0);
            let name = names::lookup(ident).unwrap_or_else(|| UNNAMED.to_string());
            threads.push(ThreadStack {
                ident,
                name,
                frames: Vec::new(),
                holds_gil: Some(holds_gil),
                cut: None,
            });
        } else if let Some(frame) = parse_frame(line) {
            if let Some(t) = threads.last_mut() {
                t.frames.push(frame);
            }
        } else if line.trim() == "..." {
            if let Some(t) = threads.last_mut().filter(|t| !t.frames.is_empty()) {
                t.cut = Some(Cut::Unknown);
            }
        }
    }
    // We only get here when the GIL was not had for GIL_WAIT: the thread
    // running on a CPU with Python frames is the one holding it (threads
    // waiting for the GIL sleep in the kernel).
    let candidates: Vec<u64> = threads
        .iter()
        .filter(|t| !t.frames.is_empty())
        .map(|t| t.ident)
        .collect();
    let running = names::running(&candidates);
    for t in &mut threads {
        if !t.frames.is_empty() && t.holds_gil != Some(true) && names::has_tid(t.ident) {
            t.holds_gil = Some(running.contains(&t.ident));
        }
        t.frames.reverse(); // faulthandler prints the most recent call first
        if t.frames.len() >= MAX_FRAMES {
            // 3.13 stops at the limit without a mark: at the limit, assume cut.
            t.cut = Some(Cut::Unknown);
        }
    }
    threads
}

/// `  File "/x/slow.py", line 4 in dormi`
fn parse_frame(line: &str) -> Option<Frame> {
    let rest = line.trim_start().strip_prefix("File \"")?;
    let (file, rest) = rest.rsplit_once("\", line ")?;
    let (lineno, function) = rest.split_once(" in ")?;
    Some(Frame {
        filename: unescape(file),
        lineno: lineno.trim().parse().unwrap_or(0),
        function: unescape(function.trim_end()),
        line: String::new(),
        locals: Vec::new(),
    })
}

/// Undo faulthandler's ASCII escaping (`\xNN`, `\uNNNN`, `\UNNNNNNNN`).
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let width = match chars.peek() {
            Some('x') => 2,
            Some('u') => 4,
            Some('U') => 8,
            _ => {
                out.push(c);
                continue;
            }
        };
        let mut probe = chars.clone();
        probe.next();
        let hex: String = probe.by_ref().take(width).collect();
        match u32::from_str_radix(&hex, 16)
            .ok()
            .filter(|_| hex.len() == width)
            .and_then(char::from_u32)
        {
            Some(decoded) => {
                out.push(decoded);
                chars = probe;
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_faulthandler_output() {
        names::record(0x7f00_0000_0001, "uWSGIWorker1Core1", 0);
        let text = "Thread 0x00007f0000000001 (most recent call first):\n  File \"/nonexistent/busy.py\", line 5 in crunch\n  File \"/nonexistent/busy.py\", line 10 in application\n\nCurrent thread 0x00007f0000000002 (most recent call first):\n  <no Python frame>\n";
        let threads = parse(text);
        assert_eq!(threads.len(), 2);
        assert_eq!(threads[0].name, "uWSGIWorker1Core1");
        assert_eq!(threads[0].frames[0].function, "application");
        assert_eq!(threads[0].frames[0].lineno, 10);
        assert_eq!(threads[0].frames[1].function, "crunch");
        assert_eq!(threads[1].name, UNNAMED);
        assert_eq!(threads[0].holds_gil, Some(false));
        assert_eq!(threads[1].holds_gil, Some(true));
        assert!(threads[1].frames.is_empty());
    }

    #[test]
    fn unescapes_non_ascii() {
        assert_eq!(unescape("caf\\xe9"), "café");
        assert_eq!(
            unescape("\\u043f\\u0440\\u0438\\u0432\\u0435\\u0442"),
            "привет"
        );
        assert_eq!(unescape("\\U0001f600"), "😀");
        assert_eq!(unescape("a\\b\\xZZ"), "a\\b\\xZZ");
    }

    #[test]
    fn a_cut_stack_is_marked() {
        let mut text = String::from("Thread 0x0000000000000abc (most recent call first):\n");
        for i in 0..MAX_FRAMES {
            text.push_str(&format!("  File \"/x/deep.py\", line {} in f\n", i + 1));
        }
        let unmarked = parse(&text); // 3.13: no "..." line, but at the limit
        assert_eq!(unmarked[0].cut, Some(Cut::Unknown));
        text.push_str("  ...\n");
        let marked = parse(&text);
        assert_eq!(marked[0].frames.len(), MAX_FRAMES);
        assert_eq!(marked[0].cut, Some(Cut::Unknown));
        // Outermost first: the last line printed is the first frame.
        assert_eq!(marked[0].frames[0].lineno, MAX_FRAMES as u32);
        let short = parse("Thread 0x1 (most recent call first):\n  File \"a.py\", line 1 in g\n");
        assert_eq!(short[0].cut, None);
    }
}
