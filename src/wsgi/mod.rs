//! Calling a WSGI app for one request (PEP 3333): hand it the environ and
//! `start_response`, walk the iterable it returns, always call `close()`,
//! and turn any exception into a 500 (or a cut connection once headers are
//! out) with the traceback in the log.
//!
//! This is the only place the GIL is held on the request path. Sockets are
//! touched only through `input` and `response`, which release the GIL.

pub mod app;
pub mod environ;
pub mod input;
pub mod output;
pub mod response;
pub mod reuse;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::conn::Unread;
use input::BodyReader;
use output::Output;
use response::{FileWrapper, ResponseCtx, StartResponse};
use reuse::CoreObjects;

/// What happened, for the access log and the connection.
pub struct Outcome {
    pub status: u16,
    /// Body bytes the app produced (what the access log reports).
    pub body_bytes: u64,
    /// Bytes written to the socket, head included (for the stats).
    pub wire_bytes: u64,
    pub keep_alive: bool,
    /// Bytes read past this request's body: the next pipelined request.
    pub leftover: Vec<u8>,
    /// The app raised (counted as an exception in the stats).
    pub raised: bool,
    /// The end of the response, still to be written (without the GIL);
    /// the core's output, given back.
    pub tail: Output,
    /// What the client may still be sending of the body: read and
    /// discarded before the connection is closed (see `conn::Linger`).
    pub unread: Unread,
    /// For the access log (see `StartResponse`).
    pub header_count: usize,
    pub head_bytes: u64,
    pub chunks: u64,
    pub via_sendfile: bool,
    pub write_failed: bool,
}

/// The largest unread request body we drain to keep a connection alive;
/// beyond that, closing is cheaper than reading.
const DRAIN_LIMIT: u64 = 1 << 20;

/// Run the app for one request. Its environ is `template` with the
/// entries in `objects` set (everything but `wsgi.input`); `objects` also
/// lends the core's (empty) output, given back in the outcome.
pub fn call(
    py: Python<'_>,
    app: &Bound<'_, PyAny>,
    template: &Bound<'_, PyDict>,
    body: BodyReader,
    ctx: ResponseCtx,
    quiet_write_errors: bool,
    objects: &mut CoreObjects,
) -> Outcome {
    let input = match objects.input(py, body) {
        Ok(i) => i,
        Err(e) => {
            objects.entries.clear(py);
            return internal_failure(py, &e, std::mem::take(&mut objects.out));
        }
    };
    let sr = match objects.start_response(py, ctx) {
        Ok(s) => s,
        Err(e) => {
            objects.entries.clear(py);
            return internal_failure(py, &e, Output::default());
        }
    };
    objects.entries.set(
        pyo3::intern!(py, "wsgi.input"),
        input.bind(py).clone().into_any(),
    );
    let environ = objects.environ(py, template);
    let sr_b = sr.bind(py);
    let mut raised = false;
    let run = environ
        .as_ref()
        .map_err(|e| e.clone_ref(py))
        .and_then(|environ| app.call1((environ, sr_b)))
        .and_then(|result| respond(py, &result, sr_b));
    // A child the app forked gets here only by returning: it must not
    // answer, count or log the request of its parent.
    crate::forked::exit_if_child();
    if let Err(e) = run {
        // A malformed request body is the client's fault: 400/413, not 500.
        let client_fault = input.bind(py).borrow().body_error_status();
        // The client went away mid-response: with --ignore-write-errors
        // that is not worth a traceback.
        let gone = quiet_write_errors
            && sr_b.borrow().write_failed
            && e.is_instance_of::<pyo3::exceptions::PyOSError>(py);
        raised = client_fault.is_none() && !gone;
        if raised {
            report(py, &e);
        }
        let mut s = sr_b.borrow_mut();
        if s.headers_sent {
            // Too late for a 500: cut the connection so the client sees an
            // incomplete response rather than a truncated "success".
            s.ctx.keep_alive = false;
        } else {
            let status = client_fault.unwrap_or(500);
            s.set_error(py, status);
            let body = format!("{}\n", crate::http::reason_phrase(status));
            s.send_head(Some(body.len() as u64));
            let _ = s.push_body(py, body.as_bytes());
            s.finish(Some(body.len() as u64));
        }
    }
    let mut s = sr_b.borrow_mut();
    let mut tail = s.take_output();
    if s.write_failed {
        tail.discard(); // the client has gone: nothing more to write
    }
    let mut keep_alive = s.ctx.keep_alive && !s.write_failed;
    let reader = input.bind(py).borrow_mut().take_reader();
    let (leftover, unread) = match reader {
        Some(mut r) => {
            if r.awaits_continue() && !r.is_finished() {
                // The client holds the body back until "100 Continue",
                // which would now come after the final response: close.
                keep_alive = false;
            } else if keep_alive && !r.is_finished() {
                // GIL: released while discarding the unread body.
                keep_alive = py.detach(|| r.drain(DRAIN_LIMIT));
            }
            keep_alive &= !r.broken;
            let unread = r.unread();
            (r.into_leftover(), unread)
        }
        None => {
            keep_alive = false;
            (Vec::new(), Unread::Unknown)
        }
    };
    if let Ok(env) = environ {
        objects.give_back_environ(env);
    }
    Outcome {
        status: if s.code == 0 { 500 } else { s.code },
        body_bytes: s.body_bytes,
        wire_bytes: s.wire_bytes,
        keep_alive,
        leftover,
        raised,
        tail,
        unread,
        header_count: s.header_count,
        head_bytes: s.head_bytes,
        chunks: s.chunks,
        via_sendfile: s.via_sendfile,
        write_failed: s.write_failed,
    }
}

