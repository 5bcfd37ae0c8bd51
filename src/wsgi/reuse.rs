//! A core's `wsgi.input` and `start_response` objects, reused from one
//! request to the next when nothing but the core holds them any more.
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
//! This module decides only reuse; what the objects do is `input`'s and
//! `response`'s.

use pyo3::ffi;
use pyo3::prelude::*;

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
}

/// References to the object `obj` points to (GIL held).
fn refs<T>(obj: &Py<T>) -> isize {
    // SAFETY: the caller holds the GIL and a reference to the object, so
    // it is live and its reference count is read under the GIL.
    unsafe { ffi::Py_REFCNT(obj.as_ptr()) }
}

impl CoreObjects {
    /// The wsgi.input of a new request: the core's last one if no one
    /// else holds it, or a new one.
    pub fn input(&mut self, py: Python<'_>, body: BodyReader) -> PyResult<Py<Input>> {
        if let Some(obj) = self.input.take() {
            if refs(&obj) == 1 {
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
