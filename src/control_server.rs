//! One thread serving many control clients (the tracebacker sockets, the
//! stats server) so that no client ever waits on another.
//!
//! Why one nonblocking loop rather than a thread per client: the clients
//! that hurt are the ones that do nothing (connect and never send, or
//! never read). With blocking I/O each of them pins whatever serves it for
//! a full timeout, and the next client queues behind it (uWSGI's
//! tracebacker, and ours before this loop: three silent clients delayed a
//! harakiri dump by 5 s; 200 silent stats readers delayed a real one by
//! 25 s). Here every socket is nonblocking, every client has its own
//! deadlines (for its request, for each write), and a client is dropped
//! when its own deadline passes; a silent client costs one file descriptor
//! and a few bytes until then. Answers that take time (a traceback dump, a
//! profile) are produced by other threads and handed back through a
//! [`Responder`]; the loop itself never blocks on anything but `poll`.
//!
//! It speaks no protocol: a [`Handler`] says when a request is complete and
//! what to answer. It must not run Python or take locks a dump holds.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

/// Identifies one client for the life of the loop (never reused).
pub type ClientId = u64;

/// How one listener's clients are bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long to wait for a complete request after accepting. Zero: do
    /// not read, answer at once (uWSGI's stats clients send nothing).
    pub request_wait: Duration,
    /// Bytes of request read at most; a longer one is handed over as is.
    pub request_max: usize,
    /// A client that accepts no byte of its answer for this long is dropped.
    pub write_timeout: Duration,
    /// Clients of this listener at once; more are closed on accept.
    pub max_clients: usize,
    /// Answer bytes queued for one client at most (a stream whose reader
    /// falls behind is dropped rather than buffered without end).
    pub max_buffered: usize,
}

/// A listening socket and how its clients are treated.
pub struct ListenerSpec {
    pub socket: ListenSocket,
    /// Passed back to the handler, to tell listeners apart.
    pub tag: usize,
    pub limits: Limits,
    /// UNIX only: refuse peers whose uid is neither ours nor root's.
    pub same_uid_only: bool,
}

pub enum ListenSocket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// What the handler does with a request.
pub enum Reply {
    /// Send these bytes and close.
    Now(Vec<u8>),
    /// The answer comes later through the [`Responder`]; the client is
    /// dropped if it has not been finished within this time.
    Later(Duration),
}

pub trait Handler {
    /// Whether `buf` already holds a whole request.
    fn complete(&self, tag: usize, buf: &[u8]) -> bool;
    /// The request of client `id` on listener `tag` (what arrived before
    /// the request wait ran out, possibly nothing).
    fn request(&mut self, id: ClientId, tag: usize, buf: &[u8]) -> Reply;
    /// The client is gone (answered, closed by its peer, or timed out);
    /// anything still sent for it is dropped.
    fn closed(&mut self, _id: ClientId) {}
}

enum Out {
    Data(Arc<[u8]>),
    End,
}

/// Hands answers to the loop from any thread.
#[derive(Clone)]
pub struct Responder {
    queue: Arc<Mutex<Vec<(ClientId, Out)>>>,
    wake: Arc<OwnedFd>,
}

impl Responder {
    /// Queue bytes for a client (a stream may send many times).
    pub fn send(&self, id: ClientId, data: Arc<[u8]>) {
        self.push(id, Out::Data(data));
    }

    /// The client's answer is complete: close once it is written.
    pub fn finish(&self, id: ClientId) {
        self.push(id, Out::End);
    }

    /// The whole answer at once.
    pub fn reply(&self, id: ClientId, data: Arc<[u8]>) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.push((id, Out::Data(data)));
        q.push((id, Out::End));
        drop(q);
        self.wake();
    }

    fn push(&self, id: ClientId, out: Out) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, out));
        self.wake();
    }

    fn wake(&self) {
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
    }
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Unix(s) => s,
            Stream::Tcp(s) => s,
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
        };
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[derive(PartialEq, Eq, Debug, Clone, Copy)]
enum Phase {
    /// Reading the request until complete or `deadline`.
    Reading,
    /// The handler answers later (a stream may already be sending);
    /// input is read and discarded.
    Waiting,
    /// The whole answer is queued: writing it, then half-close.
    Draining,
    /// Written and half-closed: wait briefly for the peer's close, so our
    /// close does not reset a connection whose answer is still unread.
    Lingering,
}

