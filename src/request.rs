//! One request head, whichever protocol brought it: an HTTP head or a
//! uwsgi packet becomes a [`Request`] that says everything the request
//! path needs to account, log, frame and answer it (method, URI, client,
//! protocol version, body, keep-alive). The environ is still built from
//! the original form (`source`), which keeps every header or var as sent.
//!
//! Pure: no I/O, no Python.

use crate::config::Protocol;
use crate::http::{self, BodyKind, Limits};
use crate::uwsgi_proto;

/// The HTTP version of the status line, the access log and the environ's
/// `SERVER_PROTOCOL`: one value, so they cannot disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// The request as its protocol parsed it.
#[derive(Debug)]
pub enum Source {
    Http(http::RequestHead),
    Uwsgi(uwsgi_proto::Packet),
}

#[derive(Debug)]
pub struct Request {
    pub source: Source,
    pub version: Version,
    pub body: BodyKind,
    /// The client may send another request on this connection.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
}

/// What a connection's buffer holds.
#[derive(Debug)]
pub enum Parse {
    /// Not a whole head yet.
    Incomplete,
    /// A request whose head took the first `consumed` bytes.
    Complete { request: Request, consumed: usize },
    /// Refused: answer `status` and close; `why` is for the log. The
    /// client may still be sending: `body_left` more bytes, or an unknown
    /// amount when None.
    Rejected {
        status: u16,
        why: String,
        body_left: Option<u64>,
    },
}

/// Parse the head at the start of `buf`, as `protocol` says.
pub fn parse(protocol: Protocol, buf: &[u8], limits: &Limits) -> Parse {
    match protocol {
        Protocol::Http => match http::parse_head(buf, limits) {
            Ok(http::Parsed::Incomplete) => Parse::Incomplete,
            Ok(http::Parsed::Complete { value, consumed }) => Parse::Complete {
                request: Request::from_http(value),
                consumed,
            },
            Err(e) => Parse::Rejected {
                status: e.status(),
                why: e.to_string(),
                body_left: None,
            },
        },
        Protocol::Uwsgi => match uwsgi_proto::parse_packet(buf, limits.max_head) {
            Ok(uwsgi_proto::Parsed::Incomplete) => Parse::Incomplete,
            Ok(uwsgi_proto::Parsed::Complete { value, consumed }) => {
                let declared = value
                    .get(b"CONTENT_LENGTH")
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
                match Request::from_uwsgi(value, limits.limit_post) {
                    Ok(request) => Parse::Complete { request, consumed },
                    Err((status, why)) => Parse::Rejected {
                        status,
                        why,
                        // The body is the declared length after the packet.
                        body_left: declared
                            .map(|n| n.saturating_sub((buf.len() - consumed) as u64)),
                    },
                }
            }
            Err(e) => Parse::Rejected {
                status: if matches!(e, uwsgi_proto::ProtoError::TooLarge { .. }) {
                    413
                } else {
                    400
                },
                why: e.to_string(),
                body_left: None,
            },
        },
    }
}

impl Request {
    pub fn from_http(head: http::RequestHead) -> Request {
        Request {
            version: if head.minor_version == 0 {
                Version::Http10
            } else {
                Version::Http11
            },
            body: head.body,
            keep_alive: head.keep_alive,
            expect_continue: head.expect_continue,
            source: Source::Http(head),
        }
    }

