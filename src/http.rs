//! HTTP/1.1 wire format for the `--http-socket` front end.
//!
//! This module owns:
//! * turning the bytes of a request head into a [`RequestHead`] ([`parse_head`]),
//!   including every check and limit that decides whether the request may reach
//!   the application at all (the answer is an [`HttpError`] carrying the status);
//! * decoding a `Transfer-Encoding: chunked` body ([`ChunkedDecoder`]);
//! * small pure helpers for building the environ and responses
//!   ([`percent_decode_cow`], [`cgi_header_name`], [`reason_phrase`], [`error_response`]).
//!
//! It must not do I/O, touch sockets or Python, keep global state, or panic on
//! anything a peer can send: every function takes byte slices and returns values,
//! so the connection code decides about reading, timeouts and writing.
//!
//! Line endings: only CRLF ends a line. A bare LF (or a bare CR) anywhere in the
//! head, in chunk-size lines or in trailers is rejected with 400, because a
//! front proxy that splits lines differently is the classic request-smuggling
//! setup; every client we care about sends CRLF.

use crate::span::{Arena, Span};
use std::borrow::Cow;

/// Limits the caller enforces (from the config).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Whole request head incl. request line and any leading empty lines
    /// (uWSGI `--buffer-size`); exceeded -> 431.
    pub max_head: usize,
    /// Request-target length; exceeded -> 414.
    pub max_uri: usize,
    /// Number of header lines; exceeded -> 431.
    pub max_headers: usize,
    /// 0 = unlimited; a Content-Length above it -> 413 (chunked bodies are
    /// checked by [`ChunkedDecoder`], built with the same number).
    pub limit_post: u64,
    /// Keep header fields whose names contain `_` (`--http-underscores-in-headers`).
    /// Off by default, they are dropped: CGI naming maps `X_User` and
    /// `X-User` to the same `HTTP_X_USER`, so a client could add its value to
    /// (or, for an app that reads the first, replace) one a proxy set.
    pub underscores_in_headers: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 4096,
            max_uri: 8192,
            max_headers: 100,
            limit_post: 0,
            underscores_in_headers: false,
        }
    }
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Neither Content-Length nor Transfer-Encoding: no body.
    None,
    /// `Content-Length: n` (kept even for n == 0 so the caller can tell it was sent).
    Length(u64),
    /// `Transfer-Encoding: chunked`: feed the bytes after the head to a [`ChunkedDecoder`].
    Chunked,
}

/// A parsed and validated request head: one copy of its bytes and spans
/// into it (see `span`), read through the accessors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    bytes: Arena,
    method: Span,
    target: Span,
    path: Span,
    query: Span,
    /// 0 or 1 (HTTP/1.0 or HTTP/1.1).
    pub minor_version: u8,
    headers: Vec<(Span, Span)>,
    pub body: BodyKind,
    /// 1.1: true unless "Connection: close"; 1.0: only with "Connection: keep-alive".
    pub keep_alive: bool,
    /// "Expect: 100-continue" on HTTP/1.1.
    pub expect_continue: bool,
    host: Option<Span>,
}

impl RequestHead {
    /// As sent, e.g. "GET" (methods are case-sensitive, so no normalisation).
    pub fn method(&self) -> &str {
        self.bytes.text(self.method)
    }

    /// Raw request target, e.g. b"/a%20b?x=1".
    pub fn target(&self) -> &[u8] {
        self.bytes.get(self.target)
    }

    /// Raw path part (before '?'), not decoded; b"/p" for "http://host/p?q", b"*" for OPTIONS *.
    pub fn path(&self) -> &[u8] {
        self.bytes.get(self.path)
    }

    /// After '?', raw, without '?'; empty if none.
    pub fn query(&self) -> &[u8] {
        self.bytes.get(self.query)
    }

    /// Host header value, or the authority of an absolute-form target (which wins, RFC 9112 §3.2.2).
    pub fn host(&self) -> Option<&[u8]> {
        self.host.map(|s| self.bytes.get(s))
    }

    /// Names as sent (ASCII tokens), values with surrounding OWS trimmed, in order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        self.headers
            .iter()
            .map(|&(n, v)| (self.bytes.text(n), self.bytes.get(v)))
    }

    /// As [`RequestHead::headers`], names as bytes (not checked as UTF-8
    /// again: the environ reads every header of every request).
    pub fn raw_headers(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.headers
            .iter()
            .map(|&(n, v)| (self.bytes.get(n), self.bytes.get(v)))
    }

    /// Value of the first header called `name` (ASCII case-insensitive).
    #[cfg(test)]
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Outcome of trying to parse: a whole head is buffered, or more bytes are needed.
/// "Incomplete" is a normal value, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// `consumed` bytes of the buffer (leading empty lines included) made up the head;
    /// anything after them is body or the next pipelined request.
    Complete { value: T, consumed: usize },
    /// Within limits so far; call again when more bytes arrived.
    Incomplete,
}

/// Why a request is refused. The `&'static str` is a short detail for logs;
/// the response itself should only carry [`HttpError::status`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    #[error("400 Bad Request: {0}")]
    BadRequest(&'static str),
    #[error("413 Payload Too Large")]
    PayloadTooLarge,
    #[error("414 URI Too Long")]
    UriTooLong,
    #[error("431 Request Header Fields Too Large: {0}")]
    HeadersTooLarge(&'static str),
    #[error("501 Not Implemented: {0}")]
    NotImplemented(&'static str),
    #[error("505 HTTP Version Not Supported")]
    VersionNotSupported,
}

impl HttpError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::PayloadTooLarge => 413,
            HttpError::UriTooLong => 414,
            HttpError::HeadersTooLarge(_) => 431,
            HttpError::NotImplemented(_) => 501,
            HttpError::VersionNotSupported => 505,
        }
    }

    /// Short detail for logging.
    pub fn reason(&self) -> &'static str {
        match self {
            HttpError::BadRequest(r)
            | HttpError::HeadersTooLarge(r)
            | HttpError::NotImplemented(r) => r,
            HttpError::PayloadTooLarge => "body larger than limit-post",
            HttpError::UriTooLong => "request target too long",
            HttpError::VersionNotSupported => "HTTP version not supported",
        }
    }
}

// ---------------------------------------------------------------------------
// Byte classes. Tables rather than match chains: they are hit per byte.

const fn build_tchar() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
}

/// RFC 9110 `tchar`: what method names, header names and chunk-ext names are made of.
static TCHAR: [bool; 256] = build_tchar();

#[inline]
fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// RFC 9110 `token` (one or more tchars): a method or a header name.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Bytes allowed in a request target: visible ASCII, plus obs-text because some
/// clients send raw UTF-8 paths and refusing them helps nobody (it is still
/// neither a space nor a control, so it cannot split the request line).
#[inline]
fn is_target_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// Field-value bytes (HTAB, SP, VCHAR, obs-text): what trailers and quoted
/// strings may hold; every other control byte is refused.
#[inline]
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
}

