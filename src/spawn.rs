//! Running a shell command beside the server (attached daemons, cron jobs,
//! `exec:` hooks): fork, then exec `/bin/sh -c COMMAND`, as uWSGI does
//! (`uwsgi_run_command`, `uwsgi_exec_command_with_args`).
//!
//! The child runs no Python and no Rust beyond what is prepared before the
//! fork: it only makes system calls (new session, parent-death signal,
//! stdin from /dev/null, descriptors above 2 closed, signal dispositions
//! reset, credentials, working directory) and execs. So it is safe to call
//! from a process with threads (a worker running an `accepting` hook).
//! Waiting for the command is the caller's business: the master reaps its
//! children in its loop and must never block on one.
//!
//! The fork itself is [`fork_child`], shared with the other children the
//! control side starts (the new master of a refork, `as-user` hooks run
//! under dropped privileges): the child runs one closure and leaves with
//! `_exit`, never returning into its parent's code.

use std::ffi::CString;
use std::io;

use crate::privileges::Credentials;

/// A command to start; build it with [`Command::shell`].
#[derive(Debug, Clone)]
pub struct Command {
    shell: CString,
    script: CString,
    /// Own session and process group (so a stop signal reaches its children
    /// too, and the terminal's Ctrl-C does not).
    pub new_session: bool,
    /// Killed by the kernel when the process that started it dies.
    pub die_with_parent: bool,
    /// Keep the server's stdin instead of /dev/null.
    pub keep_stdin: bool,
    pub chdir: Option<CString>,
    pub credentials: Credentials,
}

/// The shell uWSGI uses (`uwsgi_binsh`): $SHELL's `/bin/sh` equivalent.
const SHELL: &str = "/bin/sh";

impl Command {
    /// `/bin/sh -c script`, in a new session, stdin from /dev/null.
    /// None when the script contains a NUL byte.
    pub fn shell(script: &str) -> Option<Command> {
        Some(Command {
            shell: CString::new(SHELL).ok()?,
            script: CString::new(script).ok()?,
            new_session: true,
            die_with_parent: false,
            keep_stdin: false,
            chdir: None,
            credentials: Credentials::default(),
        })
    }

    /// Fork and exec; returns the child's pid. The caller reaps it.
    pub fn spawn(&self) -> io::Result<i32> {
        let argv: [*const libc::c_char; 4] = [
            self.shell.as_ptr(),
            c"-c".as_ptr(),
            self.script.as_ptr(),
            std::ptr::null(),
        ];
        let groups = self.credentials.gid.map(|g| [g as libc::gid_t]);
        // SAFETY: exec_in_child runs in the child only; it makes system
        // calls on data prepared above (no allocation, no locks) and then
        // execs or returns, so it is safe even when the parent has other
        // threads.
        unsafe { fork_child(|| self.exec_in_child(&argv, groups.as_ref())) }
    }

    /// The child's side of [`Command::spawn`]: set the process up, exec;
    /// returns the exit code only when that fails.
    ///
    /// # Safety
    /// Only in the child of a fork: it changes this process's session,
    /// descriptors, signals and credentials.
    unsafe fn exec_in_child(
        &self,
        argv: &[*const libc::c_char; 4],
        groups: Option<&[libc::gid_t; 1]>,
    ) -> i32 {
        // SAFETY: in the child: async-signal-safe calls only, on live data.
        unsafe {
            if self.new_session {
                libc::setsid();
            }
            if self.die_with_parent {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            }
            // Dispositions a worker or the master set (SIG_IGN survives exec).
            for sig in [libc::SIGPIPE, libc::SIGINT, libc::SIGHUP, libc::SIGTERM] {
                libc::signal(sig, libc::SIG_DFL);
            }
            unblock_all_signals();
            if !self.keep_stdin {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
                if null > 0 {
                    libc::dup2(null, 0);
                    libc::close(null);
                }
            }
            close_from(3);
            if let (Some(gid), Some(groups)) = (self.credentials.gid, groups) {
                if libc::setgroups(1, groups.as_ptr()) != 0 || libc::setgid(gid) != 0 {
                    return 126;
                }
            }
            if let Some(uid) = self.credentials.uid {
                if self.credentials.gid.is_none() {
                    libc::setgroups(0, std::ptr::null());
                }
                if libc::setuid(uid) != 0 {
                    return 126;
                }
            }
            if let Some(dir) = &self.chdir {
                if libc::chdir(dir.as_ptr()) != 0 {
                    return 126;
                }
            }
            libc::execv(self.shell.as_ptr(), argv.as_ptr());
        }
        127
    }
}

