//! A core's environ, `wsgi.input` and `start_response` objects, reused
//! from one request to the next when nothing but the core holds them any
//! more.
//!
//! Creating the two objects and the bound `write` method start_response
//! returns, then freeing them, was ~6% of a hello-world request's
//! instructions (bench/README.md). An object is reused only when its
//! reference count says the core's reference is the only one (the app
//! kept neither the environ, nor wsgi.input, nor start_response, nor
//! write): then no one can see that it changed. Otherwise it is left to
//! whoever holds it (still refusing use after its request, as before) and
//! a new one is made.
//!
//! The environ likewise, and only if the app also left it as it was
//! handed over (its version tag unchanged): then it is the template with
//! the last request's entries set, and setting the entries of the next
//! request whose keys are the same, in the same order, gives the very dict
//! a fresh copy would be (same keys, same order, same values). Building
//! and freeing a fresh one was ~20% of a hello-world request's
//! instructions; patching it is a few pointer comparisons.
//!
//! This module decides only reuse; what the objects do is `input`'s and
//! `response`'s.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::environ::Entries;
use super::input::{BodyReader, Input};
use super::output::Output;
use super::response::{ResponseCtx, StartResponse};

/// What a core lends each request it serves; one per core, for its whole
/// life (dropped with the GIL held, when the core ends).
#[derive(Default)]
pub struct CoreObjects {
    /// The core's output, lent to each response and given back with it
    /// (written and absorbed by the core without the GIL).
    pub out: Output,
    input: Option<Py<Input>>,
    /// With its `write` method, which references it: the pair is reused
    /// only when the core and that method are its only holders.
    start_response: Option<(Py<StartResponse>, Py<PyAny>)>,
    /// The entries of the request being prepared (see `environ`).
    pub entries: Entries,
    /// The last environ, when nobody else holds it and it is as handed
    /// over (see [`CoreObjects::give_back_environ`]).
    environ: Option<Py<PyDict>>,
    handed: Handed,
}

/// What the last environ was when handed to the app: addresses, only
/// ever compared (the environ, unchanged, keeps every one alive).
#[derive(Default)]
struct Handed {
    template: usize,
    /// Its entries' keys and values, in the order they were set.
    items: Vec<(usize, usize)>,
    /// Its version tag (PEP 509).
    tag: u64,
}

/// The version tag of `dict`: changed by every change of the dict (a key
/// added, deleted, or given another value), never to a value it had
/// before, on every CPython this builds for (3.9-3.13; deprecated since
/// 3.12 but kept and maintained; gone in 3.14, where this will not build).
fn version_tag(dict: &Bound<'_, PyDict>) -> u64 {
    // SAFETY: `dict` is a live exact dict (GIL held through its Bound);
    // reading a field of its object struct.
    #[allow(deprecated)]
    unsafe {
        (*dict.as_ptr().cast::<ffi::PyDictObject>()).ma_version_tag
    }
}

/// References to the object `obj` points to (GIL held).
fn refs<T>(obj: &Py<T>) -> isize {
    // SAFETY: the caller holds the GIL and a reference to the object, so
    // it is live and its reference count is read under the GIL.
    unsafe { ffi::Py_REFCNT(obj.as_ptr()) }
}

