//! Processes the app forks must never serve.
//!
//! An app that calls `os.fork()` and lets the child return (from the app
//! call, an iterator, or the module import) hands the child back to server
//! code: it would write to its parent's client, then go on accepting
//! connections on the shared listeners. A `pthread_atfork` child handler,
//! installed when the worker starts, marks every process forked from it.
//! The request path calls [`exit_if_child`] where control comes back from
//! Python, and the socket I/O in `conn` refuses to run in a marked process
//! ([`refuse_io`]), so a child never touches a connection.
//!
//! It owns nothing else: no Python; of the sockets, only the numbers of the
//! client connections, which a forked child closes.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static IN_CHILD: AtomicBool = AtomicBool::new(false);

/// Client connections this process holds, one bit per descriptor (the
/// first [`TRACKED`]). A child the app forks closes its copies at once: a
/// copy kept open would hold each connection open after the worker closed
/// it (a client reading to end-of-file, or nginx over the uwsgi protocol,
/// waited until the child exited), and after the worker died (harakiri, a
/// crash) its idle keep-alive clients too.
const TRACKED: usize = 1 << 16;
static CONNS: [AtomicU64; TRACKED / 64] = [const { AtomicU64::new(0) }; TRACKED / 64];

/// A client connection is open on `fd` (in a worker).
#[inline]
pub fn track(fd: RawFd) {
    if let Ok(i) = usize::try_from(fd) {
        if i < TRACKED {
            CONNS[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
        }
    }
}

/// The connection on `fd` is about to be closed.
#[inline]
pub fn untrack(fd: RawFd) {
    if let Ok(i) = usize::try_from(fd) {
        if i < TRACKED {
            CONNS[i / 64].fetch_and(!(1 << (i % 64)), Ordering::Relaxed);
        }
    }
}

extern "C" fn mark_child() {
    // Async-signal-safe: atomics and close(2).
    IN_CHILD.store(true, Ordering::Relaxed);
    for (word, bits) in CONNS.iter().enumerate() {
        let mut bits = bits.swap(0, Ordering::Relaxed);
        while bits != 0 {
            let fd = word * 64 + bits.trailing_zeros() as usize;
            // SAFETY: the child's copy of a client socket its parent holds;
            // the child never uses it (see `refuse_io`).
            unsafe { libc::close(fd as RawFd) };
            bits &= bits - 1;
        }
    }
}

/// Mark the children of this process from now on (once per worker, before
/// the app is imported: an import may fork too).
pub fn install() {
    // SAFETY: registers a handler that only stores to an atomic; no other
    // preconditions. std has no wrapper; rustix neither.
    unsafe { libc::pthread_atfork(None, None, Some(mark_child)) };
}

/// This process is the server's own although its parent marked it: a
/// worker forked by its loader (`crate::loader`), which installed the
/// handler before importing the app.
pub fn unmark() {
    IN_CHILD.store(false, Ordering::Relaxed);
}

/// Whether this process was forked by the app (not a worker).
#[inline]
pub fn is_child() -> bool {
    IN_CHILD.load(Ordering::Relaxed)
}

/// The error socket I/O returns in a forked child instead of touching the
/// connection it shares with its parent.
pub fn refuse_io() -> std::io::Result<()> {
    if is_child() {
        return Err(std::io::Error::other(
            "a process forked by the app cannot use the server's sockets",
        ));
    }
    Ok(())
}

/// A forked child that came back into server code leaves at once: no
/// response, no stats, no next request. `_exit`, so nothing of its
/// parent's (buffers, sockets, Python's atexit) runs in it.
pub fn exit_if_child() {
    if is_child() {
        crate::log::line(&format!(
            "a process forked by the app (pid: {}, parent: {}) returned into the server: it exits without serving",
            std::process::id(),
            rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
        ));
        // SAFETY: _exit has no preconditions and never returns.
        unsafe { libc::_exit(1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_children_are_marked() {
        install();
        assert!(!is_child());
        assert!(refuse_io().is_ok());
        // SAFETY: the child only reads an atomic and calls _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // Nothing that allocates: the test harness has other threads.
            let code = if is_child() { 0 } else { 1 };
            // SAFETY: leave the forked test process at once.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child with a live int.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(!is_child(), "the parent is not marked");
    }
}
