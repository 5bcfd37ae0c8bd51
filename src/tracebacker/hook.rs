//! The Python side of thread naming: name a core thread in `threading`
//! and in the registry (`names`), and hook `threading.Thread` so the
//! threads the app starts are recorded too (`thread_hook.py`).
//!
//! Runs with the GIL, once per thread at start-up; never on a dump.

use pyo3::prelude::*;

use super::names;

/// Name the calling thread as core `core` of worker `worker`, for Python
/// (`threading`) and for the GIL-free dump. Core 0 is the main thread.
pub fn name_core(py: Python<'_>, worker: usize, core: usize) -> PyResult<()> {
    let name = names::record_core(worker, core);
    crate::python::name_current_thread(py, &name, core == 0)
}

/// Hook `threading.Thread` so app threads are recorded as they start and
/// when renamed.
pub fn install_thread_hook(py: Python<'_>) -> PyResult<()> {
    PyModule::from_code(
        py,
        pyo3::ffi::c_str!(include_str!("thread_hook.py")),
        c"uwsgi_rs_thread_hook.py",
        c"uwsgi_rs_thread_hook",
    )?;
    Ok(())
}
