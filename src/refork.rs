//! The master fifo's `f` (uWSGI's `uwsgi_refork_master`): start a new
//! master from the same command line, beside this one, on the same
//! listening sockets. uWSGI re-execs itself with the sockets inherited;
//! here they are handed over the way systemd hands them (`LISTEN_FDS`,
//! `LISTEN_PID`, `LISTEN_FDNAMES`, fds 3..), which the new master adopts
//! like any socket activation (`listen::bind_all`). The new master runs in
//! its own session; the old one keeps serving until it is told to stop
//! (uWSGI's zerg dance: fifo slots tell the two apart).

use std::ffi::CString;
use std::io;

use crate::listen::Listener;
use crate::master::Reexec;

/// Fork and exec the new master; returns its pid.
pub fn spawn(reexec: &Reexec, listeners: &[Listener]) -> io::Result<i32> {
    if reexec.argv.is_empty() {
        return Err(io::Error::other("no command line to start"));
    }
    let cwd = CString::new(reexec.cwd.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other("NUL in the directory"))?;
    let mut argv: Vec<*const libc::c_char> = reexec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let fds: Vec<i32> = listeners.iter().map(Listener::fd).collect();
    // Names tell the new master each socket's protocol, for a socket no
    // address of its config names (one systemd passed to this master).
    let names = listeners
        .iter()
        .map(|l| l.proto_name())
        .collect::<Vec<_>>()
        .join(":");
    let count = fds.len().to_string();
    // SAFETY: the master is single-threaded, so the child may allocate;
    // exec_in_child runs in the child only, runs no Python and ends in
    // execv or returns.
    unsafe { crate::spawn::fork_child(|| exec_in_child(&fds, &count, &names, &cwd, &argv)) }
}

/// The new master's side of the fork: the listeners onto fds 3.. with the
/// `LISTEN_*` variables naming them, a new session, then exec; returns the
/// exit code only when that fails.
///
/// # Safety
/// Only in the child of a fork: it moves this process's descriptors and
/// changes its session, environment and directory.
unsafe fn exec_in_child(
    fds: &[i32],
    count: &str,
    names: &str,
    cwd: &CString,
    argv: &[*const libc::c_char],
) -> i32 {
    // SAFETY: in the child, on descriptors and data of this process.
    unsafe {
        libc::setsid();
        // Out of the way first (targets 3.. may be taken by other sockets),
        // then onto 3.. without close-on-exec.
        let high: Vec<i32> = fds
            .iter()
            .map(|&fd| libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 1000))
            .collect();
        for (i, &fd) in high.iter().enumerate() {
            if fd < 0 || libc::dup2(fd, 3 + i as i32) < 0 {
                return 126;
            }
        }
        crate::spawn::close_from(3 + fds.len() as u32);
        std::env::set_var("LISTEN_PID", libc::getpid().to_string());
        std::env::set_var("LISTEN_FDS", count);
        std::env::set_var("LISTEN_FDNAMES", names);
        // Signals the master handles are reset by exec; none is ignored.
        crate::spawn::unblock_all_signals();
        if libc::chdir(cwd.as_ptr()) != 0 {
            return 126;
        }
        libc::execv(argv[0], argv.as_ptr());
    }
    127
}
