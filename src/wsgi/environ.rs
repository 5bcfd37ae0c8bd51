//! Building the WSGI environ (PEP 3333) from a parsed HTTP head or a uwsgi
//! vars packet.
//!
//! The part that never changes per listener (SERVER_*, wsgi.version,
//! wsgi.errors, ...) is built once per worker (the template); a request's
//! own items are gathered as [`Entries`], and its environ is the template
//! plus them ([`Entries::fresh`], or the core's last environ patched, see
//! `reuse`). Keys are interned strings. Byte strings become latin-1 `str`,
//! as PEP 3333 requires. No socket I/O and no app calls here.

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

extern "C" {
    // CPython's presized dict (exported by 3.9-3.13, cpython/dictobject.h;
    // pyo3-ffi leaves its private functions out).
    fn _PyDict_NewPresized(minused: ffi::Py_ssize_t) -> *mut ffi::PyObject;
}

/// Entries the template's table has room for. `PyDict_Copy` keeps the
/// table size, so every environ copied from the template takes this many
/// keys without a resize: the template's ~11, the ~7 request keys,
/// `wsgi.input` and ~20 headers (or a proxy's uwsgi vars). A request with
/// more is still right, one resize dearer. (Unsized, the copy took the
/// template's 32-slot table and every hello request resized it, ~760
/// instructions.)
const ENVIRON_ROOM: ffi::Py_ssize_t = 40;

/// An empty dict whose table holds [`ENVIRON_ROOM`] entries.
fn presized_dict(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    // SAFETY: returns a new, empty dict or NULL with an exception set.
    unsafe {
        Ok(
            Bound::from_owned_ptr_or_err(py, _PyDict_NewPresized(ENVIRON_ROOM))?
                .cast_into_unchecked::<PyDict>(),
        )
    }
}

/// The items a request sets in its listener's template, in the order
/// they are set, each key once: setting a key again replaces its value in
/// place, as setting it in the dict would. The environ is the template
/// with these set, in this order. Keys are interned (one object per key),
/// so keys are compared by identity.
#[derive(Default)]
pub struct Entries {
    items: Vec<(Py<PyString>, Py<PyAny>)>,
    /// One bit per key set, chosen by its address: a key whose bit is
    /// clear is not in `items` (no scan for the usual, unrepeated key).
    seen: u64,
}

impl Entries {
    fn bit(key: &Bound<'_, PyString>) -> u64 {
        1 << ((key.as_ptr() as usize >> 4) & 63)
    }

    /// Where `key` is, if set.
    fn position(&self, key: &Bound<'_, PyString>) -> Option<usize> {
        if self.seen & Self::bit(key) == 0 {
            return None;
        }
        let k = key.as_ptr();
        self.items.iter().position(|(have, _)| have.as_ptr() == k)
    }