#[inline]
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `<[u8]>::trim_ascii` only exists since Rust 1.80; the crate targets 1.75.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ows(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ows(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

// ---------------------------------------------------------------------------
// Request head

/// Header slots on the stack; enough for nearly every real request, so the
/// heap fallback (sized `max_headers`) only runs for unusual ones.
const STACK_HEADERS: usize = 64;

fn bad(reason: &'static str) -> HttpError {
    HttpError::BadRequest(reason)
}

/// The head is not complete: wait for more, unless what is buffered already
/// cannot become a head within `max_head`.
fn need_more(buf_len: usize, limits: &Limits) -> Result<Parsed<RequestHead>, HttpError> {
    if buf_len > limits.max_head {
        Err(HttpError::HeadersTooLarge("request head too large"))
    } else {
        Ok(Parsed::Incomplete)
    }
}

/// Path, query and authority as slices of the target, so the target is
/// validated once and each part copied without re-scanning.
struct TargetParts<'a> {
    path: &'a [u8],
    query: &'a [u8],
    authority: Option<&'a [u8]>,
}

/// Parse a request from the start of `buf`.
///
/// Cost is linear in at most `max(max_head, max_uri + 64)` bytes per call,
/// whatever the buffer holds; the caller re-calls it with the grown buffer
/// after each read until it gets `Complete` or an error.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Parsed<RequestHead>, HttpError> {
    // Leading empty lines (RFC 9112 §2.2): skipped, but they count toward
    // `consumed` and `max_head`, so a peer cannot make us buffer CRLFs forever.
    let mut pos = 0;
    loop {
        match buf.get(pos) {
            Some(b'\r') => match buf.get(pos + 1) {
                Some(b'\n') => pos += 2,
                Some(_) => return Err(bad("bare CR before request line")),
                None => return need_more(buf.len(), limits),
            },
            Some(b'\n') => return Err(bad("bare LF line ending")),
            Some(_) => break,
            None => return need_more(buf.len(), limits),
        }
        if pos > limits.max_head {
            return Err(HttpError::HeadersTooLarge("too many leading empty lines"));
        }
    }

    // Request line. Never search further than a line could legally be long.
    let rest = &buf[pos..];
    let line_limit = limits.max_uri.saturating_add(64);
    let scan_len = rest
        .len()
        .min(line_limit.max(limits.max_head).saturating_add(1));
    let Some(lf) = memchr::memchr(b'\n', &rest[..scan_len]) else {
        // Reject garbage (a TLS hello on a plain port, say) now instead of
        // waiting for a full buffer or a timeout.
        check_method_prefix(&rest[..scan_len])?;
        // A request line that alone fills the head buffer has a URI too
        // long for us: 414, not 431.
        if scan_len > line_limit || buf.len() > limits.max_head {
            return Err(HttpError::UriTooLong);
        }
        return need_more(buf.len(), limits);
    };
    let line = match rest[..lf].split_last() {
        Some((b'\r', line)) => line,
        _ => return Err(bad("bare LF line ending")),
    };
    let (method, target, minor_version) = parse_request_line(line, limits)?;
    let parts = split_target(method, target)?;
    let line_end = pos + lf + 1;
    if line_end > limits.max_head {
        return Err(HttpError::HeadersTooLarge(
            "request line larger than buffer-size",
        ));
    }

    // Header section, only within the max_head window so work stays bounded
    // however much pipelined data the caller has buffered behind the head.
    let window = &buf[line_end..buf.len().min(limits.max_head)];
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap = Vec::new();
    let first =
        httparse::parse_headers(window, &mut stack[..limits.max_headers.min(STACK_HEADERS)]);
    let parsed = match first {
        // httparse stops at the first header past the slots, so this is
        // cheap even for 10,000 header lines, and the retry is bounded too.
        Err(httparse::Error::TooManyHeaders) if limits.max_headers > STACK_HEADERS => {
            // A header line takes at least 3 bytes ("a:\n"; bare LF is only
            // refused after httparse), so more slots than that could never be
            // filled, and an absurd max_headers cannot become a huge allocation.
            let slots = limits.max_headers.min(window.len() / 3 + 1);
            heap.resize(slots, httparse::EMPTY_HEADER);
            httparse::parse_headers(window, &mut heap)
        }
        other => other,
    };
    let (hdr_len, raw) = match parsed {
        Ok(httparse::Status::Complete(done)) => done,
        Ok(httparse::Status::Partial) => return need_more(buf.len(), limits),
        Err(e) => return Err(map_httparse(e)),
    };
    let head_end = line_end + hdr_len;

    // httparse accepts bare LF; we do not (see module doc). One SIMD pass over
    // the header section, which is still hot in cache.
    let section = &buf[line_end..head_end];
    for i in memchr::memchr_iter(b'\n', section) {
        if i == 0 || section[i - 1] != b'\r' {
            return Err(bad("bare LF line ending"));
        }
    }

    // One copy of the head; every field below is a span of it.
    let src = &buf[..head_end];
    let mut bytes = Arena::copy_of(src);
    let mut headers = Vec::with_capacity(raw.len());
    let mut content_length: Option<u64> = None;
    let mut te = TransferCodings::default();
    let mut host_header: Option<&[u8]> = None;
    let mut content_type = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    for h in raw {
        let name = h.name;
        let value = h.value;
        // Dispatch on length first: most headers are none of these and are
        // rejected by one integer compare.
        match name.len() {
            4 if name.eq_ignore_ascii_case("host") => {
                if host_header.is_some() {
                    return Err(bad("more than one Host header"));
                }
                host_header = Some(value);
            }
            6 if name.eq_ignore_ascii_case("expect")
                && value.eq_ignore_ascii_case(b"100-continue") =>
            {
                expect_continue = true;
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                for token in value.split(|&b| b == b',') {
                    let token = trim_ows(token);
                    if token.eq_ignore_ascii_case(b"close") {
                        conn_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        conn_keep_alive = true;
                    }
                }
            }
            12 if name.eq_ignore_ascii_case("content-type") => {
                // One CONTENT_TYPE: two would be joined into a value no
                // parser reads the way the client meant (RFC 9110 §5.3).
                if content_type {
                    return Err(bad("more than one Content-Type header"));
                }
                content_type = true;
            }
            14 if name.eq_ignore_ascii_case("content-length") => {
                let n = parse_content_length(value).ok_or(bad("invalid Content-Length"))?;
                // Two framings that disagree are a smuggling attempt (RFC 9112 §6.3 p5).
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(bad("conflicting Content-Length headers"));
                }
                // The app sees the one value the body was framed with
                // ("5, 5" and repeated headers become "5"), as RFC 9112 §6.3
                // says to process such a message.
                if content_length.is_none() {
                    let value = bytes.span(src, n.to_string().as_bytes());
                    headers.push((bytes.span(src, name.as_bytes()), value));
                }
                content_length = Some(n);
                continue;
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => te.add(value),
            _ => {}
        }
        if !limits.underscores_in_headers && name.as_bytes().contains(&b'_') {
            // Dropped silently, like nginx (`underscores_in_headers off`) and
            // gunicorn: no log line a client could use to flood the log.
            continue;
        }
        headers.push((bytes.span(src, name.as_bytes()), bytes.span(src, value)));
    }

    let body = if te.present {
        // RFC 9112 §6.1: a 1.0 message with Transfer-Encoding has faulty framing.
        if minor_version == 0 {
            return Err(bad("Transfer-Encoding on HTTP/1.0"));
        }
        if content_length.is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        te.framing()?
    } else if let Some(n) = content_length {
        BodyKind::Length(n)
    } else {
        BodyKind::None
    };
    if minor_version == 1 && host_header.is_none() {
        return Err(bad("missing Host header"));
    }
    if let BodyKind::Length(n) = body {
        if limits.limit_post > 0 && n > limits.limit_post {
            return Err(HttpError::PayloadTooLarge);
        }
    }

    let keep_alive = if minor_version == 1 {
        !conn_close
    } else {
        conn_keep_alive && !conn_close
    };
    let host = parts.authority.or(host_header).map(|h| bytes.span(src, h));
    let method = bytes.span(src, method.as_bytes());
    let target = bytes.span(src, target);
    let path = bytes.span(src, parts.path);
    let query = bytes.span(src, parts.query);
    Ok(Parsed::Complete {
        value: RequestHead {
            bytes,
            method,
            target,
            path,
            query,
            minor_version,
            headers,
            body,
            keep_alive,
            expect_continue: expect_continue && minor_version == 1,
            host,
        },
        consumed: head_end,
    })
}

/// The transfer codings of a request, over all its Transfer-Encoding
/// fields in order (RFC 9112 §6.1: they form one list).
#[derive(Default)]
struct TransferCodings {
    present: bool,
    /// Whether the last coding seen is `chunked`.
    chunked_last: bool,
    chunked: usize,
    /// Codings other than `chunked` (gzip, identity, anything with parameters).
    others: usize,
}

impl TransferCodings {
    fn add(&mut self, value: &[u8]) {
        self.present = true;
        // An empty value, or "gzip, " ending in an empty element, leaves the
        // last coding as it was; a field with no coding at all is not chunked.
        let mut any = false;
        for coding in value.split(|&b| b == b',').map(trim_ows) {
            if coding.is_empty() {
                continue;
            }
            any = true;
            let is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if is_chunked {
                self.chunked += 1;
            } else {
                self.others += 1;
            }
            self.chunked_last = is_chunked;
        }
        if !any {
            self.chunked_last = false;
        }
    }

    /// RFC 9112 §6.3: when chunked is not the final coding the length cannot
    /// be known, which MUST be a 400 and a close; a final chunked behind a
    /// coding we do not decode is 501 (§6.1).
    fn framing(&self) -> Result<BodyKind, HttpError> {
        if !self.chunked_last {
            return Err(bad("chunked is not the final transfer coding"));
        }
        if self.chunked > 1 {
            // chunked applied twice is invalid (RFC 9112 §7.1).
            return Err(bad("chunked transfer coding repeated"));
        }
        if self.others > 0 {
            return Err(HttpError::NotImplemented(
                "transfer coding other than chunked",
            ));
        }
        Ok(BodyKind::Chunked)
    }
}

/// Early check on an incomplete request line: what comes before the first SP
/// must be a method token.
fn check_method_prefix(partial: &[u8]) -> Result<(), HttpError> {
    for (i, &b) in partial.iter().enumerate() {
        if b == b' ' {
            return if i == 0 {
                Err(bad("malformed request line"))
            } else {
                Ok(())
            };
        }
        if !is_tchar(b) {
            return Err(bad("invalid method"));
        }
    }
    Ok(())
}

