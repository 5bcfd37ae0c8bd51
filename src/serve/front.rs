//! What happens to a request before the app, without the GIL, when the
//! configuration asks for any of it: mounts and `--manage-script-name`
//! (which app, SCRIPT_NAME / PATH_INFO), routes, static files, and the
//! headers every response gets (`--add-header`). In uWSGI's order
//! (`uwsgi_parse_vars`, then `uwsgi_apply_routes`): the split, the routes,
//! then static files; a route that answers ends the request.
//!
//! A request the front answers never reaches Python: its response is
//! written here, or handed to an offload thread when the socket is full.
//! A request for the app leaves with a [`Plan`]. With nothing configured
//! `Shared::front` is None and requests skip this module entirely.

use std::borrow::Cow;
use std::io::Write as _;

use crate::config::Config;
use crate::conn::Unread;
use crate::http::{cgi_header_name, percent_decode_cow, BodyKind};
use crate::mounts::Mounts;
use crate::offload::{give_back, Offload, Progress, Transfer};
use crate::request::{Request, Source, Version};
use crate::routing::{Answer, Routes, Verdict};
use crate::static_files::{Ask, Statics};
use crate::wsgi::output::Output;

use super::access::Began;
use super::{finish_request, Pending, Served, Shared, Taken};

/// The parts of the request path the configuration turned on.
pub struct Front {
    pub statics: Option<Statics>,
    pub routes: Option<Routes>,
    pub mounts: Option<Mounts>,
    /// `--add-header`, on every response.
    pub add_headers: Vec<(String, String)>,
    /// `--del-header`: names removed from every app response.
    pub del_headers: Vec<String>,
    pub offload: Option<Offload>,
    /// `--post-buffering` (bytes; 0 = off) and its read size.
    pub post_buffering: u64,
    pub post_buffering_bufsize: usize,
}

/// What the app call needs to know from the front.
#[derive(Debug, Default)]
pub struct Plan {
    /// Headers to add to the app's response (routes, then --add-header).
    pub headers: Vec<(String, String)>,
    /// Header names to remove from the app's response (routes'
    /// `delheader`, then --del-header).
    pub del_headers: Vec<String>,
    /// The mounted app to call (None: the default app).
    pub app: Option<usize>,
    /// SCRIPT_NAME and PATH_INFO, when --manage-script-name split them.
    pub script_name: Option<(Vec<u8>, Vec<u8>)>,
    /// `donotlog`.
    pub no_log: bool,
    /// `--post-buffering`: the body, read into this file, and its length.
    pub body_file: Option<(std::fs::File, u64)>,
}

/// Where a request goes after the front.
pub enum Next<'a> {
    App(Taken<'a>),
    /// Answered; the connection's next step (None: closed or offloaded).
    Answered(Option<Pending<'a>>),
}

impl Front {
    /// The front a configuration needs, or None (the fast path).
    pub fn new(cfg: &Config) -> anyhow::Result<(Option<Front>, Vec<String>)> {
        let routes = Routes::new(&cfg.requests.routes).map_err(anyhow::Error::msg)?;
        let route_files = cfg
            .requests
            .routes
            .iter()
            .any(|r| matches!(r.action, crate::config::values::RouteAction::Static(_)));
        let (statics, notes) =
            Statics::new(&cfg.statics, route_files).map_err(anyhow::Error::msg)?;
        let mounts = (!cfg.requests.mounts.is_empty()).then(|| {
            let points: Vec<&str> = cfg
                .requests
                .mounts
                .iter()
                .map(|m| m.mountpoint.as_str())
                .collect();
            Mounts::new(&points, cfg.requests.manage_script_name)
        });
        let add_headers: Vec<(String, String)> = cfg
            .requests
            .add_headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let post_buffering = cfg.requests.post_buffering;
        let del_headers = cfg.requests.del_headers.clone();
        if statics.is_none()
            && routes.is_none()
            && mounts.is_none()
            && add_headers.is_empty()
            && del_headers.is_empty()
            && post_buffering == 0
        {
            return Ok((None, notes));
        }
        let offload = if statics.is_some() {
            Some(Offload::new(cfg.statics.offload_threads.max(1))?)
        } else {
            None
        };
        Ok((
            Some(Front {
                statics,
                routes,
                mounts,
                add_headers,
                del_headers,
                offload,
                post_buffering,
                post_buffering_bufsize: match cfg.requests.post_buffering_bufsize {
                    0 => crate::post_buffering::DEFAULT_BUFSIZE,
                    n => usize::try_from(n).unwrap_or(usize::MAX),
                },
            }),
            notes,
        ))
    }
}

/// The request's CGI variables, for routes and conditional headers.
struct Vars<'a> {
    req: &'a Request,
    remote: &'a str,
    script_name: &'a [u8],
    path_info: &'a [u8],
}