    /// A uwsgi packet (from a proxy such as nginx): one request per
    /// connection; the body is `CONTENT_LENGTH` bytes (400 if that is not
    /// a number, 413 above `limit_post` when set). Without
    /// `SERVER_PROTOCOL`, HTTP/1.0, as uWSGI answers.
    pub fn from_uwsgi(
        packet: uwsgi_proto::Packet,
        limit_post: u64,
    ) -> Result<Request, (u16, String)> {
        let length = match packet.get(b"CONTENT_LENGTH").filter(|v| !v.is_empty()) {
            None => 0,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| (400, "uwsgi CONTENT_LENGTH is not a number".to_string()))?,
        };
        if limit_post > 0 && length > limit_post {
            return Err((
                413,
                format!("uwsgi CONTENT_LENGTH {length} exceeds --limit-post {limit_post}"),
            ));
        }
        Ok(Request {
            version: match packet.get(b"SERVER_PROTOCOL") {
                None | Some(b"HTTP/1.0") => Version::Http10,
                Some(_) => Version::Http11,
            },
            body: BodyKind::Length(length),
            keep_alive: false,
            expect_continue: false,
            source: Source::Uwsgi(packet),
        })
    }

    pub fn method(&self) -> &[u8] {
        match &self.source {
            Source::Http(h) => h.method().as_bytes(),
            Source::Uwsgi(p) => p.get(b"REQUEST_METHOD").unwrap_or(b"GET"),
        }
    }

    /// The target as the client sent it, query string included.
    pub fn uri(&self) -> &[u8] {
        match &self.source {
            Source::Http(h) => h.target(),
            Source::Uwsgi(p) => p
                .get(b"REQUEST_URI")
                .or_else(|| p.get(b"PATH_INFO"))
                .unwrap_or(b"/"),
        }
    }

    /// The client's address for logs and the scoreboard: the peer of the
    /// connection, or behind a uwsgi proxy the address it passed on.
    pub fn remote<'a>(&'a self, peer: &'a str) -> &'a [u8] {
        match &self.source {
            Source::Http(_) => peer.as_bytes(),
            Source::Uwsgi(p) => p.get(b"REMOTE_ADDR").unwrap_or(b""),
        }
    }

    /// `Name: value` lines of the request's headers (HTTP only).
    pub fn header_lines(&self) -> Vec<Vec<u8>> {
        match &self.source {
            Source::Http(h) => h
                .headers()
                .map(|(k, v)| [k.as_bytes(), b": ", v].concat())
                .collect(),
            Source::Uwsgi(_) => Vec::new(),
        }
    }

    pub fn is_head(&self) -> bool {
        self.method() == b"HEAD"
    }

    /// A body follows the head.
    pub fn has_body(&self) -> bool {
        !matches!(self.body, BodyKind::None | BodyKind::Length(0))
    }

    /// The response goes back to a uwsgi proxy (nginx's `uwsgi_pass`, a
    /// uWSGI router), not to the client: the proxy dates the response and
    /// owns the connection headers of its own hop (the uwsgi connection
    /// carries this one request and ends with it), so the server adds
    /// neither `Date` nor `Connection`, as uWSGI does not. Each line it
    /// would add is one more the proxy parses and drops or copies.
    pub fn to_proxy(&self) -> bool {
        matches!(self.source, Source::Uwsgi(_))
    }

    /// The client can take a chunked response: an HTTP/1.1 client (behind
    /// a uwsgi proxy, the proxy frames the response itself).
    pub fn chunked_response_ok(&self) -> bool {
        matches!(self.source, Source::Http(_)) && self.version == Version::Http11
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uwsgi(vars: &[(&[u8], &[u8])]) -> Vec<u8> {
        uwsgi_proto::encode_vars(0, vars)
    }

    fn complete(p: Parse) -> (Request, usize) {
        match p {
            Parse::Complete { request, consumed } => (request, consumed),
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn http_head_becomes_a_request() {
        let buf = b"POST /a?b HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
        let (r, consumed) = complete(parse(Protocol::Http, buf, &Limits::default()));
        assert_eq!(consumed, buf.len() - 3);
        assert_eq!((r.method(), r.uri()), (&b"POST"[..], &b"/a?b"[..]));
        assert_eq!(r.version, Version::Http10);
        assert_eq!(r.remote("1.2.3.4"), b"1.2.3.4");
        assert!(r.has_body() && !r.keep_alive && !r.chunked_response_ok());
        assert_eq!(r.header_lines()[0], b"Host: x");
    }

    #[test]
    fn uwsgi_packet_becomes_a_request() {
        let buf = uwsgi(&[
            (b"REQUEST_METHOD", b"HEAD"),
            (b"REQUEST_URI", b"/u?q"),
            (b"REMOTE_ADDR", b"10.0.0.1"),
            (b"SERVER_PROTOCOL", b"HTTP/1.1"),
            (b"CONTENT_LENGTH", b"5"),
        ]);
        let (r, consumed) = complete(parse(Protocol::Uwsgi, &buf, &Limits::default()));
        assert_eq!(consumed, buf.len());
        assert_eq!((r.method(), r.uri()), (&b"HEAD"[..], &b"/u?q"[..]));
        assert_eq!(r.remote("127.0.0.1"), b"10.0.0.1", "the proxy's client");
        assert_eq!(r.version, Version::Http11);
        assert!(r.is_head() && r.has_body() && !r.keep_alive && !r.chunked_response_ok());
        assert!(matches!(r.body, BodyKind::Length(5)));
    }

    #[test]
    fn uwsgi_without_protocol_is_http10_and_defaults_fill_in() {
        let (r, _) = complete(parse(
            Protocol::Uwsgi,
            &uwsgi(&[(b"PATH_INFO", b"/p")]),
            &Limits::default(),
        ));
        assert_eq!(r.version, Version::Http10);
        assert_eq!(
            (r.method(), r.uri(), r.remote("x")),
            (&b"GET"[..], &b"/p"[..], &b""[..])
        );
        assert!(!r.has_body());
    }

    #[test]
    fn uwsgi_bad_or_too_long_body_is_rejected() {
        let bad = uwsgi(&[(b"CONTENT_LENGTH", b"five")]);
        assert!(matches!(
            parse(Protocol::Uwsgi, &bad, &Limits::default()),
            Parse::Rejected { status: 400, .. }
        ));
        let limits = Limits {
            limit_post: 10,
            ..Limits::default()
        };
        let mut big = uwsgi(&[(b"CONTENT_LENGTH", b"11")]);
        big.extend_from_slice(b"abc"); // part of the body came with the packet
        assert!(matches!(
            parse(Protocol::Uwsgi, &big, &limits),
            Parse::Rejected {
                status: 413,
                body_left: Some(8),
                ..
            }
        ));
        let at_limit = uwsgi(&[(b"CONTENT_LENGTH", b"10")]);
        assert!(matches!(
            parse(Protocol::Uwsgi, &at_limit, &limits),
            Parse::Complete { .. }
        ));
    }

    #[test]
    fn incomplete_and_malformed_heads() {
        let limits = Limits::default();
        assert!(matches!(
            parse(Protocol::Http, b"GET / HTTP/1.1\r\n", &limits),
            Parse::Incomplete
        ));
        assert!(matches!(
            parse(Protocol::Uwsgi, &[0, 10], &limits),
            Parse::Incomplete
        ));
        assert!(matches!(
            parse(Protocol::Http, b"GET / HTTP/1.1 extra\r\n\r\n", &limits),
            Parse::Rejected { status: 400, .. }
        ));
    }
}
