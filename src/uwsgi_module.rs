//! The `uwsgi` Python module apps can import, as under uWSGI: the worker's
//! id, per-request harakiri, and a few facts about the server.
//!
//! Functions here reach the running request only through the per-thread
//! [`CurrentCore`]; they never touch sockets or the master.

use std::cell::Cell;
use std::sync::OnceLock;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::scoreboard::CoreSlot;

/// This process's worker id, set once when a worker starts (0 elsewhere:
/// in the master and in a loader, where a preloaded app is imported).
static WORKER_ID: OnceLock<usize> = OnceLock::new();

pub fn set_worker_id(id: usize) {
    let _ = WORKER_ID.set(id);
}

thread_local! {
    /// The scoreboard slot of the request this thread is serving, if any.
    static CURRENT: Cell<Option<&'static CoreSlot>> = const { Cell::new(None) };
}

/// Marks the calling thread as serving a request on `slot` for as long as
/// the guard lives.
pub struct CurrentCore;

impl CurrentCore {
    pub fn enter(slot: &'static CoreSlot) -> CurrentCore {
        CURRENT.with(|c| c.set(Some(slot)));
        CurrentCore
    }
}

impl Drop for CurrentCore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(None));
    }
}

/// Set (or with 0, clear) the harakiri timeout of the current request only.
#[pyfunction]
fn set_user_harakiri(seconds: u64) -> PyResult<()> {
    let slot = CURRENT
        .with(|c| c.get())
        .ok_or_else(|| PyRuntimeError::new_err("set_user_harakiri() called outside a request"))?;
    let deadline = if seconds == 0 {
        0
    } else {
        crate::log::unix_millis() + seconds * 1000
    };
    slot.set_deadline_ms(deadline);
    Ok(())
}

#[pyfunction]
fn worker_id() -> usize {
    WORKER_ID.get().copied().unwrap_or(0)
}

/// Internal: remember a thread's name for the GIL-free tracebacker.
#[pyfunction]
fn _register_thread(ident: u64, name: &str, native_id: i64) {
    crate::tracebacker::names::record(ident, name, native_id as i32);
}

/// Make `import uwsgi` work: the module goes into `sys.modules` of the
/// master's interpreter before anything is forked, so every process has it.
pub fn install(py: Python<'_>, cfg: &crate::config::Config) -> PyResult<()> {
    let m = PyModule::new(py, "uwsgi")?;
    m.add_function(wrap_pyfunction!(set_user_harakiri, &m)?)?;
    m.add_function(wrap_pyfunction!(worker_id, &m)?)?;
    m.add_function(wrap_pyfunction!(_register_thread, &m)?)?;
    m.add("numproc", cfg.processes)?;
    m.add("threads", cfg.threads)?;
    m.add("version", env!("CARGO_PKG_VERSION"))?;
    m.add("SERVER", "uwsgi-rs")?;
    py.import("sys")?.getattr("modules")?.set_item("uwsgi", m)
}