impl crate::routing::Vars for Vars<'_> {
    fn var(&self, name: &[u8]) -> Option<Cow<'_, [u8]>> {
        match name {
            b"PATH_INFO" => return Some(Cow::Borrowed(self.path_info)),
            b"SCRIPT_NAME" => return Some(Cow::Borrowed(self.script_name)),
            _ => {}
        }
        match &self.req.source {
            Source::Uwsgi(p) => p.get(name).map(Cow::Borrowed),
            Source::Http(h) => Some(Cow::Borrowed(match name {
                b"REQUEST_URI" => h.target(),
                b"QUERY_STRING" => h.query(),
                b"REQUEST_METHOD" => h.method().as_bytes(),
                b"REMOTE_ADDR" => self.remote.as_bytes(),
                b"SERVER_PROTOCOL" => self.req.version.as_str().as_bytes(),
                b"HTTP_HOST" => return h.host().map(Cow::Borrowed),
                _ => {
                    let header = match name {
                        b"CONTENT_TYPE" => "HTTP_CONTENT_TYPE".as_bytes(),
                        b"CONTENT_LENGTH" => b"HTTP_CONTENT_LENGTH",
                        other => other,
                    };
                    return h
                        .headers()
                        .find(|(n, _)| cgi_header_name(n).as_bytes() == header)
                        .map(|(_, v)| Cow::Borrowed(v));
                }
            })),
        }
    }
}

/// Run the front for a request taken off a connection.
pub fn handle<'a>(shared: &'a Shared, front: &Front, taken: Taken<'a>, core: usize) -> Next<'a> {
    let began = Began::now();
    let req = &taken.request;
    let decoded: Cow<'_, [u8]> = match &req.source {
        Source::Http(h) => percent_decode_cow(h.path()),
        Source::Uwsgi(p) => Cow::Borrowed(p.get(b"PATH_INFO").unwrap_or(b"")),
    };
    let proxy_script: &[u8] = match &req.source {
        Source::Uwsgi(p) => p.get(b"SCRIPT_NAME").unwrap_or(b""),
        Source::Http(_) => b"",
    };
    let mut plan = Plan::default();
    let (script_name, path_info) = match &front.mounts {
        Some(m) => {
            let choice = m.choose(&decoded, proxy_script);
            plan.app = choice.app;
            match choice.split {
                Some(n) => {
                    plan.script_name = Some((decoded[..n].to_vec(), decoded[n..].to_vec()));
                    (&decoded[..n], &decoded[n..])
                }
                None => (proxy_script, &decoded[..]),
            }
        }
        None => (proxy_script, &decoded[..]),
    };
    let vars = Vars {
        req,
        remote: &taken.conn.remote_addr,
        script_name,
        path_info,
    };
    let verdict = match &front.routes {
        Some(r) => r.apply(&vars),
        None => Verdict::default(),
    };
    plan.no_log = verdict.no_log;
    plan.headers = verdict.headers;
    plan.headers.extend(front.add_headers.iter().cloned());
    plan.del_headers = verdict.del_headers;
    plan.del_headers.extend(front.del_headers.iter().cloned());
    use crate::routing::Vars as _;
    let header = |n: &[u8]| vars.var(n).map(Cow::into_owned);
    let file = match &verdict.answer {
        Some(Answer::File(path)) => match front.statics.as_ref().and_then(|s| s.find_file(path)) {
            Some(f) => Some(f),
            None => {
                let resp = Answer::Respond {
                    status: 404,
                    headers: vec![("Content-Type".into(), "text/plain".into())],
                    body: b"Not Found".to_vec(),
                };
                return answer(shared, taken, &plan, &resp, (core, began));
            }
        },
        Some(a) => return answer(shared, taken, &plan, a, (core, began)),
        None => front
            .statics
            .as_ref()
            .and_then(|s| s.find(path_info, req.method())),
    };
    let (Some(found), Some(statics)) = (file, &front.statics) else {
        return buffer_body(
            shared,
            front,
            Taken {
                plan: Some(Box::new(plan)),
                ..taken
            },
        );
    };
    let (ims, range, if_range, accept) = (
        header(b"HTTP_IF_MODIFIED_SINCE"),
        header(b"HTTP_RANGE"),
        header(b"HTTP_IF_RANGE"),
        header(b"HTTP_ACCEPT_ENCODING"),
    );
    let uri = req.uri().to_vec();
    let path_info = path_info.to_vec();
    let reply = statics.respond(
        found,
        &Ask {
            head_only: req.is_head(),
            path_info: &path_info,
            uri: &uri,
            if_modified_since: ims.as_deref(),
            range: range.as_deref(),
            if_range: if_range.as_deref(),
            accept_encoding: accept.as_deref(),
            now: crate::log::unix_secs() as i64,
        },
    );
    let (keep, unread) = connection_after(shared, &taken);
    let mut head = Vec::with_capacity(256);
    status_line(&mut head, req.version, reply.status, reply.reason);
    for (n, v) in &reply.headers {
        let _ = write!(head, "{n}: {v}\r\n");
    }
    let keep = end_head(&mut head, &plan.headers, req, keep);
    let outcome = answered(
        reply.status,
        reply.body_len,
        &head,
        head.len() as u64 + reply.body.as_ref().map_or(0, |b| b.2),
        (keep, unread),
    );
    let outcome = crate::wsgi::Outcome {
        via_sendfile: reply.body.is_some(),
        ..outcome
    };
    finished(shared, &taken, &plan, &outcome, (core, began));
    let Taken {
        conn, in_flight, ..
    } = taken;
    let mut t = Transfer::new(conn, head, reply.body, keep, unread);
    match t.pump() {
        Progress::Done => Next::Answered(Some(Pending {
            conn: t.conn,
            served: Served {
                tail: Output::default(),
                keep,
                unread,
            },
            in_flight,
        })),
        Progress::Failed => Next::Answered(None),
        Progress::Blocked => {
            match &front.offload {
                // Bytes of a pipelined request wait in the buffer: the
                // poller would never see them, so finish here.
                Some(o) if t.conn.buf.is_empty() => o.submit(t),
                _ => {
                    let sent = t.finish_blocking(shared.cfg.socket_timeout);
                    give_back(t, sent, &shared.conns);
                }
            }
            // Given back only now: sent here, the response is in flight
            // until it is out (a stopping worker would exit under it);
            // offloaded, it is counted as offloading from `submit` on.
            drop(in_flight);
            Next::Answered(None)
        }
    }
}

