//! The response side of WSGI: `start_response`, the `write()` callable,
//! `wsgi.file_wrapper`, and turning status + headers + body into bytes on
//! the socket with the right framing (Content-Length, chunked, or close).
//!
//! Status and headers from the app are checked before anything is sent (no
//! CR/LF smuggling, a three-digit status); a bad value raises in the app,
//! which the caller turns into a 500. The GIL is released for every write.

use std::cell::RefCell;
use std::io::Write as _;
use std::os::fd::RawFd;
use std::time::Duration;

use pyo3::exceptions::{PyAssertionError, PyOSError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::output::Output;
use crate::http::{is_token, reason_phrase};

/// How the response is sent, fixed when the request is parsed.
pub struct ResponseCtx {
    pub fd: RawFd,
    pub timeout: Duration,
    /// HEAD: headers only, whatever the app returns.
    pub head_request: bool,
    /// The client can take `Transfer-Encoding: chunked` (HTTP/1.1).
    pub chunked_ok: bool,
    /// The request is HTTP/1.0 asking for keep-alive: echo the header.
    pub http10: bool,
    /// Status line protocol, e.g. "HTTP/1.1".
    pub protocol: &'static str,
    /// The response goes to a uwsgi proxy: no `Date` and no `Connection`
    /// header (see `Request::to_proxy`).
    pub to_proxy: bool,
    /// Whether the connection may be kept after this response (may turn
    /// false: the app says close, the body cannot be delimited...).
    pub keep_alive: bool,
    /// Headers the server adds (routes' `addheader`, `--add-header`); a
    /// `Connection: close` among them closes the connection.
    pub extra_headers: Vec<(String, String)>,
    /// Header names removed from the app's response (`--del-header`,
    /// routes' `delheader`).
    pub del_headers: Vec<String>,
    /// A write to a client that has gone raises OSError in the app (not
    /// with `--disable-write-exception`: the response just ends).
    pub write_exception: bool,
}

/// Flush the output once it holds this much of the server's own copies
/// (small bodies written one by one with `write()`).
const FLUSH_AT: usize = 64 * 1024;

#[pyclass(module = "uwsgi_rs")]
pub struct StartResponse {
    /// The status line's text ("200 OK"), valid once `has_status` (the
    /// buffer is kept from one request to the next, see [`StartResponse::renew`]).
    status: String,
    has_status: bool,
    pub code: u16,
    /// The app's header lines, serialised ("Name: value\r\n").
    headers: Vec<u8>,
    /// The app set a Date header.
    has_date: bool,
    content_length: Option<u64>,
    pub headers_sent: bool,
    pub ctx: ResponseCtx,
    /// What is queued for the socket (the core's, lent for the request).
    out: Output,
    chunked: bool,
    /// Body bytes accepted from the app (counted even when not sent: HEAD).
    pub body_bytes: u64,
    /// Bytes written to the socket.
    pub wire_bytes: u64,
    /// The socket failed: stop producing output, close the connection.
    pub write_failed: bool,
    /// For the access log: header lines sent (the status line not
    /// counted), the size of the head, body chunks the app's iterable
    /// yielded (uWSGI's "switches"), and whether the body went by sendfile.
    pub header_count: usize,
    pub head_bytes: u64,
    pub chunks: u64,
    pub via_sendfile: bool,
    /// The `write` callable returned to the app: made once per object
    /// (see `reuse`), not once per call.
    pub write_method: Option<Py<PyAny>>,
    /// Kept by `renew`, like the buffers.
    seen: SeenHeaders,
    /// The request is over (its output given back to the core): an app
    /// that kept `write` or this object must not reach the socket any
    /// more. `ctx.fd` may by then carry the connection's next response,
    /// or, closed and reused, another client's connection.
    ended: bool,
}

impl StartResponse {
    pub fn new(ctx: ResponseCtx, out: Output) -> StartResponse {
        StartResponse {
            status: String::new(),
            has_status: false,
            code: 0,
            headers: Vec::new(),
            has_date: false,
            content_length: None,
            headers_sent: false,
            ctx,
            out,
            chunked: false,
            body_bytes: 0,
            wire_bytes: 0,
            write_failed: false,
            header_count: 0,
            head_bytes: 0,
            chunks: 0,
            via_sendfile: false,
            write_method: None,
            seen: SeenHeaders::default(),
            ended: false,
        }
    }

    pub fn status_set(&self) -> bool {
        self.has_status
    }

    /// Become `fresh`, keeping this object's buffers (the status text and
    /// the header block: two allocations a request fewer) and its `write`
    /// method. For a reused object (`reuse`), between requests.
    pub fn renew(&mut self, fresh: StartResponse) {
        let mut status = std::mem::take(&mut self.status);
        status.clear();
        let mut headers = std::mem::take(&mut self.headers);
        headers.clear();
        let write_method = self.write_method.take();
        let seen = std::mem::take(&mut self.seen);
        *self = fresh;
        self.status = status;
        self.headers = headers;
        self.write_method = write_method;
        self.seen = seen;
    }

    fn body_allowed(&self) -> bool {
        !(self.ctx.head_request || self.code < 200 || self.code == 204 || self.code == 304)
    }

    /// Serialise the head, choosing the framing. `known_len` is the whole
    /// body length when the caller already holds all of it. Nothing of the
    /// body may be queued before it.
    pub fn send_head(&mut self, known_len: Option<u64>) {
        if self.headers_sent {
            return;
        }
        self.headers_sent = true;
        let body_allowed = self.body_allowed();
        let start = self.out.own_buf().len();
        let head = self.out.own_buf();
        head.extend_from_slice(self.ctx.protocol.as_bytes());
        head.push(b' ');
        match self.has_status.then_some(self.status.as_str()) {
            // "200" alone: the status line still needs a reason phrase.
            Some(s) if s.len() == 3 => {
                head.extend_from_slice(s.as_bytes());
                head.push(b' ');
                head.extend_from_slice(reason_phrase(self.code).as_bytes());
            }
            Some(s) => head.extend_from_slice(s.as_bytes()),
            None => head.extend_from_slice(b"500 Internal Server Error"),
        }
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(&self.headers);
        for (k, v) in &self.ctx.extra_headers {
            if k.eq_ignore_ascii_case("connection") {
                self.ctx.keep_alive &= !v.to_ascii_lowercase().contains("close");
                continue;
            }
            push_header(head, k, v.as_bytes());
        }
        if !self.has_date && !self.ctx.to_proxy && self.ctx.protocol.starts_with("HTTP/1.1") {
            head.extend_from_slice(b"Date: ");
            with_http_date(|d| head.extend_from_slice(d.as_bytes()));
            head.extend_from_slice(b"\r\n");
        }
        if body_allowed {
            match (self.content_length, known_len) {
                (Some(_), _) => {}
                (None, Some(n)) => {
                    let _ = write!(head, "Content-Length: {n}\r\n");
                    self.content_length = Some(n);
                }
                (None, None) if self.ctx.chunked_ok => {
                    head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                    self.chunked = true;
                }
                (None, None) => self.ctx.keep_alive = false, // close-delimited
            }
        } else if self.ctx.head_request && self.content_length.is_none() {
            if let Some(n) = known_len {
                let _ = write!(head, "Content-Length: {n}\r\n");
            }
        }
        push_connection(
            head,
            self.ctx.to_proxy,
            self.ctx.keep_alive,
            self.ctx.http10,
        );
        head.extend_from_slice(b"\r\n");
        let head = &self.out.own_buf()[start..];
        self.head_bytes = head.len() as u64;
        // Lines between the status line and the blank line. Every LF of
        // the head ends a line (values with control characters are
        // refused), and counting a byte needs no substring searcher, whose
        // set-up was ~450 instructions a request.
        self.header_count = memchr::memchr_iter(b'\n', head).count().saturating_sub(2);
        self.out.extended(start);
    }

    /// Queue body bytes the server holds itself (framed); flush when much
    /// is buffered.
    pub fn push_body(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let Some(n) = self.admit(data.len()) else {
            return Ok(());
        };
        self.frame_start(n);
        self.out.extend(&data[..n]);
        self.frame_end();
        if self.out.len() >= FLUSH_AT {
            self.flush(py)?;
        }
        Ok(())
    }

    /// Queue an app's bytes object (framed), referenced rather than copied
    /// unless it is short. Nothing is written yet.
    pub fn push_bytes(&mut self, bytes: &Bound<'_, PyBytes>) {
        self.chunks += 1;
        let Some(n) = self.admit(bytes.as_bytes().len()) else {
            return;
        };
        self.frame_start(n);
        self.out.push_bytes(bytes, n);
        self.frame_end();
    }

    /// Count `len` body bytes, sending the head first if needed; how many
    /// of them go on the wire (None: none), never more than announced.
    fn admit(&mut self, len: usize) -> Option<usize> {
        if !self.headers_sent {
            self.send_head(None);
        }
        let mut n = len;
        if let Some(cl) = self.content_length {
            // Never send more than announced: the client would read the
            // excess as the next response.
            let room = cl.saturating_sub(self.body_bytes);
            if (n as u64) > room {
                n = room as usize;
            }
        }
        self.body_bytes += n as u64;
        if n == 0 || !self.body_allowed() {
            return None;
        }
        Some(n)
    }

    fn frame_start(&mut self, n: usize) {
        if self.chunked {
            let start = self.out.own_buf().len();
            let _ = write!(self.out.own_buf(), "{n:x}\r\n");
            self.out.extended(start);
        }
    }

    fn frame_end(&mut self) {
        if self.chunked {
            self.out.extend(b"\r\n");
        }
    }

    /// Write out everything queued (the GIL released meanwhile).
    pub fn flush(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        if self.write_failed {
            self.out.clear(py);
            return self.write_error("client connection lost".into());
        }
        let (fd, timeout) = (self.ctx.fd, self.ctx.timeout);
        let queued = self.out.len() as u64;
        let out = &mut self.out;
        // GIL: released while the client takes the bytes.
        let r = py.detach(|| out.write(fd, timeout));
        // The references written are given back now: a streamed body is
        // held one chunk at a time.
        self.out.release(py);
        self.wire_bytes += queued;
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                self.write_failed = true;
                self.write_error(format!("error writing response: {e}"))
            }
        }
    }

    /// A write failed (the client went away): OSError for the app, or
    /// nothing with `--disable-write-exception`.
    fn write_error(&self, why: String) -> PyResult<()> {
        if self.ctx.write_exception {
            Err(PyOSError::new_err(why))
        } else {
            Ok(())
        }
    }

    /// Complete the response: head if not yet sent, the last chunk. The
    /// tail stays buffered: the core writes it after releasing the GIL
    /// ([`StartResponse::take_output`]), so a small response costs one GIL
    /// hand-off, not two.
    pub fn finish(&mut self, known_len: Option<u64>) {
        self.send_head(known_len);
        if self.chunked {
            self.out.extend(b"0\r\n\r\n");
        }
        if let Some(cl) = self.content_length {
            if self.body_allowed() && self.body_bytes < cl {
                self.ctx.keep_alive = false; // short body: the framing is broken
            }
        }
    }

    /// The output still to write once the app is done, given back to the
    /// core (which writes it without the GIL).
    pub fn take_output(&mut self) -> Output {
        self.ended = true;
        self.wire_bytes += self.out.len() as u64;
        std::mem::take(&mut self.out)
    }

    /// Replace whatever the app set with a plain error response; only
    /// possible while nothing was sent.
    pub fn set_error(&mut self, py: Python<'_>, code: u16) {
        self.status = format!("{code} {}", reason_phrase(code));
        self.has_status = true;
        self.code = code;
        self.headers.clear();
        push_header(&mut self.headers, "Content-Type", b"text/plain");
        self.has_date = false;
        self.content_length = None;
        self.ctx.keep_alive = false;
        self.out.clear(py);
    }

    /// Send the head and then `count` bytes of file `in_fd` from `offset`.
    pub fn sendfile(
        &mut self,
        py: Python<'_>,
        in_fd: RawFd,
        offset: i64,
        size: u64,
    ) -> PyResult<()> {
        let count = self.content_length.map_or(size, |cl| cl.min(size));
        self.send_head(Some(count));
        self.flush(py)?;
        if !self.body_allowed() {
            self.body_bytes += count;
            return Ok(());
        }
        let (fd, timeout) = (self.ctx.fd, self.ctx.timeout);
        // GIL: released while the kernel copies the file to the client.
        let r = py.detach(|| crate::conn::sendfile_all(fd, in_fd, offset, count, timeout));
        self.via_sendfile = true;
        match r {
            Ok(n) => {
                self.body_bytes += n;
                self.wire_bytes += n;
                Ok(())
            }
            Err(e) => {
                self.write_failed = true;
                self.write_error(format!("error sending file: {e}"))
            }
        }
    }
}