/// `method SP request-target SP HTTP-version`, CRLF already stripped.
fn parse_request_line<'a>(
    line: &'a [u8],
    limits: &Limits,
) -> Result<(&'a str, &'a [u8], u8), HttpError> {
    let sp1 = memchr::memchr(b' ', line).ok_or(bad("malformed request line"))?;
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad("invalid method"));
    }
    // tchar is ASCII, so this cannot fail; no unwrap all the same.
    let method = std::str::from_utf8(method).map_err(|_| bad("invalid method"))?;
    let rest = &line[sp1 + 1..];
    // No second SP: an HTTP/0.9 simple request ("GET /"), which we do not speak.
    let sp2 = memchr::memchr(b' ', rest).ok_or(bad("missing HTTP version"))?;
    let target = &rest[..sp2];
    let minor = parse_version(&rest[sp2 + 1..])?;
    if target.is_empty() {
        return Err(bad("empty request target"));
    }
    if target.len() > limits.max_uri {
        return Err(HttpError::UriTooLong);
    }
    if !target.iter().all(|&b| is_target_byte(b)) {
        return Err(bad("invalid byte in request target"));
    }
    Ok((method, target, minor))
}

/// "HTTP/" DIGIT "." DIGIT; well-formed but not 1.0/1.1 -> 505, anything else -> 400.
fn parse_version(v: &[u8]) -> Result<u8, HttpError> {
    match *v {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major, minor) {
                (b'1', b'0') => Ok(0),
                (b'1', b'1') => Ok(1),
                _ => Err(HttpError::VersionNotSupported),
            }
        }
        _ => Err(bad("malformed HTTP version")),
    }
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    match s.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => s.get(prefix.len()..),
        _ => None,
    }
}

fn split_path_query(s: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'?', s) {
        Some(q) => (&s[..q], &s[q + 1..]),
        None => (s, &[]),
    }
}

/// RFC 9112 §3.2: which of the four target forms this is, and its parts.
fn split_target<'a>(method: &str, target: &'a [u8]) -> Result<TargetParts<'a>, HttpError> {
    // We are not a proxy; CONNECT (the only user of authority-form) is refused
    // as unimplemented rather than as a malformed request.
    if method == "CONNECT" {
        return Err(HttpError::NotImplemented("CONNECT"));
    }
    if target.first() == Some(&b'/') {
        let (path, query) = split_path_query(target);
        return Ok(TargetParts {
            path,
            query,
            authority: None,
        });
    }
    if target == b"*" {
        if method == "OPTIONS" {
            return Ok(TargetParts {
                path: b"*",
                query: &[],
                authority: None,
            });
        }
        return Err(bad("asterisk-form target without OPTIONS"));
    }
    let after = strip_prefix_ci(target, b"http://")
        .or_else(|| strip_prefix_ci(target, b"https://"))
        .ok_or(bad("invalid request target"))?;
    let auth_end = after
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(after.len());
    let authority = &after[..auth_end];
    if authority.is_empty() {
        return Err(bad("empty authority in absolute-form target"));
    }
    // RFC 9110 §4.2.4: userinfo in an http(s) URI is to be treated as an error.
    if memchr::memchr(b'@', authority).is_some() {
        return Err(bad("userinfo in request target"));
    }
    let (path, query) = split_path_query(&after[auth_end..]);
    Ok(TargetParts {
        path: if path.is_empty() { b"/" } else { path },
        query,
        authority: Some(authority),
    })
}

/// 1*DIGIT, or a comma list of identical such values (RFC 9110 §8.6 lets a
/// recipient accept "42, 42"). No sign, no inner spaces, no overflow.
fn parse_content_length(v: &[u8]) -> Option<u64> {
    let mut result = None;
    for part in v.split(|&b| b == b',') {
        let part = trim_ows(part);
        if part.is_empty() {
            return None;
        }
        let mut n: u64 = 0;
        for &b in part {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        match result {
            Some(prev) if prev != n => return None,
            _ => result = Some(n),
        }
    }
    result
}

fn map_httparse(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::HeadersTooLarge("too many headers"),
        // Also what a line starting with SP/HTAB (obs-fold) or "Name : v" yields.
        httparse::Error::HeaderName => bad("invalid header name or obsolete line folding"),
        httparse::Error::HeaderValue => bad("invalid byte in header value"),
        httparse::Error::NewLine => bad("bad line ending in header section"),
        _ => bad("malformed header section"),
    }
}

// ---------------------------------------------------------------------------
// Chunked body (RFC 9112 §7.1)

/// Longest chunk-size line extension part we accept; real clients send none.
const MAX_CHUNK_EXT: usize = 4096;
/// Whole trailer section (all trailer lines plus the final CRLF).
const MAX_TRAILERS: usize = 8192;
/// 16 hex digits fill a u64; more (even leading zeros) is refused.
const MAX_SIZE_DIGITS: u8 = 16;

/// Where the decoder is inside the chunked grammar. The state is all it keeps
/// between calls, which is what makes any split point work and memory constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading chunk-size hex digits.
    Size,
    /// BWS after the size or a value: only ';' may follow.
    ExtBws,
    /// After ';': BWS, then an extension name.
    ExtNameStart,
    ExtName,
    /// BWS after a name: '=' or ';' must follow.
    ExtAfterName,
    /// After '=': BWS, then a token or a quoted string.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    ExtAfterQuoted,
    /// CR of the size line seen, LF expected.
    SizeLf,
    /// Copying payload; `remaining` bytes left in this chunk.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line or of the final CRLF.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
}

/// Incremental decoder for a chunked request body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// Size being read, then what is left of the current chunk.
    remaining: u64,
    digits: u8,
    /// Bytes of extensions on the current size line.
    ext_len: usize,
    trailer_len: usize,
    total: u64,
    limit: u64,
    /// Errors are sticky: a broken stream stays broken.
    failed: Option<HttpError>,
}

impl ChunkedDecoder {
    /// `limit`: max total decoded body size (0 = unlimited); exceeding -> 413.
    pub fn new(limit: u64) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            remaining: 0,
            digits: 0,
            ext_len: 0,
            trailer_len: 0,
            total: 0,
            limit,
            failed: None,
        }
    }

    /// True once the last-chunk, trailers and final CRLF were consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Payload bytes decoded so far (what CONTENT_LENGTH would be at the end).
    pub fn decoded_len(&self) -> u64 {
        self.total
    }

    /// Decode from `input`, appending payload bytes to `out`. Returns how many
    /// input bytes were consumed: all of them unless the body ended inside
    /// `input`, in which case the bytes after it (a pipelined request) are left.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.run(input, out) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn run(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        use ChunkState as S;
        let mut i = 0;
        while i < input.len() {
            if self.state == S::Data {
                // Bulk copy: the one state where throughput matters.
                let avail = input.len() - i;
                let take = usize::try_from(self.remaining).map_or(avail, |r| r.min(avail));
                out.extend_from_slice(&input[i..i + take]);
                i += take;
                self.remaining -= take as u64;
                // Saturating only to rule out a panic path: it grows with real payload.
                self.total = self.total.saturating_add(take as u64);
                if self.remaining == 0 {
                    self.state = S::DataCr;
                }
                continue;
            }
            if self.state == S::Done {
                break;
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                S::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits == MAX_SIZE_DIGITS {
                            return Err(bad("chunk size has too many digits"));
                        }
                        self.digits += 1;
                        let d = match b {
                            b'0'..=b'9' => b - b'0',
                            b'a'..=b'f' => b - b'a' + 10,
                            _ => b - b'A' + 10,
                        };
                        self.remaining = self
                            .remaining
                            .checked_mul(16)
                            .and_then(|v| v.checked_add(u64::from(d)))
                            .ok_or(bad("chunk size overflows"))?;
                        // Checked on the declared size, so an oversized body is
                        // refused before its payload is even read.
                        if self.limit > 0
                            && self
                                .total
                                .checked_add(self.remaining)
                                .map_or(true, |t| t > self.limit)
                        {
                            return Err(HttpError::PayloadTooLarge);
                        }
                        S::Size
                    }
                    _ if self.digits == 0 => return Err(bad("missing chunk size")),
                    b'\r' => S::SizeLf,
                    b';' => S::ExtNameStart,
                    b' ' | b'\t' => S::ExtBws,
                    _ => return Err(bad("invalid chunk size line")),
                },
                S::SizeLf => {
                    if b != b'\n' {
                        return Err(bad("bare CR in chunk size line"));
                    }
                    self.digits = 0;
                    self.ext_len = 0;
                    if self.remaining == 0 {
                        S::TrailerStart
                    } else {
                        S::Data
                    }
                }
                S::Data => S::Data, // handled above; kept for exhaustiveness
                S::DataCr => {
                    if b != b'\r' {
                        return Err(bad("missing CRLF after chunk data"));
                    }
                    S::DataLf
                }
                S::DataLf => {
                    if b != b'\n' {
                        return Err(bad("missing CRLF after chunk data"));
                    }
                    S::Size
                }
                S::TrailerStart | S::TrailerName | S::TrailerValue | S::TrailerLf | S::FinalLf => {
                    self.trailer_len += 1;
                    if self.trailer_len > MAX_TRAILERS {
                        return Err(HttpError::HeadersTooLarge("trailer section too large"));
                    }
                    self.trailer_step(b)?
                }
                S::Done => S::Done,
                ext => {
                    self.ext_len += 1;
                    if self.ext_len > MAX_CHUNK_EXT {
                        return Err(bad("chunk extension too long"));
                    }
                    ext_step(ext, b)?
                }
            };
        }
        Ok(i)
    }

    /// Trailers are parsed only to find their end; their values are dropped
    /// (WSGI has nowhere to put them). A leading SP/HTAB is obs-fold: refused.
    fn trailer_step(&self, b: u8) -> Result<ChunkState, HttpError> {
        use ChunkState as S;
        Ok(match (self.state, b) {
            (S::TrailerStart, b'\r') => S::FinalLf,
            (S::TrailerStart, b) if is_tchar(b) => S::TrailerName,
            (S::TrailerName, b) if is_tchar(b) => S::TrailerName,
            (S::TrailerName, b':') => S::TrailerValue,
            (S::TrailerValue, b'\r') => S::TrailerLf,
            (S::TrailerValue, b) if is_field_byte(b) => S::TrailerValue,
            (S::TrailerLf, b'\n') => S::TrailerStart,
            (S::FinalLf, b'\n') => S::Done,
            _ => return Err(bad("invalid trailer section")),
        })
    }
}

/// chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] )
/// Valid extensions are skipped; anything else, notably control bytes, is 400.
fn ext_step(state: ChunkState, b: u8) -> Result<ChunkState, HttpError> {
    use ChunkState as S;
    Ok(match (state, b) {
        (S::ExtBws, b' ' | b'\t') => S::ExtBws,
        (S::ExtBws, b';') => S::ExtNameStart,
        (S::ExtNameStart, b' ' | b'\t') => S::ExtNameStart,
        (S::ExtNameStart, b) if is_tchar(b) => S::ExtName,
        (S::ExtName, b) if is_tchar(b) => S::ExtName,
        (S::ExtName | S::ExtAfterName, b' ' | b'\t') => S::ExtAfterName,
        (S::ExtName | S::ExtAfterName, b'=') => S::ExtValueStart,
        (S::ExtName | S::ExtAfterName, b';') => S::ExtNameStart,
        (S::ExtName, b'\r') => S::SizeLf,
        (S::ExtValueStart, b' ' | b'\t') => S::ExtValueStart,
        (S::ExtValueStart, b'"') => S::ExtQuoted,
        (S::ExtValueStart, b) if is_tchar(b) => S::ExtToken,
        (S::ExtToken, b) if is_tchar(b) => S::ExtToken,
        (S::ExtToken | S::ExtAfterQuoted, b' ' | b'\t') => S::ExtBws,
        (S::ExtToken | S::ExtAfterQuoted, b';') => S::ExtNameStart,
        (S::ExtToken | S::ExtAfterQuoted, b'\r') => S::SizeLf,
        (S::ExtQuoted, b'"') => S::ExtAfterQuoted,
        (S::ExtQuoted, b'\\') => S::ExtQuotedEscape,
        (S::ExtQuoted | S::ExtQuotedEscape, b) if is_field_byte(b) => S::ExtQuoted,
        _ => return Err(bad("invalid chunk extension")),
    })
}

