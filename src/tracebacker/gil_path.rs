//! Collecting stacks through the interpreter, with the GIL: exact names,
//! full depth, any characters. Used whenever the GIL can be had quickly.
//!
//! A dedicated collector thread does the waiting for the GIL, so the
//! tracebacker thread can give up after a bound and switch to the GIL-free
//! path; at most one collection is ever in flight.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;

use super::format::{Frame, ThreadStack};
use super::names;

/// Python side of the collection: runs with the GIL on the collector thread.
const COLLECT_PY: &std::ffi::CStr = pyo3::ffi::c_str!(include_str!("collect.py"));

/// A request for a collection: whether to include locals, and where to reply.
type Job = (bool, Sender<Vec<ThreadStack>>);

struct Collector {
    requests: Mutex<Sender<Job>>,
    busy: AtomicBool,
}

fn collector() -> &'static Collector {
    static C: OnceLock<Collector> = OnceLock::new();
    C.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let _ = std::thread::Builder::new()
            .name("uwsgi-rs-tb-gil".into())
            .spawn(move || run(rx));
        Collector {
            requests: Mutex::new(tx),
            busy: AtomicBool::new(false),
        }
    })
}

fn run(rx: Receiver<Job>) {
    let mut func: Option<Py<PyAny>> = None;
    for (with_locals, reply) in rx {
        // GIL: taken here, possibly after a long wait; released at the end
        // of the closure. Nobody else waits on this thread.
        let stacks = Python::attach(|py| {
            if func.is_none() {
                func = PyModule::from_code(
                    py,
                    COLLECT_PY,
                    c"uwsgi_rs_tracebacker.py",
                    c"uwsgi_rs_tracebacker",
                )
                .and_then(|m| m.getattr("collect"))
                .map(|f| f.unbind())
                .ok();
            }
            func.as_ref()
                .and_then(|f| convert(f.call1(py, (with_locals,)).ok()?.bind(py)).ok())
        });
        collector().busy.store(false, Ordering::Release);
        let _ = reply.send(stacks.unwrap_or_default());
    }
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
            // The collector held the GIL for the snapshot: nobody else did.
            holds_gil: Some(false),
        })
        .collect())
}

/// Stacks of every thread, or None when the GIL was not had within `wait`
/// (or a previous collection is still waiting for it).
pub fn collect(wait: Duration, with_locals: bool) -> Option<Vec<ThreadStack>> {
    let c = collector();
    if c.busy.swap(true, Ordering::AcqRel) {
        return None;
    }
    let (tx, rx) = mpsc::channel();
    if c.requests.lock().ok()?.send((with_locals, tx)).is_err() {
        c.busy.store(false, Ordering::Release);
        return None;
    }
    rx.recv_timeout(wait).ok()
}