/// The text of a str: an ASCII str's own bytes (no call), else its UTF-8.
fn str_of<'a>(s: &'a Bound<'_, PyString>) -> PyResult<&'a str> {
    let p = s.as_ptr();
    // SAFETY: `s` is a live str (GIL held through its Bound). A compact
    // ASCII str's data is its `length` bytes, all ASCII (so UTF-8), and
    // lives as long as the object, which `s` keeps for 'a.
    unsafe {
        if ffi::PyUnicode_IS_COMPACT_ASCII(p) != 0 {
            let data = ffi::PyUnicode_DATA(p).cast::<u8>();
            let len = ffi::PyUnicode_GET_LENGTH(p) as usize;
            return Ok(std::str::from_utf8_unchecked(std::slice::from_raw_parts(
                data, len,
            )));
        }
    }
    s.to_str()
}

/// The bytes a header value goes out as: PEP 3333's native strings are
/// latin-1 (so "café" is `caf\xe9` on the wire, as gunicorn and wsgiref
/// send it); a character above U+00FF cannot be sent and is the app's
/// error. A str of characters below 256 is its own bytes, read in place.
fn latin1_value<'a>(s: &'a Bound<'_, PyString>) -> PyResult<std::borrow::Cow<'a, [u8]>> {
    if let Some(bytes) = super::environ::latin1_bytes(s) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    // Wider characters (or a str not ready): Python's codec decides.
    let encoded = s
        .call_method1(pyo3::intern!(s.py(), "encode"), ("latin-1",))
        .map_err(|_| {
            PyValueError::new_err(format!(
                "header value {:?} is not latin-1 (PEP 3333): encode it, e.g. RFC 8187",
                s.to_string_lossy()
            ))
        })?;
    Ok(std::borrow::Cow::Owned(
        encoded.cast::<PyBytes>()?.as_bytes().to_vec(),
    ))
}

