//! The worker's readiness queue: one epoll instance shared by every core
//! (request thread) of a worker.
//!
//! Every connection's registration is one-shot, so exactly one core is
//! woken for a ready socket and owns it until it re-arms it (listeners are
//! one-shot too, except the exclusive ones: see `add_listener`). That is
//! what lets thousands of idle keep-alive connections wait here without
//! pinning a thread, and lets the thread that saw a request serve it
//! without a hand-off. Usually only the worker's leading core waits here
//! (see `leader`), but any number may. A wake-up (stopping, a recycle) is
//! an eventfd that the core woken by it drains, so a core that waits again
//! sleeps (the state it must look at is kept elsewhere, in `Stop`). The
//! worker's control channel (`channel`) is watched here too. One
//! `epoll_wait` fetches up to [`BATCH`] events; the ones not handed out at
//! once wait in a queue for the next `wait` of any core. No parsing and no
//! Python here.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rustix::event::{epoll, eventfd, EventfdFlags, Timespec};
use rustix::io::Errno;

use crate::conn::Conn;

const WAKE_TOKEN: u64 = 1;
const CONTROL_TOKEN: u64 = 3;
/// Listener tokens are odd (`idx << 1 | 1`, idx from 2); connection tokens
/// are `Box<Conn>` pointers, which are 8-aligned and so even.
fn listener_token(idx: usize) -> u64 {
    (((idx + 2) as u64) << 1) | 1
}

pub enum Event {
    /// Listener `idx` has connections to accept (it must be re-armed
    /// unless it is exclusive).
    Listener(usize),
    /// A connection has bytes (or hung up); the caller owns it now.
    Conn(Box<Conn>),
    /// The control channel has a message (or closed); it must be re-armed.
    Control,
    /// Woken (or a timeout passed): check the state.
    Wake,
}

pub struct Poller {
    epoll: OwnedFd,
    wake: OwnedFd,
    /// Events fetched by one `epoll_wait` and not handed out yet (tokens,
    /// each given to one core as if it came from the kernel).
    ready: Mutex<VecDeque<u64>>,
}

/// The most events one `epoll_wait` fetches. Under load a worker's poller
/// usually has several keep-alive connections ready at once; fetching
/// them together saves one `epoll_wait` per request for all but the
/// first. They are handed out one per `wait`, to whichever core polls, so
/// a leader stuck in a request leaves them to the core that takes over
/// (as it would leave them in the kernel).
const BATCH: usize = 16;

/// What a listener waits for: one readiness, then re-armed by its core.
const LISTENER_EVENTS: epoll::EventFlags = epoll::EventFlags::IN.union(epoll::EventFlags::ONESHOT);

/// What a listener shared with other workers and never re-armed waits
/// for: level-triggered, and the kernel wakes only one of the workers
/// waiting for it (the first one asleep in `epoll_wait`) instead of every
/// worker, all but one of whom would fail their `accept4`.
const EXCLUSIVE_LISTENER_EVENTS: epoll::EventFlags =
    epoll::EventFlags::IN.union(epoll::EventFlags::EXCLUSIVE);

impl Poller {
    pub fn new() -> io::Result<Poller> {
        let p = Poller {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            wake: eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?,
            ready: Mutex::new(VecDeque::with_capacity(BATCH)),
        };
        // Level-triggered: drained by the core it wakes (see `wait`).
        epoll::add(
            &p.epoll,
            &p.wake,
            epoll::EventData::new_u64(WAKE_TOKEN),
            epoll::EventFlags::IN,
        )?;
        Ok(p)
    }

    /// Watch listener `idx`. One-shot (re-armed with [`Poller::rearm_listener`]
    /// after each event), or with `exclusive` level-triggered, never
    /// re-armed, and one worker woken per connection (see
    /// [`EXCLUSIVE_LISTENER_EVENTS`]).
    pub fn add_listener(&self, idx: usize, fd: RawFd, exclusive: bool) -> io::Result<()> {
        // SAFETY: listeners stay open for the worker's life.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let data = epoll::EventData::new_u64(listener_token(idx));
        let events = if exclusive {
            EXCLUSIVE_LISTENER_EVENTS
        } else {
            LISTENER_EVENTS
        };
        Ok(epoll::add(&self.epoll, fd, data, events)?)
    }

