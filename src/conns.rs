//! A worker's connections: its listeners, the poller every core waits on,
//! the deadlines of parked connections, and the count of open ones.
//! `accept` takes a connection off a listener, `park` hands one to the
//! poller until it has bytes (under a deadline; or gives it back to be read
//! again, see `owners`), `close_after_response`
//! closes one gracefully (dropping a connection closes it at once), and
//! `drain_backlog` takes what the kernel already queued when the worker
//! stops listening.
//!
//! No parsing, no requests and no Python: `serve` decides what to do with
//! a connection; this module only keeps the books straight.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::SocketFlags;

use crate::config::Protocol;
use crate::conn::{Conn, Unread};
use crate::deadlines::Deadlines;
use crate::owners::Park;
use crate::poller::{Event, Poller};

/// What the request path needs to know of a listener.
pub struct ListenerInfo {
    pub fd: RawFd,
    pub protocol: Protocol,
    pub is_unix: bool,
    /// The environ's SERVER_NAME and SERVER_PORT (the access log counts them).
    pub server_name: String,
    pub server_port: String,
}

impl ListenerInfo {
    /// Whether the workers wait for this listener exclusively: the kernel
    /// wakes one idle worker per connection, and the listener is never
    /// re-armed (no `epoll_ctl` per connection). uwsgi listeners only:
    /// nginx opens one connection per request there, so which worker
    /// takes it does not matter past that request. An HTTP keep-alive
    /// client stays with the worker that accepted it, and the workers
    /// balance their connections on accept (a worker holding more leaves
    /// a connection to a lighter one, which must have been woken too).
    pub fn exclusive(&self) -> bool {
        self.protocol == Protocol::Uwsgi
    }
}

/// How long, and how much, a connection may take.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Silence allowed in the middle of a request, or before the first.
    pub socket_timeout: Duration,
    /// An idle connection between two requests.
    pub keepalive: Duration,
    /// The longest a lingering close may take (nginx's `lingering_time`).
    pub linger_time: Duration,
    /// The most a lingering close discards.
    pub linger_bytes: u64,
}

pub struct Conns {
    worker_id: usize,
    poller: Poller,
    deadlines: Deadlines,
    listeners: Vec<ListenerInfo>,
    /// Cleared once the worker stops listening.
    listening: AtomicBool,
    /// Cores in the middle of an accept (or the drain when listening
    /// stops): a stopping worker must not exit between a core's accept4
    /// and the connection being counted open (the client would be reset).
    accepting: AtomicUsize,
    /// Per listener: its last accept took a connection, so more may be
    /// queued in the kernel (cleared when one finds none).
    maybe_queued: Vec<AtomicBool>,
    /// The worker's open connections, on the scoreboard.
    open: &'static AtomicU64,
    /// Of those, the ones whose request head is in and whose body is
    /// awaited (see `Conn::await_body`); leaked once per worker, as each
    /// connection counts itself out when dropped.
    awaiting: &'static AtomicU64,
    bounds: Bounds,
}

/// How many queued connections a stopping worker takes per listener.
const DRAIN_MAX: usize = 1024;

impl Conns {
    /// Watch `listeners` with `poller`.
    pub fn new(
        worker_id: usize,
        poller: Poller,
        listeners: Vec<ListenerInfo>,
        open: &'static AtomicU64,
        bounds: Bounds,
    ) -> io::Result<Conns> {
        for (i, l) in listeners.iter().enumerate() {
            poller.add_listener(i, l.fd, l.exclusive())?;
        }
        Ok(Conns {
            worker_id,
            poller,
            deadlines: Deadlines::default(),
            maybe_queued: listeners.iter().map(|_| AtomicBool::new(false)).collect(),
            listeners,
            listening: AtomicBool::new(true),
            accepting: AtomicUsize::new(0),
            open,
            awaiting: Box::leak(Box::new(AtomicU64::new(0))),
            bounds,
        })
    }

    pub fn listener(&self, idx: usize) -> &ListenerInfo {
        &self.listeners[idx]
    }