fn push_header(block: &mut Vec<u8>, name: &str, value: &[u8]) {
    block.extend_from_slice(name.as_bytes());
    block.extend_from_slice(b": ");
    block.extend_from_slice(value);
    block.extend_from_slice(b"\r\n");
}

/// No control characters (RFC 9110 5.5: obs-text, bytes 0x80-0xff, is
/// allowed; CR and LF would end the header).
fn is_clean_value(s: &[u8]) -> bool {
    s.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// start_response or write used after its request: refused, as
/// `wsgi.input` is (see [`StartResponse::take_output`]).
fn ended_error() -> PyErr {
    PyValueError::new_err("start_response/write used after the request ended")
}

/// Parse and check a WSGI status string; returns the code.
fn check_status(status: &str) -> PyResult<u16> {
    let b = status.as_bytes();
    let ok = b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_digit)
        && b[0] != b'0'
        && (b.len() == 3 || b[3] == b' ')
        && is_clean_value(status.as_bytes());
    if !ok {
        return Err(PyValueError::new_err(format!(
            "invalid WSGI status {status:?}: expected 'NNN Reason'"
        )));
    }
    Ok(status[..3].parse().unwrap_or(500))
}

/// The header list of the last start_response call and what it made: an
/// app that passes the same list (a constant, as many do) holding the same
/// tuples gets the same block without walking it again. Tuples and strs
/// are immutable, and the tuples are held here (so none of them can be
/// freed and another made at its address): the same list of the same
/// tuples is the same headers. Only a call that succeeded, with no header
/// to delete, is remembered.
#[derive(Default)]
struct SeenHeaders {
    list: usize,
    items: Vec<Py<PyAny>>,
    block: Vec<u8>,
    has_date: bool,
    content_length: Option<u64>,
    close: bool,
}

