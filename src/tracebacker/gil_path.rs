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

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Jobs queued and not yet finished.
    unfinished: AtomicUsize,
    /// Microseconds since [`epoch`] of the collector's last progress: when
    /// it last finished a job, or when work came while it had none.
    progress_us: AtomicU64,
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
            unfinished: AtomicUsize::new(0),
            progress_us: AtomicU64::new(now_us()),
        }
    })
}

impl Collector {
    /// Whether work has waited longer than [`STUCK`] with no job finished.
    ///
    /// Kept by the callers' side (queued, finished), not around any one
    /// wait of the collector's: it waits for the GIL in more places than
    /// one (its first attach, which a thread started while the app holds
    /// the GIL never gets past; taking the GIL back for a job; a job's
    /// Python code giving the GIL up midway), and any of them can be the
    /// one that hangs.
    fn stuck(&self) -> bool {
        self.unfinished.load(Ordering::Acquire) != 0
            && now_us().saturating_sub(self.progress_us.load(Ordering::Acquire))
                > STUCK.as_micros() as u64
    }

    fn queue(&self, job: Job) -> bool {
        if self.unfinished.load(Ordering::Acquire) == 0 {
            // Idle until now: the wait starts with this job.
            self.progress_us.store(now_us(), Ordering::Release);
        }
        self.unfinished.fetch_add(1, Ordering::AcqRel);
        let sent = self
            .jobs
            .lock()
            .map(|jobs| jobs.send(job).is_ok())
            .unwrap_or(false);
        if !sent {
            self.unfinished.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }

    fn finished(&self) {
        self.progress_us.store(now_us(), Ordering::Release);
        self.unfinished.fetch_sub(1, Ordering::AcqRel);
    }
}

fn run(rx: Receiver<Job>) {
    let mut rx = Some(rx);
    // GIL: this thread attaches once (a wait as long as the app holds the
    // GIL); it releases the GIL while it waits for a job and takes it back
    // (possibly after a long wait) to run one.
    Python::attach(|py| loop {
        let Some(r) = rx.take() else { return };
        let (next, r) = py.detach(move || (r.recv().ok(), r));
        // Attached again here: we hold the GIL.
        rx = Some(r);
        match next {
            Some(job) => {
                job(py);
                collector().finished();
            }
            None => return,
        }
    });
}

/// A job whose result did not come within its first bound.
pub struct Pending<T>(Option<Receiver<T>>);

impl<T> Pending<T> {
    /// Whether the job was queued at all (not when the GIL was already
    /// known stuck, or the collector is gone).
    pub fn queued(&self) -> bool {
        self.0.is_some()
    }

    /// Wait up to `d` more for the result.
    pub fn wait(self, d: Duration) -> Option<T> {
        self.0?.recv_timeout(d).ok()
    }
}

/// How long queued work may wait with no job finished before we call the
/// GIL stuck and do not even queue behind it.
const STUCK: Duration = Duration::from_millis(20);

/// Run `job` with the GIL on the collector thread; its result if it ran
/// within `wait`.
pub fn run_with_gil<T: Send + 'static>(
    wait: Duration,
    job: impl FnOnce(Python<'_>) -> T + Send + 'static,
) -> Result<T, Pending<T>> {
    let c = collector();
    if c.stuck() {
        return Err(Pending(None));
    }
    let (tx, rx) = mpsc::channel();
    if !c.queue(Box::new(move |py| {
        let _ = tx.send(job(py));
    })) {
        return Err(Pending(None));
    }
    match rx.recv_timeout(wait) {
        Ok(v) => Ok(v),
        Err(_) => Err(Pending(Some(rx))),
    }
}

/// Queue `job` to run with the GIL whenever it comes; do not wait for it.
pub fn send_with_gil(job: impl FnOnce(Python<'_>) + Send + 'static) {
    collector().queue(Box::new(job));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn idle_collector() -> (Collector, Receiver<Job>) {
        let (tx, rx) = mpsc::channel::<Job>();
        let c = Collector {
            jobs: Mutex::new(tx),
            unfinished: AtomicUsize::new(0),
            progress_us: AtomicU64::new(now_us()),
        };
        (c, rx)
    }

    #[test]
    fn stuck_is_work_waiting_with_nothing_finished() {
        let (c, rx) = idle_collector();
        std::thread::sleep(STUCK * 2);
        assert!(!c.stuck(), "idle, however long, is not stuck");
        assert!(c.queue(Box::new(|_| {})));
        assert!(!c.stuck(), "the wait starts with the job");
        std::thread::sleep(STUCK + Duration::from_millis(5));
        // The job was never taken: whatever the collector waits on (its
        // first attach, the GIL back after a job) counts.
        assert!(c.stuck());
        assert!(c.queue(Box::new(|_| {})));
        assert!(c.stuck(), "more work does not restart the clock");
        let _first = rx.recv();
        c.finished();
        assert!(!c.stuck(), "a finished job is progress");
        let _second = rx.recv();
        c.finished();
        drop(rx);
        assert!(!c.queue(Box::new(|_| {})), "no collector: not queued");
        assert_eq!(c.unfinished.load(Ordering::Acquire), 0);
        assert!(!c.stuck());
    }
}