    /// Set `key` (interned) to `value`.
    pub fn set<'py>(&mut self, key: &Bound<'py, PyString>, value: Bound<'py, PyAny>) {
        match self.position(key) {
            Some(i) => {
                let old = std::mem::replace(&mut self.items[i].1, value.unbind());
                // Given back through its Bound: the GIL is known held.
                drop(old.into_bound(key.py()));
            }
            None => {
                self.seen |= Self::bit(key);
                self.items.push((key.clone().unbind(), value.unbind()));
            }
        }
    }

    /// The value set for `key`.
    fn get<'a, 'py>(
        &'a self,
        py: Python<'py>,
        key: &Bound<'py, PyString>,
    ) -> Option<&'a Bound<'py, PyAny>> {
        self.position(key).map(|i| self.items[i].1.bind(py))
    }

    pub fn items(&self) -> &[(Py<PyString>, Py<PyAny>)] {
        &self.items
    }

    /// Forget every item.
    pub fn clear(&mut self, py: Python<'_>) {
        // Given back through Bounds: a `Py` dropped asks whether the GIL
        // is held (a thread-local lookup, ~40 references a request).
        for (key, value) in self.items.drain(..) {
            drop((key.into_bound(py), value.into_bound(py)));
        }
        self.seen = 0;
    }

    /// A new environ: a copy of `template` with the items set.
    pub fn fresh<'py>(
        &self,
        py: Python<'py>,
        template: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = template.copy()?;
        for (key, value) in &self.items {
            env.set_item(key.bind(py), value.bind(py))?;
        }
        Ok(env)
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
    let d = presized_dict(py)?;
    d.set_item(PyString::intern(py, "SCRIPT_NAME"), "")?;
    d.set_item(PyString::intern(py, "SERVER_NAME"), &listener.server_name)?;
    d.set_item(PyString::intern(py, "SERVER_PORT"), &listener.server_port)?;
    d.set_item(PyString::intern(py, "wsgi.version"), (1, 0))?;
    d.set_item(PyString::intern(py, "wsgi.url_scheme"), "http")?;
    d.set_item(
        PyString::intern(py, "wsgi.errors"),
        py.import("sys")?.getattr("stderr")?,
    )?;
    d.set_item(PyString::intern(py, "wsgi.multithread"), multithread)?;
    d.set_item(PyString::intern(py, "wsgi.multiprocess"), multiprocess)?;
    d.set_item(PyString::intern(py, "wsgi.run_once"), false)?;
    d.set_item(PyString::intern(py, "wsgi.input_terminated"), true)?;
    // `--wsgi-disable-file-wrapper`: apps fall back to iterating the file.
    if file_wrapper {
        d.set_item(
            PyString::intern(py, "wsgi.file_wrapper"),
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

/// A cache of value strs by position: a client or a proxy sends the same
/// Host, User-Agent, Accept... (and, on a keep-alive connection, comes
/// from the same address) on every request, so the value of position `i`
/// is compared with the str made for position `i` last time and that str
/// is reused when the bytes are equal (one memcmp instead of a new str and
/// its deallocation). A str is immutable once shared (CPython changes a
/// str in place only while it has a single reference, and the cache holds
/// one), so two requests seeing one object cannot tell.
#[derive(Default)]
struct ValueCache {
    by_pos: Vec<Option<Py<PyString>>>,
}

const VALUE_POSITIONS: usize = 64;

impl ValueCache {
    /// The latin-1 str of `raw`, the value at position `pos`.
    fn get<'py>(
        &mut self,
        py: Python<'py>,
        pos: usize,
        raw: &[u8],
    ) -> PyResult<Bound<'py, PyString>> {
        if let Some(Some(cached)) = self.by_pos.get(pos) {
            let cached = cached.bind(py);
            if latin1_bytes(cached) == Some(raw) {
                return Ok(cached.clone());
            }
        }
        let value = latin1(py, raw)?;
        if pos < VALUE_POSITIONS {
            if pos >= self.by_pos.len() {
                self.by_pos.resize_with(pos + 1, || None);
            }
            self.by_pos[pos] = Some(value.clone().unbind());
        }
        Ok(value)
    }
}

/// The latin-1 bytes of a str whose characters are all below 256 (what
/// [`latin1`] makes, and a header value an app passes to start_response):
/// its data, one byte per character, read in place. None for others.
pub(super) fn latin1_bytes<'a>(s: &'a Bound<'_, PyString>) -> Option<&'a [u8]> {
    let p = s.as_ptr();
    // SAFETY: `s` is a live str (the GIL is held through its Bound). A
    // ready str's kind, length and data are valid (one not ready, made by
    // a deprecated C API before 3.12, has kind 0: None); a 1-byte-kind
    // str's data is `length` bytes, borrowed for as long as `s` (strs are
    // immutable while shared).
    unsafe {
        if ffi::PyUnicode_KIND(p) != ffi::PyUnicode_1BYTE_KIND {
            return None;
        }
        let len = ffi::PyUnicode_GET_LENGTH(p) as usize;
        Some(std::slice::from_raw_parts(
            ffi::PyUnicode_DATA(p).cast::<u8>(),
            len,
        ))
    }
}

thread_local! {
    /// `HTTP_*` keys by header name.
    static HEADER_KEYS: RefCell<KeyCache> = RefCell::new(KeyCache::default());
    /// Environ keys by uwsgi var name.
    static VAR_KEYS: RefCell<KeyCache> = RefCell::new(KeyCache::default());
    /// HTTP request values: PATH_INFO, QUERY_STRING, REQUEST_URI,
    /// REMOTE_ADDR, REMOTE_PORT, then the headers (`HTTP_FIXED` + i).
    static HTTP_VALUES: RefCell<ValueCache> = RefCell::new(ValueCache::default());
    /// uwsgi var values by position.
    static VAR_VALUES: RefCell<ValueCache> = RefCell::new(ValueCache::default());
}

/// Positions of the HTTP values before the headers'.
const HTTP_FIXED: usize = 5;

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