impl SeenHeaders {
    fn matches(&self, list: &Bound<'_, PyList>) -> bool {
        list.as_ptr() as usize == self.list
            && list.len() == self.items.len()
            && list
                .iter()
                .zip(&self.items)
                .all(|(item, seen)| item.as_ptr() == seen.as_ptr())
    }

    fn remember(
        &mut self,
        list: &Bound<'_, PyList>,
        block: &[u8],
        (has_date, content_length, close): (bool, Option<u64>, bool),
    ) {
        let py = list.py();
        // Given back through Bounds (the GIL is held).
        for old in self.items.drain(..) {
            drop(old.into_bound(py));
        }
        self.items.extend(list.iter().map(Bound::unbind));
        self.list = list.as_ptr() as usize;
        self.block.clear();
        self.block.extend_from_slice(block);
        self.has_date = has_date;
        self.content_length = content_length;
        self.close = close;
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let this = slf.borrow();
            if this.ended {
                return Err(ended_error());
            }
            if let Some(info) = exc_info {
                if this.headers_sent {
                    // PEP 3333: too late to change the response; re-raise.
                    let value = info.get_item(1)?;
                    return Err(PyErr::from_value(value));
                }
            } else if this.has_status {
                return Err(PyAssertionError::new_err(
                    "start_response() called twice without exc_info",
                ));
            }
        }
        let status = status
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("WSGI status must be a str"))?;
        let status = str_of(status)?;
        let code = check_status(status)?;
        let (mut block, del_headers) = {
            let mut this = slf.borrow_mut();
            // The app's headers, checked and serialised ("Name: value\r\n")
            // into one buffer: no string of our own per header. The
            // object's own buffer, unless headers were already set (a
            // call with exc_info replaces them only if it succeeds).
            let block = if this.has_status {
                Vec::with_capacity(128)
            } else {
                let mut b = std::mem::take(&mut this.headers);
                b.clear();
                b
            };
            // `--del-header` / a route's `delheader` (empty: nothing to take).
            (block, std::mem::take(&mut this.ctx.del_headers))
        };
        let mut has_date = false;
        let mut content_length = None;
        let mut close = false;
        let pair_error = || PyTypeError::new_err("WSGI headers must be (name, value) tuples");
        let mut take = |item: &Bound<'py, PyAny>| -> PyResult<()> {
            let pair = item.cast::<PyTuple>().map_err(|_| pair_error())?;
            if pair.len() != 2 {
                return Err(pair_error());
            }
            let name_obj = pair.get_borrowed_item(0)?;
            let name_str = name_obj
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("header name must be a str"))?;
            let name = str_of(&name_str)?;
            let value_obj = pair.get_borrowed_item(1)?;
            let value_str = value_obj
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("header value must be a str"))?;
            if !is_token(name.as_bytes()) {
                return Err(PyValueError::new_err(format!(
                    "invalid header name {name:?}"
                )));
            }
            let value = latin1_value(&value_str)?;
            if !is_clean_value(&value) {
                return Err(PyValueError::new_err(format!(
                    "invalid value for header {name:?}: control characters"
                )));
            }
            if name.eq_ignore_ascii_case("content-length") {
                let text = std::str::from_utf8(&value).unwrap_or("");
                content_length = Some(text.trim().parse::<u64>().map_err(|_| {
                    PyValueError::new_err(format!(
                        "invalid Content-Length {:?}",
                        String::from_utf8_lossy(&value)
                    ))
                })?);
            } else if name.eq_ignore_ascii_case("connection") {
                close |= value.windows(5).any(|w| w.eq_ignore_ascii_case(b"close"));
                return Ok(()); // hop-by-hop: the server decides
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Ok(()); // the server frames the body itself
            }
            if del_headers.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                return Ok(());
            }
            has_date |= name.eq_ignore_ascii_case("date");
            push_header(&mut block, name, &value);
            Ok(())
        };
        let list = headers.cast::<PyList>().ok();
        // The same header list as last time, holding the same tuples: the
        // block made then (see `SeenHeaders`).
        let seen = del_headers.is_empty()
            && list
                .as_ref()
                .is_some_and(|list| slf.borrow().seen.matches(list));
        let walked = match &list {
            _ if seen => Ok(()),
            // The list PEP 3333 asks for: walked by index, with no
            // iterator object.
            Some(list) => list.iter().try_for_each(|item| take(&item)),
            None => headers
                .try_iter()
                .and_then(|items| items.into_iter().try_for_each(|item| take(&item?)))
                .and_then(|()| Err(PyTypeError::new_err("WSGI headers must be a list"))),
        };
        let mut this = slf.borrow_mut();
        // Given back whether or not the headers were taken: an app that
        // catches the error and calls again must still have them removed.
        this.ctx.del_headers = del_headers;
        walked?;
        if seen {
            block.extend_from_slice(&this.seen.block);
            (has_date, content_length, close) = (
                this.seen.has_date,
                this.seen.content_length,
                this.seen.close,
            );
        } else if let Some(list) = list.filter(|_| this.ctx.del_headers.is_empty()) {
            this.seen
                .remember(list, &block, (has_date, content_length, close));
        }
        this.status.clear();
        this.status.push_str(status);
        this.has_status = true;
        this.code = code;
        this.headers = block;
        this.has_date = has_date;
        this.content_length = content_length;
        if close {
            this.ctx.keep_alive = false;
        }
        let write = this.write_method.as_ref().map(|w| w.clone_ref(py));
        drop(this);
        match write {
            Some(w) => Ok(w.into_bound(py)),
            None => slf.getattr(pyo3::intern!(py, "write")),
        }
    }

    /// The legacy `write()` callable returned by start_response.
    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.ended {
            return Err(ended_error());
        }
        if !self.has_status {
            return Err(PyAssertionError::new_err(
                "write() called before start_response()",
            ));
        }
        let bytes = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() argument must be bytes"))?;
        self.push_bytes(bytes);
        self.flush(py)
    }
}

