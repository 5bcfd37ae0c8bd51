//! Descriptors the app cannot take from the server (issue 12, item 6).
//!
//! An app that closes fd 2 (or 0, 1) frees that number, and the kernel
//! hands the lowest free number to the next `accept`: a client socket
//! would become "stderr", and everything written to stderr (the server's
//! log lines with other clients' URIs, the app's own prints) would reach
//! that client. Two rules keep that from happening:
//!
//! - The server never writes its log to 0-2: every log output is a private
//!   duplicate at a high number, close-on-exec ([`to_high`]).
//! - Fds 0-2 are kept valid. At start ([`ensure_std_open`]) a closed one is
//!   reopened on `/dev/null`, and the worker checks again once the app is
//!   loaded (an app that closes them at import). When `accept` returns 0, 1
//!   or 2, the connection is moved to a high number and `/dev/null` fills
//!   the hole ([`off_std`]); the same is done to the files a request opens
//!   (a post-buffering body, a static file), because on a keep-alive
//!   connection no accept comes between the app's `close(2)` and them, and
//!   the app's stderr writes would land in a request body. One comparison
//!   each; no periodic check. Left open: between an app's `close(2)` and
//!   the next descriptor the server makes, the app's own writes to fd 2
//!   fail (EBADF), which is what it asked for.
//!
//! Nothing here writes log lines.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Log outputs and relay pipes live at or above this number, out of the
/// way of code that assumes small numbers (`os.close(3)`, `dup2(x, 5)`).
const HIGH: RawFd = 200;

/// A close-on-exec duplicate of `fd` at a high number (or the lowest free
/// above 2 when the limit is low). The caller owns both.
pub fn dup_high(fd: RawFd) -> std::io::Result<RawFd> {
    for min in [HIGH, 3] {
        // SAFETY: fcntl on a descriptor the caller owns; no memory involved.
        let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
        if n >= 0 {
            return Ok(n);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) && e.raw_os_error() != Some(libc::EMFILE) {
            return Err(e);
        }
    }
    Err(std::io::Error::last_os_error())
}

/// Move `fd` to a high close-on-exec number (closing the original).
pub fn to_high(fd: RawFd) -> std::io::Result<RawFd> {
    let n = dup_high(fd)?;
    // SAFETY: the caller gave us `fd` to replace; it is not used again.
    unsafe { libc::close(fd) };
    Ok(n)
}

/// `/dev/null` onto `fd` (0, 1 or 2).
fn null_onto(fd: RawFd) {
    // SAFETY: open/dup2/close on descriptors we own; the path is a C literal.
    unsafe {
        let n = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if n < 0 {
            return;
        }
        if n != fd {
            libc::dup2(n, fd); // dup2 clears close-on-exec on `fd`
            libc::close(n);
        } else {
            libc::fcntl(fd, libc::F_SETFD, 0);
        }
    }
}

fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    (unsafe { libc::fcntl(fd, libc::F_GETFD) }) >= 0
}

/// Reopen any of fds 0-2 that is closed on `/dev/null`.
pub fn ensure_std_open() {
    for fd in 0..=2 {
        if !is_open(fd) {
            null_onto(fd);
        }
    }
}

/// A freshly accepted connection: when it landed on 0-2 (the app closed
/// one), move it up and put `/dev/null` back in the hole, so nothing that
/// writes to stdout or stderr can reach a client.
pub fn off_std(fd: OwnedFd) -> OwnedFd {
    let raw = fd.as_raw_fd();
    if raw > 2 {
        return fd;
    }
    match dup_high(raw) {
        Ok(moved) => {
            drop(fd);
            ensure_std_open();
            // SAFETY: `moved` is a new descriptor only we hold.
            unsafe { OwnedFd::from_raw_fd(moved) }
        }
        Err(_) => fd, // out of descriptors: keep it where it is
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dup_high_is_high_and_cloexec() {
        let fd = dup_high(0).unwrap();
        assert!(fd >= 3);
        // SAFETY: reading flags of our own descriptor, then closing it.
        unsafe {
            assert_eq!(
                libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC,
                libc::FD_CLOEXEC
            );
            libc::close(fd);
        }
    }

    #[test]
    fn a_low_descriptor_is_moved_and_the_hole_filled() {
        // Run in a child: the test harness's own fds 0-2 must not change.
        // SAFETY: the child uses only async-signal-safe calls and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: child-only descriptor juggling, then _exit.
            unsafe {
                let mut p = [0; 2];
                libc::pipe(p.as_mut_ptr());
                libc::close(1);
                let low = libc::dup(p[0]); // lands on 1
                let kept = off_std(OwnedFd::from_raw_fd(low));
                let moved = kept.as_raw_fd();
                let mut st: libc::stat = std::mem::zeroed();
                libc::fstat(1, &mut st);
                let ok = low == 1
                    && moved > 2
                    && (st.st_mode & libc::S_IFMT) == libc::S_IFCHR
                    && is_open(moved);
                libc::_exit(if ok { 0 } else { 1 });
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}
