//! The hot path: what a core (request thread) does all day. Wait to lead,
//! wait on the worker's connections, accept, read a request head, serve it
//! (environ, app call, response), and hand the connection back.
//!
//! This module keeps only the request flow: connections are `conns`'s,
//! stopping and the in-flight count [`Stop`]'s, limits and timeouts
//! [`ServeConfig`]'s, and both protocols arrive as one [`Request`]. Control
//! (signals, the master) reaches this loop only through [`Stop`]. The GIL
//! is held only inside `serve_request` (environ and app call); every wait
//! releases it.

mod access;
mod body_wait;
mod config;
mod front;
mod panics;
mod stop;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use access::Began;
pub use config::ServeConfig;
pub use front::Front;
pub use panics::install_hook as install_panic_hook;
pub use stop::{InFlight, Quota, Stop, StopKind, RUNNING};

use crate::channel::{Received, ToMaster, ToWorker, WorkerEnd};
use crate::config::Protocol;
use crate::conn::{write_all_timeout, Conn, Unread};
use crate::conns::Conns;
use crate::cpu_share::{yield_cpu, CpuShare};
use crate::http::{self, BodyKind};
use crate::leader::Leader;
use crate::poller::Event;
use crate::proxy_protocol;
use crate::request::{self, Parse, Request, Source, Version};
use crate::scoreboard::Scoreboard;
use crate::uwsgi_module::CurrentCore;
use crate::wsgi::{
    self, input::BodyMode, input::BodyReader, output::Output, response::ResponseCtx,
};

/// What the cores of one worker share.
pub struct Shared {
    pub cfg: ServeConfig,
    pub conns: Conns,
    pub stop: Stop,
    /// Which core polls (the others sleep until it is stuck in a request).
    pub leader: Leader,
    pub scoreboard: &'static Scoreboard,
    /// This process's slot on the scoreboard (not its worker id: a
    /// retiring process and its replacement each write their own).
    pub entry: usize,
    pub app: Py<PyAny>,
    /// The environ template of each listener (indexed like the listeners).
    pub environs: Vec<Py<PyDict>>,
    /// What runs before the app (mounts, routes, static files, added
    /// headers); None when nothing is configured.
    pub front: Option<Front>,
    /// The `--mount` apps, in the order of their mountpoints (see
    /// [`Shared::set_mounts`]).
    mounted: Vec<Py<PyAny>>,
    /// uWSGI's id of the first mounted app: 1 after a --module or
    /// --wsgi-file app (id 0), 0 when the first mount is the default app.
    first_mount_id: usize,
    /// Requests each app (by uWSGI id) has answered in this worker, for
    /// the request log's `app: ID|req: N`.
    app_requests: Vec<AtomicU64>,
    /// The worker's end of its control channel to the master (None when
    /// the master gave it none, as in unit tests).
    pub channel: Option<WorkerEnd>,
    /// Requests that panicked; the second one stops the worker.
    panics: AtomicU32,
    /// A stopping worker took what was queued on the listeners (shutdown).
    took_queue: AtomicBool,
    /// Since when (us of the worker's clock) accepting has been left to a
    /// lighter worker, and when it last was; 0 when it is not.
    deferring_since: AtomicU64,
    deferred_last: AtomicU64,
    /// The worker's clock for `deferring_since`.
    epoch: Instant,
}

