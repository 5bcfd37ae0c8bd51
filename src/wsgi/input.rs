//! `wsgi.input`: the request body as a stream the app reads, never buffered
//! whole. Content-Length bodies end after exactly that many bytes; chunked
//! bodies are decoded as they arrive. Bytes past the body (a pipelined next
//! request) stay in the buffer and go back to the connection afterwards.
//!
//! The GIL is released for every socket read; a read that times out raises
//! `OSError` in the app and marks the connection unusable.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::conn::{read_uninit_timeout, write_all_timeout, Unread};
use crate::http::ChunkedDecoder;

const READ_CHUNK: usize = 64 * 1024;

pub enum BodyMode {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    /// `--post-buffering`: the body was read into this (unlinked) file
    /// before the app ran; this many bytes of it are left to read.
    File(std::fs::File, u64),
}

/// The body state of one request, owned by `wsgi.input` while the app runs
/// and taken back by the core when the request ends.
pub struct BodyReader {
    fd: RawFd,
    /// Raw bytes read from the socket; `pos` of them are consumed.
    buf: Vec<u8>,
    pos: usize,
    mode: BodyMode,
    timeout: Duration,
    /// `Expect: 100-continue` seen: say "100 Continue" before the first read
    /// that needs the client, and only then (the app may not want the body).
    continue_pending: bool,
    /// A socket error or protocol error happened: the connection cannot be
    /// reused.
    pub broken: bool,
    /// The HTTP status a malformed or oversized body deserves (400, 413):
    /// the answer when the app fails because of it.
    pub error_status: Option<u16>,
    /// Decoded body bytes handed to the app.
    pub body_read: u64,
}

impl BodyReader {
    pub fn new(
        fd: RawFd,
        buf: Vec<u8>,
        mode: BodyMode,
        timeout: Duration,
        expect_continue: bool,
    ) -> BodyReader {
        BodyReader {
            fd,
            buf,
            pos: 0,
            mode,
            timeout,
            continue_pending: expect_continue,
            broken: false,
            error_status: None,
            body_read: 0,
        }
    }

    pub fn is_finished(&self) -> bool {
        match &self.mode {
            BodyMode::Length(n) | BodyMode::File(_, n) => *n == 0,
            BodyMode::Chunked(d) => d.is_done(),
        }
    }