/// Walk the app's iterable into the response; `close()` is always called.
fn respond(
    py: Python<'_>,
    result: &Bound<'_, PyAny>,
    sr: &Bound<'_, StartResponse>,
) -> PyResult<()> {
    let walked = walk(py, result, sr);
    // A plain list or tuple has no close(): not looking saves raising and
    // clearing an AttributeError on every request.
    let plain = result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>();
    let closed = if plain {
        Ok(())
    } else {
        match result.getattr_opt(pyo3::intern!(py, "close")) {
            Ok(Some(close)) => close.call0().map(|_| ()),
            Ok(None) | Err(_) => Ok(()),
        }
    };
    let whole = walked?;
    closed?;
    let mut s = sr.borrow_mut();
    if !s.status_set() {
        return Err(pyo3::exceptions::PyAssertionError::new_err(
            "the app returned without calling start_response()",
        ));
    }
    // A body held whole (list/tuple) is queued now, after close(), so an
    // error in close() can still become a 500; its bytes objects are
    // referenced, not copied, and written by the core without the GIL.
    match whole {
        Some((items, len)) if !s.headers_sent => {
            s.send_head(Some(len));
            for item in &items {
                s.push_bytes(item);
            }
            s.finish(Some(len));
        }
        Some((items, _)) => {
            // write() was used before returning: keep streaming.
            for item in &items {
                s.push_bytes(item);
            }
            s.finish(None);
        }
        None => s.finish(None),
    }
    Ok(())
}

/// The bytes objects of a body held whole, and their total length.
type Whole<'py> = Option<(Vec<Bound<'py, PyBytes>>, u64)>;

fn walk<'py>(
    py: Python<'py>,
    result: &Bound<'py, PyAny>,
    sr: &Bound<'py, StartResponse>,
) -> PyResult<Whole<'py>> {
    // Fast path: a list or tuple of bytes is sent in one write with a
    // Content-Length.
    if let Ok(list) = result.cast::<PyList>() {
        return gather(sr, list.iter()).map(Some);
    }
    if let Ok(tuple) = result.cast::<PyTuple>() {
        return gather(sr, tuple.iter()).map(Some);
    }
    if let Ok(fw) = result.cast::<FileWrapper>() {
        if let Some((fd, offset, size)) = real_file(py, &fw.borrow().filelike) {
            check_started(sr)?;
            sr.borrow_mut().sendfile(py, fd, offset, size)?;
            return Ok(None);
        }
    }
    for item in result.try_iter()? {
        let item = item?;
        let bytes = item.cast::<PyBytes>().map_err(|_| non_bytes(&item))?;
        check_started(sr)?;
        let mut s = sr.borrow_mut();
        s.push_bytes(bytes);
        // Streaming: each chunk goes out as it is produced.
        s.flush(py)?;
        if s.write_failed {
            break; // the client has gone (--disable-write-exception)
        }
    }
    Ok(None)
}

fn gather<'py>(
    sr: &Bound<'py, StartResponse>,
    items: impl ExactSizeIterator<Item = Bound<'py, PyAny>>,
) -> PyResult<(Vec<Bound<'py, PyBytes>>, u64)> {
    let mut body = Vec::with_capacity(items.len());
    let mut len = 0u64;
    for item in items {
        let bytes = item
            .cast_into::<PyBytes>()
            .map_err(|e| non_bytes(&e.into_inner()))?;
        len += bytes.as_bytes().len() as u64;
        body.push(bytes);
    }
    check_started(sr)?;
    Ok((body, len))
}

fn check_started(sr: &Bound<'_, StartResponse>) -> PyResult<()> {
    if sr.borrow().status_set() {
        Ok(())
    } else {
        Err(pyo3::exceptions::PyAssertionError::new_err(
            "the app yielded body data before calling start_response()",
        ))
    }
}

fn non_bytes(item: &Bound<'_, PyAny>) -> PyErr {
    let ty = item
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    pyo3::exceptions::PyTypeError::new_err(format!("WSGI app must yield bytes, not {ty}"))
}

/// (fd, offset, bytes left) when the wrapped object is a regular file.
fn real_file(py: Python<'_>, filelike: &Py<PyAny>) -> Option<(i32, i64, u64)> {
    let f = filelike.bind(py);
    let fd: i32 = f.call_method0("fileno").ok()?.extract().ok()?;
    let offset: i64 = f.call_method0("tell").ok()?.extract().ok()?;
    // SAFETY: stat is plain data; fstat on an fd the file object owns.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 || (st.st_mode & libc::S_IFMT) != libc::S_IFREG {
        return None;
    }
    Some((fd, offset, (st.st_size as i64 - offset).max(0) as u64))
}

/// Log an app exception with its traceback.
fn report(py: Python<'_>, e: &PyErr) {
    crate::log::line(&format!(
        "Traceback of an exception raised by the app ({}):",
        crate::log::ctime_now()
    ));
    crate::log::block(crate::python::format_exception(py, e).as_bytes());
}

fn internal_failure(py: Python<'_>, e: &PyErr, tail: Output) -> Outcome {
    report(py, e);
    Outcome {
        status: 500,
        body_bytes: 0,
        wire_bytes: 0,
        keep_alive: false,
        leftover: Vec::new(),
        raised: true,
        tail,
        unread: Unread::Unknown,
        header_count: 0,
        head_bytes: 0,
        chunks: 0,
        via_sendfile: false,
        write_failed: false,
    }
}