impl Shared {
    pub fn new(
        cfg: ServeConfig,
        conns: Conns,
        stop: Stop,
        scoreboard: &'static Scoreboard,
        entry: usize,
        app: Py<PyAny>,
        environs: Vec<Py<PyDict>>,
    ) -> Shared {
        Shared {
            cfg,
            conns,
            stop,
            leader: Leader::default(),
            scoreboard,
            entry,
            app,
            environs,
            front: None,
            mounted: Vec::new(),
            first_mount_id: 0,
            app_requests: vec![AtomicU64::new(0)],
            channel: None,
            panics: AtomicU32::new(0),
            took_queue: AtomicBool::new(false),
            deferring_since: AtomicU64::new(0),
            deferred_last: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Tell the master something; a master that is gone cannot listen.
    pub fn tell_master(&self, m: ToMaster) {
        if let Some(c) = &self.channel {
            let _ = c.send(m);
        }
    }

    /// The `--mount` apps; `own_default`: the default app is not one of
    /// them (--module or --wsgi-file), so it is app 0 and they follow.
    pub fn set_mounts(&mut self, mounted: Vec<Py<PyAny>>, own_default: bool) {
        self.first_mount_id = own_default as usize;
        self.app_requests = (0..mounted.len() + 1).map(|_| AtomicU64::new(0)).collect();
        self.mounted = mounted;
    }

    /// uWSGI's app id of the app the front chose (None: the default app).
    fn app_id(&self, mount: Option<usize>) -> usize {
        mount.map_or(0, |i| i + self.first_mount_id)
    }

    /// Responses being sent by offload threads.
    fn offloading(&self) -> usize {
        self.front
            .as_ref()
            .and_then(|f| f.offload.as_ref())
            .map_or(0, |o| o.active())
    }
}

/// A request taken off a connection, counted in flight until its response
/// is written.
struct Taken<'a> {
    conn: Box<Conn>,
    request: Request,
    in_flight: InFlight<'a>,
    /// What the front decided (None when there is no front).
    plan: Option<Box<front::Plan>>,
}

/// What a core holds between taking the GIL and giving it back: the
/// connection, and the end of the response still to be written.
struct Pending<'a> {
    conn: Box<Conn>,
    served: Served,
    in_flight: InFlight<'a>,
}

/// How a request ended, for its connection.
struct Served {
    /// The end of the response, still to be written (without the GIL).
    tail: Output,
    /// The connection may be kept for another request.
    keep: bool,
    /// What the client may still be sending of this request.
    unread: Unread,
}

/// Run core `core` until the worker stops. Returns when core 0 decides the
/// worker may exit; other cores never return (the process exits under them).
///
/// Each request costs one GIL hand-off: everything from the last write of
/// the previous response to the parsed head of the next request happens
/// with the GIL released, in one go.
pub fn core_loop(py: Python<'_>, shared: &Shared, core: usize) {
    let mut pending: Option<Pending<'_>> = None;
    let mut share = CpuShare::new(Instant::now());
    // This core's output, lent to each response and given back with it,
    // and its wsgi.input and start_response, reused when the app kept
    // neither (see `wsgi::reuse`).
    let mut objects = wsgi::reuse::CoreObjects::default();
    loop {
        // GIL: released from the end of one request to the head of the next.
        let out = &mut objects.out;
        let next = py.detach(|| next_request(shared, core, &mut share, pending.take(), out));
        // The app's bytes objects just written are given back now, not
        // kept while the core waits.
        objects.out.release(py);
        let Some(Taken {
            mut conn,
            request,
            in_flight,
            plan,
        }) = next
        else {
            return; // core 0: the worker may exit
        };
        let plan = plan.as_deref();
        let served = match panics::catch(|| {
            serve_request(py, shared, &mut conn, &request, core, plan, &mut objects)
        }) {
            Ok(served) => served,
            Err(report) => after_panic(shared, core, &request, &report),
        };
        conn.served += 1;
        pending = Some(Pending {
            conn,
            served,
            in_flight,
        });
    }
}

/// Without the GIL: the next request for the app. Requests the front
/// answers (static files, routes) are served here and never take the GIL.
fn next_request<'a>(
    shared: &'a Shared,
    core: usize,
    share: &mut CpuShare,
    mut pending: Option<Pending<'a>>,
    out: &mut Output,
) -> Option<Taken<'a>> {
    loop {
        let taken = next_parsed(shared, core, share, pending.take(), out)?;
        let Some(front) = &shared.front else {
            return Some(taken);
        };
        match front::handle(shared, front, taken, core) {
            front::Next::App(taken) => return Some(taken),
            front::Next::Answered(next) => pending = next,
        }
    }
}