/// `wsgi.file_wrapper`: iterates a file in blocks, and lets the server use
/// sendfile(2) when the file is a real one.
#[pyclass(module = "uwsgi_rs")]
pub struct FileWrapper {
    pub filelike: Py<PyAny>,
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> FileWrapper {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let data = self.filelike.call_method1(py, "read", (self.blksize,))?;
        if data.bind(py).len().unwrap_or(0) == 0 {
            return Ok(None);
        }
        Ok(Some(data))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.filelike.bind(py).hasattr("close")? {
            self.filelike.call_method0(py, "close")?;
        }
        Ok(())
    }
}

/// Call `f` with the `Date` header value for now, cached per second per
/// thread.
pub fn with_http_date<R>(f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = crate::log::unix_secs();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != now {
            *c = (now, crate::httpdate::format(now as i64));
        }
        f(&c.1)
    })
}

/// The `Date` header value for now.
/// The `Connection` line of a response head: `close` when the connection
/// ends with it, `keep-alive` for an HTTP/1.0 client kept, none when kept
/// on HTTP/1.1, and none to a uwsgi proxy (its hop ends with the response
/// anyway; see `Request::to_proxy`). The app's responses and the front's
/// answers both end their heads with it.
pub fn push_connection(head: &mut Vec<u8>, to_proxy: bool, keep: bool, http10: bool) {
    if to_proxy {
        return;
    }
    if !keep {
        head.extend_from_slice(b"Connection: close\r\n");
    } else if http10 {
        head.extend_from_slice(b"Connection: keep-alive\r\n");
    }
}