struct Client {
    stream: Stream,
    listener: usize,
    phase: Phase,
    request: Vec<u8>,
    /// Reading: when to stop waiting for the request. Waiting: when to
    /// give up on the handler. Lingering: when to close.
    deadline: Instant,
    /// Answer bytes not yet written, in order.
    out: std::collections::VecDeque<Arc<[u8]>>,
    /// Bytes of the front chunk already written.
    front_off: usize,
    queued: usize,
    /// The peer sent EOF: stop watching for input.
    input_closed: bool,
    /// While bytes are pending: when the socket last accepted some.
    write_since: Instant,
    write_timeout: Duration,
}

impl Client {
    fn next_deadline(&self) -> Instant {
        let write = (!self.out.is_empty()).then(|| self.write_since + self.write_timeout);
        match self.phase {
            Phase::Reading | Phase::Lingering => self.deadline,
            Phase::Waiting => write.map_or(self.deadline, |w| w.min(self.deadline)),
            Phase::Draining => write.unwrap_or(self.write_since),
        }
    }
}

/// How long a written, half-closed connection waits for its peer to close.
const LINGER: Duration = Duration::from_millis(200);

pub struct Server<H: Handler> {
    /// Each listener with the number of its clients now.
    listeners: Vec<(ListenerSpec, usize)>,
    clients: HashMap<ClientId, Client>,
    next_id: ClientId,
    handler: H,
    queue: Arc<Mutex<Vec<(ClientId, Out)>>>,
    wake: Arc<OwnedFd>,
    /// When the last "too many clients" line was logged.
    full_warned: Option<Instant>,
    name: &'static str,
}

impl<H: Handler> Server<H> {
    /// A server over `listeners`; `name` prefixes its log lines.
    pub fn new(name: &'static str, listeners: Vec<ListenerSpec>, handler: H) -> io::Result<Self> {
        for l in &listeners {
            match &l.socket {
                ListenSocket::Unix(s) => s.set_nonblocking(true)?,
                ListenSocket::Tcp(s) => s.set_nonblocking(true)?,
            }
        }
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        Ok(Server {
            listeners: listeners.into_iter().map(|l| (l, 0)).collect(),
            clients: HashMap::new(),
            next_id: 1,
            handler,
            queue: Arc::new(Mutex::new(Vec::new())),
            wake: Arc::new(wake),
            full_warned: None,
            name,
        })
    }

    pub fn responder(&self) -> Responder {
        Responder {
            queue: Arc::clone(&self.queue),
            wake: Arc::clone(&self.wake),
        }
    }

