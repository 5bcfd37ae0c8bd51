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

use crate::http::{cgi_header_name, percent_decode_cow, RequestHead};
use crate::listen::Listener;
use crate::uwsgi_proto::Packet;

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
/// var names) arrive on every request, and from a given client or proxy in
/// the same order. So the key for position `i` is first compared with the
/// one of position `i` last time (one memcmp), then looked up by name
/// (FNV-1a: short keys; the map stops growing at KEY_CACHE_MAX).
#[derive(Default)]
struct KeyCache {
    by_pos: Vec<(Box<[u8]>, Py<PyString>)>,
    by_name: HashMap<Box<[u8]>, Py<PyString>, BuildHasherDefault<Fnv>>,
}

const KEY_CACHE_MAX: usize = 512;
const KEY_POSITIONS: usize = 64;

impl KeyCache {
    /// The key for `raw`, the `pos`-th name of this request; `make` builds
    /// it when it is not cached.
    fn get<'py>(
        &mut self,
        py: Python<'py>,
        pos: usize,
        raw: &[u8],
        make: impl FnOnce() -> PyResult<Bound<'py, PyString>>,
    ) -> PyResult<Bound<'py, PyString>> {
        if let Some((name, key)) = self.by_pos.get(pos) {
            if **name == *raw {
                return Ok(key.bind(py).clone());
            }
        }
        let key = match self.by_name.get(raw) {
            Some(key) => key.bind(py).clone(),
            None => {
                let mut ptr = make()?.into_ptr();
                // SAFETY: `ptr` is an owned reference to a str; interning
                // replaces it with the owned reference of the interned equal
                // str (equal keys then share one object, which `from_http`
                // relies on).
                let key = unsafe {
                    ffi::PyUnicode_InternInPlace(&mut ptr);
                    Bound::from_owned_ptr(py, ptr).cast_into_unchecked::<PyString>()
                };
                if self.by_name.len() < KEY_CACHE_MAX {
                    self.by_name.insert(raw.into(), key.clone().unbind());
                }
                key
            }
        };
        if pos < KEY_POSITIONS {
            let entry = (Box::<[u8]>::from(raw), key.clone().unbind());
            if pos < self.by_pos.len() {
                self.by_pos[pos] = entry;
            } else if pos == self.by_pos.len() {
                self.by_pos.push(entry);
            }
        }
        Ok(key)
    }
}

thread_local! {
    /// `HTTP_*` keys by header name.
    static HEADER_KEYS: RefCell<KeyCache> = RefCell::new(KeyCache::default());
    /// Environ keys by uwsgi var name.
    static VAR_KEYS: RefCell<KeyCache> = RefCell::new(KeyCache::default());
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
    let method = match head.method() {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        other => PyString::new(py, other),
    };
    env.set_item(intern!(py, "REQUEST_METHOD"), method)?;
    env.set_item(
        intern!(py, "PATH_INFO"),
        latin1(py, &percent_decode_cow(head.path()))?,
    )?;
    env.set_item(intern!(py, "QUERY_STRING"), latin1(py, head.query())?)?;
    env.set_item(intern!(py, "REQUEST_URI"), latin1(py, head.target())?)?;
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
    let mut seen: Vec<*mut ffi::PyObject> = Vec::with_capacity(head.headers().len());
    HEADER_KEYS.with(|keys| -> PyResult<()> {
        let mut keys = keys.borrow_mut();
        for (i, (name, value)) in head.raw_headers().enumerate() {
            let key = keys.get(py, i, name, || {
                Ok(if name.eq_ignore_ascii_case(b"content-type") {
                    intern!(py, "CONTENT_TYPE").clone()
                } else if name.eq_ignore_ascii_case(b"content-length") {
                    intern!(py, "CONTENT_LENGTH").clone()
                } else {
                    // Header names are tokens (ASCII): never lossy.
                    PyString::new(py, &cgi_header_name(&String::from_utf8_lossy(name)))
                })
            })?;
            let value = latin1(py, value)?;
            let repeated = seen.contains(&key.as_ptr());
            seen.push(key.as_ptr());
            // Repeated headers are joined with a comma (RFC 9110 5.3);
            // cookies with "; " as browsers expect.
            if let Some(prev) = if repeated { env.get_item(&key)? } else { None } {
                let sep = if name.eq_ignore_ascii_case(b"cookie") {
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
        Ok(())
    })?;
    Ok(env)
}

/// Environ for a uwsgi-protocol request: the vars are the environ.
pub fn from_uwsgi<'py>(
    py: Python<'py>,
    template: &Bound<'py, PyDict>,
    packet: &Packet,
) -> PyResult<Bound<'py, PyDict>> {
    let env = template.copy()?;
    VAR_KEYS.with(|keys| -> PyResult<()> {
        let mut keys = keys.borrow_mut();
        for (i, (k, v)) in packet.vars().enumerate() {
            env.set_item(keys.get(py, i, k, || latin1(py, k))?, latin1(py, v)?)?;
        }
        Ok(())
    })?;
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
    if let Some(https) = packet.get(b"HTTPS") {
        if https.eq_ignore_ascii_case(b"on") || https == b"1" {
            env.set_item("wsgi.url_scheme", "https")?;
        }
    }
    if let Some(scheme) = packet.get(b"UWSGI_SCHEME") {
        env.set_item("wsgi.url_scheme", latin1(py, scheme)?)?;
    }
    Ok(env)
}