impl CoreObjects {
    /// The environ of a new request: the template of its listener with
    /// `entries` set (emptied after). The core's last environ patched when
    /// it was given back and its entries had the same keys in the same
    /// order, else a fresh copy of the template.
    pub fn environ<'py>(
        &mut self,
        py: Python<'py>,
        template: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let made = self.make_environ(py, template);
        self.entries.clear(py);
        made
    }

    fn make_environ<'py>(
        &mut self,
        py: Python<'py>,
        template: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let items = self.entries.items();
        let last = self.environ.take().map(|env| env.into_bound(py));
        let env = match last {
            Some(env)
                if self.handed.template == template.as_ptr() as usize
                    && self.handed.items.len() == items.len()
                    && self
                        .handed
                        .items
                        .iter()
                        .zip(items)
                        .all(|((k, _), (key, _))| *k == key.as_ptr() as usize) =>
            {
                for ((_, v), (key, value)) in self.handed.items.iter_mut().zip(items) {
                    if *v != value.as_ptr() as usize {
                        env.set_item(key.bind(py), value.bind(py))?;
                        *v = value.as_ptr() as usize;
                    }
                }
                env
            }
            _ => {
                let env = self.entries.fresh(py, template)?;
                self.handed.template = template.as_ptr() as usize;
                self.handed.items.clear();
                self.handed.items.extend(
                    items
                        .iter()
                        .map(|(k, v)| (k.as_ptr() as usize, v.as_ptr() as usize)),
                );
                env
            }
        };
        self.handed.tag = version_tag(&env);
        Ok(env)
    }

    /// The environ of a request that is over: kept for the next request
    /// only if the core's reference is the only one (the app kept none:
    /// no one can see it change) and the app changed nothing in it (no
    /// key added, deleted or set). Otherwise it is left to its holders,
    /// never changed again by the server.
    pub fn give_back_environ(&mut self, env: Bound<'_, PyDict>) {
        // SAFETY: as in `refs`: the GIL is held and `env` is live.
        let alone = unsafe { ffi::Py_REFCNT(env.as_ptr()) } == 1;
        if alone && version_tag(&env) == self.handed.tag {
            self.environ = Some(env.unbind());
        }
    }

    /// The wsgi.input of a new request: the core's last one if no one
    /// else holds it, or a new one.
    pub fn input(&mut self, py: Python<'_>, body: BodyReader) -> PyResult<Py<Input>> {
        if let Some(obj) = self.input.take() {
            // Held by the core, and by the core's last environ if kept
            // (unchanged, so its wsgi.input is still this object): the
            // environ is as invisible as the core's own reference.
            let in_environ = self.environ.is_some()
                && self.handed.items.last().map(|&(_, v)| v) == Some(obj.as_ptr() as usize);
            if refs(&obj) == 1 + isize::from(in_environ) {
                if let Ok(mut input) = obj.bind(py).try_borrow_mut() {
                    *input = Input::new(body);
                    drop(input);
                    self.input = Some(obj.clone_ref(py));
                    return Ok(obj);
                }
            }
        }
        let obj = Py::new(py, Input::new(body))?;
        self.input = Some(obj.clone_ref(py));
        Ok(obj)
    }

    /// The start_response of a new request (lent the core's output) and
    /// the `write` it returns, reused as [`CoreObjects::input`] is.
    pub fn start_response(
        &mut self,
        py: Python<'_>,
        ctx: ResponseCtx,
    ) -> PyResult<Py<StartResponse>> {
        let fresh = StartResponse::new(ctx, std::mem::take(&mut self.out));
        if let Some((obj, write)) = self.start_response.take() {
            // Held by the core and by the write method, which is held by
            // the core and by the object's own field: nobody else.
            if refs(&obj) == 2 && refs(&write) == 2 {
                if let Ok(mut sr) = obj.bind(py).try_borrow_mut() {
                    sr.renew(fresh);
                    sr.write_method = Some(write.clone_ref(py));
                    drop(sr);
                    self.start_response = Some((obj.clone_ref(py), write));
                    return Ok(obj);
                }
            }
            // Kept by the app: the cycle through the write method is
            // broken, so the object goes when the app lets it go.
            if let Ok(mut sr) = obj.bind(py).try_borrow_mut() {
                sr.write_method = None;
            }
        }
        let obj = Py::new(py, fresh)?;
        let write = obj.bind(py).getattr(pyo3::intern!(py, "write"))?.unbind();
        obj.bind(py).borrow_mut().write_method = Some(write.clone_ref(py));
        self.start_response = Some((obj.clone_ref(py), write));
        Ok(obj)
    }
}
