//! Work done through the interpreter, with the GIL, on one collector
//! thread: the tracebacker's exact dumps and the profiler's samples.
//!
//! The collector waits for the GIL so that its callers need not: a caller
//! gives a job and a bound, and gets the result or, when the GIL did not
//! come in time, a [`Pending`] it may wait on a little longer (or drop,
//! taking the GIL-free path instead). A job that runs after its caller gave
//! up finds its result unwanted; jobs that must not run late check the time
//! themselves. The thread stays attached to the interpreter for its whole
//! life and only releases the GIL while idle, so no thread state is made
//! and destroyed per job.
//!
//! Exact stacks come from [`walk`]: CPython's C API (frame, code, line
//! number), no Python code run, tens of microseconds with the GIL. Only
//! frame locals (`--py-tracebacker-locals`) need Python code (collect.py).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::format::{Frame, ThreadStack};
use super::names;

/// Python side of a collection with locals.
const COLLECT_PY: &std::ffi::CStr = pyo3::ffi::c_str!(include_str!("collect.py"));

type Job = Box<dyn FnOnce(Python<'_>) + Send>;

struct Collector {
    jobs: Mutex<Sender<Job>>,
    /// Microseconds since [`epoch`] at which the running job started waiting
    /// for the GIL; 0 while the collector is idle or holds the GIL.
    waiting_since_us: AtomicU64,
}

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64 + 1
}

fn collector() -> &'static Collector {
    static C: OnceLock<Collector> = OnceLock::new();
    C.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let _ = std::thread::Builder::new()
            .name("uwsgi-rs-tb-gil".into())
            .spawn(move || run(rx));
        Collector {
            jobs: Mutex::new(tx),
            waiting_since_us: AtomicU64::new(0),
        }
    })
}

fn run(rx: Receiver<Job>) {
    let mut rx = Some(rx);
    // GIL: this thread attaches once; it releases the GIL while it waits
    // for a job and takes it back (possibly after a long wait) to run one.
    Python::attach(|py| loop {
        let Some(r) = rx.take() else { return };
        let (next, r) = py.detach(move || {
            let job = r.recv().ok();
            if job.is_some() {
                collector()
                    .waiting_since_us
                    .store(now_us(), Ordering::Release);
            }
            (job, r)
        });
        // Attached again here: we hold the GIL.
        collector().waiting_since_us.store(0, Ordering::Release);
        rx = Some(r);
        match next {
            Some(job) => job(py),
            None => return,
        }
    });
}

/// A job whose result did not come within its first bound.
pub struct Pending<T>(Option<Receiver<T>>);

impl<T> Pending<T> {
    /// Wait up to `d` more for the result.
    pub fn wait(self, d: Duration) -> Option<T> {
        self.0?.recv_timeout(d).ok()
    }
}

/// How long the collector may have waited for the GIL before we call the
/// GIL stuck and do not even queue behind it.
const STUCK: Duration = Duration::from_millis(20);

/// Run `job` with the GIL on the collector thread; its result if it ran
/// within `wait`.
pub fn run_with_gil<T: Send + 'static>(
    wait: Duration,
    job: impl FnOnce(Python<'_>) -> T + Send + 'static,
) -> Result<T, Pending<T>> {
    let c = collector();
    let since = c.waiting_since_us.load(Ordering::Acquire);
    if since != 0 && now_us().saturating_sub(since) > STUCK.as_micros() as u64 {
        return Err(Pending(None));
    }
    let (tx, rx) = mpsc::channel();
    let boxed: Job = Box::new(move |py| {
        let _ = tx.send(job(py));
    });
    let sent = c
        .jobs
        .lock()
        .map(|jobs| jobs.send(boxed).is_ok())
        .unwrap_or(false);
    if !sent {
        return Err(Pending(None));
    }
    match rx.recv_timeout(wait) {
        Ok(v) => Ok(v),
        Err(_) => Err(Pending(Some(rx))),
    }
}

/// Queue `job` to run with the GIL whenever it comes; do not wait for it.
pub fn send_with_gil(job: impl FnOnce(Python<'_>) + Send + 'static) {
    if let Ok(jobs) = collector().jobs.lock() {
        let _ = jobs.send(Box::new(job));
    }
}

/// One frame as the walk sees it: the code object and the line.
pub struct RawFrame<'py> {
    pub code: Bound<'py, PyAny>,
    pub lineno: u32,
}