/// Without the GIL: finish the previous response, then find the next
/// complete request (on the same connection if pipelined, else from the
/// poller, once this core leads). None when core 0 should let the worker exit.
fn next_parsed<'a>(
    shared: &'a Shared,
    core: usize,
    share: &mut CpuShare,
    pending: Option<Pending<'a>>,
    out: &mut Output,
) -> Option<Taken<'a>> {
    if let Some(Pending {
        conn,
        served,
        in_flight,
    }) = pending
    {
        let mut tail = served.tail;
        let queued = tail.len();
        let written = tail.write(conn.fd(), shared.cfg.socket_timeout);
        // Its references are given back with the GIL, with any earlier ones.
        out.absorb(tail);
        if let (Err(e), false) = (&written, shared.cfg.ignore_write_errors) {
            // A response cut short (the client stopped reading for the
            // socket timeout, or went away): say so once.
            crate::log::line(&format!(
                "[pid: {}|worker: {}|core: {core}] response to {} cut ({queued} bytes unsent or partly sent): {e}",
                std::process::id(),
                shared.cfg.worker_id,
                crate::log::escape(conn.remote_addr.as_bytes()),
            ));
        }
        if out.release_at_once() {
            // GIL: taken briefly to free a big body now rather than when
            // this core next serves (it may wait long for a request).
            Python::attach(|py| out.release(py));
        }
        let ok = written.is_ok();
        drop(in_flight);
        if ok && served.keep {
            let found = match parse_buffered(shared, conn) {
                // A pipelined request.
                Parsed::Request(found) => Some(found),
                // The next request may be there already (see `owners`):
                // read it, unless this connection has had its turn.
                Parsed::ReadMore(mut conn) => {
                    conn.streak += 1;
                    if conn.streak > STREAK {
                        shared.conns.requeue(conn);
                        None
                    } else {
                        read_head(shared, conn)
                    }
                }
                Parsed::Gone => None,
            };
            if let Some(found) = found {
                // A new request to time, if this core leads.
                shared.leader.working(core);
                return Some(found);
            }
        } else if ok {
            shared.conns.close_after_response(conn, served.unread);
        }
        if let Some(found) = accept_queued(shared) {
            shared.leader.working(core);
            return Some(found);
        }
    }
    loop {
        if shared.stop.requested() {
            on_stop(shared);
            if core == 0
                && shared.stop.may_exit(
                    // (an accept still under way counts as a connection)
                    shared.conns.open_if_settled().unwrap_or(u64::MAX),
                    shared.offloading(),
                    shared.conns.bodies_awaited(),
                )
            {
                shared.leader.resign(core);
                return None;
            }
        }
        // How long to sleep, as a follower or on the poller, before looking
        // at the worker's state again.
        let wait = if shared.stop.requested() {
            Duration::from_millis(50)
        } else {
            Duration::from_secs(1)
        };
        if !shared.leader.lead(core, wait) {
            continue;
        }
        let polled = Instant::now();
        shared.conns.sweep(polled, Duration::from_secs(1));
        if share.due(polled) {
            yield_cpu();
        }
        let event = shared.conns.wait(wait);
        share.polled(polled, Instant::now());
        if !matches!(event, Ok(Event::Wake | Event::Control)) {
            shared.leader.working(core);
        }
        match event {
            Ok(Event::Wake) => {
                if let Some(conn) = accept_missed(shared) {
                    shared.leader.working(core);
                    if let Some(found) = read_head(shared, conn) {
                        return Some(found);
                    }
                }
            }
            Ok(Event::Control) => read_control(shared),
            Ok(Event::Listener(idx)) => {
                if let Some(found) = accept(shared, idx) {
                    return Some(found);
                }
            }
            Ok(Event::Conn(conn)) => {
                if let Some(found) = read_head(shared, conn) {
                    return Some(found);
                }
            }
            Err(e) => {
                crate::log::line(&format!(
                    "worker {} core {core}: poll error: {e}",
                    shared.cfg.worker_id
                ));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The first core to see the stop stops listening, so new connections go
/// to the other workers (it no longer counts as one that accepts, so none
/// leaves a connection to it), and wakes every core to look at the state.
/// A retiring worker tells the master, which starts its replacement now
/// (if the master asked, it knows already). A shutdown also takes what is
/// queued on the listeners: no other worker will (a retiring worker leaves
/// it to them and to its replacement).
fn on_stop(shared: &Shared) {
    let shutdown = shared.stop.kind() == Some(StopKind::Shutdown);
    if shared.stop.begin() {
        if !shutdown {
            shared.tell_master(ToMaster::Retiring);
        }
        shared
            .scoreboard
            .process(shared.entry)
            .accepting
            .store(0, Ordering::Release);
        shared.conns.stop_listening(shutdown);
        shared.took_queue.store(shutdown, Ordering::Release);
        shared.leader.wake_all();
    } else if shutdown && !shared.took_queue.swap(true, Ordering::AcqRel) {
        // Retiring, and then the server began to shut down.
        shared.conns.take_queued();
    }
}

/// Read what the master sent on the control channel: a retirement or a
/// shutdown. A closed channel means the master is gone: stop too.
fn read_control(shared: &Shared) {
    let Some(channel) = &shared.channel else {
        return;
    };
    loop {
        match channel.recv() {
            Received::Message(ToWorker::Retire) => {
                shared.stop.request(StopKind::Retire);
            }
            Received::Message(ToWorker::Shutdown) => {
                shared.stop.request(StopKind::Shutdown);
            }
            Received::Empty => {
                shared.conns.rearm_control(channel.as_fd());
                return;
            }
            Received::Closed => {
                shared.stop.request(StopKind::Shutdown);
                return;
            }
        }
    }
}

/// The worker retires by itself (it already requested its stop): say why,
/// and wake the poller, so a core sees the stop (and tells the master)
/// now.
fn announce_retirement(shared: &Shared, why: &str) {
    crate::log::line(&format!(
        "...The work of process {} is done ({why}). Seeya!",
        std::process::id()
    ));
    shared.conns.wake_all();
}

/// How long a worker leaves new connections to a lighter one at most: the
/// lighter one is woken for them too, but if it does not take them (it
/// just stopped, or is stuck), this one does.
const DEFER_AT_MOST: Duration = Duration::from_millis(3);

/// Accept what is pending on a listener (at most one per idle core); the
/// first connection that already carries a whole request is returned to be
/// served now, the others are parked.
fn accept(shared: &Shared, idx: usize) -> Option<Taken<'_>> {
    // An exclusive listener woke this worker only: nobody else will take
    // the connection for now, so there is no one to leave it to.
    if !shared.conns.listener(idx).exclusive()
        && shared.scoreboard.has_lighter_worker(shared.entry)
        && deferring(shared)
    {
        // Keep-alive clients stay with the worker that accepted them, so
        // without this one worker can end up with most of them while the
        // other idles. Leave the connection to the lighter worker (it is
        // woken for it too); look again shortly in case it does not take it.
        std::thread::sleep(Duration::from_millis(1));
        shared.conns.rearm_listener(idx);
        return None;
    }
    shared.deferring_since.store(0, Ordering::Relaxed);
    // Take only as many connections as this worker has idle cores (this one
    // included): the rest stay in the kernel queue for an idle worker,
    // instead of waiting here behind a slow request.
    let idle = shared
        .cfg
        .threads
        .saturating_sub(shared.stop.in_flight())
        .max(1);
    // An exclusive listener is level-triggered: the poller reports it again
    // while connections are queued, so take one per event. Going on after
    // a connection whose request has not arrived yet (parked: nginx had
    // not written it) mostly found the queue empty, an accept4 that failed.
    let most = if shared.conns.listener(idx).exclusive() {
        1
    } else {
        idle.min(64)
    };
    let mut found = None;
    for _ in 0..most {
        let Some(conn) = shared.conns.accept(idx) else {
            break;
        };
        // The request usually arrives with the connection (TCP listeners
        // defer accept until data is there): serve it on this core right
        // away, so this worker takes no more connections than it can serve
        // and the next one goes to an idle worker.
        found = read_head(shared, conn);
        if found.is_some() {
            break;
        }
    }
    shared.conns.rearm_listener(idx);
    found
}

/// A core just free takes a new HTTP connection the kernel may have
/// queued, before it polls. Through the poller, a listener's turn comes
/// after every keep-alive connection that was ready before it, and each
/// turn takes one connection (a busy worker has no other idle core): 32
/// clients connecting at once to a worker busy with Django waited up to
/// ~0.5 s for their first response (bench/README.md). uwsgi listeners get
/// a connection per request and nothing ahead of them: unchanged. The
/// connection is left to a worker holding fewer (it takes it when one of
/// its cores is free, or through its poller).
fn accept_queued(shared: &Shared) -> Option<Taken<'_>> {
    if shared.stop.requested() {
        return None;
    }
    let idx = shared.conns.maybe_queued(Protocol::Http)?;
    if shared.scoreboard.has_fewer_conns_elsewhere(shared.entry) {
        return None;
    }
    let conn = shared.conns.accept(idx)?;
    read_head(shared, conn)
}

/// On a quiet wake-up, a connection queued on an exclusive listener that
/// no worker was told about: the kernel wakes one worker per connection
/// there, and if that one died before accepting (killed, crashed), no
/// other hears of it until the next connection arrives. This bounds the
/// wait to the idle poll (1 s) for one failed accept4 a second.
fn accept_missed(shared: &Shared) -> Option<Box<Conn>> {
    if shared.stop.requested() {
        return None;
    }
    shared
        .conns
        .exclusive_listeners()
        .find_map(|idx| shared.conns.accept(idx))
}

/// Whether to go on leaving connections to a lighter worker: yes for at
/// most [`DEFER_AT_MOST`] in a row (deferrals closer together than that
/// are one episode).
fn deferring(shared: &Shared) -> bool {
    let now = (shared.epoch.elapsed().as_micros() as u64).max(1);
    let limit = DEFER_AT_MOST.as_micros() as u64;
    let last = shared.deferred_last.swap(now, Ordering::Relaxed);
    let mut since = shared.deferring_since.load(Ordering::Relaxed);
    if since == 0 || now.saturating_sub(last) > limit {
        since = now;
        shared.deferring_since.store(now, Ordering::Relaxed);
    }
    now.saturating_sub(since) < limit
}

/// How many requests in a row a core takes from one keep-alive connection
/// before that connection goes behind the others that are ready. Without a
/// bound, a client that sends its next request as soon as it has the
/// response (wrk does, as does a busy proxy) was served back to back while
/// the others waited: with 64 KB POSTs a core went back to the poller
/// once in ~100 requests, and the p99 was 15-38 ms (bench/README.md).
const STREAK: u32 = 1;

/// What parsing a connection's buffer came to. (Returned by value once a
/// request: boxing the request would be an allocation per request.)
#[allow(clippy::large_enum_variant)]
enum Parsed<'a> {
    Request(Taken<'a>),
    /// Not parked (see `Conns::park`): read it again.
    ReadMore(Box<Conn>),
    /// Parked, or answered and closed.
    Gone,
}

/// Park a connection that has no complete request, or have it read again.
fn park(shared: &Shared, conn: Box<Conn>) -> Parsed<'_> {
    match shared.conns.park(conn) {
        Some(conn) => Parsed::ReadMore(conn),
        None => Parsed::Gone,
    }
}