/// `--post-buffering`: read a Content-Length body before the app (an
/// `Expect: 100-continue` client is told to send it first). A client that
/// stops sending or goes silent is dropped, with one log line.
fn buffer_body<'a>(shared: &'a Shared, front: &Front, mut taken: Taken<'a>) -> Next<'a> {
    let BodyKind::Length(len) = taken.request.body else {
        return Next::App(taken);
    };
    if front.post_buffering == 0 || len == 0 {
        return Next::App(taken);
    }
    let fd = taken.conn.fd();
    let timeout = shared.cfg.socket_timeout;
    if taken.request.expect_continue {
        if crate::conn::write_all_timeout(fd, crate::http::CONTINUE, timeout).is_err() {
            return Next::Answered(None);
        }
        taken.request.expect_continue = false;
    }
    let buffered = crate::post_buffering::buffer(
        fd,
        &mut taken.conn.buf,
        len,
        front.post_buffering,
        front.post_buffering_bufsize,
        timeout,
    );
    match buffered {
        Ok(crate::post_buffering::Buffered::Memory) => Next::App(taken),
        Ok(crate::post_buffering::Buffered::Disk(file)) => {
            if let Some(plan) = taken.plan.as_mut() {
                plan.body_file = Some((file, len));
            }
            Next::App(taken)
        }
        Err(e) => {
            crate::log::line(&format!(
                "[pid: {}|worker: {}] {} {} {}: request body not received ({e}); connection dropped",
                std::process::id(),
                shared.cfg.worker_id,
                crate::log::escape(taken.request.remote(&taken.conn.remote_addr)),
                crate::log::escape(taken.request.method()),
                crate::log::escape(taken.request.uri()),
            ));
            Next::Answered(None)
        }
    }
}

