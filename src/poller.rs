//! The worker's readiness queue: one epoll instance shared by every core
//! (request thread) of a worker.
//!
//! Every registration is one-shot, so exactly one core is woken for a ready
//! socket and owns it until it re-arms it. That is what lets thousands of
//! idle keep-alive connections wait here without pinning a thread, and lets
//! the thread that saw a request serve it without a hand-off. Usually only
//! the worker's leading core waits here (see `leader`), but any number may.
//! Stopping wakes every waiting core through an eventfd. No parsing and no
//! Python here.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::conn::Conn;

const WAKE_TOKEN: u64 = 1;
/// Listener tokens are odd (`idx << 1 | 1`, idx from 1); connection tokens
/// are `Box<Conn>` pointers, which are 8-aligned and so even.
fn listener_token(idx: usize) -> u64 {
    (((idx + 1) as u64) << 1) | 1
}

pub enum Event {
    /// Listener `idx` has connections to accept (it must be re-armed).
    Listener(usize),
    /// A connection has bytes (or hung up); the caller owns it now.
    Conn(Box<Conn>),
    /// The worker is stopping (or a timeout passed): check the state.
    Wake,
}

pub struct Poller {
    epfd: RawFd,
    wakefd: RawFd,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: plain syscalls; results checked.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        let wakefd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if wakefd < 0 {
            return Err(io::Error::last_os_error());
        }
        let p = Poller { epfd, wakefd };
        // Level-triggered and never drained: once woken, every core sees it.
        p.ctl(
            libc::EPOLL_CTL_ADD,
            wakefd,
            libc::EPOLLIN as u32,
            WAKE_TOKEN,
        )?;
        Ok(p)
    }

    fn ctl(&self, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: epfd is ours; ev is a live local.
        if unsafe { libc::epoll_ctl(self.epfd, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn add_listener(&self, idx: usize, fd: RawFd) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_ADD,
            fd,
            (libc::EPOLLIN | libc::EPOLLONESHOT) as u32,
            listener_token(idx),
        )
    }

    pub fn rearm_listener(&self, idx: usize, fd: RawFd) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_MOD,
            fd,
            (libc::EPOLLIN | libc::EPOLLONESHOT) as u32,
            listener_token(idx),
        )
    }

    /// Stop watching a listener (graceful stop): other workers keep accepting.
    pub fn remove_listener(&self, fd: RawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Hand a connection to the queue until it has bytes again.
    pub fn arm(&self, mut conn: Box<Conn>) -> io::Result<()> {
        let fd = conn.fd();
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;
        let op = if conn.registered {
            libc::EPOLL_CTL_MOD
        } else {
            libc::EPOLL_CTL_ADD
        };
        conn.registered = true;
        let token = Box::into_raw(conn) as u64;
        self.ctl(op, fd, events, token).inspect_err(|_| {
            // SAFETY: registration failed, so nobody else can see the token:
            // take the box back and drop it (closes the socket).
            drop(unsafe { Box::from_raw(token as *mut Conn) });
        })
    }

    /// Wait for the next event; `Wake` after `timeout` too.
    pub fn wait(&self, timeout: Duration) -> io::Result<Event> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: one event slot, a live local.
        let n = unsafe { libc::epoll_wait(self.epfd, &mut ev, 1, timeout.as_millis() as i32) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(Event::Wake);
            }
            return Err(e);
        }
        if n == 0 || ev.u64 == WAKE_TOKEN {
            return Ok(Event::Wake);
        }
        if ev.u64 & 1 == 1 {
            return Ok(Event::Listener(((ev.u64 >> 1) - 1) as usize));
        }
        // SAFETY: even tokens are only ever made by `arm` from Box::into_raw,
        // and one-shot delivery gives each to exactly one waiter.
        Ok(Event::Conn(unsafe { Box::from_raw(ev.u64 as *mut Conn) }))
    }

    /// Wake every core (signal-safe: one write to an eventfd).
    pub fn wake_all(&self) {
        wake_fd(self.wakefd);
    }

    pub fn wake_fd(&self) -> RawFd {
        self.wakefd
    }
}

/// Async-signal-safe wake-up, for signal handlers that only know the fd.
pub fn wake_fd(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: write(2) is async-signal-safe; 8 bytes from a live local.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}