/// Read what the connection has for us and parse it; a connection that
/// closed or failed is dropped (closed), one with nothing yet parked. Read
/// again as long as parking gives it back (an edge came meanwhile).
fn read_head(shared: &Shared, mut conn: Box<Conn>) -> Option<Taken<'_>> {
    // One byte past a head's limit tells a head too large; a uwsgi packet's
    // vars block may itself be max_head bytes, after its 4-byte header.
    let max = shared.cfg.limits.max_head + crate::uwsgi_proto::HEADER_LEN;
    loop {
        // (A head whose body is awaited reads up to the end of what is
        // awaited: see `body_wait`.)
        let parsed = match conn.fill(max.max(conn.need)) {
            Ok(0) => {
                let why = "closed, or silent for --socket-timeout";
                lost_body(shared, &conn, why);
                return None;
            }
            Ok(n) => {
                let full = n == usize::MAX;
                match parse_buffered(shared, conn) {
                    // A full buffer is a complete head or refused: never
                    // read "again" without reading (that would spin).
                    Parsed::ReadMore(c) if full => {
                        reject(shared, &c, 431, "request head too large");
                        return None;
                    }
                    parsed => parsed,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => park(shared, conn),
            Err(e) => {
                lost_body(shared, &conn, &e.to_string());
                return None;
            }
        };
        match parsed {
            Parsed::Request(taken) => return Some(taken),
            Parsed::ReadMore(again) => conn = again,
            Parsed::Gone => return None,
        }
    }
}

/// Log a body that was awaited and will not come (see `body_wait::lost`).
fn lost_body(shared: &Shared, conn: &Conn, why: &str) {
    let protocol = shared.conns.listener(conn.listener).protocol;
    let worker = shared.cfg.worker_id;
    body_wait::lost(conn, protocol, &shared.cfg.limits, worker, why);
}

/// Parse what the connection has buffered: a complete request (counted in
/// flight), or the connection goes back to the poller (incomplete head, or
/// a body still on its way: see `body_wait`) or is answered with an error
/// and closed.
fn parse_buffered(shared: &Shared, mut conn: Box<Conn>) -> Parsed<'_> {
    // (`need` is 0 unless a body is awaited.)
    if conn.buf.len() < conn.need.max(1) {
        return park(shared, conn);
    }
    let protocol = shared.conns.listener(conn.listener).protocol;
    if shared.cfg.proxy_protocol && !conn.proxy_checked && protocol == Protocol::Http {
        conn = match proxy_header(shared, conn) {
            Ok(conn) => conn,
            Err(Some(again)) => return Parsed::ReadMore(again),
            Err(None) => return Parsed::Gone,
        };
    }
    match request::parse(protocol, &conn.buf, &shared.cfg.limits) {
        Parse::Incomplete => park(shared, conn),
        Parse::Complete {
            mut request,
            consumed,
        } => {
            if let Some(need) =
                body_wait::awaited(&conn, &request.body, consumed, shared.cfg.body_wait)
            {
                let timeout = shared.cfg.socket_timeout;
                if !body_wait::invite(&mut conn, request.expect_continue, timeout) {
                    return Parsed::Gone;
                }
                conn.await_body(need, shared.conns.awaiting());
                return park(shared, conn);
            }
            if conn.need != 0 && conn.body_in() {
                // Told to send its body before it was awaited: not again.
                request.expect_continue = false;
            }
            conn.buf.drain(..consumed);
            let in_flight = shared.stop.enter();
            if in_flight.is_last() {
                announce_retirement(
                    shared,
                    &format!("max requests {} reached", shared.cfg.max_requests),
                );
                // Now, not after this last request: the master starts the
                // replacement while it is served.
                on_stop(shared);
            }
            Parsed::Request(Taken {
                conn,
                request,
                in_flight,
                plan: None,
            })
        }
        Parse::Rejected {
            status,
            why,
            body_left,
        } => {
            reject(shared, &conn, status, &why);
            // The rest of the request may still be on its way.
            let unread = body_left.map_or(Unread::Unknown, Unread::Bytes);
            shared.conns.close_after_response(conn, unread);
            Parsed::Gone
        }
    }
}

