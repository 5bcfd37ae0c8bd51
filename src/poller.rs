//! The worker's readiness queue: one epoll instance shared by every core
//! (request thread) of a worker.
//!
//! Connections are registered once, edge-triggered, when first parked:
//! parking one again between requests is a compare-and-swap in `owners`,
//! not an `epoll_ctl`, and `owners` makes sure exactly one core owns a
//! connection at a time and that an edge that comes while a core owns it
//! is not lost (that core reads again instead of parking). Event tokens
//! name a connection by descriptor and generation, never by pointer, so a
//! late event of a closed connection touches nothing. Listeners are
//! one-shot, re-armed after each accept, except the exclusive ones (see
//! `add_listener`). That is what lets thousands of idle keep-alive
//! connections wait here without pinning a thread, and lets the thread
//! that saw a request serve it without a hand-off. Usually only the
//! worker's leading core waits here (see `leader`), but any number may. A
//! wake-up (stopping, a recycle) is an eventfd that the core woken by it
//! drains, so a core that waits again sleeps (the state it must look at is
//! kept elsewhere, in `Stop`). The worker's control channel (`channel`) is
//! watched here too. One `epoll_wait` fetches up to [`BATCH`] events; the
//! ones not handed out at once wait in a queue for the next `wait` of any
//! core. No parsing and no Python here.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::event::{epoll, eventfd, EventfdFlags, Timespec};
use rustix::io::Errno;

use crate::conn::Conn;
use crate::owners::{Owners, Park};

const WAKE_TOKEN: u64 = 1;
const CONTROL_TOKEN: u64 = 3;
/// Listener tokens are odd (`idx << 1 | 1`, idx from 2); connection tokens
/// are even (descriptor and generation, see `owners::token`).
fn listener_token(idx: usize) -> u64 {
    (((idx + 2) as u64) << 1) | 1
}

pub enum Event {
    /// Listener `idx` has connections to accept (it must be re-armed
    /// unless it is exclusive).
    Listener(usize),
    /// A parked connection has bytes (or hung up); the caller owns it now.
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
    /// Who owns each registered connection.
    owners: Owners,
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
            owners: Owners::default(),
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

    /// Hand a connection to the poller until it has bytes again: the first
    /// time, registered (edge-triggered; the kernel reports what is there
    /// already); after that, given to `owners` without a system call.
    /// `ReadAgain`: an edge came while the caller owned it, or the caller
    /// has not found the socket empty since it got it; it is still the
    /// caller's, to read. An error closes it.
    pub fn park(&self, conn: Box<Conn>) -> io::Result<Park> {
        if conn.generation != 0 {
            return Ok(self.owners.park(conn));
        }
        let fd = conn.fd();
        let token = self
            .owners
            .register(conn)
            .map_err(|_| io::Error::from(Errno::MFILE))?;
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ET;
        // SAFETY: the connection (parked in `owners`, or taken by an event
        // and owned by a core) keeps the socket open; epoll forgets it when
        // it is closed.
        let socket = unsafe { BorrowedFd::borrow_raw(fd) };
        epoll::add(&self.epoll, socket, epoll::EventData::new_u64(token), flags).map_err(|e| {
            // No event names this generation: take it back and close it.
            drop(self.owners.unregister(fd, (token >> 32) as u32));
            io::Error::from(e)
        })?;
        Ok(Park::Parked)
    }

    /// Park a connection whose owner cannot read it now (an offload
    /// thread, or one just accepted while stopping). If it cannot be
    /// parked quietly (see `park`), it is parked anyway and the next `wait`
    /// of any core hands it out as if the kernel had reported it, to be
    /// read then.
    pub fn park_and_report(&self, conn: Box<Conn>) -> io::Result<()> {
        let Park::ReadAgain(conn) = self.park(conn)? else {
            return Ok(());
        };
        let Some(token) = self.owners.park_anyway(conn) else {
            return Err(Errno::BADF.into());
        };
        self.ready().push_back(token);
        // A core asleep in epoll_wait would not look at the queue: wake it
        // (whoever polls next takes the queue first).
        self.wake_all();
        Ok(())
    }

