//! Building the WSGI environ (PEP 3333) from a parsed HTTP head or a uwsgi
//! vars packet.
//!
//! The part that never changes per listener (SERVER_*, wsgi.version,
//! wsgi.errors, ...) is built once per worker and copied per request; keys
//! are interned strings. Byte strings become latin-1 `str`, as PEP 3333
//! requires. No socket I/O and no app calls here.

use std::cell::RefCell;
use std::collections::HashMap;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::http::{cgi_header_name, percent_decode, RequestHead};
use crate::listen::Listener;

/// A `str` from bytes decoded as latin-1 (so every byte round-trips).
pub fn latin1<'py>(py: Python<'py>, b: &[u8]) -> PyResult<Bound<'py, PyString>> {
    if b.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return Ok(PyString::new(py, unsafe {
            std::str::from_utf8_unchecked(b)
        }));
    }
    // SAFETY: pointer/length from a live slice; the result is a new
    // reference or NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyUnicode_DecodeLatin1(
                b.as_ptr().cast(),
                b.len() as ffi::Py_ssize_t,
                std::ptr::null(),
            ),
        )
        .map(|o| o.cast_into_unchecked())
    }
}

/// The per-listener constant part of every environ.
pub fn template(
    py: Python<'_>,
    listener: &Listener,
    multithread: bool,
    multiprocess: bool,
    file_wrapper: bool,
) -> PyResult<Py<PyDict>> {
    let d = PyDict::new(py);
    d.set_item("SCRIPT_NAME", "")?;
    d.set_item("SERVER_NAME", &listener.server_name)?;
    d.set_item("SERVER_PORT", &listener.server_port)?;
    d.set_item("wsgi.version", (1, 0))?;
    d.set_item("wsgi.url_scheme", "http")?;
    d.set_item("wsgi.errors", py.import("sys")?.getattr("stderr")?)?;
    d.set_item("wsgi.multithread", multithread)?;
    d.set_item("wsgi.multiprocess", multiprocess)?;
    d.set_item("wsgi.run_once", false)?;
    d.set_item("wsgi.input_terminated", true)?;
    // `--wsgi-disable-file-wrapper`: apps fall back to iterating the file.
    if file_wrapper {
        d.set_item(
            "wsgi.file_wrapper",
            py.get_type::<super::response::FileWrapper>(),
        )?;
    }
    Ok(d.unbind())
}

/// `HTTP_*` keys for header names, cached per thread: the same few dozen
/// names arrive on every request.
fn header_key<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyString> {
    thread_local! {
        static KEYS: RefCell<HashMap<String, Py<PyString>>> = RefCell::new(HashMap::new());
    }
    KEYS.with(|k| {
        let mut k = k.borrow_mut();
        if let Some(s) = k.get(name) {
            return s.bind(py).clone();
        }
        let s = PyString::intern(py, &cgi_header_name(name));
        if k.len() < 512 {
            k.insert(name.to_owned(), s.clone().unbind());
        }
        s
    })
}

/// Environ for an HTTP request.
pub fn from_http<'py>(
    py: Python<'py>,
    template: &Bound<'py, PyDict>,
    head: &RequestHead,
    remote_addr: &str,
    remote_port: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let env = template.copy()?;
    env.set_item(intern!(py, "REQUEST_METHOD"), head.method.as_str())?;
    env.set_item(
        intern!(py, "PATH_INFO"),
        latin1(py, &percent_decode(&head.path))?,
    )?;
    env.set_item(intern!(py, "QUERY_STRING"), latin1(py, &head.query)?)?;
    env.set_item(intern!(py, "REQUEST_URI"), latin1(py, &head.target)?)?;
    let proto = if head.minor_version == 0 {
        intern!(py, "HTTP/1.0")
    } else {
        intern!(py, "HTTP/1.1")
    };
    env.set_item(intern!(py, "SERVER_PROTOCOL"), proto)?;
    env.set_item(intern!(py, "REMOTE_ADDR"), remote_addr)?;
    env.set_item(intern!(py, "REMOTE_PORT"), remote_port)?;
    for (name, value) in &head.headers {
        let key = if name.eq_ignore_ascii_case("content-type") {
            intern!(py, "CONTENT_TYPE").clone()
        } else if name.eq_ignore_ascii_case("content-length") {
            intern!(py, "CONTENT_LENGTH").clone()
        } else {
            header_key(py, name)
        };
        let value = latin1(py, value)?;
        // Repeated headers are joined with a comma (RFC 9110 5.3); cookies
        // with "; " as browsers expect.
        if let Some(prev) = env.get_item(&key)? {
            let sep = if name.eq_ignore_ascii_case("cookie") {
                "; "
            } else {
                ","
            };
            let joined = format!("{}{}{}", prev.extract::<String>()?, sep, value.to_str()?);
            env.set_item(&key, joined)?;
        } else {
            env.set_item(&key, value)?;
        }
    }
    Ok(env)
}

/// Environ for a uwsgi-protocol request: the vars are the environ.
pub fn from_uwsgi<'py>(
    py: Python<'py>,
    template: &Bound<'py, PyDict>,
    vars: &[(Vec<u8>, Vec<u8>)],
) -> PyResult<Bound<'py, PyDict>> {
    let env = template.copy()?;
    for (k, v) in vars {
        env.set_item(latin1(py, k)?, latin1(py, v)?)?;
    }
    // Keys nginx may omit but PEP 3333 requires.
    for key in [
        "PATH_INFO",
        "QUERY_STRING",
        "REQUEST_METHOD",
        "SERVER_PROTOCOL",
    ] {
        if !env.contains(key)? {
            let default = match key {
                "REQUEST_METHOD" => "GET",
                "SERVER_PROTOCOL" => "HTTP/1.0",
                _ => "",
            };
            env.set_item(key, default)?;
        }
    }
    if let Some(https) = vars.iter().find(|(k, _)| k == b"HTTPS").map(|(_, v)| v) {
        if https.eq_ignore_ascii_case(b"on") || https == b"1" {
            env.set_item("wsgi.url_scheme", "https")?;
        }
    }
    if let Some(scheme) = vars
        .iter()
        .find(|(k, _)| k == b"UWSGI_SCHEME")
        .map(|(_, v)| v)
    {
        env.set_item("wsgi.url_scheme", latin1(py, scheme)?)?;
    }
    Ok(env)
}