/// `--enable-proxy-protocol`: take the client's address from a PROXY
/// header at the start of the connection. The connection comes back when
/// a request may follow; it is parked (incomplete) or answered 400 and
/// closed (malformed) otherwise (`Err(None)`), or given back by the
/// poller to be read again (`Err(Some)`, see `Conns::park`).
fn proxy_header(shared: &Shared, mut conn: Box<Conn>) -> Result<Box<Conn>, Option<Box<Conn>>> {
    match proxy_protocol::parse(&conn.buf) {
        Ok(proxy_protocol::Parsed::Incomplete) => Err(shared.conns.park(conn)),
        Ok(proxy_protocol::Parsed::Absent) => {
            conn.proxy_checked = true;
            Ok(conn)
        }
        Ok(proxy_protocol::Parsed::Header { consumed, client }) => {
            conn.proxy_checked = true;
            conn.buf.drain(..consumed);
            if let Some((ip, port)) = client {
                conn.remote_addr = proxy_protocol::addr_text(ip);
                conn.remote_port = port.to_string();
            }
            if conn.buf.is_empty() {
                return Err(shared.conns.park(conn));
            }
            Ok(conn)
        }
        Err(e) => {
            reject(shared, &conn, 400, &e.to_string());
            shared.conns.close_after_response(conn, Unread::Unknown);
            Err(None)
        }
    }
}