// ---------------------------------------------------------------------------
// Helpers

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode a path (%XX -> byte; malformed escapes are kept literally).
/// Used for PATH_INFO. Borrows when there is nothing to decode.
pub fn percent_decode_cow(path: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = memchr::memchr(b'%', path) else {
        return Cow::Borrowed(path);
    };
    let mut out = Vec::with_capacity(path.len());
    out.extend_from_slice(&path[..first]);
    let mut i = first;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                path.get(i + 1).copied().and_then(hex_val),
                path.get(i + 2).copied().and_then(hex_val),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

/// Percent-decode a path (%XX -> byte; malformed escapes are kept literally).
/// The request path uses [`percent_decode_cow`], which avoids the copy.
#[cfg(test)]
pub fn percent_decode(path: &[u8]) -> Vec<u8> {
    percent_decode_cow(path).into_owned()
}

/// CGI name of a header: "Content-Type" -> "HTTP_CONTENT_TYPE" (uppercase,
/// '-' -> '_', "HTTP_" prefix). Note CGI wants CONTENT_TYPE/CONTENT_LENGTH
/// without the prefix; that choice is the caller's.
pub fn cgi_header_name(name: &str) -> String {
    let mut s = String::with_capacity(5 + name.len());
    s.push_str("HTTP_");
    s.extend(name.chars().map(|c| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    s
}

/// The reason phrase for common status codes ("OK", "Bad Request", ...). Unknown -> "Unknown".
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The interim response a client that sent `Expect: 100-continue` waits
/// for before it sends its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A complete error response, closing the connection (after a framing error we
/// cannot know where the next request would start):
/// "HTTP/1.1 <status> <reason>\r\nContent-Type: text/plain\r\nContent-Length: N\r\nConnection: close\r\n\r\n<reason>\n"
pub fn error_response(status: u16) -> Vec<u8> {
    let reason = reason_phrase(status);
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits::default()
    }

    fn parse_ok_with(req: &[u8], limits: &Limits) -> (RequestHead, usize) {
        match parse_head(req, limits) {
            Ok(Parsed::Complete { value, consumed }) => (value, consumed),
            other => panic!(
                "expected Complete for {:?}, got {other:?}",
                String::from_utf8_lossy(req)
            ),
        }
    }

    fn parse_ok(req: &[u8]) -> (RequestHead, usize) {
        parse_ok_with(req, &lim())
    }

    fn status_with(req: &[u8], limits: &Limits) -> u16 {
        match parse_head(req, limits) {
            Err(e) => e.status(),
            other => panic!(
                "expected error for {:?}, got {other:?}",
                String::from_utf8_lossy(req)
            ),
        }
    }

    fn status(req: &[u8]) -> u16 {
        status_with(req, &lim())
    }

    /// A request line plus `Host: h`, plus extra header lines, plus the blank line.
    fn req(line: &str, extra: &[&str]) -> Vec<u8> {
        let mut s = format!("{line}\r\nHost: h\r\n");
        for h in extra {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    // ----- parse_head: basics

    #[test]
    fn simple_get() {
        let r = b"GET /a%20b?x=1&y HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  t/1 \t\r\n\r\n";
        let (h, n) = parse_ok(r);
        assert_eq!(n, r.len());
        assert_eq!(h.method(), "GET");
        assert_eq!(h.target(), b"/a%20b?x=1&y");
        assert_eq!(h.path(), b"/a%20b");
        assert_eq!(h.query(), b"x=1&y");
        assert_eq!(h.minor_version, 1);
        assert_eq!(
            h.headers()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect::<Vec<_>>(),
            vec![
                ("Host".to_string(), b"example.com".to_vec()),
                ("User-Agent".to_string(), b"t/1".to_vec()),
            ]
        );
        assert_eq!(h.body, BodyKind::None);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert_eq!(h.host(), Some(&b"example.com"[..]));
        assert_eq!(h.header("user-agent"), Some(&b"t/1"[..]));
        assert_eq!(h.header("x-missing"), None);
    }

    #[test]
    fn empty_header_value_and_query_without_value() {
        let (h, _) = parse_ok(&req("GET /p? HTTP/1.1", &["X-Empty:", "X-Sp:   "]));
        assert_eq!(h.path(), b"/p");
        assert_eq!(h.query(), b"");
        assert_eq!(h.header("x-empty"), Some(&b""[..]));
        assert_eq!(h.header("x-sp"), Some(&b""[..]));
    }

    #[test]
    fn consumed_stops_at_head_end_with_pipelined_bytes() {
        let mut r = req("POST /u HTTP/1.1", &["Content-Length: 5"]);
        let head_len = r.len();
        r.extend_from_slice(b"helloGET / HTTP/1.1\r\n");
        let (h, n) = parse_ok(&r);
        assert_eq!(n, head_len);
        assert_eq!(h.body, BodyKind::Length(5));
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        let mut r = b"\r\n\r\n".to_vec();
        r.extend_from_slice(&req("GET / HTTP/1.1", &[]));
        let (h, n) = parse_ok(&r);
        assert_eq!(n, r.len());
        assert_eq!(h.path(), b"/");
        assert_eq!(parse_head(b"\r\n", &lim()), Ok(Parsed::Incomplete));
        assert_eq!(parse_head(b"\r\n\r", &lim()), Ok(Parsed::Incomplete));
        assert_eq!(parse_head(b"", &lim()), Ok(Parsed::Incomplete));
        // Endless CRLFs cannot keep us buffering.
        assert_eq!(status(&b"\r\n".repeat(3000)), 431);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let r = req(
            "POST /x?q HTTP/1.1",
            &["Content-Length: 3", "Connection: close"],
        );
        for cut in 0..r.len() {
            assert_eq!(
                parse_head(&r[..cut], &lim()),
                Ok(Parsed::Incomplete),
                "cut at {cut}"
            );
        }
        parse_ok(&r);
    }

    #[test]
    fn bare_lf_is_rejected_everywhere() {
        assert_eq!(status(b"GET / HTTP/1.1\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\n\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\n"), 400);
        assert_eq!(status(b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"\rGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), 400);
    }

    // ----- limits

    #[test]
    fn head_size_limit() {
        let small = Limits {
            max_head: 100,
            ..lim()
        };
        // Incomplete but already over the limit.
        let mut r = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        r.resize(101, b'a');
        assert_eq!(status_with(&r, &small), 431);
        r.truncate(100);
        assert_eq!(parse_head(&r, &small), Ok(Parsed::Incomplete));
        // Complete, exactly at the limit, then one byte over.
        let base = req("GET / HTTP/1.1", &["X: "]);
        let pad = 100 - base.len();
        let exact = req("GET / HTTP/1.1", &[&format!("X: {}", "a".repeat(pad))]);
        assert_eq!(exact.len(), 100);
        parse_ok_with(&exact, &small);
        let over = req("GET / HTTP/1.1", &[&format!("X: {}", "a".repeat(pad + 1))]);
        assert_eq!(status_with(&over, &small), 431);
        // Leading CRLFs count toward the head.
        let mut lead = b"\r\n".to_vec();
        lead.extend_from_slice(&exact);
        assert_eq!(status_with(&lead, &small), 431);
        // A complete request line alone larger than the head limit.
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(200));
        assert_eq!(status_with(long_line.as_bytes(), &small), 431);
    }

    #[test]
    fn big_pipelined_buffer_does_not_trip_limits() {
        let mut r = req("GET / HTTP/1.1", &[]);
        let n = r.len();
        r.extend(std::iter::repeat(b'z').take(100_000));
        assert_eq!(parse_ok(&r).1, n);
    }

    #[test]
    fn uri_limits() {
        let l = Limits {
            max_head: 100_000,
            max_uri: 100,
            ..lim()
        };
        let ok = format!("GET /{} HTTP/1.1", "a".repeat(99));
        parse_ok_with(&req(&ok, &[]), &l);
        let long = format!("GET /{} HTTP/1.1", "a".repeat(100));
        assert_eq!(status_with(&req(&long, &[]), &l), 414);
        // Incomplete request line: waits up to max_uri + 64, then 414.
        let partial = format!("GET /{}", "a".repeat(150));
        assert_eq!(parse_head(partial.as_bytes(), &l), Ok(Parsed::Incomplete));
        let partial = format!("GET /{}", "a".repeat(170));
        assert_eq!(status_with(partial.as_bytes(), &l), 414);
        // With the defaults (max_uri > max_head) an endless request line
        // fills the head buffer: the URI is what is too long, so 414.
        let endless = format!("GET /{}", "a".repeat(5000));
        assert_eq!(status(endless.as_bytes()), 414);
    }

    fn many_headers(n: usize) -> Vec<u8> {
        let extra: Vec<String> = (0..n).map(|i| format!("X-{i}: v")).collect();
        let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
        req("GET / HTTP/1.1", &refs)
    }

    #[test]
    fn header_count_limit() {
        let big = Limits {
            max_head: 1 << 20,
            ..lim()
        };
        // 100 total (Host + 99) is fine, 101 is not; exercises the heap fallback.
        let (h, _) = parse_ok_with(&many_headers(99), &big);
        assert_eq!(h.headers().len(), 100);
        assert_eq!(status_with(&many_headers(100), &big), 431);
        // Below the stack size.
        let few = Limits {
            max_headers: 3,
            ..big.clone()
        };
        parse_ok_with(&many_headers(2), &few);
        assert_eq!(status_with(&many_headers(3), &few), 431);
        let none = Limits {
            max_headers: 0,
            ..big.clone()
        };
        parse_ok_with(b"GET / HTTP/1.0\r\n\r\n", &none);
        assert_eq!(status_with(&many_headers(0), &none), 431);
        // An absurd setting must not become an absurd allocation.
        let unbounded = Limits {
            max_headers: usize::MAX,
            ..big.clone()
        };
        assert_eq!(
            parse_ok_with(&many_headers(500), &unbounded)
                .0
                .headers()
                .len(),
            501
        );
        // Too many headers is known before the head is complete.
        let mut partial = many_headers(200);
        partial.truncate(partial.len() - 2);
        assert_eq!(status_with(&partial, &big), 431);
    }

    #[test]
    fn ten_thousand_headers_fail_fast() {
        let huge = Limits {
            max_head: 1 << 24,
            ..lim()
        };
        let r = many_headers(10_000);
        let t = std::time::Instant::now();
        for _ in 0..100 {
            assert_eq!(status_with(&r, &huge), 431);
            assert_eq!(status(&r), 431);
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn huge_buffers_cost_only_the_limits() {
        // No LF at all, or a head that never ends: the scan stays within
        // max(max_head, max_uri + 64) bytes whatever the buffer size.
        let no_lf = vec![b'A'; 16 << 20];
        let mut no_end = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        no_end.resize(16 << 20, b'v');
        let t = std::time::Instant::now();
        for _ in 0..100 {
            assert_eq!(status(&no_lf), 414);
            assert_eq!(status(&no_end), 431);
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
    }

    // ----- request line

    #[test]
    fn malformed_request_lines() {
        for line in [
            "GET",
            "GET /",
            " GET / HTTP/1.1",
            "GET  / HTTP/1.1",
            "GET /  HTTP/1.1",
            "GET / HTTP/1.1 ",
            "GET / http/1.1",
            "GET / HTTP/1.10",
            "GET / HTTP/11",
            "GET / HTTP/1.x",
            "GET / FOO/1.1",
            "GET /a\tb HTTP/1.1",
            "GET /a\x7fb HTTP/1.1",
            "GET /a\x00b HTTP/1.1",
        ] {
            assert_eq!(status(&req(line, &[])), 400, "{line:?}");
        }
        // HTTP/0.9 simple request.
        assert_eq!(status(b"GET /\r\n"), 400);
        assert_eq!(status(b"GET /\r\n\r\n"), 400);
    }

    #[test]
    fn bad_method_tokens() {
        for m in ["G(T", "GE\"T", "G,T", "G/T", "G\x01T", "G\u{e9}T"] {
            assert_eq!(status(&req(&format!("{m} / HTTP/1.1"), &[])), 400, "{m:?}");
        }
        // Any token is a method; unusual ones are the app's business.
        let (h, _) = parse_ok(&req("M-SEARCH! / HTTP/1.1", &[]));
        assert_eq!(h.method(), "M-SEARCH!");
    }

    #[test]
    fn garbage_is_rejected_before_the_line_ends() {
        assert_eq!(status(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), 400);
        assert_eq!(status(b"G{T /"), 400);
        assert_eq!(parse_head(b"GET /xyz", &lim()), Ok(Parsed::Incomplete));
    }

    #[test]
    fn versions() {
        assert_eq!(parse_ok(&req("GET / HTTP/1.0", &[])).0.minor_version, 0);
        assert_eq!(parse_ok(&req("GET / HTTP/1.1", &[])).0.minor_version, 1);
        for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0", "HTTP/9.9"] {
            let e = parse_head(&req(&format!("GET / {v}"), &[]), &lim()).unwrap_err();
            assert_eq!(e, HttpError::VersionNotSupported);
            assert_eq!(e.status(), 505);
        }
    }

    // ----- headers

    #[test]
    fn bad_header_names() {
        for h in [
            "Bad Name: x",
            "Bad(: x",
            "Host : x",
            ": x",
            "X\x01: y",
            "NoColon",
        ] {
            assert_eq!(status(&req("GET / HTTP/1.1", &[h])), 400, "{h:?}");
        }
    }

    #[test]
    fn control_bytes_in_values() {
        for v in ["a\x00b", "a\x01b", "a\x7fb", "a\x1bb", "a\rb"] {
            let h = format!("X: {v}");
            assert_eq!(status(&req("GET / HTTP/1.1", &[&h])), 400, "{v:?}");
        }
        // HTAB and obs-text are fine.
        let mut r = b"GET / HTTP/1.1\r\nHost: h\r\nX: a\tb\xff\r\n\r\n".to_vec();
        assert_eq!(parse_ok(&r).0.header("x"), Some(&b"a\tb\xff"[..]));
        r[30] = 0;
        assert_eq!(status(&r), 400);
    }

    #[test]
    fn obsolete_line_folding() {
        assert_eq!(status(&req("GET / HTTP/1.1", &["X: a", " b"])), 400);
        assert_eq!(status(&req("GET / HTTP/1.1", &["X: a", "\tb"])), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"), 400);
    }

    #[test]
    fn content_length_syntax() {
        for v in [
            "+5",
            "-5",
            "5 5",
            "",
            " ",
            "0x5",
            "5a",
            "1e3",
            "99999999999999999999",
            "18446744073709551616",
            "5,",
            ",5",
            "5,,5",
        ] {
            let h = format!("Content-Length: {v}");
            assert_eq!(status(&req("POST / HTTP/1.1", &[&h])), 400, "{v:?}");
        }
        for (v, n) in [
            ("0", 0),
            ("007", 7),
            ("  42  ", 42),
            ("18446744073709551615", u64::MAX),
            ("5, 5", 5),
            ("5,5", 5),
        ] {
            let h = format!("Content-Length: {v}");
            assert_eq!(
                parse_ok(&req("POST / HTTP/1.1", &[&h])).0.body,
                BodyKind::Length(n),
                "{v:?}"
            );
        }
    }

    #[test]
    fn content_length_duplicates() {
        assert_eq!(
            status(&req(
                "POST / HTTP/1.1",
                &["Content-Length: 5", "Content-Length: 6"]
            )),
            400
        );
        assert_eq!(
            status(&req("POST / HTTP/1.1", &["Content-Length: 5, 6"])),
            400
        );
        assert_eq!(
            status(&req(
                "POST / HTTP/1.1",
                &["Content-Length: 5", "content-length: 5, 6"]
            )),
            400
        );
        let (h, _) = parse_ok(&req(
            "POST / HTTP/1.1",
            &["Content-Length: 5", "content-length: 5"],
        ));
        assert_eq!(h.body, BodyKind::Length(5));
        // The app sees the value the body was framed with, once.
        let lengths = |h: &RequestHead| -> Vec<(String, Vec<u8>)> {
            h.headers()
                .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect()
        };
        assert_eq!(
            lengths(&h),
            vec![("Content-Length".to_string(), b"5".to_vec())]
        );
        for v in ["5, 5", "5,5", " 005 ", "5 ,\t5"] {
            let line = format!("Content-Length: {v}");
            let (h, _) = parse_ok(&req("POST / HTTP/1.1", &[&line]));
            assert_eq!(h.body, BodyKind::Length(5), "{v:?}");
            assert_eq!(
                lengths(&h),
                vec![("Content-Length".to_string(), b"5".to_vec())],
                "{v:?}"
            );
        }
    }

    #[test]
    fn content_type_only_once() {
        let (h, _) = parse_ok(&req("POST / HTTP/1.1", &["Content-Type: text/plain"]));
        assert_eq!(h.header("content-type"), Some(&b"text/plain"[..]));
        assert_eq!(
            status(&req(
                "POST / HTTP/1.1",
                &["Content-Type: text/plain", "content-type: application/json"]
            )),
            400
        );
        assert_eq!(
            status(&req(
                "POST / HTTP/1.1",
                &["Content-Type: text/plain", "Content-Type: text/plain"]
            )),
            400
        );
    }

    #[test]
    fn underscore_names_dropped_unless_kept() {
        let extra = [
            "X_Remote_User: admin",
            "X-Remote-User: alice",
            "Transfer_Encoding: chunked",
            "Content_Length: 7",
            "_: x",
        ];
        let (h, n) = parse_ok(&req("GET / HTTP/1.1", &extra));
        assert_eq!(n, req("GET / HTTP/1.1", &extra).len());
        let names: Vec<&str> = h.headers().map(|(n, _)| n).collect();
        assert_eq!(names, ["Host", "X-Remote-User"]);
        // Not framing headers either way: no body.
        assert_eq!(h.body, BodyKind::None);
        let keep = Limits {
            underscores_in_headers: true,
            ..lim()
        };
        let (h, _) = parse_ok_with(&req("GET / HTTP/1.1", &extra), &keep);
        assert_eq!(h.headers().len(), 6);
        assert_eq!(h.header("x_remote_user"), Some(&b"admin"[..]));
        assert_eq!(h.body, BodyKind::None);
        // Dropped fields still count toward the limits.
        let few = Limits {
            max_headers: 2,
            ..lim()
        };
        assert_eq!(
            status_with(&req("GET / HTTP/1.1", &["A_b: 1", "C_d: 2"]), &few),
            431
        );
    }

    #[test]
    fn transfer_encoding_rules() {
        let (h, _) = parse_ok(&req("POST / HTTP/1.1", &["Transfer-Encoding: chunked"]));
        assert_eq!(h.body, BodyKind::Chunked);
        let (h, _) = parse_ok(&req("POST / HTTP/1.1", &["transfer-encoding:  CHUNKED "]));
        assert_eq!(h.body, BodyKind::Chunked);
        // chunked not the final coding: the length is unknowable, 400 (RFC 9112 §6.3).
        for te in [
            "identity",
            "chunked, gzip",
            "gzip",
            "chunked;q=1",
            "",
            " , ",
            "gzip,",
        ] {
            let h = format!("Transfer-Encoding: {te}");
            let e = parse_head(&req("POST / HTTP/1.1", &[&h]), &lim()).unwrap_err();
            assert_eq!(e.status(), 400, "{te:?}");
        }
        // chunked last, behind a coding we do not decode: 501.
        for te in ["gzip, chunked", "x-custom ,chunked", "gzip,,chunked"] {
            let h = format!("Transfer-Encoding: {te}");
            let e = parse_head(&req("POST / HTTP/1.1", &[&h]), &lim()).unwrap_err();
            assert_eq!(e.status(), 501, "{te:?}");
        }
        assert_eq!(
            status(&req(
                "POST / HTTP/1.1",
                &["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"]
            )),
            501
        );
        assert_eq!(
            status(&req(
                "POST / HTTP/1.1",
                &["Transfer-Encoding: chunked", "Transfer-Encoding: gzip"]
            )),
            400
        );
        assert_eq!(
            status(&req(
                "POST / HTTP/1.1",
                &["Transfer-Encoding: chunked", "Transfer-Encoding:"]
            )),
            400
        );
        assert_eq!(
            status(&req(
                "POST / HTTP/1.1",
                &["Transfer-Encoding: chunked, chunked"]
            )),
            400
        );
        assert_eq!(
            status(&req(
                "POST / HTTP/1.1",
                &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]
            )),
            400
        );
        assert_eq!(
            status(&req(
                "POST / HTTP/1.1",
                &["Content-Length: 3", "Transfer-Encoding: chunked"]
            )),
            400
        );
        assert_eq!(
            status(&req(
                "POST / HTTP/1.1",
                &["Transfer-Encoding: chunked", "Content-Length: 3"]
            )),
            400
        );
        assert_eq!(
            status(&req("POST / HTTP/1.0", &["Transfer-Encoding: chunked"])),
            400
        );
        assert_eq!(
            status(&req("POST / HTTP/1.0", &["Transfer-Encoding: gzip"])),
            400
        );
    }

    #[test]
    fn limit_post() {
        let l = Limits {
            limit_post: 10,
            ..lim()
        };
        parse_ok_with(&req("POST / HTTP/1.1", &["Content-Length: 10"]), &l);
        let e = parse_head(&req("POST / HTTP/1.1", &["Content-Length: 11"]), &l).unwrap_err();
        assert_eq!(e, HttpError::PayloadTooLarge);
        assert_eq!(e.status(), 413);
        // Chunked bodies are the decoder's job.
        parse_ok_with(&req("POST / HTTP/1.1", &["Transfer-Encoding: chunked"]), &l);
        // 0 = unlimited.
        parse_ok(&req(
            "POST / HTTP/1.1",
            &["Content-Length: 18446744073709551615"],
        ));
    }

    #[test]
    fn host_rules() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: y\r\n\r\n"), 400);
        let (h, _) = parse_ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.host(), None);
        assert_eq!(status(&req("GET / HTTP/1.1", &["Host: other"])), 400);
        assert_eq!(status(&req("GET / HTTP/1.1", &["host: h"])), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        // Empty Host is allowed (RFC 9112 §3.2 for URIs without authority).
        let (h, _) = parse_ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n");
        assert_eq!(h.host(), Some(&b""[..]));
    }

    #[test]
    fn keep_alive_matrix() {
        let ka = |line: &str, extra: &[&str]| parse_ok(&req(line, extra)).0.keep_alive;
        assert!(ka("GET / HTTP/1.1", &[]));
        assert!(!ka("GET / HTTP/1.1", &["Connection: close"]));
        assert!(!ka("GET / HTTP/1.1", &["Connection: Upgrade, CLOSE"]));
        assert!(!ka(
            "GET / HTTP/1.1",
            &["Connection: foo", "connection: close"]
        ));
        assert!(ka("GET / HTTP/1.1", &["Connection: keep-alive"]));
        assert!(ka("GET / HTTP/1.1", &["Connection: closed"]));
        assert!(!ka("GET / HTTP/1.0", &[]));
        assert!(ka("GET / HTTP/1.0", &["Connection: Keep-Alive"]));
        assert!(ka("GET / HTTP/1.0", &["Connection: foo ,keep-alive"]));
        assert!(!ka("GET / HTTP/1.0", &["Connection: keep-alive, close"]));
    }

    #[test]
    fn expect_continue() {
        let ec = |line: &str, extra: &[&str]| parse_ok(&req(line, extra)).0.expect_continue;
        assert!(ec(
            "POST / HTTP/1.1",
            &["Expect: 100-continue", "Content-Length: 1"]
        ));
        assert!(ec("POST / HTTP/1.1", &["expect: 100-Continue"]));
        assert!(!ec("POST / HTTP/1.0", &["Expect: 100-continue"]));
        assert!(!ec("POST / HTTP/1.1", &["Expect: something-else"]));
        assert!(!ec("POST / HTTP/1.1", &[]));
    }

    // ----- targets

    #[test]
    fn absolute_form() {
        let (h, _) = parse_ok(&req("GET http://example.com:8080/p/q?x=1 HTTP/1.1", &[]));
        assert_eq!(h.path(), b"/p/q");
        assert_eq!(h.query(), b"x=1");
        assert_eq!(h.host(), Some(&b"example.com:8080"[..]));
        assert_eq!(h.target(), b"http://example.com:8080/p/q?x=1");
        let (h, _) = parse_ok(&req("GET HTTPS://example.com HTTP/1.1", &[]));
        assert_eq!(h.path(), b"/");
        assert_eq!(h.query(), b"");
        assert_eq!(h.host(), Some(&b"example.com"[..]));
        let (h, _) = parse_ok(&req("GET http://e?a=b HTTP/1.1", &[]));
        assert_eq!((h.path(), h.query()), (&b"/"[..], &b"a=b"[..]));
        for t in [
            "http:///p",
            "http://",
            "http://u@h/",
            "ftp://h/",
            "http:/h/",
            "abc",
            "h/x",
            "?x",
            "**",
        ] {
            assert_eq!(
                status(&req(&format!("GET {t} HTTP/1.1"), &[])),
                400,
                "{t:?}"
            );
        }
    }

    #[test]
    fn asterisk_and_connect() {
        let (h, _) = parse_ok(&req("OPTIONS * HTTP/1.1", &[]));
        assert_eq!(h.path(), b"*");
        assert_eq!(h.query(), b"");
        assert_eq!(status(&req("GET * HTTP/1.1", &[])), 400);
        let e = parse_head(&req("CONNECT example.com:443 HTTP/1.1", &[]), &lim()).unwrap_err();
        assert_eq!(e.status(), 501);
        assert!(matches!(e, HttpError::NotImplemented(_)));
        assert_eq!(status(&req("CONNECT / HTTP/1.1", &[])), 501);
    }

    #[test]
    fn raw_utf8_path_is_passed_through() {
        let (h, _) = parse_ok("GET /caf\u{e9}?q=\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n".as_bytes());
        assert_eq!(h.path(), "/caf\u{e9}".as_bytes());
    }

    #[test]
    fn error_values() {
        let cases = [
            (HttpError::BadRequest("x"), 400),
            (HttpError::PayloadTooLarge, 413),
            (HttpError::UriTooLong, 414),
            (HttpError::HeadersTooLarge("x"), 431),
            (HttpError::NotImplemented("x"), 501),
            (HttpError::VersionNotSupported, 505),
        ];
        for (e, s) in cases {
            assert_eq!(e.status(), s);
            assert!(!e.reason().is_empty());
            assert!(e.to_string().starts_with(&s.to_string()));
        }
    }

    // ----- chunked decoder

    fn decode_once(input: &[u8], limit: u64) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut d = ChunkedDecoder::new(limit);
        let mut out = Vec::new();
        let n = d.decode(input, &mut out)?;
        Ok((out, n, d.is_done()))
    }

    /// Feeds `input` in pieces split at `cuts`, the way a socket would
    /// (unconsumed bytes are offered again with the next read).
    fn decode_pieces(
        input: &[u8],
        cuts: &[usize],
        limit: u64,
    ) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut d = ChunkedDecoder::new(limit);
        let mut out = Vec::new();
        let mut consumed = 0;
        let mut ends: Vec<usize> = cuts.to_vec();
        ends.push(input.len());
        for end in ends {
            if end < consumed {
                continue;
            }
            consumed += d.decode(&input[consumed..end], &mut out)?;
            if d.is_done() {
                break;
            }
        }
        Ok((out, consumed, d.is_done()))
    }

    const BODY: &[u8] = b"5\r\nhello\r\n6;a=b;c;d=\"x\\\"y\"\r\n world\r\n000\r\n\r\n";

    #[test]
    fn chunked_simple_and_pipelined_rest() {
        let (out, n, done) = decode_once(BODY, 0).unwrap();
        assert_eq!(out, b"hello world");
        assert_eq!(n, BODY.len());
        assert!(done);
        let mut more = BODY.to_vec();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut d = ChunkedDecoder::new(0);
        let mut out = Vec::new();
        assert_eq!(d.decode(&more, &mut out).unwrap(), BODY.len());
        assert!(d.is_done());
        assert_eq!(d.decoded_len(), 11);
        // After the end nothing more is taken.
        assert_eq!(d.decode(b"xyz", &mut out).unwrap(), 0);
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn chunked_every_split_point_and_bytewise() {
        let mut input = BODY.to_vec();
        input.extend_from_slice(b"NEXT");
        for cut in 0..=input.len() {
            let (out, n, done) = decode_pieces(&input, &[cut], 0).unwrap();
            assert_eq!(
                (out.as_slice(), n, done),
                (&b"hello world"[..], BODY.len(), true),
                "cut {cut}"
            );
        }
        for a in 0..input.len() {
            for b in a..input.len() {
                let (out, n, _) = decode_pieces(&input, &[a, b], 0).unwrap();
                assert_eq!((out.as_slice(), n), (&b"hello world"[..], BODY.len()));
            }
        }
        let all: Vec<usize> = (0..input.len()).collect();
        let (out, n, done) = decode_pieces(&input, &all, 0).unwrap();
        assert_eq!(
            (out.as_slice(), n, done),
            (&b"hello world"[..], BODY.len(), true)
        );
    }

    #[test]
    fn chunked_incomplete_is_not_done() {
        for cut in 0..BODY.len() {
            let (_, n, done) = decode_once(&BODY[..cut], 0).unwrap();
            assert_eq!(n, cut);
            assert!(!done);
        }
        let (_, _, done) = decode_once(b"", 0).unwrap();
        assert!(!done);
    }

    #[test]
    fn chunked_extensions() {
        for ok in [
            "1;x\r\na\r\n0\r\n\r\n",
            "1 ;x\r\na\r\n0\r\n\r\n",
            "1; x = y ;z\r\na\r\n0\r\n\r\n",
            "1;x=\"a b;\\\"c\"\r\na\r\n0;last\r\n\r\n",
            "1;x=\"\u{e9}\"\r\na\r\n0\r\n\r\n",
        ] {
            let (out, _, done) =
                decode_once(ok.as_bytes(), 0).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
            assert_eq!((out.as_slice(), done), (&b"a"[..], true), "{ok:?}");
        }
        for bad in [
            "1;\r\na\r\n",
            "1;x\x01\r\na\r\n",
            "1;x=\"a\x00\"\r\na\r\n",
            "1;x=\"a\r\na\r\n",
            "1;x=\r\na\r\n",
            "1;x=(\r\na\r\n",
            "1;x \r\na\r\n",
            "1 \r\na\r\n",
            "1;x\na\r\n",
            "1;=y\r\na\r\n",
            "1;x=\"a\"b\r\na\r\n",
        ] {
            let e = decode_once(bad.as_bytes(), 0).unwrap_err();
            assert_eq!(e.status(), 400, "{bad:?}");
        }
        let long = format!("1;x={}\r\na\r\n", "y".repeat(MAX_CHUNK_EXT));
        assert_eq!(decode_once(long.as_bytes(), 0).unwrap_err().status(), 400);
    }

    #[test]
    fn chunked_size_errors() {
        for bad in [
            "\r\n",
            ";x\r\n",
            "g\r\n",
            "-1\r\n",
            "+1\r\n",
            "0x1\r\n",
            "1\n",
            "1\rx",
            "11111111111111111\r\n",
            "00000000000000001\r\n",
        ] {
            assert_eq!(
                decode_once(bad.as_bytes(), 0).unwrap_err().status(),
                400,
                "{bad:?}"
            );
        }
        // 16 digits are accepted (and then wait for data).
        let (out, n, done) = decode_once(b"FFFFFFFFFFFFFFFF\r\nab", 0).unwrap();
        assert_eq!((out.as_slice(), n, done), (&b"ab"[..], 20, false));
        let (_, _, done) = decode_once(b"0000000000000000\r\n\r\n", 0).unwrap();
        assert!(done);
        // Uppercase and lowercase hex.
        let (out, _, _) =
            decode_once(b"a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n", 0).unwrap();
        assert_eq!(out.len(), 20);
    }

    #[test]
    fn chunked_missing_crlf_after_data() {
        for bad in [
            "3\r\nabcX\r\n",
            "3\r\nabc\rX",
            "3\r\nabc\n0\r\n\r\n",
            "3\r\nabcd\r\n",
        ] {
            assert_eq!(
                decode_once(bad.as_bytes(), 0).unwrap_err().status(),
                400,
                "{bad:?}"
            );
        }
        assert_eq!(decode_once(b"0\r\n\n", 0).unwrap_err().status(), 400);
        assert_eq!(decode_once(b"0\r\n\rX", 0).unwrap_err().status(), 400);
    }

    #[test]
    fn chunked_trailers() {
        let input = b"2\r\nhi\r\n0\r\nX-Sum: abc\r\nOther:\t v \r\n\r\nNEXT";
        let (out, n, done) = decode_once(input, 0).unwrap();
        assert_eq!(
            (out.as_slice(), n, done),
            (&b"hi"[..], input.len() - 4, true)
        );
        for bad in [
            "0\r\n x: y\r\n\r\n",
            "0\r\nx y: z\r\n\r\n",
            "0\r\nx\r\n\r\n",
            "0\r\nx: a\x00\r\n\r\n",
            "0\r\nx: a\n\r\n",
            "0\r\n: a\r\n\r\n",
        ] {
            assert_eq!(
                decode_once(bad.as_bytes(), 0).unwrap_err().status(),
                400,
                "{bad:?}"
            );
        }
        let mut big = b"0\r\n".to_vec();
        for i in 0..1000 {
            big.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(20)).as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        assert_eq!(decode_once(&big, 0).unwrap_err().status(), 431);
    }

    #[test]
    fn chunked_limit() {
        let body = b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
        assert_eq!(decode_once(body, 10).unwrap().0, b"helloworld");
        assert_eq!(
            decode_once(body, 9).unwrap_err(),
            HttpError::PayloadTooLarge
        );
        // Refused on the declared size, before the payload arrives.
        let mut d = ChunkedDecoder::new(100);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"65", &mut out).unwrap_err().status(), 413);
        assert_eq!(
            decode_once(b"FFFFFFFFFFFFFFFF\r\n", 1)
                .unwrap_err()
                .status(),
            413
        );
    }

    #[test]
    fn chunked_errors_are_sticky() {
        let mut d = ChunkedDecoder::new(0);
        let mut out = Vec::new();
        assert!(d.decode(b"z", &mut out).is_err());
        assert_eq!(d.decode(b"0\r\n\r\n", &mut out).unwrap_err().status(), 400);
        assert!(!d.is_done());
    }

    // ----- helpers

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"/a%20b"), b"/a b");
        assert_eq!(percent_decode(b"/%2f%2F"), b"///");
        assert_eq!(percent_decode(b"/%zz%4"), b"/%zz%4");
        assert_eq!(percent_decode(b"%"), b"%");
        assert_eq!(percent_decode(b"%%41"), b"%A");
        assert_eq!(percent_decode(b"%00%ff%C3%A9"), b"\x00\xff\xc3\xa9");
        assert_eq!(percent_decode(b"+"), b"+");
        assert_eq!(percent_decode(b""), b"");
        assert!(matches!(percent_decode_cow(b"/plain"), Cow::Borrowed(_)));
        assert!(matches!(percent_decode_cow(b"/%41"), Cow::Owned(_)));
    }

    #[test]
    fn cgi_names() {
        assert_eq!(cgi_header_name("Content-Type"), "HTTP_CONTENT_TYPE");
        assert_eq!(cgi_header_name("x-forwarded-for"), "HTTP_X_FORWARDED_FOR");
        assert_eq!(cgi_header_name("Host"), "HTTP_HOST");
        assert_eq!(cgi_header_name("a_b"), "HTTP_A_B");
    }

    #[test]
    fn reasons_and_error_response() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(400), "Bad Request");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(505), "HTTP Version Not Supported");
        assert_eq!(reason_phrase(599), "Unknown");
        for s in [400, 413, 414, 431, 501, 505] {
            assert_ne!(reason_phrase(s), "Unknown");
        }
        assert_eq!(
            error_response(400),
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n"
        );
        assert_eq!(
            error_response(299),
            b"HTTP/1.1 299 Unknown\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n\r\nUnknown\n"
        );
    }

    // ----- robustness

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        fn small_limits() -> Limits {
            Limits {
                max_head: 512,
                max_uri: 128,
                max_headers: 8,
                limit_post: 1000,
                ..Limits::default()
            }
        }

        /// Valid requests with a few random byte edits: reaches deep states
        /// that pure random bytes rarely do.
        fn mutated_request() -> impl Strategy<Value = Vec<u8>> {
            let base = b"POST http://h:1/p%20q?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\nbody".to_vec();
            let len = base.len();
            proptest::collection::vec((0..len, any::<u8>()), 0..6).prop_map(move |edits| {
                let mut b = base.clone();
                for (i, v) in edits {
                    b[i] = v;
                }
                b
            })
        }

        fn check_head(buf: &[u8], limits: &Limits) {
            match parse_head(buf, limits) {
                Ok(Parsed::Complete { value, consumed }) => {
                    assert!(consumed <= buf.len());
                    assert!(consumed <= limits.max_head);
                    assert!(value.headers().len() <= limits.max_headers);
                    assert!(value.target().len() <= limits.max_uri);
                    assert!(value.minor_version <= 1);
                }
                Ok(Parsed::Incomplete) => assert!(buf.len() <= limits.max_head),
                Err(e) => assert!([400, 413, 414, 431, 501, 505].contains(&e.status())),
            }
        }

        /// One chunked encoding of `payload`, cut into chunks of the given sizes.
        fn encode(payload: &[u8], sizes: &[usize], ext: bool) -> Vec<u8> {
            let mut out = Vec::new();
            let mut rest = payload;
            let mut k = 0;
            while !rest.is_empty() {
                let n = sizes.get(k).copied().unwrap_or(7).clamp(1, rest.len());
                k += 1;
                out.extend_from_slice(format!("{n:X}").as_bytes());
                if ext {
                    out.extend_from_slice(b"; e=\"v\"");
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&rest[..n]);
                out.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            out.extend_from_slice(b"0\r\nT: x\r\n\r\n");
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            #[test]
            fn head_arbitrary_bytes(buf in proptest::collection::vec(any::<u8>(), 0..1200)) {
                check_head(&buf, &small_limits());
                check_head(&buf, &Limits::default());
            }

            #[test]
            fn head_mutated(buf in mutated_request()) {
                check_head(&buf, &small_limits());
                check_head(&buf, &Limits::default());
            }

            #[test]
            fn head_with_arbitrary_tail(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
                let mut buf = b"GET /x HTTP/1.1\r\nHost: h\r\n".to_vec();
                buf.extend_from_slice(&tail);
                check_head(&buf, &small_limits());
            }

            #[test]
            fn chunked_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..600) {
                let mut d = ChunkedDecoder::new(0);
                let mut out = Vec::new();
                let cut = cut.min(input.len());
                if let Ok(n) = d.decode(&input[..cut], &mut out) {
                    prop_assert!(n <= cut);
                    prop_assert!(out.len() <= n);
                    if let Ok(m) = d.decode(&input[n..], &mut out) {
                        prop_assert!(out.len() <= n + m);
                    }
                }
            }

            #[test]
            fn chunked_roundtrip(
                payload in proptest::collection::vec(any::<u8>(), 0..300),
                sizes in proptest::collection::vec(1usize..40, 0..20),
                cuts in proptest::collection::vec(0usize..400, 0..6),
                ext in any::<bool>(),
            ) {
                let mut enc = encode(&payload, &sizes, ext);
                let body_len = enc.len();
                enc.extend_from_slice(b"GET /");
                let mut cuts = cuts;
                cuts.sort_unstable();
                let mut d = ChunkedDecoder::new(0);
                let mut out = Vec::new();
                let mut consumed = 0;
                for end in cuts.into_iter().chain(std::iter::once(enc.len())) {
                    let end = end.min(enc.len());
                    if end < consumed { continue; }
                    consumed += d.decode(&enc[consumed..end], &mut out).unwrap();
                }
                prop_assert!(d.is_done());
                prop_assert_eq!(consumed, body_len);
                prop_assert_eq!(out, payload);
            }
        }
    }
}
