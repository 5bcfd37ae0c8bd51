//! The hot path: what a core (request thread) does all day. Wait to lead,
//! wait on the worker's poller, accept, read a request head, build the
//! environ, call the app, write the response, and hand the connection back.
//!
//! Control (signals, stopping, the master) reaches this loop only through
//! the [`Shared`] flags it checks between requests. The GIL is held only
//! inside `wsgi::call` and environ building; every wait releases it.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::config::Protocol;
use crate::conn::{write_all_timeout, Conn, Unread};
use crate::cpu_share::{yield_cpu, CpuShare};
use crate::http::{self, BodyKind, Limits};
use crate::poller::{Event, Poller};
use crate::scoreboard::Scoreboard;
use crate::uwsgi_module::CurrentCore;
use crate::uwsgi_proto;
use crate::wsgi::{self, input::BodyMode, input::BodyReader, response::ResponseCtx};

/// Per-listener facts the hot path needs.
pub struct ListenerInfo {
    pub fd: RawFd,
    pub protocol: Protocol,
    pub is_unix: bool,
    pub environ: Py<PyDict>,
}

/// The longest a lingering close may take (nginx's `lingering_time`).
const LINGER_TIME: Duration = Duration::from_secs(30);
/// The most a lingering close discards, unless `--limit-post` allows more.
const LINGER_MIN_BYTES: u64 = 64 << 20;

/// State shared by the cores of one worker.
pub struct Shared {
    pub worker_id: usize,
    /// Cores (request threads) in this worker.
    pub threads: usize,
    pub poller: Poller,
    pub listeners: Vec<ListenerInfo>,
    pub app: Py<PyAny>,
    pub scoreboard: &'static Scoreboard,
    pub limits: Limits,
    pub timeout: Duration,
    pub harakiri_secs: u64,
    pub keep_headers: bool,
    pub logging: bool,
    pub max_requests: u64,
    /// Set by SIGTERM/SIGHUP or max-requests: finish and exit.
    pub stopping: &'static AtomicBool,
    pub listeners_removed: AtomicBool,
    pub stop_started: std::sync::Mutex<Option<Instant>>,
    pub mercy: Duration,
    /// Deadlines of connections parked in the poller.
    pub deadlines: crate::deadlines::Deadlines,
    /// How long an idle keep-alive connection is kept.
    pub keepalive: Duration,
    pub busy: AtomicUsize,
    /// Which core polls (the others sleep until it is stuck in a request).
    pub leader: crate::leader::Leader,
}

impl Shared {
    fn worker_slot(&self) -> &crate::scoreboard::WorkerSlot {
        self.scoreboard.worker(self.worker_id)
    }