/// Answer a request we could not parse, and log why.
fn reject(shared: &Shared, conn: &Conn, status: u16, why: &str) {
    let _ = write_all_timeout(
        conn.fd(),
        &http::error_response(status),
        shared.cfg.socket_timeout,
    );
    if crate::log::access_config().when.wants_status(status) {
        crate::log::line(&format!(
            "[pid: {}|worker: {}] {} bad request rejected with {status}: {}",
            std::process::id(),
            shared.cfg.worker_id,
            crate::log::escape(conn.remote_addr.as_bytes()),
            crate::log::escape(why.as_bytes())
        ));
    }
}

/// With the GIL: serve one request (either protocol) on core `core`.
fn serve_request(
    py: Python<'_>,
    shared: &Shared,
    conn: &mut Conn,
    req: &Request,
    core: usize,
    plan: Option<&front::Plan>,
    objects: &mut wsgi::reuse::CoreObjects,
) -> Served {
    let slot = shared.scoreboard.core(shared.entry, core);
    let began = Began::now();
    let now_ms = began.unix_us / 1000;
    let cfg = &shared.cfg;
    let fd = conn.fd();
    let remote = req.remote(&conn.remote_addr);
    let deadline = cfg.deadline_ms(now_ms);
    let in_request = if cfg.keep_headers {
        let headers = req.header_lines();
        let mut info: Vec<&[u8]> = vec![remote, req.method(), req.uri()];
        info.extend(headers.iter().map(Vec::as_slice));
        slot.begin(now_ms, deadline, &info)
    } else {
        slot.begin(now_ms, deadline, &[remote, req.method(), req.uri()])
    };
    let _current = CurrentCore::enter(slot);

    let buffered = plan
        .and_then(|p| p.body_file.as_ref())
        .and_then(|(f, n)| Some(BodyMode::File(f.try_clone().ok()?, *n)));
    let mode = match (buffered, &req.body) {
        (Some(file), _) => file,
        (None, BodyKind::None) => BodyMode::Length(0),
        (None, BodyKind::Length(n)) => BodyMode::Length(*n),
        (None, BodyKind::Chunked) => {
            BodyMode::Chunked(Box::new(http::ChunkedDecoder::new(cfg.limits.limit_post)))
        }
    };
    let reader = BodyReader::new(
        fd,
        std::mem::take(&mut conn.buf),
        mode,
        cfg.socket_timeout,
        req.expect_continue && req.has_body(),
    );
    let ctx = ResponseCtx {
        fd,
        timeout: cfg.socket_timeout,
        head_request: req.is_head(),
        chunked_ok: req.chunked_response_ok(),
        http10: req.version == Version::Http10,
        protocol: req.version.as_str(),
        to_proxy: req.to_proxy(),
        keep_alive: req.keep_alive && !shared.stop.requested(),
        extra_headers: plan.map(|p| p.headers.clone()).unwrap_or_default(),
        del_headers: plan.map(|p| p.del_headers.clone()).unwrap_or_default(),
        write_exception: !cfg.disable_write_exception,
    };
    let template = shared.environs[conn.listener].bind(py);
    let entries = &mut objects.entries;
    let environ = match &req.source {
        Source::Http(head) => {
            wsgi::environ::from_http(py, entries, head, &conn.remote_addr, &conn.remote_port)
        }
        Source::Uwsgi(packet) => wsgi::environ::from_uwsgi(py, entries, packet),
    };
    let environ = environ.and_then(|()| {
        if let Some((script_name, path_info)) = plan.and_then(|p| p.script_name.as_ref()) {
            let script_name = wsgi::environ::latin1(py, script_name)?.into_any();
            entries.set(pyo3::intern!(py, "SCRIPT_NAME"), script_name);
            let path_info = wsgi::environ::latin1(py, path_info)?.into_any();
            entries.set(pyo3::intern!(py, "PATH_INFO"), path_info);
        }
        Ok(())
    });
    let app = match plan.and_then(|p| p.app) {
        Some(i) => &shared.mounted[i],
        None => &shared.app,
    };
    let mut outcome = match environ {
        Ok(()) => wsgi::call(
            py,
            app.bind(py),
            template,
            reader,
            ctx,
            cfg.ignore_write_errors,
            objects,
        ),
        Err(e) => {
            objects.entries.clear(py);
            crate::log::line(&format!("cannot build environ: {e}"));
            return Served::error(500);
        }
    };
    drop(in_request);
    let log = !plan.is_some_and(|p| p.no_log);
    let app = Some(shared.app_id(plan.and_then(|p| p.app)));
    finish_request(shared, conn, req, &outcome, (core, app), began, log);
    conn.buf = std::mem::take(&mut outcome.leftover);
    // A response that promised keep-alive keeps it even if the stop began
    // meanwhile: the client may already be sending its next request, which
    // is then answered with `Connection: close`.
    Served {
        tail: outcome.tail,
        keep: outcome.keep_alive,
        unread: outcome.unread,
    }
}