pub fn http_date() -> String {
    with_http_date(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_checks() {
        assert_eq!(check_status("200 OK").unwrap(), 200);
        assert_eq!(check_status("404 Not Found").unwrap(), 404);
        assert!(check_status("20 OK").is_err());
        assert!(check_status("abc").is_err());
        assert!(check_status("200 OK\r\nX: y").is_err());
        assert!(check_status("200OK").is_err());
    }

    #[test]
    fn header_checks() {
        assert!(is_token(b"Content-Type"));
        assert!(!is_token(b"Bad Name"));
        assert!(!is_token(b""));
        assert!(is_token(b"!#$%&'*+-.^_`|~09azAZ"));
        assert!(!is_token(b"X:y"));
        assert!(!is_token("caf\u{e9}".as_bytes()));
        assert!(is_clean_value(b"text/html; charset=utf-8"));
        assert!(is_clean_value(b"caf\xe9"), "obs-text");
        assert!(!is_clean_value(b"a\r\nSet-Cookie: x"));
    }
}

#[cfg(test)]
mod call_tests {
    use super::*;
    use pyo3::types::PyList;

    fn ctx() -> ResponseCtx {
        ResponseCtx {
            fd: -1,
            timeout: Duration::from_secs(1),
            head_request: false,
            chunked_ok: true,
            http10: false,
            protocol: "HTTP/1.1",
            to_proxy: false,
            keep_alive: true,
            extra_headers: Vec::new(),
            del_headers: Vec::new(),
            write_exception: true,
        }
    }

    fn headers<'py>(py: Python<'py>, pairs: &[(&str, &str)]) -> Bound<'py, PyList> {
        PyList::new(
            py,
            pairs
                .iter()
                .map(|(k, v)| PyTuple::new(py, [*k, *v]).unwrap()),
        )
        .unwrap()
    }

    fn head_of(sr: &Bound<'_, StartResponse>) -> String {
        let mut s = sr.borrow_mut();
        s.send_head(Some(0));
        let text = s.out.own_buf().clone();
        s.out = Output::default();
        // Decoded as latin-1, what header values go out as.
        text.iter().map(|&b| char::from(b)).collect()
    }

    #[test]
    fn a_renewed_object_answers_only_its_new_request() {
        Python::initialize();
        Python::attach(|py| {
            let sr = Bound::new(py, StartResponse::new(ctx(), Output::default())).unwrap();
            let h = headers(py, &[("Content-Type", "text/plain"), ("X-\u{e9}", "1")]);
            // A non-ASCII name is refused (not a token), the object unchanged.
            assert!(sr.call1(("200 OK", &h)).is_err());
            assert!(!sr.borrow().status_set());
            let h = headers(
                py,
                &[("Content-Type", "text/plain"), ("X-One", "caf\u{e9}")],
            );
            sr.call1(("404 Not Found", &h)).unwrap();
            assert!(sr.borrow().status_set());
            let first = head_of(&sr);
            assert!(first.starts_with("HTTP/1.1 404 Not Found\r\n"), "{first}");
            assert!(first.contains("X-One: caf\u{e9}\r\n"), "{first}");
            // Renewed: nothing of the first request is left but buffers.
            sr.borrow_mut()
                .renew(StartResponse::new(ctx(), Output::default()));
            assert!(!sr.borrow().status_set());
            assert_eq!(sr.borrow().code, 0);
            let h = headers(py, &[("Content-Type", "text/html")]);
            sr.call1(("200 OK", &h)).unwrap();
            let second = head_of(&sr);
            assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{second}");
            assert!(second.contains("Content-Type: text/html\r\n"), "{second}");
            assert!(!second.contains("X-One"), "{second}");
            assert!(!second.contains("404"), "{second}");
            // Called again without exc_info: refused, the first call stands.
            assert!(sr.call1(("500 Oops", &h)).is_err());
            assert_eq!(sr.borrow().code, 200);
        });
    }

    #[test]
    fn a_header_list_passed_again_gives_its_headers_as_they_are_now() {
        Python::initialize();
        Python::attach(|py| {
            let sr = Bound::new(py, StartResponse::new(ctx(), Output::default())).unwrap();
            let h = headers(
                py,
                &[("Content-Type", "text/plain"), ("Content-Length", "0")],
            );
            let call = |list: &Bound<'_, PyList>| {
                sr.borrow_mut()
                    .renew(StartResponse::new(ctx(), Output::default()));
                sr.call1(("200 OK", list)).unwrap();
                head_of(&sr)
            };
            let first = call(&h);
            assert!(first.contains("Content-Type: text/plain\r\n"), "{first}");
            assert_eq!(call(&h), first);
            // The same list, changed: its headers as they are now.
            h.append(PyTuple::new(py, ["Connection", "close"]).unwrap())
                .unwrap();
            let closed = call(&h);
            assert!(closed.contains("Connection: close\r\n"), "{closed}");
            h.set_item(0, PyTuple::new(py, ["Content-Type", "text/html"]).unwrap())
                .unwrap();
            h.del_item(2).unwrap();
            let html = call(&h);
            assert!(html.contains("Content-Type: text/html\r\n"), "{html}");
            assert!(!html.contains("Connection: close"), "{html}");
            assert_eq!(call(&h), html);
            // One tuple replaced, the length kept.
            h.set_item(0, PyTuple::new(py, ["Content-Type", "text/xml"]).unwrap())
                .unwrap();
            assert!(call(&h).contains("Content-Type: text/xml\r\n"));
            h.set_item(0, PyTuple::new(py, ["Content-Type", "text/html"]).unwrap())
                .unwrap();
            // Another list of equal headers; then the first one again.
            let other = headers(py, &[("Content-Type", "text/css"), ("Content-Length", "0")]);
            assert!(call(&other).contains("text/css"));
            assert!(call(&h).contains("text/html"));
            // A header to delete: the list is walked, never remembered.
            sr.borrow_mut().renew(StartResponse::new(
                ResponseCtx {
                    del_headers: vec!["content-type".into()],
                    ..ctx()
                },
                Output::default(),
            ));
            sr.call1(("200 OK", &h)).unwrap();
            assert!(!head_of(&sr).contains("Content-Type"));
            assert!(call(&h).contains("Content-Type: text/html\r\n"));
        });
    }

    #[test]
    fn an_ended_request_s_start_response_and_write_refuse() {
        Python::initialize();
        Python::attach(|py| {
            let sr = Bound::new(py, StartResponse::new(ctx(), Output::default())).unwrap();
            let h = headers(py, &[("Content-Type", "text/plain")]);
            // No Content-Length: a later write() would be framed and
            // flushed straight to the request's descriptor.
            let write = sr.call1(("200 OK", &h)).unwrap();
            sr.borrow_mut().finish(None);
            let _ = sr.borrow_mut().take_output();
            let late = PyBytes::new(py, b"late");
            assert!(write
                .call1((&late,))
                .unwrap_err()
                .is_instance_of::<PyValueError>(py));
            assert!(sr.borrow().out.is_empty());
            let none = py.None();
            let exc = PyTuple::new(py, [&none, &none, &none]).unwrap();
            assert!(sr.call1(("500 Oops", &h, &exc)).is_err());
            // Renewed for the core's next request: usable again.
            sr.borrow_mut()
                .renew(StartResponse::new(ctx(), Output::default()));
            sr.call1(("200 OK", &h)).unwrap();
        });
    }

    #[test]
    fn str_of_reads_ascii_and_wider_strs() {
        Python::initialize();
        Python::attach(|py| {
            for text in ["", "200 OK", "caf\u{e9}", "\u{20ac}uro"] {
                assert_eq!(str_of(&PyString::new(py, text)).unwrap(), text);
            }
        });
    }
}