/// The items of an HTTP request's environ (wsgi.input aside), into
/// `entries` (emptied first).
pub fn from_http(
    py: Python<'_>,
    entries: &mut Entries,
    head: &RequestHead,
    remote_addr: &str,
    remote_port: &str,
) -> PyResult<()> {
    entries.clear(py);
    let method = match head.method() {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        other => PyString::new(py, other),
    };
    entries.set(intern!(py, "REQUEST_METHOD"), method.into_any());
    let proto = if head.minor_version == 0 {
        intern!(py, "HTTP/1.0")
    } else {
        intern!(py, "HTTP/1.1")
    };
    HTTP_VALUES.with(|values| -> PyResult<()> {
        let mut values = values.borrow_mut();
        let path = percent_decode_cow(head.path());
        entries.set(
            intern!(py, "PATH_INFO"),
            values.get(py, 0, &path)?.into_any(),
        );
        entries.set(
            intern!(py, "QUERY_STRING"),
            values.get(py, 1, head.query())?.into_any(),
        );
        entries.set(
            intern!(py, "REQUEST_URI"),
            values.get(py, 2, head.target())?.into_any(),
        );
        entries.set(intern!(py, "SERVER_PROTOCOL"), proto.clone().into_any());
        entries.set(
            intern!(py, "REMOTE_ADDR"),
            values.get(py, 3, remote_addr.as_bytes())?.into_any(),
        );
        entries.set(
            intern!(py, "REMOTE_PORT"),
            values.get(py, 4, remote_port.as_bytes())?.into_any(),
        );
        HEADER_KEYS.with(|keys| set_headers(py, entries, head, &mut keys.borrow_mut(), &mut values))
    })
}

/// The `HTTP_*` (and CONTENT_*) items of an HTTP request's environ.
fn set_headers(
    py: Python<'_>,
    entries: &mut Entries,
    head: &RequestHead,
    keys: &mut KeyCache,
    values: &mut ValueCache,
) -> PyResult<()> {
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
        let value = values.get(py, HTTP_FIXED + i, value)?;
        // Repeated headers are joined with a comma (RFC 9110 5.3);
        // cookies with "; " as browsers expect.
        if let Some(prev) = entries.get(py, &key) {
            let sep = if name.eq_ignore_ascii_case(b"cookie") {
                "; "
            } else {
                ","
            };
            let joined = format!("{}{}{}", prev.extract::<String>()?, sep, value.to_str()?);
            entries.set(&key, PyString::new(py, &joined).into_any());
        } else {
            entries.set(&key, value.into_any());
        }
    }
    Ok(())
}