impl Served {
    /// An error response, then close: whatever the client still sends is
    /// of a request we gave up on.
    fn error(status: u16) -> Served {
        let mut tail = Output::default();
        tail.extend(&http::error_response(status));
        Served {
            tail,
            keep: false,
            unread: Unread::Unknown,
        }
    }
}

/// A request panicked (the scoreboard slot and the in-flight count were
/// given back by their guards): log one line, answer 500 and close; after
/// the second, stop the worker so the master starts a clean one.
fn after_panic(shared: &Shared, core: usize, req: &Request, report: &str) -> Served {
    // Counted as a request that raised, so the stats add up (the core's
    // own count was kept by its slot guard).
    let w = shared.scoreboard.process(shared.entry);
    w.requests.fetch_add(1, Ordering::Relaxed);
    w.exceptions.fetch_add(1, Ordering::Relaxed);
    let n = shared.panics.fetch_add(1, Ordering::AcqRel) + 1;
    let exiting = n == 2 && shared.stop.request(StopKind::Retire);
    crate::log::line(&format!(
        "[pid: {}|worker: {}|core: {core}] panic serving {} {}: {}; answered 500{}",
        std::process::id(),
        shared.cfg.worker_id,
        crate::log::escape(req.method()),
        crate::log::escape(req.uri()),
        crate::log::escape(report.as_bytes()),
        if exiting {
            "; second panic: the worker exits to be respawned"
        } else {
            ""
        }
    ));
    if exiting {
        announce_retirement(shared, "second panic");
    }
    Served::error(500)
}