    pub fn rearm_listener(&self, idx: usize, fd: RawFd) -> io::Result<()> {
        // SAFETY: as in add_listener.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let data = epoll::EventData::new_u64(listener_token(idx));
        Ok(epoll::modify(&self.epoll, fd, data, LISTENER_EVENTS)?)
    }

    /// Watch the worker's control channel (one-shot, like a listener).
    pub fn add_control(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let data = epoll::EventData::new_u64(CONTROL_TOKEN);
        Ok(epoll::add(&self.epoll, fd, data, LISTENER_EVENTS)?)
    }

    /// Watch the control channel again after an event.
    pub fn rearm_control(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let data = epoll::EventData::new_u64(CONTROL_TOKEN);
        Ok(epoll::modify(&self.epoll, fd, data, LISTENER_EVENTS)?)
    }

    /// Stop watching a listener (graceful stop): other workers keep accepting.
    pub fn remove_listener(&self, fd: RawFd) {
        // SAFETY: as in add_listener.
        let _ = epoll::delete(&self.epoll, unsafe { BorrowedFd::borrow_raw(fd) });
    }

    /// Hand a connection to the queue until it has bytes again.
    pub fn arm(&self, mut conn: Box<Conn>) -> io::Result<()> {
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ONESHOT;
        let registered = std::mem::replace(&mut conn.registered, true);
        // SAFETY: the connection owns the socket and is owned by the poller
        // from here until an event hands it back (or it is dropped below).
        let fd = unsafe { BorrowedFd::borrow_raw(conn.fd()) };
        let token = Box::into_raw(conn) as u64;
        let data = epoll::EventData::new_u64(token);
        let armed = if registered {
            epoll::modify(&self.epoll, fd, data, flags)
        } else {
            epoll::add(&self.epoll, fd, data, flags)
        };
        armed.map_err(|e| {
            // SAFETY: registration failed, so nobody else can see the token:
            // take the box back and drop it (closes the socket).
            drop(unsafe { Box::from_raw(token as *mut Conn) });
            io::Error::from(e)
        })
    }

    /// Wait for the next event; `Wake` after `timeout` too. An event
    /// fetched earlier and not handed out yet comes first, without waiting.
    pub fn wait(&self, timeout: Duration) -> io::Result<Event> {
        if let Some(token) = self.ready().pop_front() {
            return Ok(self.event(token));
        }
        let mut events = [epoll::Event {
            flags: epoll::EventFlags::empty(),
            data: epoll::EventData::new_u64(0),
        }; BATCH];
        let timeout = Timespec::try_from(timeout).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        let n = match epoll::wait(&self.epoll, &mut events, Some(&timeout)) {
            Ok(n) => n,
            Err(Errno::INTR) => return Ok(Event::Wake),
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(Event::Wake);
        }
        if n > 1 {
            self.ready()
                .extend(events[1..n].iter().map(|e| e.data.u64()));
        }
        Ok(self.event(events[0].data.u64()))
    }