    /// Park a connection its core could read again (an edge came, or its
    /// socket was not found empty) behind the connections that are ready
    /// now, so that it is read in its turn: one client that answers a
    /// response with its next request at once cannot keep the core from the
    /// others. When nothing is queued, what the kernel has ready is fetched
    /// first (without waiting), or the connection would come straight back.
    pub fn requeue(&self, conn: Box<Conn>) -> io::Result<()> {
        let Some(token) = self.owners.park_anyway(conn) else {
            return Err(Errno::BADF.into());
        };
        let fetched = if self.ready().is_empty() {
            self.fetch(Duration::ZERO)?
        } else {
            None
        };
        let mut ready = self.ready();
        if let Some(first) = fetched {
            ready.push_front(first);
            // Its own edge (its next request came while its core had it)
            // would put it first again.
            ready.retain(|&t| t != token);
        }
        ready.push_back(token);
        Ok(())
    }

    /// Wait for the next event; `Wake` after `timeout` too. An event
    /// fetched earlier and not handed out yet comes first, without waiting.
    /// Events that hand nothing out (a connection a core owns, or a closed
    /// one's) are absorbed and the wait goes on, for at most `timeout` more.
    pub fn wait(&self, timeout: Duration) -> io::Result<Event> {
        let mut until: Option<Instant> = None;
        loop {
            // (The queue's lock is let go before `fetch` takes it.)
            let queued = self.ready().pop_front();
            let token = match queued {
                Some(token) => token,
                None => {
                    let left = match until {
                        None => timeout,
                        Some(t) => t.saturating_duration_since(Instant::now()),
                    };
                    match self.fetch(left)? {
                        Some(token) => token,
                        None => return Ok(Event::Wake),
                    }
                }
            };
            if let Some(event) = self.event(token) {
                return Ok(event);
            }
            until.get_or_insert_with(|| Instant::now() + timeout);
        }
    }