/// Stats, the access log line (unless a route said `donotlog`) and
/// `--reload-on-exception`, after every request, whoever answered it
/// (`--max-requests` is counted when a request is admitted, in
/// `parse_buffered`). `app`: the uWSGI id of the app that answered, None
/// when the front did.
fn finish_request(
    shared: &Shared,
    conn: &Conn,
    req: &Request,
    outcome: &wsgi::Outcome,
    (core, app): (usize, Option<usize>),
    began: Began,
    log: bool,
) {
    let cfg = &shared.cfg;
    let w = shared.scoreboard.process(shared.entry);
    w.requests.fetch_add(1, Ordering::Relaxed);
    w.tx.fetch_add(outcome.wire_bytes, Ordering::Relaxed);
    let micros = began.at.elapsed().as_micros() as u64;
    w.record_latency(micros);
    // The dashboard's per-route figures: a few stores, no lock.
    shared.scoreboard.ring(shared.entry).push(
        req.method(),
        req.uri(),
        outcome.status,
        micros,
        crate::log::unix_millis(),
    );
    if outcome.raised {
        w.exceptions.fetch_add(1, Ordering::Relaxed);
    }
    let app = app.and_then(|id| {
        let n = shared.app_requests.get(id)?.fetch_add(1, Ordering::Relaxed) + 1;
        Some((id, n))
    });
    if log {
        access::log_request(shared, conn, req, outcome, core, began, app);
    }
    if outcome.raised && cfg.reload_on_exception && shared.stop.request(StopKind::Retire) {
        announce_retirement(shared, "the app raised, --reload-on-exception");
    }
}