/// With the GIL: the stack of every thread with Python frames, outermost
/// first, by thread ident, except the calling thread. No Python code runs:
/// `sys._current_frames` is a builtin, the rest is the frame C API.
pub fn walk<'py>(py: Python<'py>) -> PyResult<Vec<(u64, Vec<RawFrame<'py>>)>> {
    let me = names::current_ident();
    let frames = py.import("sys")?.getattr("_current_frames")?.call0()?;
    let frames = frames.cast::<PyDict>()?;
    let mut out = Vec::with_capacity(frames.len());
    for (ident, top) in frames.iter() {
        let ident: u64 = ident.extract()?;
        if ident == me {
            continue;
        }
        let mut stack = Vec::new();
        let mut f = top;
        loop {
            let fp = f.as_ptr() as *mut pyo3::ffi::PyFrameObject;
            // SAFETY: `f` is a live frame object (from _current_frames or
            // PyFrame_GetBack) and we hold the GIL; GetCode returns a new
            // reference that Bound takes over.
            let code = unsafe {
                Bound::from_owned_ptr(
                    py,
                    pyo3::ffi::PyFrame_GetCode(fp) as *mut pyo3::ffi::PyObject,
                )
            };
            // SAFETY: as above.
            let lineno = unsafe { pyo3::ffi::PyFrame_GetLineNumber(fp) };
            stack.push(RawFrame {
                code,
                lineno: lineno.max(0) as u32,
            });
            // SAFETY: as above; a new reference or NULL at the outermost.
            let back = unsafe { pyo3::ffi::PyFrame_GetBack(fp) };
            // SAFETY: `back` is NULL or a new reference we now own.
            match unsafe { Bound::from_owned_ptr_or_opt(py, back as *mut pyo3::ffi::PyObject) } {
                Some(b) => f = b,
                None => break,
            }
        }
        stack.reverse();
        out.push((ident, stack));
    }
    Ok(out)
}

/// A code object's file and function names.
pub fn code_names(code: &Bound<'_, PyAny>) -> (String, String) {
    let get = |attr: &str| {
        code.getattr(attr)
            .and_then(|v| v.extract::<String>())
            .unwrap_or_default()
    };
    (get("co_filename"), get("co_name"))
}

/// Exact stacks of every thread (no source lines yet: the caller reads
/// them outside the GIL).
fn collect_plain(py: Python<'_>) -> PyResult<Vec<ThreadStack>> {
    let walked = walk(py)?;
    Ok(walked
        .into_iter()
        .map(|(ident, raw)| ThreadStack {
            ident,
            name: names::lookup(ident).unwrap_or_else(|| super::format::UNNAMED.into()),
            frames: raw
                .iter()
                .map(|f| {
                    let (filename, function) = code_names(&f.code);
                    Frame {
                        filename,
                        lineno: f.lineno,
                        function,
                        line: String::new(),
                        locals: Vec::new(),
                    }
                })
                .collect(),
            // The collector held the GIL for the snapshot: nobody else did.
            holds_gil: Some(false),
            cut: None,
        })
        .collect())
}

/// Exact stacks with locals (runs collect.py: Python code, reprs).
fn collect_with_locals(py: Python<'_>, func: &mut Option<Py<PyAny>>) -> Option<Vec<ThreadStack>> {
    if func.is_none() {
        *func = PyModule::from_code(
            py,
            COLLECT_PY,
            c"uwsgi_rs_tracebacker.py",
            c"uwsgi_rs_tracebacker",
        )
        .and_then(|m| m.getattr("collect"))
        .map(|f| f.unbind())
        .ok();
    }
    let result = func.as_ref()?.call1(py, (true,)).ok()?;
    convert(result.bind(py)).ok()
}

fn convert(result: &Bound<'_, PyAny>) -> PyResult<Vec<ThreadStack>> {
    type Frames = Vec<(String, u32, String, String, Vec<(String, String)>)>;
    type Threads = Vec<(u64, Option<String>, Frames)>;
    type Names = Vec<(Option<u64>, String)>;
    let (threads, all_names): (Threads, Names) = result.extract()?;
    for (ident, name) in all_names.into_iter().filter_map(|(i, n)| Some((i?, n))) {
        names::record(ident, &name, 0);
    }
    Ok(threads
        .into_iter()
        .map(|(ident, name, frames)| ThreadStack {
            ident,
            name: name
                .or_else(|| names::lookup(ident))
                .unwrap_or_else(|| super::format::UNNAMED.into()),
            frames: frames
                .into_iter()
                .map(|(filename, lineno, function, line, locals)| Frame {
                    filename,
                    lineno,
                    function,
                    line,
                    locals,
                })
                .collect(),
            holds_gil: Some(false),
            cut: None,
        })
        .collect())
}

/// Stacks of every thread through the interpreter, or a [`Pending`] when
/// the GIL did not come within `wait`.
pub fn collect(
    wait: Duration,
    with_locals: bool,
) -> Result<Vec<ThreadStack>, Pending<Vec<ThreadStack>>> {
    run_with_gil(wait, move |py| {
        if with_locals {
            thread_local! {
                static FUNC: std::cell::RefCell<Option<Py<PyAny>>> = const { std::cell::RefCell::new(None) };
            }
            if let Some(s) = FUNC.with(|f| collect_with_locals(py, &mut f.borrow_mut())) {
                return s;
            }
        }
        collect_plain(py).unwrap_or_default()
    })
}
