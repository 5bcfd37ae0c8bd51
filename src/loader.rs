//! Preloading (uWSGI's default): a loader process imports the app once and
//! forks the workers from it, so they share its memory copy-on-write and a
//! respawn (harakiri, `--max-requests`, a crash) costs a fork, not an
//! import. `--lazy-apps` skips it: the master forks bare workers that each
//! import the app.
//!
//! Why a loader and not the master, as uWSGI does: the master stays free of
//! app code (no app threads or memory in the process that supervises,
//! nothing of the app that can wedge it), and a reload (SIGHUP) imports the
//! new code in a new loader while the old workers keep serving; they are
//! then replaced one at a time from it. If the new code does not import,
//! nothing is replaced: the old workers keep serving (uWSGI would restart
//! every worker into the failure). One loader per app generation; the
//! master retires the old one as soon as the new one is ready.
//!
//! The master stays the workers' real parent (it reaps them, sees their exit
//! status, and their parent-death signal follows it): the loader forks a
//! short-lived intermediate process that forks the worker and exits at
//! once, and the orphaned worker is re-parented to the master, a child
//! subreaper (`PR_SET_CHILD_SUBREAPER`). `clone(CLONE_PARENT)` would do it in
//! one step, but a raw clone bypasses glibc's fork and leaves the child's
//! cached thread id stale, so `pthread_kill` on itself (the GIL-free
//! tracebacker's signal) would hit the loader instead.
//!
//! Protocol, over a SOCK_SEQPACKET socketpair (one message per send):
//! - loader -> master: `R` once the app is imported (if it cannot be, the
//!   loader exits with [`crate::worker::EXIT_LOAD_FAILED`] instead);
//! - master -> loader: a [`Spawn`] (worker id, scoreboard entry, takeover
//!   flag: three u32, native endian) with the worker's end of its control
//!   channel attached (SCM_RIGHTS, see `channel`);
//! - loader -> master: that worker's pid (i32), or `-errno`.
//!
//! The loader leaves when its socket closes (the master retired it or died).
//! This module is control code: the Python side of loading lives in
//! `worker` and `python`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::channel::WorkerEnd;
use crate::python::Forked;
use crate::worker::{self, Preloaded, WorkerArgs};

/// What the master asks a loader (or itself, with --lazy-apps) to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spawn {
    /// Worker id, from 1.
    pub id: usize,
    /// The scoreboard slot the new process writes.
    pub entry: usize,
    /// An older process of this worker id may still hold the tracebacker
    /// path: the new one takes it over.
    pub takeover: bool,
}

impl Spawn {
    fn encode(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&(self.id as u32).to_ne_bytes());
        b[4..8].copy_from_slice(&(self.entry as u32).to_ne_bytes());
        b[8..].copy_from_slice(&(self.takeover as u32).to_ne_bytes());
        b
    }

    fn decode(b: &[u8; 12]) -> Spawn {
        let word = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Spawn {
            id: word(0) as usize,
            entry: word(4) as usize,
            takeover: word(8) != 0,
        }
    }
}

/// How long the master waits for the loader to fork one worker.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The master's handle on one loader process.
pub struct Loader {
    pub pid: i32,
    sock: OwnedFd,
    /// Incremented on every reload: which code this loader runs.
    pub generation: u64,
    /// The app is imported and workers can be asked for.
    pub ready: bool,
    started: Instant,
}

impl Loader {
    /// Fork a loader from the master. In the loader this never returns:
    /// `child_setup` drops what is the master's (its signal handlers and
    /// pipe), `make_args` builds each worker's arguments as the master does.
    pub fn start<'a>(
        generation: u64,
        master_pid: i32,
        child_setup: impl FnOnce(),
        credentials: crate::privileges::Credentials,
        cfg: &crate::config::Config,
        make_args: impl Fn(Spawn) -> WorkerArgs<'a>,
    ) -> io::Result<Loader> {
        let (mine, theirs) = seqpacket_pair()?;
        match crate::python::fork()? {
            Forked::Parent(pid) => {
                drop(theirs);
                Ok(Loader {
                    pid,
                    sock: mine,
                    generation,
                    ready: false,
                    started: Instant::now(),
                })
            }
            Forked::Child => {
                drop(mine);
                child_setup();
                let code = loader_main(theirs, master_pid, credentials, cfg, make_args);
                // SAFETY: leave without the master's destructors (they
                // would unlink sockets the master still serves).
                unsafe { libc::_exit(code) }
            }
        }
    }

    /// The fd to poll: readable when the loader reported or went away.
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Read the ready message if it came. Returns false when the loader is
    /// gone before reporting (its exit is reaped separately).
    pub fn check_ready(&mut self) -> bool {
        if self.ready {
            return true;
        }
        let mut b = [0u8; 1];
        // SAFETY: non-blocking recv into a live one-byte buffer.
        let n = unsafe { libc::recv(self.fd(), b.as_mut_ptr().cast(), 1, libc::MSG_DONTWAIT) };
        if n == 1 && b[0] == b'R' {
            self.ready = true;
            crate::log::line(&format!(
                "app preloaded in {} ms by the loader (pid: {}, generation {}): workers are forked from it",
                self.started.elapsed().as_millis(),
                self.pid,
                self.generation
            ));
        }
        self.ready
    }

    /// Have the loader fork a worker with its end of its control channel;
    /// returns its pid.
    pub fn spawn_worker(&self, spawn: Spawn, channel: &WorkerEnd) -> io::Result<i32> {
        use std::os::fd::AsFd;
        crate::channel::send_with_end(self.sock.as_fd(), &spawn.encode(), channel)?;
        let mut reply = [0u8; 4];
        recv_exact(self.fd(), &mut reply, Some(SPAWN_TIMEOUT))?;
        let pid = i32::from_ne_bytes(reply);
        if pid < 0 {
            return Err(io::Error::from_raw_os_error(-pid));
        }
        Ok(pid)
    }
}