    /// Read more raw bytes from the socket (blocking up to the timeout).
    fn fill_raw(&mut self) -> io::Result<()> {
        if self.continue_pending {
            self.continue_pending = false;
            write_all_timeout(self.fd, b"HTTP/1.1 100 Continue\r\n\r\n", self.timeout)?;
        }
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let len = self.buf.len();
        self.buf.reserve(READ_CHUNK);
        let r = read_uninit_timeout(
            self.fd,
            &mut self.buf.spare_capacity_mut()[..READ_CHUNK],
            self.timeout,
        );
        if let Ok(n) = r {
            // SAFETY: the kernel initialised the first n bytes of the spare capacity.
            unsafe { self.buf.set_len(len + n) };
        }
        match r {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client closed the connection mid-body",
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Up to `max` decoded body bytes; empty at the end of the body.
    pub fn next_chunk(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let r = self.next_chunk_inner(max);
        match &r {
            Ok(v) => self.body_read += v.len() as u64,
            Err(_) => self.broken = true,
        }
        r
    }

    fn next_chunk_inner(&mut self, max: usize) -> io::Result<Vec<u8>> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "request body unavailable after an earlier error",
            ));
        }
        loop {
            match &mut self.mode {
                BodyMode::Length(remaining) => {
                    if *remaining == 0 || max == 0 {
                        return Ok(Vec::new());
                    }
                    let avail = self.buf.len() - self.pos;
                    if avail > 0 {
                        let n = avail.min(max).min(*remaining as usize);
                        let out = self.buf[self.pos..self.pos + n].to_vec();
                        self.pos += n;
                        *remaining -= n as u64;
                        return Ok(out);
                    }
                }
                BodyMode::File(file, remaining) => {
                    use std::io::Read as _;
                    let want = max.min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    let mut out = vec![0u8; want.min(READ_CHUNK * 4)];
                    let n = file.read(&mut out)?;
                    if n == 0 && want > 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the buffered request body is shorter than announced",
                        ));
                    }
                    out.truncate(n);
                    *remaining -= n as u64;
                    return Ok(out);
                }
                BodyMode::Chunked(dec) => {
                    if dec.is_done() || max == 0 {
                        return Ok(Vec::new());
                    }
                    let mut out = Vec::new();
                    // Feed at most what could decode to `max` bytes (chunk
                    // framing only adds bytes), so nothing decoded is lost.
                    let end = self.buf.len().min(self.pos + max);
                    let used = dec
                        .decode(&self.buf[self.pos..end], &mut out)
                        .map_err(|e| {
                            self.error_status = Some(e.status());
                            io::Error::new(io::ErrorKind::InvalidData, e.to_string())
                        })?;
                    self.pos += used;
                    if !out.is_empty() || dec.is_done() {
                        return Ok(out);
                    }
                    if used > 0 {
                        continue;
                    }
                }
            }
            self.fill_raw()?;
        }
    }

    /// How many body bytes are left to hand out when the length is known
    /// (Content-Length; None for a chunked body).
    pub fn known_remaining(&self) -> Option<u64> {
        match &self.mode {
            BodyMode::Length(n) => Some(*n),
            BodyMode::Chunked(_) | BodyMode::File(..) => None,
        }
    }

    /// Fill `dst` entirely with the next body bytes of a Content-Length
    /// body (`dst` no longer than [`BodyReader::known_remaining`]): first
    /// what is buffered, then straight from the socket into `dst`, with no
    /// buffer in between. On error `dst` is partly filled and the
    /// connection is marked broken.
    pub fn read_exact_into(&mut self, dst: &mut [MaybeUninit<u8>]) -> io::Result<()> {
        let r = self.read_exact_into_inner(dst);
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    fn read_exact_into_inner(&mut self, dst: &mut [MaybeUninit<u8>]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "request body unavailable after an earlier error",
            ));
        }
        let BodyMode::Length(remaining) = &mut self.mode else {
            return Err(io::Error::other("not a Content-Length body"));
        };
        if dst.len() as u64 > *remaining {
            return Err(io::Error::other("read past the body"));
        }
        let from_buf = dst.len().min(self.buf.len() - self.pos);
        for (d, s) in dst[..from_buf]
            .iter_mut()
            .zip(&self.buf[self.pos..self.pos + from_buf])
        {
            d.write(*s);
        }
        self.pos += from_buf;
        *remaining -= from_buf as u64;
        self.body_read += from_buf as u64;
        let mut filled = from_buf;
        if filled < dst.len() && self.continue_pending {
            self.continue_pending = false;
            write_all_timeout(self.fd, b"HTTP/1.1 100 Continue\r\n\r\n", self.timeout)?;
        }
        while filled < dst.len() {
            let n = read_uninit_timeout(self.fd, &mut dst[filled..], self.timeout)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed the connection mid-body",
                ));
            }
            filled += n;
            *remaining -= n as u64;
            self.body_read += n as u64;
        }
        Ok(())
    }

    /// Read and discard the rest of the body so the connection can carry
    /// the next request; false when that is not worth it or fails.
    pub fn drain(&mut self, limit: u64) -> bool {
        if matches!(self.unread(), Unread::Bytes(n) if n > limit) {
            return false; // known to be too much: not worth a core's time
        }
        let mut drained = 0u64;
        while !self.is_finished() {
            if self.broken || drained > limit {
                return false;
            }
            match self.next_chunk(READ_CHUNK) {
                Ok(v) if v.is_empty() => break,
                Ok(v) => drained += v.len() as u64,
                Err(_) => return false,
            }
        }
        !self.broken
    }

    /// What of the body is still on the socket (not read by anyone yet).
    pub fn unread(&self) -> Unread {
        if self.broken {
            return Unread::Unknown;
        }
        match &self.mode {
            BodyMode::Length(n) => {
                let buffered = (self.buf.len() - self.pos) as u64;
                if *n <= buffered {
                    Unread::Nothing
                } else {
                    Unread::Bytes(n - buffered)
                }
            }
            BodyMode::Chunked(d) if d.is_done() => Unread::Nothing,
            BodyMode::Chunked(_) => Unread::Unknown,
            BodyMode::File(..) => Unread::Nothing,
        }
    }

    /// Whether the client waits for "100 Continue" before it sends the body.
    pub fn awaits_continue(&self) -> bool {
        self.continue_pending
    }

    /// The bytes after the body (the next pipelined request), for the
    /// connection's buffer.
    pub fn into_leftover(mut self) -> Vec<u8> {
        self.buf.drain(..self.pos);
        self.buf
    }
}

/// The buffer of a bytes object being filled without the GIL.
struct RawBuf(*mut MaybeUninit<u8>, usize);

// SAFETY: the buffer belongs to a bytes object only the reading thread can
// reach until the read returns (see `Input::read_direct`).
unsafe impl Send for RawBuf {}

/// The `wsgi.input` object.
#[pyclass(module = "uwsgi_rs")]
pub struct Input {
    /// None once the request has ended (the core took the state back).
    reader: Option<BodyReader>,
    /// Decoded bytes read ahead by readline and not yet returned.
    pending: Vec<u8>,
}