    /// Serve forever on a thread of its own.
    pub fn spawn(mut self, thread_name: &str) -> io::Result<()>
    where
        H: Send + 'static,
    {
        std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || loop {
                self.turn(None);
            })
            .map(|_| ())
    }

    /// One round: wait for something to do (at most `max_wait`, or the
    /// nearest deadline), then do it.
    pub fn turn(&mut self, max_wait: Option<Duration>) {
        let now = Instant::now();
        let mut wait = self
            .clients
            .values()
            .map(|c| c.next_deadline().saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        if let Some(m) = max_wait {
            wait = wait.min(m);
        }
        let ids: Vec<ClientId> = self.clients.keys().copied().collect();
        let nl = self.listeners.len();
        let (ready_wake, ready_listeners, ready_clients) = {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(1 + nl + ids.len());
            fds.push(PollFd::new(&*self.wake, PollFlags::IN));
            for (l, _) in &self.listeners {
                let fd = match &l.socket {
                    ListenSocket::Unix(s) => s.as_fd(),
                    ListenSocket::Tcp(s) => s.as_fd(),
                };
                fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
            }
            for id in &ids {
                let c = &self.clients[id];
                let mut flags = PollFlags::empty();
                if !c.input_closed {
                    flags |= PollFlags::IN;
                }
                if !c.out.is_empty() {
                    flags |= PollFlags::OUT;
                }
                fds.push(PollFd::from_borrowed_fd(c.stream.fd(), flags));
            }
            let timeout = rustix::event::Timespec {
                tv_sec: wait.as_secs() as i64,
                tv_nsec: wait.subsec_nanos() as _,
            };
            if rustix::event::poll(&mut fds, Some(&timeout)).is_err() {
                return; // EINTR: go round
            }
            (
                !fds[0].revents().is_empty(),
                (0..nl)
                    .filter(|i| !fds[1 + i].revents().is_empty())
                    .collect::<Vec<_>>(),
                ids.iter()
                    .enumerate()
                    .map(|(i, id)| (*id, fds[1 + nl + i].revents()))
                    .filter(|(_, r)| !r.is_empty())
                    .collect::<Vec<_>>(),
            )
        };
        if ready_wake {
            let mut b = [0u8; 8];
            let _ = rustix::io::read(&*self.wake, &mut b);
        }
        self.take_answers();
        for idx in ready_listeners {
            self.accept(idx);
        }
        for (id, revents) in ready_clients {
            if revents.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL)
                && !revents.contains(PollFlags::IN)
            {
                self.close(id);
            } else {
                self.service(id);
            }
        }
        self.expire();
    }

    fn take_answers(&mut self) {
        let answers = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let mut touched = Vec::new();
        for (id, out) in answers {
            let Some(c) = self.clients.get_mut(&id) else {
                continue; // gone meanwhile
            };
            let max = self.listeners[c.listener].0.limits.max_buffered;
            match out {
                Out::Data(d) if c.queued + d.len() > max => {
                    // A reader this far behind is not reading: drop it.
                    c.out.clear();
                    c.queued = 0;
                    c.phase = Phase::Draining;
                }
                Out::Data(d) => {
                    if c.out.is_empty() {
                        c.write_since = Instant::now();
                    }
                    c.queued += d.len();
                    c.out.push_back(d);
                }
                Out::End => c.phase = Phase::Draining,
            }
            if !touched.contains(&id) {
                touched.push(id);
            }
        }
        // Write at once what fits: most answers fit the socket buffer.
        for id in touched {
            self.service(id);
        }
    }

    fn accept(&mut self, idx: usize) {
        loop {
            let (spec, count) = &self.listeners[idx];
            let accepted = match &spec.socket {
                // Never on a stdout/stderr number the app closed.
                ListenSocket::Unix(l) => l
                    .accept()
                    .map(|(s, _)| Stream::Unix(crate::log::fds::off_std(s.into()).into())),
                ListenSocket::Tcp(l) => l
                    .accept()
                    .map(|(s, _)| Stream::Tcp(crate::log::fds::off_std(s.into()).into())),
            };
            let stream = match accepted {
                Ok(s) => s,
                Err(e) => return self.accept_error(e),
            };
            if *count >= spec.limits.max_clients {
                // Closed at once: the peer sees EOF and may retry.
                if self
                    .full_warned
                    .map_or(true, |t| t.elapsed() > Duration::from_secs(60))
                {
                    crate::log::line(&format!(
                        "{}: {} clients at once: closing new ones until some finish",
                        self.name, spec.limits.max_clients
                    ));
                    self.full_warned = Some(Instant::now());
                }
                continue;
            }
            if let (Stream::Unix(s), true) = (&stream, spec.same_uid_only) {
                let me = rustix::process::geteuid().as_raw();
                match crate::listen::peer_uid(s) {
                    Ok(uid) if uid == me || uid == 0 => {}
                    Ok(uid) => {
                        crate::log::line(&format!(
                            "{}: refused a connection from uid {uid}",
                            self.name
                        ));
                        continue;
                    }
                    Err(e) => {
                        crate::log::line(&format!("{}: cannot check the peer: {e}", self.name));
                        continue;
                    }
                }
            }
            let nonblocking = match &stream {
                Stream::Unix(s) => s.set_nonblocking(true),
                Stream::Tcp(s) => s.set_nonblocking(true),
            };
            if nonblocking.is_err() {
                continue;
            }
            let limits = spec.limits;
            self.listeners[idx].1 += 1;
            let id = self.next_id;
            self.next_id += 1;
            let now = Instant::now();
            self.clients.insert(
                id,
                Client {
                    stream,
                    listener: idx,
                    phase: Phase::Reading,
                    request: Vec::new(),
                    deadline: now + limits.request_wait,
                    out: Default::default(),
                    front_off: 0,
                    queued: 0,
                    input_closed: false,
                    write_since: now,
                    write_timeout: limits.write_timeout,
                },
            );
            if limits.request_wait.is_zero() {
                self.dispatch(id);
            } else {
                // The request is often there already.
                self.service(id);
            }
        }
    }

    fn accept_error(&mut self, e: io::Error) {
        match e.kind() {
            io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted => {}
            _ => {
                crate::log::line(&format!("{}: accept: {e}", self.name));
                // EMFILE and friends: let the table drain rather than spin.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The request is in (or its wait ran out): ask the handler.
    fn dispatch(&mut self, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let tag = self.listeners[c.listener].0.tag;
        let request = std::mem::take(&mut c.request);
        let reply = self.handler.request(id, tag, &request);
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        match reply {
            Reply::Now(bytes) => {
                c.queued = bytes.len();
                c.out.push_back(bytes.into());
                c.phase = Phase::Draining;
                c.write_since = Instant::now();
                self.service(id);
            }
            Reply::Later(limit) => {
                c.phase = Phase::Waiting;
                c.deadline = Instant::now() + limit;
            }
        }
    }

    /// Read or write what the client's socket allows now.
    fn service(&mut self, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let limits = self.listeners[c.listener].0.limits;
        let tag = self.listeners[c.listener].0.tag;
        // Input: the request, or anything after it (discarded).
        let mut broken = false;
        let mut buf = [0u8; 4096];
        while !c.input_closed {
            match c.stream.io().read(&mut buf) {
                Ok(0) => c.input_closed = true,
                Ok(n) => {
                    if c.phase == Phase::Reading && c.request.len() < limits.request_max {
                        let room = limits.request_max - c.request.len();
                        c.request.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        if broken || (c.input_closed && c.phase == Phase::Lingering) {
            self.close(id);
            return;
        }
        if c.phase == Phase::Reading
            && (c.input_closed
                || c.request.len() >= limits.request_max
                || self.handler.complete(tag, &c.request))
        {
            self.dispatch(id);
            return; // dispatch services the client again if it answered now
        }
        // Output.
        while let Some(front) = c.out.front() {
            match c.stream.io().write(&front[c.front_off..]) {
                Ok(n) => {
                    c.write_since = Instant::now();
                    c.front_off += n;
                    c.queued -= n;
                    if c.front_off == front.len() {
                        c.out.pop_front();
                        c.front_off = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        if broken {
            self.close(id);
            return;
        }
        if c.phase == Phase::Draining && c.out.is_empty() {
            c.stream.shutdown_write();
            if c.input_closed {
                self.close(id);
                return;
            }
            c.phase = Phase::Lingering;
            c.deadline = Instant::now() + LINGER;
        }
    }

    fn close(&mut self, id: ClientId) {
        if let Some(c) = self.clients.remove(&id) {
            self.listeners[c.listener].1 -= 1;
            self.handler.closed(id);
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let due: Vec<(ClientId, Phase)> = self
            .clients
            .iter()
            .filter(|(_, c)| c.next_deadline() <= now)
            .map(|(id, c)| (*id, c.phase))
            .collect();
        for (id, phase) in due {
            match phase {
                Phase::Reading => self.dispatch(id),
                _ => self.close(id),
            }
        }
    }
}