/// The loader process: import the app, then fork workers on request.
fn loader_main<'a>(
    sock: OwnedFd,
    master_pid: i32,
    credentials: crate::privileges::Credentials,
    cfg: &crate::config::Config,
    make_args: impl Fn(Spawn) -> WorkerArgs<'a>,
) -> i32 {
    // The master decides what Ctrl-C means.
    // SAFETY: setting a signal disposition.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    // Credentials first: app code never runs as root when --uid is given,
    // and changing them clears the parent-death signal.
    if let Err(e) = crate::privileges::drop_to(credentials) {
        crate::log::line(&format!("loader: {e:#}"));
        return worker::EXIT_LOAD_FAILED;
    }
    // SAFETY: prctl/getppid have no memory effects. If the master dies, the
    // kernel kills us.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != master_pid {
            return 1;
        }
    }
    let Some(app) = worker::preload(cfg) else {
        return worker::EXIT_LOAD_FAILED;
    };
    // Each worker takes the app out of its own copy of this (forked) state.
    let mut app = Some(app);
    // SAFETY: send of a live one-byte buffer on our socket.
    if unsafe {
        libc::send(
            sock.as_raw_fd(),
            b"R".as_ptr().cast(),
            1,
            libc::MSG_NOSIGNAL,
        )
    } != 1
    {
        return 0; // the master is gone
    }
    loop {
        use std::os::fd::AsFd;
        let mut msg = [0u8; 12];
        let (spawn, channel) = match crate::channel::recv_with_end(sock.as_fd(), &mut msg) {
            Ok((12, channel)) => (Spawn::decode(&msg), channel),
            _ => return 0, // EOF: retired
        };
        let reply = match crate::python::fork_orphan() {
            Ok(Forked::Child) => {
                drop(sock);
                let Some(app) = app.take() else {
                    // SAFETY: leaving the forked process (unreachable: only
                    // a worker takes the app, and it never comes back here).
                    unsafe { libc::_exit(1) }
                };
                become_worker(spawn, channel, master_pid, app, &make_args);
            }
            Ok(Forked::Parent(pid)) => pid,
            Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
        };
        // The worker has its copy; the loader keeps none.
        drop(channel);
        let out = reply.to_ne_bytes();
        // SAFETY: send of a live 4-byte buffer on our socket.
        if unsafe { libc::send(sock.as_raw_fd(), out.as_ptr().cast(), 4, libc::MSG_NOSIGNAL) } != 4
        {
            return 0;
        }
    }
}

/// In the new worker: wait to be re-parented to the master (the
/// intermediate process exits right after forking us), then serve.
fn become_worker<'a>(
    spawn: Spawn,
    channel: Option<WorkerEnd>,
    master_pid: i32,
    app: Preloaded,
    make_args: &impl Fn(Spawn) -> WorkerArgs<'a>,
) -> ! {
    let id = spawn.id;
    let t0 = Instant::now();
    // SAFETY: getppid has no preconditions.
    while unsafe { libc::getppid() } != master_pid {
        if t0.elapsed() > Duration::from_secs(2) {
            crate::log::line(&format!(
                "worker {id}: not re-parented to the master (pid: {master_pid}): exiting"
            ));
            // SAFETY: leaving the forked process.
            unsafe { libc::_exit(1) };
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    let mut args = make_args(spawn);
    // The loader already dropped privileges; a second drop would fail.
    args.credentials = Default::default();
    args.preloaded = Some(app);
    args.channel = channel;
    let code = worker::run(args);
    // SAFETY: as for every worker, no destructors of the master's state.
    unsafe { libc::_exit(code) }
}

fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills a 2-int array.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: two new fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// One message of exactly `buf.len()` bytes; EOF and short messages are
/// errors. Waits at most `timeout` (None: forever).
fn recv_exact(fd: RawFd, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.map_or(-1, |t| t.as_millis() as i32);
    loop {
        // SAFETY: one live pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc == 0 {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: recv into a live buffer of the given length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n as usize != buf.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        return Ok(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawn_request_round_trips() {
        let s = Spawn {
            id: 7,
            entry: 19,
            takeover: true,
        };
        assert_eq!(Spawn::decode(&s.encode()), s);
    }
}