impl Input {
    pub fn new(reader: BodyReader) -> Input {
        Input {
            reader: Some(reader),
            pending: Vec::new(),
        }
    }

    /// The status owed to the client for a bad body, if the body was bad.
    pub fn body_error_status(&self) -> Option<u16> {
        self.reader.as_ref().and_then(|r| r.error_status)
    }

    /// Take the body state back when the request ends.
    pub fn take_reader(&mut self) -> Option<BodyReader> {
        self.reader.take()
    }

    fn chunk(&mut self, py: Python<'_>, max: usize) -> PyResult<Vec<u8>> {
        if !self.pending.is_empty() {
            let n = max.min(self.pending.len());
            return Ok(self.pending.drain(..n).collect());
        }
        let reader = self
            .reader
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("wsgi.input used after the request ended"))?;
        // GIL: released while waiting for the client's bytes.
        py.detach(|| reader.next_chunk(max))
            .map_err(|e| PyOSError::new_err(format!("error reading request body: {e}")))
    }

    fn read_bytes(&mut self, py: Python<'_>, size: Option<isize>) -> PyResult<Vec<u8>> {
        let want = match size {
            Some(n) if n >= 0 => n as usize,
            _ => usize::MAX,
        };
        let mut out = Vec::new();
        while out.len() < want {
            let c = self.chunk(py, (want - out.len()).min(READ_CHUNK))?;
            if c.is_empty() {
                break;
            }
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    /// `want` bytes of a Content-Length body read into the bytes object
    /// that is returned: one allocation of the right size, filled from the
    /// buffer and then from the socket directly.
    fn read_direct<'py>(&mut self, py: Python<'py>, want: u64) -> PyResult<Bound<'py, PyBytes>> {
        let reader = self
            .reader
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("wsgi.input used after the request ended"))?;
        let len = ffi::Py_ssize_t::try_from(want)
            .map_err(|_| PyValueError::new_err("request body too large"))?;
        // SAFETY: NULL asks CPython for an uninitialised buffer of `len`
        // bytes; the result is a new reference or NULL with an exception.
        let bytes = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyBytes_FromStringAndSize(std::ptr::null(), len))?
                .cast_into_unchecked::<PyBytes>()
        };
        if want == 0 {
            return Ok(bytes);
        }
        // SAFETY: a fresh bytes object of `len` bytes that nothing else can
        // see yet (only this frame holds it): its buffer may be written, by
        // this thread alone, before it is handed out.
        let buf = RawBuf(
            unsafe { ffi::PyBytes_AsString(bytes.as_ptr()) }.cast(),
            len as usize,
        );
        // GIL: released while the client's bytes arrive.
        py.detach(|| {
            let buf = buf;
            // SAFETY: see above; `bytes` outlives the call.
            let dst = unsafe { std::slice::from_raw_parts_mut(buf.0, buf.1) };
            reader.read_exact_into(dst)
        })
        .map_err(|e| PyOSError::new_err(format!("error reading request body: {e}")))?;
        Ok(bytes)
    }

    fn read_line(&mut self, py: Python<'_>, size: Option<isize>) -> PyResult<Vec<u8>> {
        let limit = match size {
            Some(n) if n >= 0 => n as usize,
            _ => usize::MAX,
        };
        let mut line = Vec::new();
        while line.len() < limit {
            let c = self.chunk(py, READ_CHUNK)?;
            if c.is_empty() {
                break;
            }
            let room = limit - line.len();
            let take = match memchr::memchr(b'\n', &c) {
                Some(i) => (i + 1).min(room),
                None => c.len().min(room),
            };
            line.extend_from_slice(&c[..take]);
            if take < c.len() {
                let mut rest = c[take..].to_vec();
                rest.extend_from_slice(&self.pending);
                self.pending = rest;
            }
            if line.last() == Some(&b'\n') {
                break;
            }
        }
        Ok(line)
    }
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size=None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        if self.pending.is_empty() {
            if let Some(remaining) = self.reader.as_ref().and_then(BodyReader::known_remaining) {
                let want = match size {
                    Some(n) if n >= 0 => remaining.min(n as u64),
                    _ => remaining,
                };
                return self.read_direct(py, want);
            }
        }
        let v = self.read_bytes(py, size)?;
        Ok(PyBytes::new(py, &v))
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let v = self.read_line(py, size)?;
        Ok(PyBytes::new(py, &v))
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        let mut total = 0usize;
        loop {
            let line = self.read_line(py, None)?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            list.append(PyBytes::new(py, &line))?;
            if matches!(hint, Some(h) if h > 0 && total >= h as usize) {
                break;
            }
        }
        Ok(list)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.read_line(py, None)?;
        Ok(if line.is_empty() {
            None
        } else {
            Some(PyBytes::new(py, &line))
        })
    }
}
