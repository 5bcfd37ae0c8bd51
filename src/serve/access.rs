//! The access-log record of a served request: what `log::access` needs,
//! taken from the request (either protocol), its connection and the app's
//! outcome, without copying (the record borrows; `log::request` formats
//! into a per-thread buffer). Nothing is collected when no request can be
//! logged (`--disable-logging` without `--log-4xx` and the like).

use std::time::Instant;

use crate::conn::Conn;
use crate::log::access::{HttpVars, PacketVars, Record, Vars};
use crate::request::{Request, Source};
use crate::wsgi::Outcome;

use super::Shared;

/// When a request began: its duration, and the access log's times.
#[derive(Debug, Clone, Copy)]
pub struct Began {
    pub at: Instant,
    /// Unix microseconds.
    pub unix_us: u64,
}

impl Began {
    pub fn now() -> Began {
        Began {
            at: Instant::now(),
            unix_us: crate::log::unix_micros(),
        }
    }
}

/// Log `req` if the configuration wants it. `app`: the uWSGI app id that
/// answered and its request count in this worker (None: no app did).
pub fn log_request(
    shared: &Shared,
    conn: &Conn,
    req: &Request,
    outcome: &Outcome,
    core: usize,
    began: Began,
    app: Option<(usize, u64)>,
) {
    let cfg = crate::log::access_config();
    if !cfg.when.any() {
        return;
    }
    let remote = req.remote(&conn.remote_addr);
    let listener = shared.conns.listener(conn.listener);
    let http;
    let packet;
    // Borrowed (name, value) pairs: only a request that is logged lists them.
    let pairs: Vec<(&str, &[u8])>;
    let var_pairs: Vec<(&[u8], &[u8])>;
    let (vars, modifiers, (count, size)): (&dyn Vars, _, _) = match &req.source {
        Source::Http(h) => {
            pairs = h.headers().collect();
            http = HttpVars {
                method: h.method().as_bytes(),
                uri: h.target(),
                path: h.path(),
                query: h.query(),
                proto: req.version.as_str().as_bytes(),
                server_name: listener.server_name.as_bytes(),
                server_port: listener.server_port.as_bytes(),
                remote_addr: remote,
                headers: &pairs,
            };
            (&http, (0, 0), http.size())
        }
        Source::Uwsgi(p) => {
            var_pairs = p.vars().collect();
            packet = PacketVars(&var_pairs);
            (&packet, (p.modifier1, p.modifier2), packet.size())
        }
    };
    let var = |name: &[u8]| vars.var(name).unwrap_or_default();
    let host = match &req.source {
        Source::Http(h) => h.host().unwrap_or_default(),
        Source::Uwsgi(_) => var(b"HTTP_HOST"),
    };
    let addr = match vars.var(b"HTTP_X_FORWARDED_FOR") {
        Some(xff) if cfg.x_forwarded_for => xff,
        _ => remote,
    };
    let proto = match &req.source {
        Source::Uwsgi(p) => p
            .get(b"SERVER_PROTOCOL")
            .unwrap_or(req.version.as_str().as_bytes()),
        Source::Http(_) => req.version.as_str().as_bytes(),
    };
    crate::log::request(&Record {
        pid: std::process::id(),
        worker: shared.cfg.worker_id,
        core,
        app,
        total_requests: crate::log::count_request(),
        addr,
        user: var(b"REMOTE_USER"),
        method: req.method(),
        uri: req.uri(),
        proto,
        host,
        user_agent: var(b"HTTP_USER_AGENT"),
        referer: var(b"HTTP_REFERER"),
        status: outcome.status,
        vars: count,
        packet_size: size,
        modifier1: modifiers.0,
        modifier2: modifiers.1,
        started_us: began.unix_us,
        elapsed_us: began.at.elapsed().as_micros() as u64,
        body_bytes: outcome.body_bytes,
        header_count: outcome.header_count,
        header_bytes: outcome.head_bytes,
        content_length: match req.body {
            crate::http::BodyKind::Length(n) => n,
            _ => 0,
        },
        switches: outcome.chunks,
        via_sendfile: outcome.via_sendfile,
        read_errors: 0,
        write_errors: outcome.write_failed as u32,
        memory: cfg.needs_memory.then(crate::log::memory),
        vars_lookup: vars,
    });
}