/// Fork. The child runs `child` and `_exit`s with the code it returns (a
/// child that execs returns only when exec fails: 127, as a shell says);
/// the parent gets the child's pid. The child never returns into the
/// caller's code, so nothing of the parent's (destructors, buffers, the
/// test harness) runs twice.
///
/// # Safety
/// The child is a copy of this process with only the calling thread. When
/// the process has other threads, `child` may only make async-signal-safe
/// calls on data prepared before the fork (no allocation, no locks); in a
/// single-threaded process (the master before it starts any thread) it
/// may run any Rust code but no Python.
pub unsafe fn fork_child(child: impl FnOnce() -> i32) -> io::Result<i32> {
    // SAFETY: what the child may do is the caller's contract above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        return Ok(pid);
    }
    let code = child();
    // SAFETY: leaving the child without running anything of the parent's.
    unsafe { libc::_exit(code) }
}

/// Unblock every signal: a child inherits the signal mask of the thread
/// that forked it, across exec too, and a command must start with none
/// blocked. Async-signal-safe.
pub fn unblock_all_signals() {
    // SAFETY: sigemptyset fills a live, zeroed set; sigprocmask only reads it.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// A wait status as a shell reports it: the exit code, or 128 + signal.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// Close every descriptor from `first` up (close_range, or one by one up
/// to the open-files limit on kernels without it). Async-signal-safe.
pub fn close_from(first: u32) {
    // SAFETY: close_range(2) only closes descriptors.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
    if rc == 0 {
        return;
    }
    // SAFETY: getrlimit fills a live struct; close on any number is harmless.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur.min(1 << 20) as i32
        } else {
            4096
        };
        for fd in first as i32..max {
            libc::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(c: &Command) -> i32 {
        let pid = c.spawn().unwrap();
        let mut status = 0;
        // SAFETY: waiting for the child just started.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        exit_code(status)
    }

    #[test]
    fn a_forked_child_exits_with_the_code_it_returns() {
        // SAFETY: the child returns a constant (the test harness has other
        // threads: nothing that allocates or locks).
        let pid = unsafe { fork_child(|| 7) }.unwrap();
        let mut status = 0;
        // SAFETY: waiting for the child just started.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 7);
    }

    #[test]
    fn runs_through_the_shell_and_reports_the_exit_code() {
        let c = Command::shell("exit 3").unwrap();
        assert_eq!(run(&c), 3);
        let c = Command::shell("kill -9 $$").unwrap();
        assert_eq!(run(&c), 128 + 9);
        assert!(Command::shell("a\0b").is_none());
    }

    #[test]
    fn child_gets_dev_null_stdin_and_no_inherited_fds() {
        let dir = std::env::temp_dir().join(format!("uwsgi-rs-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        // An fd without CLOEXEC, as a listener a worker inherited would be.
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&r);
        let script = format!(
            "readlink /proc/self/fd/0 > {o}; if [ -e /proc/self/fd/{raw} ]; then echo open >> {o}; else echo closed >> {o}; fi; pwd >> {o}",
            o = out.display()
        );
        let mut c = Command::shell(&script).unwrap();
        c.chdir = Some(CString::new("/").unwrap());
        assert_eq!(run(&c), 0);
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text, "/dev/null\nclosed\n/\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