/// The items of a uwsgi-protocol request's environ (the vars are the
/// environ; wsgi.input aside), into `entries` (emptied first).
pub fn from_uwsgi(py: Python<'_>, entries: &mut Entries, packet: &Packet) -> PyResult<()> {
    entries.clear(py);
    // Keys nginx may omit but PEP 3333 requires.
    let required = [
        (intern!(py, "PATH_INFO"), intern!(py, "")),
        (intern!(py, "QUERY_STRING"), intern!(py, "")),
        (intern!(py, "REQUEST_METHOD"), intern!(py, "GET")),
        (intern!(py, "SERVER_PROTOCOL"), intern!(py, "HTTP/1.0")),
    ];
    let mut present = [false; 4];
    // The first HTTPS and UWSGI_SCHEME vars. Keys are interned, so a var
    // is one of these by the identity of its key: no lookups, no scans.
    let (https_key, scheme_key) = (intern!(py, "HTTPS"), intern!(py, "UWSGI_SCHEME"));
    let (mut https, mut scheme) = (None, None);
    VAR_KEYS.with(|keys| -> PyResult<()> {
        let mut keys = keys.borrow_mut();
        VAR_VALUES.with(|values| -> PyResult<()> {
            let mut values = values.borrow_mut();
            for (i, (k, v)) in packet.vars().enumerate() {
                let key = keys.get(py, i, k, || latin1(py, k))?;
                if key.is(https_key) {
                    https = https.or(Some(v));
                } else if key.is(scheme_key) {
                    scheme = scheme.or(Some(v));
                } else if let Some(j) = required.iter().position(|(r, _)| key.is(r)) {
                    present[j] = true;
                }
                entries.set(&key, values.get(py, i, v)?.into_any());
            }
            Ok(())
        })
    })?;
    for ((key, default), present) in required.iter().zip(present) {
        if !present {
            entries.set(key, (*default).clone().into_any());
        }
    }
    if let Some(https) = https {
        if https.eq_ignore_ascii_case(b"on") || https == b"1" {
            entries.set(
                intern!(py, "wsgi.url_scheme"),
                intern!(py, "https").clone().into_any(),
            );
        }
    }
    if let Some(scheme) = scheme {
        entries.set(
            intern!(py, "wsgi.url_scheme"),
            latin1(py, scheme)?.into_any(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_head, Limits, Parsed};

    fn head(raw: &str) -> RequestHead {
        match parse_head(raw.as_bytes(), &Limits::default()) {
            Ok(Parsed::Complete { value, .. }) => value,
            other => panic!("{other:?}"),
        }
    }

    fn environ_of<'py>(py: Python<'py>, raw: &str, addr: &str) -> Bound<'py, PyDict> {
        let template = PyDict::new(py);
        let mut entries = Entries::default();
        from_http(py, &mut entries, &head(raw), addr, "40000").unwrap();
        entries.fresh(py, &template).unwrap()
    }

    fn item<'py>(env: &Bound<'py, PyDict>, key: &str) -> Bound<'py, PyAny> {
        env.get_item(key).unwrap().unwrap()
    }

    #[test]
    fn equal_values_at_a_position_share_one_str_and_changed_ones_do_not() {
        Python::initialize();
        Python::attach(|py| {
            let mut cache = ValueCache::default();
            let a = cache.get(py, 3, b"text/html").unwrap();
            let b = cache.get(py, 3, b"text/html").unwrap();
            assert!(a.is(&b));
            // Another value at that position: a new str, then cached.
            let c = cache.get(py, 3, b"text/plain").unwrap();
            assert_eq!(c.to_str().unwrap(), "text/plain");
            assert!(!c.is(&a));
            assert!(cache.get(py, 3, b"text/plain").unwrap().is(&c));
            // Same length, one byte apart; and a prefix.
            assert_eq!(
                cache.get(py, 3, b"text/plaiN").unwrap().to_str().unwrap(),
                "text/plaiN"
            );
            assert_eq!(cache.get(py, 3, b"text").unwrap().to_str().unwrap(), "text");
            // Positions do not share.
            let d = cache.get(py, 4, b"text").unwrap();
            assert_eq!(d.to_str().unwrap(), "text");
            // Latin-1 bytes above 127, and the empty value.
            let e = cache.get(py, 5, b"caf\xe9").unwrap();
            assert_eq!(e.to_str().unwrap(), "caf\u{e9}");
            assert!(cache.get(py, 5, b"caf\xe9").unwrap().is(&e));
            assert_eq!(
                cache.get(py, 5, b"caf\xe8").unwrap().to_str().unwrap(),
                "caf\u{e8}"
            );
            assert_eq!(cache.get(py, 5, b"").unwrap().to_str().unwrap(), "");
            // Beyond the cached positions: still right, just not kept.
            let far = VALUE_POSITIONS + 1;
            assert_eq!(cache.get(py, far, b"x").unwrap().to_str().unwrap(), "x");
            assert_eq!(cache.by_pos.len(), 6);
        });
    }

    #[test]
    fn a_str_of_wider_characters_is_never_taken_for_latin1_bytes() {
        Python::initialize();
        Python::attach(|py| {
            let wide = PyString::new(py, "\u{20ac}");
            assert_eq!(latin1_bytes(&wide), None);
            let narrow = PyString::new(py, "\u{e9}t\u{e9}");
            assert_eq!(latin1_bytes(&narrow), Some(&b"\xe9t\xe9"[..]));
        });
    }

    #[test]
    fn environs_of_consecutive_requests_carry_each_its_own_values() {
        Python::initialize();
        Python::attach(|py| {
            let one = "GET /a?x=1 HTTP/1.1\r\nHost: h1\r\nAccept: */*\r\n\r\n";
            let two = "GET /b HTTP/1.1\r\nHost: h2\r\nX-A: 1\r\nX-A: 2\r\n\r\n";
            let e1 = environ_of(py, one, "10.0.0.1");
            let e2 = environ_of(py, two, "10.0.0.2");
            let e3 = environ_of(py, one, "10.0.0.1");
            for (env, path, query, host, addr) in [
                (&e1, "/a", "x=1", "h1", "10.0.0.1"),
                (&e2, "/b", "", "h2", "10.0.0.2"),
                (&e3, "/a", "x=1", "h1", "10.0.0.1"),
            ] {
                assert_eq!(item(env, "PATH_INFO").extract::<String>().unwrap(), path);
                assert_eq!(
                    item(env, "QUERY_STRING").extract::<String>().unwrap(),
                    query
                );
                assert_eq!(item(env, "HTTP_HOST").extract::<String>().unwrap(), host);
                assert_eq!(item(env, "REMOTE_ADDR").extract::<String>().unwrap(), addr);
                assert_eq!(
                    item(env, "REMOTE_PORT").extract::<String>().unwrap(),
                    "40000"
                );
            }
            // The second request's repeated header is joined; its position
            // held "*/*" before, and the third request gets "*/*" again.
            assert_eq!(item(&e2, "HTTP_X_A").extract::<String>().unwrap(), "1,2");
            assert!(!e2.contains("HTTP_ACCEPT").unwrap());
            assert_eq!(item(&e3, "HTTP_ACCEPT").extract::<String>().unwrap(), "*/*");
            assert!(!e3.contains("HTTP_X_A").unwrap());
            // A request like the one before shares its strs.
            let e4 = environ_of(py, one, "10.0.0.1");
            for key in ["HTTP_HOST", "HTTP_ACCEPT", "REMOTE_ADDR", "PATH_INFO"] {
                assert!(item(&e3, key).is(item(&e4, key)), "{key}");
            }
        });
    }

    fn uwsgi_environ<'py>(py: Python<'py>, vars: &[(&str, &str)]) -> Bound<'py, PyDict> {
        let vars: Vec<(&[u8], &[u8])> = vars
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        let raw = crate::uwsgi_proto::encode_vars(0, &vars);
        let packet = match crate::uwsgi_proto::parse_packet(&raw, 65536) {
            Ok(crate::uwsgi_proto::Parsed::Complete { value, .. }) => value,
            other => panic!("{other:?}"),
        };
        let template = PyDict::new(py);
        template.set_item("wsgi.url_scheme", "http").unwrap();
        let mut entries = Entries::default();
        from_uwsgi(py, &mut entries, &packet).unwrap();
        entries.fresh(py, &template).unwrap()
    }

    fn text(env: &Bound<'_, PyDict>, key: &str) -> String {
        item(env, key).extract::<String>().unwrap()
    }

    #[test]
    fn uwsgi_vars_fill_the_environ_with_the_required_keys_and_the_scheme() {
        Python::initialize();
        Python::attach(|py| {
            // nginx's usual vars: nothing added, the scheme stays http.
            let env = uwsgi_environ(
                py,
                &[
                    ("REQUEST_METHOD", "POST"),
                    ("PATH_INFO", "/p"),
                    ("QUERY_STRING", "a=1"),
                    ("SERVER_PROTOCOL", "HTTP/1.1"),
                    ("HTTPS", "off"),
                ],
            );
            assert_eq!(text(&env, "REQUEST_METHOD"), "POST");
            assert_eq!(text(&env, "PATH_INFO"), "/p");
            assert_eq!(text(&env, "QUERY_STRING"), "a=1");
            assert_eq!(text(&env, "SERVER_PROTOCOL"), "HTTP/1.1");
            assert_eq!(text(&env, "wsgi.url_scheme"), "http");
            // None of the required keys: the defaults; the first HTTPS counts.
            let env = uwsgi_environ(py, &[("HTTPS", "on"), ("HTTPS", "off")]);
            assert_eq!(text(&env, "REQUEST_METHOD"), "GET");
            assert_eq!(text(&env, "PATH_INFO"), "");
            assert_eq!(text(&env, "QUERY_STRING"), "");
            assert_eq!(text(&env, "SERVER_PROTOCOL"), "HTTP/1.0");
            assert_eq!(text(&env, "HTTPS"), "off");
            assert_eq!(text(&env, "wsgi.url_scheme"), "https");
            // Some of them; UWSGI_SCHEME wins over HTTPS.
            let env = uwsgi_environ(
                py,
                &[("HTTPS", "1"), ("UWSGI_SCHEME", "wss"), ("PATH_INFO", "/x")],
            );
            assert_eq!(text(&env, "PATH_INFO"), "/x");
            assert_eq!(text(&env, "REQUEST_METHOD"), "GET");
            assert_eq!(text(&env, "wsgi.url_scheme"), "wss");
        });
    }

    #[test]
    fn an_environ_copied_from_a_presized_template_does_not_grow() {
        Python::initialize();
        Python::attach(|py| {
            let template = presized_dict(py).unwrap();
            for i in 0..11 {
                template.set_item(format!("T{i}"), i).unwrap();
            }
            let env = template.copy().unwrap();
            let size = |d: &Bound<'_, PyDict>| -> usize {
                py.import("sys")
                    .unwrap()
                    .call_method1("getsizeof", (d,))
                    .unwrap()
                    .extract()
                    .unwrap()
            };
            let copied = size(&env);
            for i in 11..ENVIRON_ROOM {
                env.set_item(format!("K{i}"), i).unwrap();
            }
            assert_eq!(size(&env), copied);
            assert_eq!(env.len(), ENVIRON_ROOM as usize);
        });
    }
}
