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
//! It owns nothing else: no Python, no sockets.

use std::sync::atomic::{AtomicBool, Ordering};

static IN_CHILD: AtomicBool = AtomicBool::new(false);

extern "C" fn mark_child() {
    // Async-signal-safe: one atomic store.
    IN_CHILD.store(true, Ordering::Relaxed);
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