    /// Connections open now (accepted and not yet dropped).
    #[cfg(test)]
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Acquire)
    }

    /// Wait for the next event (a listener to accept on, a connection with
    /// bytes, or a wake-up); `Wake` after `timeout` too. A connection the
    /// caller gets back is off the deadline list; one being closed after
    /// its response is dealt with here, and reported as `Wake`.
    pub fn wait(&self, timeout: Duration) -> io::Result<Event> {
        let event = self.poller.wait(timeout)?;
        match event {
            Event::Conn(mut conn) => {
                self.deadlines.clear(conn.fd());
                conn.streak = 0;
                if conn.linger.is_some() {
                    self.linger_or_close(conn);
                    return Ok(Event::Wake);
                }
                Ok(Event::Conn(conn))
            }
            // Fetched before the worker stopped listening: not any more.
            Event::Listener(_) if !self.listening.load(Ordering::Acquire) => Ok(Event::Wake),
            other => Ok(other),
        }
    }

    /// Cut the parked connections past their deadline (at most once per
    /// `every`, whoever calls).
    pub fn sweep(&self, now: Instant, every: Duration) {
        self.deadlines.sweep(now, every);
    }

    /// Wake the core waiting in [`Conns::wait`].
    pub fn wake_all(&self) {
        self.poller.wake_all();
    }

    /// Have [`Conns::wait`] report the worker's control channel
    /// ([`Event::Control`]).
    pub fn watch_control(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.poller.add_control(fd)
    }

    /// Report the control channel again (after reading it).
    pub fn rearm_control(&self, fd: BorrowedFd<'_>) {
        let _ = self.poller.rearm_control(fd);
    }

    /// Accept one connection from listener `idx` (non-blocking), counted
    /// as open until dropped. None when there is none, or on an error
    /// (logged; out of descriptors also waits 100 ms).
    pub fn accept(&self, idx: usize) -> Option<Box<Conn>> {
        // Announced before looking at `listening`, which stopping clears
        // before it looks at `accepting` (open_if_settled): either this
        // accept is seen, or it sees the worker stopped listening.
        self.accepting.fetch_add(1, Ordering::SeqCst);
        let conn = if self.listening.load(Ordering::SeqCst) {
            self.accept_one(idx)
        } else {
            None
        };
        self.accepting.fetch_sub(1, Ordering::SeqCst);
        conn
    }

    /// The open-connection count, once no accept can still add to it: the
    /// worker stopped listening (and took what it must from the queue) and
    /// no core is inside `accept`. None until then.
    pub fn open_if_settled(&self) -> Option<u64> {
        if self.listening.load(Ordering::SeqCst) || self.accepting.load(Ordering::SeqCst) != 0 {
            return None;
        }
        Some(self.open.load(Ordering::SeqCst))
    }

    /// The count a connection awaiting a request body joins (see
    /// `Conn::await_body`).
    pub fn awaiting(&self) -> &'static AtomicU64 {
        self.awaiting
    }

    /// Connections whose request head is in and whose body is awaited:
    /// requests on their way, which a stopping worker waits for.
    pub fn bodies_awaited(&self) -> u64 {
        self.awaiting.load(Ordering::Acquire)
    }

    fn accept_one(&self, idx: usize) -> Option<Box<Conn>> {
        let l = &self.listeners[idx];
        // SAFETY: the listener stays open for the worker's life.
        let fd = unsafe { BorrowedFd::borrow_raw(l.fd) };
        let accepted =
            rustix::net::acceptfrom_with(fd, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC);
        self.maybe_queued[idx].store(accepted.is_ok(), Ordering::Relaxed);
        let (socket, addr) = match accepted {
            // A number the app freed by closing 0-2 is never a client's.
            Ok((socket, addr)) => (crate::log::fds::off_std(socket), addr),
            Err(Errno::AGAIN | Errno::CONNABORTED | Errno::INTR) => return None,
            Err(e @ (Errno::MFILE | Errno::NFILE)) => {
                // Out of descriptors: leave the connection in the backlog
                // and give in-flight requests time to release some.
                crate::log::line(&format!(
                    "worker {}: accept: {}; shedding load for 100 ms",
                    self.worker_id,
                    io::Error::from(e)
                ));
                std::thread::sleep(Duration::from_millis(100));
                return None;
            }
            Err(e) => {
                crate::log::line(&format!(
                    "worker {}: accept: {}",
                    self.worker_id,
                    io::Error::from(e)
                ));
                return None;
            }
        };
        let (ip, port) = match addr.and_then(|a| SocketAddr::try_from(a).ok()) {
            Some(peer) if !l.is_unix => {
                let _ = rustix::net::sockopt::set_tcp_nodelay(&socket, true);
                let ip = match peer.ip() {
                    std::net::IpAddr::V6(v6) => v6
                        .to_ipv4_mapped()
                        .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
                    ip => ip.to_string(),
                };
                (ip, peer.port().to_string())
            }
            _ => (String::new(), String::new()),
        };
        Some(Box::new(Conn::new(socket, self.open, idx, ip, port)))
    }

    /// A listener of `protocol` whose last accept took a connection (more
    /// may be waiting in the kernel queue), while the worker listens.
    pub fn maybe_queued(&self, protocol: Protocol) -> Option<usize> {
        if !self.listening.load(Ordering::Acquire) {
            return None;
        }
        (0..self.listeners.len()).find(|&i| {
            self.listeners[i].protocol == protocol && self.maybe_queued[i].load(Ordering::Relaxed)
        })
    }

    /// The exclusive listeners (`accept` on them finds nothing once the
    /// worker stopped listening).
    pub fn exclusive_listeners(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.listeners.len()).filter(|&i| self.listeners[i].exclusive())
    }

    /// Watch listener `idx` again after an event (one-shot), unless the
    /// worker stopped listening or the listener needs none (exclusive).
    pub fn rearm_listener(&self, idx: usize) {
        if self.listening.load(Ordering::Acquire) && !self.listeners[idx].exclusive() {
            let _ = self.poller.rearm_listener(idx, self.listeners[idx].fd);
        }
    }

    /// Hand a connection to the poller until it has bytes again. A request
    /// begun (partial head) or none yet gets the socket timeout to arrive;
    /// an idle one between requests the keep-alive timeout. If the poller
    /// refuses it, it is closed. Some: not parked, because bytes may have
    /// come that the poller will not report (see `owners`): the caller
    /// still owns it and must read it before parking it again.
    #[must_use = "a connection given back must be read"]
    pub fn park(&self, conn: Box<Conn>) -> Option<Box<Conn>> {
        let deadline = Instant::now() + self.park_wait(&conn);
        self.park_until(conn, deadline)
    }

    /// Park a connection its owner cannot read (an offload thread, or one
    /// just accepted while stopping): if bytes may have come meanwhile, the
    /// next `wait` of a core hands it out to be read.
    pub fn park_or_report(&self, conn: Box<Conn>) {
        self.hand_over(conn, Poller::park_and_report);
    }

    /// Put a connection that may have bytes (`park` gave it back) behind
    /// the ready ones, to be handed out by a later `wait` (see
    /// `Poller::requeue`). If the poller refuses it, it is closed.
    pub fn requeue(&self, conn: Box<Conn>) {
        self.hand_over(conn, Poller::requeue);
    }

    /// Give the poller a connection that a later `wait` hands out whatever
    /// came meanwhile, under its park deadline.
    fn hand_over(&self, conn: Box<Conn>, give: fn(&Poller, Box<Conn>) -> io::Result<()>) {
        let fd = conn.fd();
        self.deadlines
            .set(fd, Instant::now() + self.park_wait(&conn));
        if give(&self.poller, conn).is_err() {
            self.deadlines.clear(fd);
        }
    }

    fn park_wait(&self, conn: &Conn) -> Duration {
        if !conn.buf.is_empty() || conn.served == 0 {
            self.bounds.socket_timeout
        } else {
            self.bounds.keepalive
        }
    }

    /// Hand a connection to the poller until it has bytes, or `deadline`
    /// (see `park`).
    fn park_until(&self, conn: Box<Conn>, deadline: Instant) -> Option<Box<Conn>> {
        let fd = conn.fd();
        // Before the poller has it: the core an event gives it to clears it.
        self.deadlines.set(fd, deadline);
        match self.poller.park(conn) {
            Ok(Park::Parked) => None,
            Ok(Park::ReadAgain(conn)) => {
                self.deadlines.clear(fd);
                Some(conn)
            }
            Err(_) => {
                self.deadlines.clear(fd);
                None
            }
        }
    }

    /// Close a connection whose response is written (every path that ends
    /// a connection after a response comes here). If the client may still
    /// be sending (a body the app did not read, a refused head, or input
    /// waiting: see `pipelined`), close it gracefully: shut down the write
    /// side and discard what arrives, in the poller (no core waits for
    /// it), within the linger bounds and `--socket-timeout` of silence.
    pub fn close_after_response(&self, mut conn: Box<Conn>, unread: Unread) {
        let unread = match unread {
            Unread::Nothing if self.pipelined(&conn) => Unread::Unknown,
            unread => unread,
        };
        if unread == Unread::Nothing {
            return; // dropped: closed
        }
        conn.start_linger(unread, self.bounds.linger_bytes, self.bounds.linger_time);
        self.linger_or_close(conn);
    }

    /// Whether an HTTP client sent more than the requests answered: its
    /// next request, pipelined behind one answered with `Connection:
    /// close` (the worker stops, the app or a route closes). Closed with
    /// that unread, the connection would be reset by the kernel, and a
    /// reset destroys the response the client has not read yet (what is
    /// still in the send queue); lingering, the client gets all of it and
    /// sends the request again (RFC 9112 9.3.2), as nginx lingers when
    /// pipelined input is there. One ioctl per closed HTTP connection,
    /// none on one kept alive. A uwsgi peer (nginx) sends one request per
    /// connection, its body counted in `unread`: never asked.
    fn pipelined(&self, conn: &Conn) -> bool {
        self.listeners[conn.listener].protocol == Protocol::Http && conn.has_input()
    }

    /// One step of a lingering close: discard what is there, then close, or
    /// park the connection until more arrives.
    fn linger_or_close(&self, mut conn: Box<Conn>) {
        loop {
            if conn.linger_done() {
                return; // dropped: closed
            }
            let until = conn.linger.as_ref().map_or_else(Instant::now, |l| l.until);
            // Silence is bounded like any read: --socket-timeout.
            let deadline = until.min(Instant::now() + self.bounds.socket_timeout);
            match self.park_until(conn, deadline) {
                Some(again) => conn = again, // more came: discard it too
                None => return,
            }
        }
    }

    /// Stop listening: the other workers take new connections. With
    /// `take_queued` (the server is shutting down, nobody else will accept),
    /// also take the connections the kernel already queued on the shared
    /// listeners, so they are served (with `Connection: close`) rather than
    /// reset when the master exits; a worker that retires leaves them to
    /// the others and its replacement, except on exclusive listeners: the
    /// kernel may have woken only this worker for what is queued there, and
    /// would wake no other until the next connection arrives. Only the
    /// first call does anything.
    pub fn stop_listening(&self, take_queued: bool) {
        // Counted as accepting from before listening stops until the drain
        // is done (see `open_if_settled`).
        self.accepting.fetch_add(1, Ordering::SeqCst);
        if self.listening.swap(false, Ordering::SeqCst) {
            for l in &self.listeners {
                self.poller.remove_listener(l.fd);
            }
            for (idx, l) in self.listeners.iter().enumerate() {
                if take_queued || l.exclusive() {
                    self.drain_listener(idx);
                }
            }
        }
        self.accepting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Take what is queued now (a retiring worker told, while stopping,
    /// that the server shuts down). Listening must have stopped.
    pub fn take_queued(&self) {
        self.accepting.fetch_add(1, Ordering::SeqCst);
        if !self.listening.load(Ordering::SeqCst) {
            self.drain_backlog();
        }
        self.accepting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Park what is queued on every listener, up to [`DRAIN_MAX`] each.
    fn drain_backlog(&self) {
        for idx in 0..self.listeners.len() {
            self.drain_listener(idx);
        }
    }

    fn drain_listener(&self, idx: usize) {
        for _ in 0..DRAIN_MAX {
            let Some(conn) = self.accept_one(idx) else {
                break;
            };
            self.park_or_report(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn counter() -> &'static AtomicU64 {
        Box::leak(Box::new(AtomicU64::new(0)))
    }

    fn conns(listener: &TcpListener, open: &'static AtomicU64, timeout: Duration) -> Conns {
        conns_of(Protocol::Http, listener, open, timeout)
    }

    fn conns_of(
        protocol: Protocol,
        listener: &TcpListener,
        open: &'static AtomicU64,
        timeout: Duration,
    ) -> Conns {
        listener.set_nonblocking(true).unwrap();
        let info = ListenerInfo {
            fd: listener.as_raw_fd(),
            protocol,
            is_unix: false,
            server_name: "127.0.0.1".into(),
            server_port: "80".into(),
        };
        let bounds = Bounds {
            socket_timeout: timeout,
            keepalive: timeout,
            linger_time: Duration::from_secs(5),
            linger_bytes: 1 << 20,
        };
        Conns::new(1, Poller::new().unwrap(), vec![info], open, bounds).unwrap()
    }

    fn next_conn(c: &Conns) -> Box<Conn> {
        for _ in 0..50 {
            if let Event::Conn(conn) = c.wait(Duration::from_millis(100)).unwrap() {
                return conn;
            }
        }
        panic!("no connection event");
    }

    #[test]
    fn accept_counts_until_drop_and_park_returns_it_with_bytes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = counter();
        let c = conns(&l, open, Duration::from_secs(5));
        assert!(c.accept(0).is_none(), "nothing queued");
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let conn = c.accept(0).expect("a queued connection");
        assert_eq!(conn.remote_addr, "127.0.0.1");
        assert_eq!(
            conn.remote_port,
            client.local_addr().unwrap().port().to_string()
        );
        assert_eq!(c.open(), 1);
        assert!(c.park(conn).is_none(), "registered");
        assert_eq!(c.open(), 1, "parked is still open");
        client.write_all(b"GET").unwrap();
        let mut conn = next_conn(&c);
        assert_eq!(conn.fill(100).unwrap(), 3);
        drop(conn);
        assert_eq!(c.open(), 0, "dropping closes and uncounts");
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0, "the client sees EOF");
    }

    #[test]
    fn a_listener_may_have_more_queued_after_an_accept_took_one() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = conns(&l, counter(), Duration::from_secs(5));
        assert_eq!(c.maybe_queued(Protocol::Http), None, "nothing taken yet");
        let _a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _b = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let first = c.accept(0).expect("a queued connection");
        assert_eq!(c.maybe_queued(Protocol::Http), Some(0));
        assert_eq!(
            c.maybe_queued(Protocol::Uwsgi),
            None,
            "only of that protocol"
        );
        let second = c.accept(0).expect("the second one");
        assert_eq!(
            c.maybe_queued(Protocol::Http),
            Some(0),
            "not known empty yet"
        );
        assert!(c.accept(0).is_none());
        assert_eq!(c.maybe_queued(Protocol::Http), None, "found empty");
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let third = c.accept(0).expect("a third");
        c.stop_listening(false);
        assert_eq!(c.maybe_queued(Protocol::Http), None, "not listening");
        drop((first, second, third));
    }

    #[test]
    fn an_exclusive_listener_wakes_one_waiting_worker_and_needs_no_rearm() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        // Two workers (each its own poller) sharing one uwsgi listener.
        let workers: Vec<Conns> = (0..2)
            .map(|_| conns_of(Protocol::Uwsgi, &l, counter(), Duration::from_secs(5)))
            .collect();
        assert!(workers[0].listener(0).exclusive());
        // Each attempt: (workers woken, connections accepted). Never
        // re-armed, the listener must report every connection; a worker
        // not yet asleep in epoll_wait when the connection comes is
        // notified too (nobody was waiting there), so one attempt in five
        // with both asleep is enough to see that only one is woken.
        let mut woken_alone = false;
        for attempt in 0..5 {
            let (woken, accepted) = std::thread::scope(|s| {
                let waits: Vec<_> = workers
                    .iter()
                    .map(|c| {
                        s.spawn(move || match c.wait(Duration::from_millis(500)) {
                            Ok(Event::Listener(0)) => (1, c.accept(0).is_some() as usize),
                            _ => (0, 0),
                        })
                    })
                    .collect();
                std::thread::sleep(Duration::from_millis(150));
                let _client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
                waits
                    .into_iter()
                    .map(|w| w.join().unwrap_or((0, 0)))
                    .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
            });
            assert_eq!(accepted, 1, "attempt {attempt}: the connection was taken");
            assert!(woken >= 1, "attempt {attempt}: not reported");
            if woken == 1 {
                woken_alone = true;
                break;
            }
        }
        assert!(woken_alone, "both workers woken for every connection");
    }

    #[test]
    fn parked_connection_is_cut_at_its_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = conns(&l, counter(), Duration::ZERO);
        let _client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(c.park(c.accept(0).unwrap()).is_none());
        c.sweep(Instant::now() + Duration::from_secs(2), Duration::ZERO);
        let mut conn = next_conn(&c);
        assert_eq!(conn.fill(100).unwrap(), 0, "shut down: reads EOF");
    }

    #[test]
    fn stop_listening_drains_the_backlog_once() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = counter();
        let c = conns(&l, open, Duration::from_secs(5));
        let clients: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(l.local_addr().unwrap()).unwrap())
            .collect();
        c.stop_listening(true);
        assert_eq!(c.open(), 3, "every queued connection was taken");
        c.stop_listening(true);
        assert_eq!(c.open(), 3);
        drop(clients);
        for _ in 0..3 {
            drop(next_conn(&c));
        }
        assert_eq!(c.open(), 0);
    }

    #[test]
    fn a_retiring_worker_leaves_the_queue_to_the_others() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = counter();
        let c = conns(&l, open, Duration::from_secs(5));
        let _clients: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect(l.local_addr().unwrap()).unwrap())
            .collect();
        c.stop_listening(false);
        assert_eq!(c.open(), 0, "nothing taken from the shared queue");
        assert!(l.accept().is_ok(), "still queued for another worker");
        c.take_queued();
        assert_eq!(c.open(), 1, "told the server stops: takes the rest");
    }

    #[test]
    fn a_retiring_worker_takes_what_is_queued_on_an_exclusive_listener() {
        // The kernel wakes one worker per connection there: this one may
        // have been woken for these, and no other would be until the next.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = counter();
        let c = conns_of(Protocol::Uwsgi, &l, open, Duration::from_secs(5));
        let _clients: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect(l.local_addr().unwrap()).unwrap())
            .collect();
        c.stop_listening(false);
        assert_eq!(c.open(), 2, "both queued connections taken, to be served");
        l.set_nonblocking(true).unwrap();
        assert!(l.accept().is_err(), "nothing left in the queue");
    }

    #[test]
    fn the_open_count_is_settled_only_once_no_accept_can_add_to_it() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = conns_of(Protocol::Uwsgi, &l, counter(), Duration::from_secs(5));
        assert_eq!(
            c.open_if_settled(),
            None,
            "listening: a connection may come"
        );
        let _client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        c.stop_listening(false);
        assert_eq!(c.open_if_settled(), Some(1), "the queued one was taken");
        let _late = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(c.accept(0).is_none(), "no accept once listening stopped");
        assert_eq!(c.open_if_settled(), Some(1));
    }

    #[test]
    fn lingering_close_discards_the_rest_then_closes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = counter();
        let c = conns(&l, open, Duration::from_secs(5));
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let conn = c.accept(0).unwrap();
        c.close_after_response(conn, Unread::Bytes(6));
        assert_eq!(c.open(), 1, "kept open to read what the client still sends");
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0, "the write side is shut");
        client.write_all(b"abc").unwrap();
        // The poller hands it back only to be read and parked again (Wake).
        assert!(matches!(
            c.wait(Duration::from_secs(2)).unwrap(),
            Event::Wake
        ));
        assert_eq!(c.open(), 1, "three bytes still to come");
        client.write_all(b"def").unwrap();
        for _ in 0..20 {
            if c.open() == 0 {
                break;
            }
            let _ = c.wait(Duration::from_millis(100));
        }
        assert_eq!(c.open(), 0, "all in: closed");
        let _other = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let conn = c.accept(0).unwrap();
        c.close_after_response(conn, Unread::Nothing);
        assert_eq!(c.open(), 0, "nothing to wait for: closed at once");
    }

    #[test]
    fn a_close_with_a_pipelined_request_waiting_lingers_on_http() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = conns(&l, counter(), Duration::from_secs(5));
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let conn = c.accept(0).unwrap();
        client.write_all(b"GET /next HTTP/1.1\r\n\r\n").unwrap();
        for _ in 0..200 {
            if conn.has_input() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(conn.has_input(), "the request is on the socket");
        c.close_after_response(conn, Unread::Nothing);
        assert_eq!(c.open(), 1, "not closed with the request unread (a reset)");
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0, "a clean end: EOF");
        drop(client);
        for _ in 0..20 {
            if c.open() == 0 {
                break;
            }
            let _ = c.wait(Duration::from_millis(100));
        }
        assert_eq!(c.open(), 0, "closed once the client closed");

        // A uwsgi peer sends one request per connection: not asked.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = conns_of(Protocol::Uwsgi, &l, counter(), Duration::from_secs(5));
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let conn = c.accept(0).unwrap();
        client.write_all(b"x").unwrap();
        c.close_after_response(conn, Unread::Nothing);
        assert_eq!(c.open(), 0, "closed at once");
    }
}