    /// Whether another worker that can take a connection now (ready, with
    /// an idle core) holds fewer connections than this one. Keep-alive
    /// clients stay with the worker that accepted them, so without this
    /// one worker can end up with most of them while the other idles.
    fn another_worker_is_lighter(&self) -> bool {
        let sb = self.scoreboard;
        let mine = self.worker_slot().open_conns.load(Ordering::Relaxed);
        (1..=sb.worker_count())
            .filter(|&id| id != self.worker_id)
            .any(|id| {
                let w = sb.worker(id);
                w.accepting.load(Ordering::Relaxed) == 1
                    && w.open_conns.load(Ordering::Relaxed) < mine
                    && (0..self.threads)
                        .any(|c| sb.core(id, c).in_request.load(Ordering::Relaxed) == 0)
            })
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// First core to see the stop takes the listeners out of the poller, so
    /// new connections go to the other workers (or wait in the backlog).
    fn begin_stop(&self) {
        if !self.listeners_removed.swap(true, Ordering::AcqRel) {
            for l in &self.listeners {
                self.poller.remove_listener(l.fd);
            }
            // Connections the kernel already completed for us are served
            // (with `Connection: close`), not reset when the master exits.
            for idx in 0..self.listeners.len() {
                for _ in 0..1024 {
                    let Some(conn) = accept_one(self, idx) else {
                        break;
                    };
                    rearm(self, conn);
                }
            }
            if let Ok(mut s) = self.stop_started.lock() {
                *s = Some(Instant::now());
            }
            self.leader.wake_all();
        }
    }

    /// Whether a stopping worker may exit: nothing in flight, and idle
    /// keep-alive clients had a moment to send what they were sending.
    fn may_exit(&self) -> bool {
        let since = self
            .stop_started
            .lock()
            .ok()
            .and_then(|s| *s)
            .map(|t| t.elapsed())
            .unwrap_or_default();
        if since >= self.mercy {
            return true;
        }
        self.busy.load(Ordering::Acquire) == 0
            && (self.worker_slot().open_conns.load(Ordering::Acquire) == 0
                || since >= Duration::from_secs(1))
    }
}

/// A request whose head is parsed, ready for the app.
enum Request {
    Http(http::RequestHead),
    Uwsgi(uwsgi_proto::Packet),
}

/// What a core holds between taking the GIL and giving it back: the
/// connection, and the end of the response still to be written.
struct Pending {
    conn: Box<Conn>,
    tail: Vec<u8>,
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
    let slot = shared.scoreboard.core(shared.worker_id, core);
    let mut pending: Option<Pending> = None;
    let mut share = CpuShare::new(Instant::now());
    loop {
        // GIL: released from the end of one request to the head of the next.
        let next = py.detach(|| next_request(shared, core, &mut share, pending.take()));
        let Some((mut conn, request)) = next else {
            return; // core 0: the worker may exit
        };
        let (keep, tail, unread) = match &request {
            Request::Http(head) => serve_http(py, shared, &mut conn, head, slot),
            Request::Uwsgi(packet) => {
                let (tail, unread) = serve_uwsgi(py, shared, &mut conn, packet, slot);
                (false, tail, unread)
            }
        };
        conn.served += 1;
        pending = Some(Pending {
            conn,
            tail,
            keep,
            unread,
        });
    }
}

/// Without the GIL: finish the previous response, then find the next
/// complete request (on the same connection if pipelined, else from the
/// poller, once this core leads). None when core 0 should let the worker exit.
fn next_request(
    shared: &Shared,
    core: usize,
    share: &mut CpuShare,
    pending: Option<Pending>,
) -> Option<(Box<Conn>, Request)> {
    if let Some(p) = pending {
        let ok =
            p.tail.is_empty() || write_all_timeout(p.conn.fd(), &p.tail, shared.timeout).is_ok();
        shared.busy.fetch_sub(1, Ordering::AcqRel);
        if ok && p.keep {
            if let Some(found) = parse_buffered(shared, p.conn) {
                // A pipelined request: a new one to time, if this core leads.
                shared.leader.working(core);
                return Some(found);
            }
        } else if ok {
            close_after_response(shared, p.conn, p.unread);
        } else {
            close(shared, p.conn);
        }
    }
    loop {
        if shared.stopping() {
            shared.begin_stop();
            if core == 0 && shared.may_exit() {
                shared.leader.resign(core);
                return None;
            }
        }
        // How long to sleep, as a follower or on the poller, before looking
        // at the worker's state again.
        let wait = if shared.stopping() {
            Duration::from_millis(50)
        } else {
            Duration::from_secs(1)
        };
        if !shared.leader.lead(core, wait) {
            continue;
        }
        let polled = Instant::now();
        shared.deadlines.sweep(polled, Duration::from_secs(1));
        if share.due(polled) {
            yield_cpu();
        }
        let event = shared.poller.wait(wait);
        share.polled(polled, Instant::now());
        if !matches!(event, Ok(Event::Wake)) {
            shared.leader.working(core);
        }
        match event {
            Ok(Event::Wake) => {}
            Ok(Event::Listener(idx)) => {
                if let Some(found) = accept(shared, idx) {
                    return Some(found);
                }
            }
            Ok(Event::Conn(mut conn)) => {
                shared.deadlines.clear(conn.fd());
                if conn.linger.is_some() {
                    linger_or_close(shared, conn);
                    continue;
                }
                match conn.fill(shared.limits.max_head + 1) {
                    Ok(0) => close(shared, conn),
                    Ok(_) => {
                        if let Some(found) = parse_buffered(shared, conn) {
                            return Some(found);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => rearm(shared, conn),
                    Err(_) => close(shared, conn),
                }
            }
            Err(e) => {
                crate::log::line(&format!(
                    "worker {} core {core}: poll error: {e}",
                    shared.worker_id
                ));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Parse what the connection has buffered: a complete request (counted as
/// busy), or the connection goes back to the poller (incomplete) or is
/// answered with an error and closed.
fn parse_buffered(shared: &Shared, mut conn: Box<Conn>) -> Option<(Box<Conn>, Request)> {
    if conn.buf.is_empty() {
        rearm(shared, conn);
        return None;
    }
    let parsed = match shared.listeners[conn.listener].protocol {
        Protocol::Http => match http::parse_head(&conn.buf, &shared.limits) {
            Ok(http::Parsed::Incomplete) => None,
            Ok(http::Parsed::Complete { value, consumed }) => {
                Some(Ok((Request::Http(value), consumed)))
            }
            Err(e) => Some(Err((e.status(), e.to_string()))),
        },
        Protocol::Uwsgi => match uwsgi_proto::parse_packet(&conn.buf, shared.limits.max_head) {
            Ok(uwsgi_proto::Parsed::Incomplete) => None,
            Ok(uwsgi_proto::Parsed::Complete { value, consumed }) => {
                Some(Ok((Request::Uwsgi(value), consumed)))
            }
            Err(e) => {
                let status = if matches!(e, uwsgi_proto::ProtoError::TooLarge { .. }) {
                    413
                } else {
                    400
                };
                Some(Err((status, e.to_string())))
            }
        },
    };
    match parsed {
        None => {
            rearm(shared, conn);
            None
        }
        Some(Ok((request, consumed))) => {
            conn.buf.drain(..consumed);
            shared.busy.fetch_add(1, Ordering::AcqRel);
            Some((conn, request))
        }
        Some(Err((status, why))) => {
            reject(shared, &conn, status, &why);
            // The rest of the request may still be on its way.
            close_after_response(shared, conn, Unread::Unknown);
            None
        }
    }
}

fn rearm(shared: &Shared, conn: Box<Conn>) {
    // A request started (partial head) or none yet: the client has the
    // socket timeout to send it. Between requests: the keep-alive timeout.
    let wait = if !conn.buf.is_empty() || conn.served == 0 {
        shared.timeout
    } else {
        shared.keepalive
    };
    park(shared, conn, Instant::now() + wait);
}

/// Hand a connection to the poller until it has bytes, or `deadline`.
fn park(shared: &Shared, conn: Box<Conn>, deadline: Instant) {
    let fd = conn.fd();
    shared.deadlines.set(fd, deadline);
    if shared.poller.arm(conn).is_err() {
        shared.deadlines.clear(fd);
        shared
            .worker_slot()
            .open_conns
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accept what is pending on a listener (at most one per idle core); the
/// first connection that already carries a whole request is returned to be
/// served now, the others are registered with the poller.
fn accept(shared: &Shared, idx: usize) -> Option<(Box<Conn>, Request)> {
    let l = &shared.listeners[idx];
    // Take only as many connections as this worker has idle cores (this one
    // included): the rest stay in the kernel queue for an idle worker,
    // instead of waiting here behind a slow request.
    let idle = shared
        .threads
        .saturating_sub(shared.busy.load(Ordering::Acquire))
        .max(1);
    if shared.another_worker_is_lighter() {
        // Leave the connection to the lighter worker (it is woken for it
        // too); look again shortly in case it does not take it.
        std::thread::sleep(Duration::from_millis(1));
        if !shared.stopping() {
            let _ = shared.poller.rearm_listener(idx, l.fd);
        }
        return None;
    }
    let mut found = None;
    for _ in 0..idle.min(64) {
        let Some(mut conn) = accept_one(shared, idx) else {
            break;
        };
        // The request usually arrives with the connection (TCP listeners
        // defer accept until data is there): serve it on this core right
        // away, so this worker takes no more connections than it can serve
        // and the next one goes to an idle worker.
        match conn.fill(shared.limits.max_head + 1) {
            Ok(0) => close(shared, conn),
            Ok(_) => {
                found = parse_buffered(shared, conn);
                if found.is_some() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => rearm(shared, conn),
            Err(_) => close(shared, conn),
        }
    }
    if !shared.stopping() {
        let _ = shared.poller.rearm_listener(idx, l.fd);
    }
    found
}

/// Accept one connection from listener `idx` (non-blocking), counted as open.
fn accept_one(shared: &Shared, idx: usize) -> Option<Box<Conn>> {
    let l = &shared.listeners[idx];
    // SAFETY: sockaddr_storage is plain data, large enough for any family.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: listener fd stays open for the worker's life; addr/len are live locals.
    let fd = unsafe {
        libc::accept4(
            l.fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::ECONNABORTED) | Some(libc::EINTR) => {}
            Some(libc::EMFILE) | Some(libc::ENFILE) => {
                // Out of descriptors: leave the connection in the backlog
                // and give in-flight requests time to release some.
                crate::log::line(&format!(
                    "worker {}: accept: {e}; shedding load for 100 ms",
                    shared.worker_id
                ));
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => crate::log::line(&format!("worker {}: accept: {e}", shared.worker_id)),
        }
        return None;
    }
    // SAFETY: accept4 returned a new fd we now own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let (ip, port) = if l.is_unix {
        (String::new(), String::new())
    } else {
        peer(&addr)
    };
    if !l.is_unix {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on our fd with a live int.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                4,
            )
        };
    }
    shared
        .worker_slot()
        .open_conns
        .fetch_add(1, Ordering::AcqRel);
    Some(Box::new(Conn::new(owned, idx, ip, port)))
}

fn peer(addr: &libc::sockaddr_storage) -> (String, String) {
    match addr.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            (ip.to_string(), u16::from_be(a.sin_port).to_string())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a =
                unsafe { &*(addr as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            let ip = ip
                .to_ipv4_mapped()
                .map(|v4| v4.to_string())
                .unwrap_or_else(|| ip.to_string());
            (ip, u16::from_be(a.sin6_port).to_string())
        }
        _ => (String::new(), String::new()),
    }
}

fn close(shared: &Shared, conn: Box<Conn>) {
    shared
        .worker_slot()
        .open_conns
        .fetch_sub(1, Ordering::AcqRel);
    drop(conn);
}

/// Close a connection whose response is written. If the client may still
/// be sending the request (a body the app did not read, a refused head),
/// close it gracefully: shut down the write side and discard what arrives,
/// in the poller (no core waits for it), bounded by `--limit-post` (at
/// least 64 MiB) and 30 s, with `--socket-timeout` of silence.
fn close_after_response(shared: &Shared, mut conn: Box<Conn>, unread: Unread) {
    if unread == Unread::Nothing {
        close(shared, conn);
        return;
    }
    conn.start_linger(
        unread,
        shared.limits.limit_post.max(LINGER_MIN_BYTES),
        LINGER_TIME,
    );
    linger_or_close(shared, conn);
}

/// One step of a lingering close: discard what is there, then close, or
/// park the connection until more arrives.
fn linger_or_close(shared: &Shared, mut conn: Box<Conn>) {
    if conn.linger_done() {
        close(shared, conn);
        return;
    }
    let until = conn.linger.as_ref().map_or_else(Instant::now, |l| l.until);
    // Silence is bounded like any read: --socket-timeout.
    park(shared, conn, until.min(Instant::now() + shared.timeout));
}

/// Answer a request we could not parse, and log why.
fn reject(shared: &Shared, conn: &Conn, status: u16, why: &str) {
    let _ = write_all_timeout(conn.fd(), &http::error_response(status), shared.timeout);
    if shared.logging {
        crate::log::line(&format!(
            "[pid: {}|worker: {}] {} bad request rejected with {status}: {}",
            std::process::id(),
            shared.worker_id,
            crate::log::escape(conn.remote_addr.as_bytes()),
            crate::log::escape(why.as_bytes())
        ));
    }
}

fn deadline_ms(shared: &Shared, now_ms: u64) -> u64 {
    if shared.harakiri_secs == 0 {
        0
    } else {
        now_ms + shared.harakiri_secs * 1000
    }
}

fn serve_http(
    py: Python<'_>,
    shared: &Shared,
    conn: &mut Conn,
    head: &http::RequestHead,
    slot: &'static crate::scoreboard::CoreSlot,
) -> (bool, Vec<u8>, Unread) {
    let started = Instant::now();
    let now_ms = crate::log::unix_millis();
    let listener = &shared.listeners[conn.listener];
    let verbose_headers: Vec<Vec<u8>> = if shared.keep_headers {
        head.headers
            .iter()
            .map(|(k, v)| [k.as_bytes(), b": ", v].concat())
            .collect()
    } else {
        Vec::new()
    };
    let mut info: Vec<&[u8]> = vec![
        conn.remote_addr.as_bytes(),
        head.method.as_bytes(),
        &head.target,
    ];
    info.extend(verbose_headers.iter().map(|h| h.as_slice()));
    slot.begin(now_ms, deadline_ms(shared, now_ms), &info);
    let _current = CurrentCore::enter(slot);

    let mode = match head.body {
        BodyKind::None => BodyMode::Length(0),
        BodyKind::Length(n) => BodyMode::Length(n),
        BodyKind::Chunked => BodyMode::Chunked(Box::new(http::ChunkedDecoder::new(
            shared.limits.limit_post,
        ))),
    };
    let has_body = !matches!(head.body, BodyKind::None | BodyKind::Length(0));
    let reader = BodyReader::new(
        conn.fd(),
        std::mem::take(&mut conn.buf),
        mode,
        shared.timeout,
        head.expect_continue && has_body,
    );
    let ctx = ResponseCtx {
        fd: conn.fd(),
        timeout: shared.timeout,
        head_request: head.method == "HEAD",
        chunked_ok: head.minor_version >= 1,
        http10: head.minor_version == 0,
        protocol: if head.minor_version == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        },
        keep_alive: head.keep_alive && !shared.stopping(),
    };
    let outcome = match wsgi::environ::from_http(
        py,
        listener.environ.bind(py),
        head,
        &conn.remote_addr,
        &conn.remote_port,
    ) {
        Ok(env) => wsgi::call(py, shared.app.bind(py), &env, reader, ctx),
        Err(e) => {
            crate::log::line(&format!("cannot build environ: {e}"));
            slot.end();
            return (false, http::error_response(500), Unread::Unknown);
        }
    };
    slot.end();
    let mut outcome = outcome;
    conn.buf = std::mem::take(&mut outcome.leftover);
    let served = Served {
        remote: &conn.remote_addr,
        method: &head.method,
        uri: &head.target,
        proto: if head.minor_version == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        },
        outcome: &outcome,
        started,
    };
    finish_request(shared, &served);
    // A response that promised keep-alive keeps it even if the stop began
    // meanwhile: the client may already be sending its next request, which
    // is then answered with `Connection: close`.
    (outcome.keep_alive, outcome.tail, outcome.unread)
}

fn serve_uwsgi(
    py: Python<'_>,
    shared: &Shared,
    conn: &mut Conn,
    packet: &uwsgi_proto::Packet,
    slot: &'static crate::scoreboard::CoreSlot,
) -> (Vec<u8>, Unread) {
    let started = Instant::now();
    let now_ms = crate::log::unix_millis();
    let method =
        String::from_utf8_lossy(packet.get(b"REQUEST_METHOD").unwrap_or(b"GET")).into_owned();
    let uri = packet
        .get(b"REQUEST_URI")
        .or_else(|| packet.get(b"PATH_INFO"))
        .unwrap_or(b"/")
        .to_vec();
    let remote = packet.get(b"REMOTE_ADDR").unwrap_or(b"").to_vec();
    slot.begin(
        now_ms,
        deadline_ms(shared, now_ms),
        &[&remote, method.as_bytes(), &uri],
    );
    let _current = CurrentCore::enter(slot);
    let length = match packet.get(b"CONTENT_LENGTH").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => match std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            Some(n) => n,
            None => {
                slot.end();
                return (http::error_response(400), Unread::Unknown);
            }
        },
    };
    if shared.limits.limit_post > 0 && length > shared.limits.limit_post {
        slot.end();
        let buffered = conn.buf.len() as u64;
        return (
            http::error_response(413),
            Unread::Bytes(length.saturating_sub(buffered)),
        );
    }
    let proto = match packet.get(b"SERVER_PROTOCOL") {
        Some(b"HTTP/1.0") => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let reader = BodyReader::new(
        conn.fd(),
        std::mem::take(&mut conn.buf),
        BodyMode::Length(length),
        shared.timeout,
        false,
    );
    let ctx = ResponseCtx {
        fd: conn.fd(),
        timeout: shared.timeout,
        head_request: method == "HEAD",
        chunked_ok: false,
        http10: false,
        protocol: proto,
        keep_alive: false,
    };
    let outcome = match wsgi::environ::from_uwsgi(
        py,
        shared.listeners[conn.listener].environ.bind(py),
        &packet.vars,
    ) {
        Ok(env) => wsgi::call(py, shared.app.bind(py), &env, reader, ctx),
        Err(e) => {
            crate::log::line(&format!("cannot build environ: {e}"));
            slot.end();
            return (http::error_response(500), Unread::Unknown);
        }
    };
    slot.end();
    // The client is nginx's: log the address nginx passed on.
    let remote = String::from_utf8_lossy(&remote);
    let served = Served {
        remote: &remote,
        method: &method,
        uri: &uri,
        proto,
        outcome: &outcome,
        started,
    };
    finish_request(shared, &served);
    (outcome.tail, outcome.unread)
}

/// What the access log and the stats need to know of a finished request.
struct Served<'a> {
    remote: &'a str,
    method: &'a str,
    uri: &'a [u8],
    proto: &'a str,
    outcome: &'a wsgi::Outcome,
    started: Instant,
}

/// Stats, the access log line, and max-requests, after every request.
fn finish_request(shared: &Shared, r: &Served<'_>) {
    let w = shared.scoreboard.worker(shared.worker_id);
    let total = w.requests.fetch_add(1, Ordering::Relaxed) + 1;
    w.tx.fetch_add(r.outcome.wire_bytes, Ordering::Relaxed);
    let elapsed = r.started.elapsed();
    w.record_latency(elapsed.as_micros() as u64);
    if r.outcome.raised {
        w.exceptions.fetch_add(1, Ordering::Relaxed);
    }
    if shared.logging {
        crate::log::line(&format!(
            "[pid: {}|worker: {}|req: {}] {} [{}] {} {} => generated {} bytes in {} msecs ({} {})",
            std::process::id(),
            shared.worker_id,
            total,
            if r.remote.is_empty() {
                "-".to_string()
            } else {
                crate::log::escape(r.remote.as_bytes())
            },
            crate::log::ctime_now(),
            crate::log::escape(r.method.as_bytes()),
            crate::log::escape(r.uri),
            r.outcome.body_bytes,
            elapsed.as_millis(),
            r.proto,
            r.outcome.status
        ));
    }
    if shared.max_requests > 0
        && total >= shared.max_requests
        && !shared.stopping.swap(true, Ordering::AcqRel)
    {
        crate::log::line(&format!(
            "...The work of process {} is done (max requests {} reached). Seeya!",
            std::process::id(),
            shared.max_requests
        ));
        shared.poller.wake_all();
    }
}
