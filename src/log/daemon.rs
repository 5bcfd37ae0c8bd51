//! `--daemonize LOGFILE` and `--daemonize2 LOGFILE`: detach from the
//! terminal (fork, `setsid`, fork again, stdin on `/dev/null`, stdout and
//! stderr on the log file) as uWSGI's `daemonize()` does.
//!
//! Unlike uWSGI, the command does not return at once: it waits until the
//! daemon has bound its sockets (`--daemonize`) or loaded the app
//! (`--daemonize2`, uWSGI's "daemonize after app loading"), so a start
//! that fails (a port in use, an app that does not import) still exits
//! non-zero with the reason on the terminal, and a script that starts the
//! server can rely on it being up. The umask is left as it is (uWSGI sets
//! it to 0, which makes every file the server creates world-writable).
//!
//! Nothing here formats log lines.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::python::Forked;

/// The write end of the pipe the waiting command reads (-1: not daemonized,
/// or already told).
static NOTIFY: AtomicI32 = AtomicI32::new(-1);
/// `--daemonize2`: "ready" means the app is loaded, not the sockets bound.
static AFTER_APP: AtomicBool = AtomicBool::new(false);

/// Detach. Returns in the daemon; the calling process waits for the
/// daemon's word and exits with 0 (up) or 1 (failed, reason printed).
/// `log_path` is named in the messages.
pub fn detach(after_app: bool, log_path: &std::path::Path) -> std::io::Result<()> {
    let mut p = [0; 2];
    // SAFETY: pipe2 fills a 2-int array.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (r, w) = (p[0], p[1]);
    // The master is single-threaded here; the interpreter's fork hooks run
    // (the daemon goes on in the same interpreter). The parent only reads a
    // pipe, prints and exits.
    if let Forked::Parent(_) = crate::python::fork()? {
        // SAFETY: the parent gives up the write end so EOF can reach it.
        unsafe { libc::close(w) };
        wait_for_daemon(r, log_path);
    }
    // SAFETY: closing the child's copy of the read end; setsid has no
    // memory effects.
    unsafe {
        libc::close(r);
        if libc::setsid() < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // A second fork: the daemon is not a session leader, so it can never
    // get a controlling terminal again.
    if let Forked::Parent(_) = crate::python::fork()? {
        // SAFETY: the intermediate process leaves at once.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: open/dup2/close of /dev/null onto stdin.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::close(null);
        }
    }
    NOTIFY.store(super::fds::to_high(w)?, Ordering::Release);
    AFTER_APP.store(after_app, Ordering::Release);
    Ok(())
}

/// The waiting command: `O` = up; `E` + text = failed; EOF = the daemon
/// died before saying.
fn wait_for_daemon(r: RawFd, log_path: &std::path::Path) -> ! {
    // SAFETY: we own `r`; the File closes it.
    let mut f = unsafe { std::fs::File::from_raw_fd(r) };
    let mut word = Vec::new();
    let _ = f.read_to_end(&mut word);
    let code = match word.first() {
        Some(b'O') => 0,
        Some(_) => {
            let _ = writeln!(
                std::io::stderr(),
                "uwsgi-rs: {}",
                String::from_utf8_lossy(&word[1..])
            );
            1
        }
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "uwsgi-rs: the daemon stopped during start-up; its log: {}",
                log_path.display()
            );
            1
        }
    };
    // SAFETY: leave without running anything of the server in this process.
    unsafe { libc::_exit(code) }
}

fn tell(word: &[u8]) {
    let fd = NOTIFY.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        // SAFETY: our pipe end; one short write, then closed.
        unsafe {
            libc::write(fd, word.as_ptr().cast(), word.len());
            libc::close(fd);
        }
    }
}

/// The sockets are bound (`--daemonize`: the command may return).
pub fn started() {
    if !AFTER_APP.load(Ordering::Acquire) {
        tell(b"O");
    }
}

/// A worker has loaded the app (`--daemonize2`: the command may return).
pub fn app_loaded() {
    tell(b"O");
}

/// The start failed: the command prints why and exits 1.
pub fn failed(why: &str) {
    let mut word = b"E".to_vec();
    word.extend_from_slice(why.as_bytes());
    tell(&word);
}

/// In a worker: the pipe is the master's to close (a worker holding it
/// would keep the command waiting after the master died).
pub fn forget_in_child() {
    let fd = NOTIFY.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        // SAFETY: the worker's copy of the descriptor; the master keeps its own.
        unsafe { libc::close(fd) };
    }
}
