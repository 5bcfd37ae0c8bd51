//! Building the WSGI environ (PEP 3333) from a parsed HTTP head or a uwsgi
//! vars packet.
//!
//! The part that never changes per listener (SERVER_*, wsgi.version,
//! wsgi.errors, ...) is built once per worker and copied per request; keys
//! are interned strings. Byte strings become latin-1 `str`, as PEP 3333
//! requires. No socket I/O and no app calls here.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::http::{cgi_header_name, percent_decode, RequestHead};
use crate::listen::Listener;

/// A `str` from bytes decoded as latin-1 (so every byte round-trips).
pub fn latin1<'py>(py: Python<'py>, b: &[u8]) -> PyResult<Bound<'py, PyString>> {
    if b.is_ascii() {
        // The usual case: an ASCII str is allocated and the bytes copied in,
        // with no decoding.
        let len = b.len() as ffi::Py_ssize_t;
        // SAFETY: PyUnicode_New returns a new compact ASCII str (maxchar
        // 127) of `len` characters, or NULL with an exception; its data is
        // `len` bytes (plus the NUL CPython set) that we fill before anyone
        // else sees the object.
        unsafe {
            let s = Bound::from_owned_ptr_or_err(py, ffi::PyUnicode_New(len, 127))?;
            std::ptr::copy_nonoverlapping(
                b.as_ptr(),
                ffi::PyUnicode_DATA(s.as_ptr()).cast::<u8>(),
                b.len(),
            );
            return Ok(s.cast_into_unchecked());
        }
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

/// A cache of interned keys: the same few dozen header names (or uwsgi
/// var names) arrive on every request. Hashed with FNV-1a: short keys, not
/// chosen by an attacker in a way that matters (the cache stops growing).
type KeyCache = RefCell<HashMap<Vec<u8>, Py<PyString>, BuildHasherDefault<Fnv>>>;

const KEY_CACHE_MAX: usize = 512;

fn cached_key<'py>(
    py: Python<'py>,
    cache: &'static std::thread::LocalKey<KeyCache>,
    raw: &[u8],
    make: impl FnOnce() -> PyResult<Bound<'py, PyString>>,
) -> PyResult<Bound<'py, PyString>> {
    cache.with(|k| {
        let mut k = k.borrow_mut();
        if let Some(s) = k.get(raw) {
            return Ok(s.bind(py).clone());
        }
        let mut ptr = make()?.into_ptr();
        // SAFETY: `ptr` is an owned reference to a str; interning replaces
        // it with the owned reference of the interned equal str (equal keys
        // then share one object, which `from_http` relies on).
        let s = unsafe {
            ffi::PyUnicode_InternInPlace(&mut ptr);
            Bound::from_owned_ptr(py, ptr).cast_into_unchecked::<PyString>()
        };
        if k.len() < KEY_CACHE_MAX {
            k.insert(raw.to_vec(), s.clone().unbind());
        }
        Ok(s)
    })
}

/// `HTTP_*` key for a header name, cached per thread.
fn header_key<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyString>> {
    thread_local! {
        static KEYS: KeyCache = RefCell::new(HashMap::default());
    }
    cached_key(py, &KEYS, name.as_bytes(), || {
        Ok(PyString::new(py, &cgi_header_name(name)))
    })
}

/// A uwsgi var name as an environ key, cached per thread.
fn var_key<'py>(py: Python<'py>, name: &[u8]) -> PyResult<Bound<'py, PyString>> {
    thread_local! {
        static KEYS: KeyCache = RefCell::new(HashMap::default());
    }
    cached_key(py, &KEYS, name, || latin1(py, name))
}

/// FNV-1a, for the key caches.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
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
    let method = match head.method.as_str() {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        other => PyString::new(py, other),
    };
    env.set_item(intern!(py, "REQUEST_METHOD"), method)?;
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
    // Keys set so far (interned: one object per key), to find a repeated
    // header without looking it up in the dict each time.
    let mut seen: Vec<*mut ffi::PyObject> = Vec::with_capacity(head.headers.len());
    for (name, value) in &head.headers {
        let key = if name.eq_ignore_ascii_case("content-type") {
            intern!(py, "CONTENT_TYPE").clone()
        } else if name.eq_ignore_ascii_case("content-length") {
            intern!(py, "CONTENT_LENGTH").clone()
        } else {
            header_key(py, name)?
        };
        let value = latin1(py, value)?;
        let repeated = seen.contains(&key.as_ptr());
        seen.push(key.as_ptr());
        // Repeated headers are joined with a comma (RFC 9110 5.3); cookies
        // with "; " as browsers expect.
        if let Some(prev) = if repeated { env.get_item(&key)? } else { None } {
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
        env.set_item(var_key(py, k)?, latin1(py, v)?)?;
    }
    // Keys nginx may omit but PEP 3333 requires.
    for (key, default) in [
        (intern!(py, "PATH_INFO"), ""),
        (intern!(py, "QUERY_STRING"), ""),
        (intern!(py, "REQUEST_METHOD"), "GET"),
        (intern!(py, "SERVER_PROTOCOL"), "HTTP/1.0"),
    ] {
        if !env.contains(key)? {
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