    /// One `epoll_wait`: the first token (the others queued), None after
    /// `timeout` or a signal.
    fn fetch(&self, timeout: Duration) -> io::Result<Option<u64>> {
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
            Err(Errno::INTR) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(None);
        }
        if n > 1 {
            self.ready()
                .extend(events[1..n].iter().map(|e| e.data.u64()));
        }
        Ok(Some(events[0].data.u64()))
    }

    fn ready(&self) -> MutexGuard<'_, VecDeque<u64>> {
        // Tokens only: a core that panicked holding it left them intact.
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a token from `epoll_wait` stands for (each is turned into an
    /// event once: it is taken off the ready queue or was never on it).
    /// None: nothing to hand out (see `owners`).
    fn event(&self, token: u64) -> Option<Event> {
        if token == WAKE_TOKEN {
            // Drain it: a wake-up is news once. Left readable, every later
            // wait returns at once and a core waiting for a request to end
            // spins (issue 12, item 2). Whoever is woken looks at the state.
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(&self.wake, &mut buf);
            return Some(Event::Wake);
        }
        if token == CONTROL_TOKEN {
            return Some(Event::Control);
        }
        if token & 1 == 1 {
            return Some(Event::Listener(((token >> 1) - 2) as usize));
        }
        self.owners.event(token).map(Event::Conn)
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
    use std::io::Write;
    use std::os::unix::net::UnixStream;
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
    fn a_requeued_connection_comes_after_the_others_that_are_ready() {
        let p = Poller::new().unwrap();
        let mut clients = parked(&p, counter(), 3);
        clients[0].write_all(b"first").unwrap();
        let first = next_conn(&p);
        assert_eq!(first.listener, 0);
        // While its core has it, its next request comes, and the others'.
        for c in &mut clients {
            c.write_all(b"next").unwrap();
        }
        p.requeue(first).unwrap();
        let order: Vec<usize> = (0..3).map(|_| next_conn(&p).listener).collect();
        assert_eq!(order, [1, 2, 0], "the others first, then the requeued one");
        assert!(matches!(
            p.wait(Duration::from_millis(50)).unwrap(),
            Event::Wake
        ));
    }

    #[test]
    fn events_fetched_together_are_handed_out_once_each() {
        let p = Poller::new().unwrap();
        let open = counter();
        let mut clients = parked(&p, open, 4);
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

    fn counter() -> &'static std::sync::atomic::AtomicU64 {
        Box::leak(Box::new(std::sync::atomic::AtomicU64::new(0)))
    }

    /// `n` connections parked in `p` (listener i for the i-th), and their
    /// clients' ends.
    fn parked(
        p: &Poller,
        open: &'static std::sync::atomic::AtomicU64,
        n: usize,
    ) -> Vec<UnixStream> {
        (0..n)
            .map(|i| {
                let (conn, client) = Conn::unix_pair(open, i);
                assert!(matches!(p.park(conn).unwrap(), Park::Parked));
                client
            })
            .collect()
    }

    fn next_conn(p: &Poller) -> Box<Conn> {
        match p.wait(Duration::from_secs(5)).unwrap() {
            Event::Conn(conn) => conn,
            _ => panic!("no connection event"),
        }
    }

    /// A poller with a connection registered, and handed out by an event
    /// for `first`, which the owner has read to the empty socket.
    fn handed_out(first: &[u8]) -> (Poller, Box<Conn>, UnixStream) {
        let p = Poller::new().unwrap();
        let (conn, mut client) = Conn::unix_pair(counter(), 0);
        assert!(matches!(p.park(conn).unwrap(), Park::Parked));
        client.write_all(first).unwrap();
        let mut conn = next_conn(&p);
        assert_eq!(drain(&mut conn), first.len());
        (p, conn, client)
    }

    /// Read until the socket is empty (as the request path does).
    fn drain(conn: &mut Conn) -> usize {
        let mut got = 0;
        loop {
            conn.buf.clear();
            match conn.fill(1 << 16) {
                Ok(0) => return got,
                Ok(n) => got += n,
                Err(_) => return got,
            }
            if conn.drained {
                return got;
            }
        }
    }

    #[test]
    fn a_request_that_comes_while_a_core_owns_the_connection_is_not_lost() {
        let (p, conn, mut client) = handed_out(b"first");
        // The next request comes while this core still owns it, and
        // another core's wait sees its edge.
        client.write_all(b"second").unwrap();
        assert!(
            matches!(p.wait(Duration::from_millis(100)).unwrap(), Event::Wake),
            "owned: the event hands nothing out"
        );
        let Park::ReadAgain(mut conn) = p.park(conn).unwrap() else {
            panic!("parked over a request no event would report again");
        };
        assert_eq!(drain(&mut conn), 6, "read again: the request is there");
        assert!(matches!(p.park(conn).unwrap(), Park::Parked));
        // Parked without a system call, and still reported.
        client.write_all(b"third").unwrap();
        let mut conn = next_conn(&p);
        assert_eq!(drain(&mut conn), 5);
    }

    #[test]
    fn an_owner_that_cannot_read_parks_and_the_next_wait_reports_it() {
        // An offload thread gives a connection back after an edge came
        // while it sent the response.
        let (p, conn, mut client) = handed_out(b"a");
        client.write_all(b"b").unwrap();
        assert!(matches!(
            p.wait(Duration::from_millis(100)).unwrap(),
            Event::Wake
        ));
        p.park_and_report(conn).unwrap();
        let mut conn = next_conn(&p);
        assert_eq!(drain(&mut conn), 1, "reported, and the byte read");
        // Nothing came since: parked quietly, no report.
        p.park_and_report(conn).unwrap();
        let t = Instant::now();
        loop {
            match p.wait(Duration::from_millis(100)).unwrap() {
                Event::Wake if t.elapsed() >= Duration::from_millis(90) => break,
                Event::Wake => {} // the wake-up of the first report
                _ => panic!("reported with nothing to read"),
            }
        }
    }

    #[test]
    fn a_request_that_came_before_the_park_is_reported_after_it() {
        // The owner found the socket empty, then the request came before it
        // parked, and nobody polled meanwhile: the edge waits in the kernel.
        let (p, conn, mut client) = handed_out(b"a");
        client.write_all(b"b").unwrap();
        assert!(matches!(p.park(conn).unwrap(), Park::Parked));
        let mut conn = next_conn(&p);
        assert_eq!(drain(&mut conn), 1);
    }

    #[test]
    fn a_late_event_of_a_closed_connection_hands_out_nothing() {
        let open = counter();
        let p = Poller::new().unwrap();
        let (a, mut a_client) = Conn::unix_pair(open, 0);
        let (b, mut b_client) = Conn::unix_pair(open, 1);
        assert!(matches!(p.park(a).unwrap(), Park::Parked));
        assert!(matches!(p.park(b).unwrap(), Park::Parked));
        a_client.write_all(b"x").unwrap();
        let mut a = next_conn(&p);
        assert_eq!(a.listener, 0);
        drain(&mut a);
        // While a core owns A, more comes for A and for B; one wait fetches
        // both: B is handed out, A's event stays queued or is absorbed.
        a_client.write_all(b"y").unwrap();
        b_client.write_all(b"z").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let b = next_conn(&p);
        assert_eq!(b.listener, 1);
        // A is closed with its event maybe in flight; a new connection
        // (likely on A's descriptor) is parked.
        drop(a);
        let (c, mut c_client) = Conn::unix_pair(open, 2);
        assert!(matches!(p.park(c).unwrap(), Park::Parked));
        assert!(
            matches!(p.wait(Duration::from_millis(50)).unwrap(), Event::Wake),
            "A's late event hands out nothing"
        );
        c_client.write_all(b"c").unwrap();
        let c = next_conn(&p);
        assert_eq!(c.listener, 2, "the new connection is reported as itself");
        drop((b, c));
        assert_eq!(open.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn cores_sharing_the_poller_never_own_one_connection_twice_nor_lose_a_byte() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        const CONNS: usize = 8;
        const WRITES: usize = 3000;
        let p = Poller::new().unwrap();
        let open = counter();
        let owned: Vec<AtomicBool> = (0..CONNS).map(|_| AtomicBool::new(false)).collect();
        let read = AtomicUsize::new(0);
        let done = AtomicBool::new(false);
        let mut clients = parked(&p, open, CONNS);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    while !done.load(Ordering::Acquire) {
                        let Ok(Event::Conn(mut conn)) = p.wait(Duration::from_millis(20)) else {
                            continue;
                        };
                        let id = conn.listener;
                        assert!(
                            !owned[id].swap(true, Ordering::AcqRel),
                            "two owners of {id}"
                        );
                        loop {
                            read.fetch_add(drain(&mut conn), Ordering::AcqRel);
                            std::thread::yield_now();
                            owned[id].store(false, Ordering::Release);
                            match p.park(conn).unwrap() {
                                Park::Parked => break,
                                Park::ReadAgain(again) => {
                                    assert!(!owned[id].swap(true, Ordering::AcqRel));
                                    conn = again;
                                }
                            }
                        }
                    }
                });
            }
            let mut x = 7u64;
            for _ in 0..WRITES {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                clients[(x % CONNS as u64) as usize]
                    .write_all(b"r")
                    .unwrap();
                if x % 16 == 0 {
                    std::thread::yield_now();
                }
            }
            let t = Instant::now();
            while read.load(Ordering::Acquire) < WRITES && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(5));
            }
            done.store(true, Ordering::Release);
        });
        assert_eq!(read.load(Ordering::Acquire), WRITES, "every byte was read");
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