/// Whether the connection is kept after a response the front gives, and
/// what of the request the client may still send (static files and route
/// answers never read a body).
fn connection_after(shared: &Shared, taken: &Taken<'_>) -> (bool, Unread) {
    let keep = taken.request.keep_alive && !shared.stop.requested();
    match taken.request.body {
        BodyKind::None | BodyKind::Length(0) => (keep, Unread::Nothing),
        BodyKind::Length(n) => (
            false,
            Unread::Bytes(n.saturating_sub(taken.conn.buf.len() as u64)),
        ),
        BodyKind::Chunked => (false, Unread::Unknown),
    }
}

fn status_line(head: &mut Vec<u8>, version: Version, status: u16, reason: &str) {
    let _ = write!(head, "{} {status} {reason}\r\n", version.as_str());
}

/// The end of a head the front writes: the extra headers, Date, the
/// connection header and the blank line (neither of those two to a uwsgi
/// proxy, see `Request::to_proxy`). An extra `Connection: close` closes
/// the connection. Returns whether the connection is kept.
fn end_head(head: &mut Vec<u8>, extra: &[(String, String)], req: &Request, mut keep: bool) -> bool {
    for (n, v) in extra {
        if n.eq_ignore_ascii_case("connection") {
            keep &= !v.to_ascii_lowercase().contains("close");
            continue;
        }
        let _ = write!(head, "{n}: {v}\r\n");
    }
    if !req.to_proxy() && req.version == Version::Http11 {
        let _ = write!(head, "Date: {}\r\n", crate::wsgi::response::http_date());
    }
    crate::wsgi::response::push_connection(
        head,
        req.to_proxy(),
        keep,
        req.version == Version::Http10,
    );
    head.extend_from_slice(b"\r\n");
    keep
}

/// A route's answer (`return`, `redirect`, `break`, a missing `static:` file).
fn answer<'a>(
    shared: &'a Shared,
    taken: Taken<'a>,
    plan: &Plan,
    a: &Answer,
    (core, began): (usize, Began),
) -> Next<'a> {
    let req = &taken.request;
    let (status, headers, body) = match a {
        Answer::Respond {
            status,
            headers,
            body,
        } => (*status, headers.as_slice(), body.as_slice()),
        Answer::Close | Answer::File(_) => {
            let outcome = answered(0, 0, b"", 0, (false, Unread::Nothing));
            finished(shared, &taken, plan, &outcome, (core, began));
            return Next::Answered(None);
        }
    };
    let (keep, unread) = connection_after(shared, &taken);
    let mut head = Vec::with_capacity(256);
    status_line(
        &mut head,
        req.version,
        status,
        crate::http::reason_phrase(status),
    );
    for (n, v) in headers {
        let _ = write!(head, "{n}: {v}\r\n");
    }
    let _ = write!(head, "Content-Length: {}\r\n", body.len());
    let keep = end_head(&mut head, &plan.headers, req, keep);
    if !req.is_head() {
        head.extend_from_slice(body);
    }
    let head_len = head.len() - if req.is_head() { 0 } else { body.len() };
    let outcome = answered(
        status,
        body.len() as u64,
        &head[..head_len],
        head.len() as u64,
        (keep, unread),
    );
    finished(shared, &taken, plan, &outcome, (core, began));
    let Taken {
        conn, in_flight, ..
    } = taken;
    Next::Answered(Some(Pending {
        conn,
        served: Served {
            tail: Output::from_own(head),
            keep,
            unread,
        },
        in_flight,
    }))
}

/// Count and log a request the front answered itself (no app ran).
fn finished(
    shared: &Shared,
    taken: &Taken<'_>,
    plan: &Plan,
    outcome: &crate::wsgi::Outcome,
    (core, began): (usize, Began),
) {
    finish_request(
        shared,
        &taken.conn,
        &taken.request,
        outcome,
        (core, None),
        began,
        !plan.no_log,
    );
}

/// The outcome of a response the front wrote (`head` is its head, for the
/// access log), with the connection's fate (`keep`, `unread`).
fn answered(
    status: u16,
    body_bytes: u64,
    head: &[u8],
    wire_bytes: u64,
    (keep, unread): (bool, Unread),
) -> crate::wsgi::Outcome {
    crate::wsgi::Outcome {
        status,
        body_bytes,
        wire_bytes,
        keep_alive: keep,
        leftover: Vec::new(),
        raised: false,
        tail: Output::default(),
        unread,
        header_count: memchr::memmem::find_iter(head, b"\r\n")
            .count()
            .saturating_sub(2),
        head_bytes: head.len() as u64,
        chunks: 0,
        via_sendfile: false,
        write_failed: false,
    }
}