    fn ready(&self) -> MutexGuard<'_, VecDeque<u64>> {
        // Tokens only: a core that panicked holding it left them intact.
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a token from `epoll_wait` stands for (each is turned into an
    /// event once: it is taken off the ready queue or was never on it).
    fn event(&self, token: u64) -> Event {
        if token == WAKE_TOKEN {
            // Drain it: a wake-up is news once. Left readable, every later
            // wait returns at once and a core waiting for a request to end
            // spins (issue 12, item 2). Whoever is woken looks at the state.
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(&self.wake, &mut buf);
            return Event::Wake;
        }
        if token == CONTROL_TOKEN {
            return Event::Control;
        }
        if token & 1 == 1 {
            return Event::Listener(((token >> 1) - 2) as usize);
        }
        // SAFETY: even tokens are only ever made by `arm` from Box::into_raw,
        // and one-shot delivery gives each to exactly one waiter, which
        // either takes it here or queues it in `ready` for one later `wait`.
        Event::Conn(unsafe { Box::from_raw(token as *mut Conn) })
    }

    /// Wake the core waiting here, if any (signal-safe: one write to an
    /// eventfd). Followers sleep on the leader's condition variables, not
    /// here: `Leader::wake_all` wakes them.
    pub fn wake_all(&self) {
        wake(self.wake.as_fd());
    }

    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }
}

/// Async-signal-safe wake-up, for signal handlers that only know the fd.
pub fn wake_fd(fd: RawFd) {
    // SAFETY: the caller passes the poller's eventfd, open for the worker's life.
    wake(unsafe { BorrowedFd::borrow_raw(fd) });
}

fn wake(fd: BorrowedFd<'_>) {
    // One raw write(2): async-signal-safe.
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_wake_up_is_seen_once_then_waits_sleep() {
        let p = Poller::new().unwrap();
        p.wake_all();
        p.wake_all();
        assert!(matches!(
            p.wait(Duration::from_secs(5)).unwrap(),
            Event::Wake
        ));
        let t = Instant::now();
        assert!(matches!(
            p.wait(Duration::from_millis(100)).unwrap(),
            Event::Wake
        ));
        assert!(
            t.elapsed() >= Duration::from_millis(90),
            "the wake-up was drained, so this wait slept: {:?}",
            t.elapsed()
        );
    }

    #[test]
    fn events_fetched_together_are_handed_out_once_each() {
        let p = Poller::new().unwrap();
        let open: &'static std::sync::atomic::AtomicU64 =
            Box::leak(Box::new(std::sync::atomic::AtomicU64::new(0)));
        let mut clients = Vec::new();
        for i in 0..4 {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            ours.set_nonblocking(true).unwrap();
            let conn = Conn::new(ours.into(), open, i, String::new(), String::new());
            p.arm(Box::new(conn)).unwrap();
            clients.push(theirs);
        }
        for c in &mut clients {
            std::io::Write::write_all(c, b"x").unwrap();
        }
        let mut seen = Vec::new();
        for i in 0..4 {
            match p.wait(Duration::from_secs(5)).unwrap() {
                Event::Conn(conn) => seen.push(conn.listener),
                _ => panic!("event {i} is not a connection"),
            }
            if i == 0 {
                assert_eq!(p.ready().len(), 3, "one epoll_wait fetched all four");
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2, 3], "each connection once");
        assert_eq!(open.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert!(matches!(
            p.wait(Duration::from_millis(50)).unwrap(),
            Event::Wake
        ));
    }

    #[test]
    fn the_control_channel_is_an_event_of_its_own() {
        let p = Poller::new().unwrap();
        let (master, worker) = crate::channel::pair().unwrap();
        p.add_control(worker.as_fd()).unwrap();
        master.send(crate::channel::ToWorker::Retire).unwrap();
        assert!(matches!(
            p.wait(Duration::from_secs(5)).unwrap(),
            Event::Control
        ));
        assert_eq!(
            worker.recv(),
            crate::channel::Received::Message(crate::channel::ToWorker::Retire)
        );
        master.send(crate::channel::ToWorker::Shutdown).unwrap();
        // One-shot: nothing until re-armed.
        let t = Instant::now();
        assert!(matches!(
            p.wait(Duration::from_millis(50)).unwrap(),
            Event::Wake
        ));
        assert!(t.elapsed() >= Duration::from_millis(40));
        p.rearm_control(worker.as_fd()).unwrap();
        assert!(matches!(
            p.wait(Duration::from_secs(5)).unwrap(),
            Event::Control
        ));
    }
}
