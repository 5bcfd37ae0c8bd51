//! In the worker: profile sessions and the one sampler thread serving them.
//!
//! The thread exists only while a session does. Each tick it takes one
//! sample of every thread (with the GIL through the C API when the GIL
//! comes within [`GIL_BOUND`], else through the GIL-free dumper), labels
//! each stack with the request its core serves (read from this worker's
//! scoreboard slots while the sample holds the GIL, so no core can move on
//! meanwhile), and gives it to every session that is due. A session sends
//! what it gathered once a second and ends with `E`. It does not touch the
//! request path: when no session runs, nothing here runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use super::intern::Interner;
use super::wire::{encode, Record};
use super::{route_label, Spec, IDLE};
use crate::control_server::{ClientId, Responder};
use crate::scoreboard::CoreState;
use crate::tracebacker::{gil_path, names, signal_path};

/// How long a sample waits for the GIL before taking the GIL-free path
/// (which costs far more: faulthandler writes its text a character per
/// system call). A thread running Python gives the GIL up after the switch
/// interval ([`SWITCH_INTERVAL`] while profiling), so this leaves room.
const GIL_BOUND: Duration = Duration::from_millis(8);
/// The GIL switch interval while a profile runs (CPython's default is
/// 5 ms). A sample waits for the thread running Python to give the GIL up,
/// which it does after the switch interval: with 5 ms, the last 5 ms of
/// every request end before the sample is taken and are never sampled, so
/// short requests were under-counted (a 10 ms request lost half its
/// samples, a 30 ms one a sixth: 87% instead of 75%). 1 ms keeps that
/// error near one sample in thirty; the old value is put back when the
/// last session ends.
const SWITCH_INTERVAL: f64 = 0.001;
/// How often a session sends what it gathered.
const FLUSH: Duration = Duration::from_secs(1);
/// Sessions at once per worker.
const MAX_SESSIONS: usize = 8;
/// A client is dropped if its session has not ended this long after it
/// should have (the loop's guard; sessions end on time).
const SLACK: Duration = Duration::from_secs(15);

/// The label of a core whose request description was being rewritten.
const STARTING: &str = "(request starting)";
/// The mark put outermost on a stack the GIL-free dumper cut.
const CUT_MARK: &str = "[more frames: the GIL-free dumper shows the innermost 100]";

struct Session {
    id: ClientId,
    spec: Spec,
    interval: Duration,
    ends: Instant,
    next_due: Instant,
    /// Samples per (label, stack) since the last flush.
    counts: HashMap<(u32, Vec<u32>), u64>,
    sent_labels: HashSet<u32>,
    sent_frames: HashSet<u32>,
    header_sent: bool,
    gil: u64,
    signal: u64,
}

#[derive(Default)]
struct State {
    sessions: Vec<Session>,
    running: bool,
}

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

static STATE: Mutex<State> = Mutex::new(State {
    sessions: Vec::new(),
    running: false,
});
static WAKE: Condvar = Condvar::new();
static RESPONDER: OnceLock<Responder> = OnceLock::new();

/// Where sessions send their streams; the tracebacker sets it once.
pub fn set_responder(r: Responder) {
    let _ = RESPONDER.set(r);
}

/// Start a session for client `id`; returns how long the client may wait
/// for its end.
pub fn start(id: ClientId, spec: Spec) -> Result<Duration, String> {
    if RESPONDER.get().is_none() || crate::tracebacker::context().is_none() {
        return Err("the profiler is not ready in this worker".into());
    }
    let mut st = state();
    if st.sessions.len() >= MAX_SESSIONS {
        return Err(format!(
            "{MAX_SESSIONS} profiles are running in this worker: try again when one ends"
        ));
    }
    let seconds = match spec.seconds {
        0 => Spec::MAX_SECONDS,
        s => s,
    };
    let length = Duration::from_secs(seconds as u64);
    let now = Instant::now();
    st.sessions.push(Session {
        id,
        spec,
        interval: Duration::from_secs(1) / spec.hz,
        ends: now + length,
        next_due: now,
        counts: HashMap::new(),
        sent_labels: HashSet::new(),
        sent_frames: HashSet::new(),
        header_sent: false,
        gil: 0,
        signal: 0,
    });
    if !st.running {
        st.running = true;
        let spawned = std::thread::Builder::new()
            .name("uwsgi-rs-profiler".into())
            .spawn(run);
        if spawned.is_err() {
            st.running = false;
            st.sessions.retain(|s| s.id != id);
            return Err("cannot start the sampler thread".into());
        }
    }
    WAKE.notify_all();
    Ok(length + SLACK)
}

/// The client went away: forget its session.
pub fn stop(id: ClientId) {
    let mut st = state();
    st.sessions.retain(|s| s.id != id);
    WAKE.notify_all();
}

/// One thread's part of a sample.
struct Part {
    label: u32,
    idle: bool,
    frames: Vec<u32>,
}

struct Sample {
    parts: Vec<Part>,
    via_gil: bool,
}

/// Lower the switch interval for the sampler's life; returns the old one
/// if it was changed.
fn quicken_gil() -> Option<f64> {
    gil_path::run_with_gil(Duration::from_secs(1), |py| {
        let sys = py.import("sys").ok()?;
        let old: f64 = sys.call_method0("getswitchinterval").ok()?.extract().ok()?;
        if old <= SWITCH_INTERVAL {
            return None;
        }
        sys.call_method1("setswitchinterval", (SWITCH_INTERVAL,))
            .ok()?;
        Some(old)
    })
    .ok()
    .flatten()
}

fn restore_gil(old: Option<f64>) {
    if let Some(old) = old {
        gil_path::send_with_gil(move |py| {
            if let Ok(sys) = py.import("sys") {
                let _ = sys.call_method1("setswitchinterval", (old,));
            }
        });
    }
}

fn run() {
    let old_interval = quicken_gil();
    let table = Arc::new(Mutex::new(Interner::default()));
    let mut last_t0: Option<Instant> = None;
    let mut last_flush = Instant::now();
    loop {
        {
            let mut st = state();
            loop {
                if st.sessions.is_empty() {
                    // Queued before `running` clears: a sampler started
                    // after this one finds the old interval back.
                    restore_gil(old_interval);
                    st.running = false;
                    // The table's code references are released through
                    // pyo3's pool when the GIL is next taken.
                    return;
                }
                let now = Instant::now();
                // The next sample: when a session is due (or ends), but no
                // sooner than the fastest rate allows after the last one.
                let due = st
                    .sessions
                    .iter()
                    .map(|s| s.next_due.min(s.ends))
                    .min()
                    .unwrap_or(now);
                let fastest = st
                    .sessions
                    .iter()
                    .map(|s| s.interval)
                    .min()
                    .unwrap_or(FLUSH);
                let tick = last_t0.map_or(due, |t| due.max(t + fastest));
                if now >= tick {
                    break;
                }
                st = WAKE
                    .wait_timeout(st, tick - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        let t0 = Instant::now();
        last_t0 = Some(t0);
        let sample = take_sample(&table);
        let flush = last_flush.elapsed() >= FLUSH;
        if flush {
            last_flush = Instant::now();
        }
        let Some(responder) = RESPONDER.get() else {
            return;
        };
        let mut st = state();
        let now = Instant::now();
        let tab = table.lock().unwrap_or_else(|e| e.into_inner());
        let mut ended = Vec::new();
        for s in st.sessions.iter_mut() {
            if t0 >= s.next_due {
                s.add(&sample);
                s.next_due += s.interval;
                if s.next_due < t0 {
                    // Late ticks are not made up in a burst.
                    s.next_due = t0 + s.interval;
                }
            }
            let over = now >= s.ends;
            if flush || over {
                let mut text = String::new();
                s.chunk(&tab, &mut text);
                if over {
                    encode(&Record::End("done".into()), &mut text);
                    ended.push(s.id);
                }
                responder.send(s.id, Arc::from(text.into_bytes()));
            }
        }
        drop(tab);
        for id in &ended {
            responder.finish(*id);
        }
        st.sessions.retain(|s| !ended.contains(&s.id));
    }
}

impl Session {
    fn add(&mut self, sample: &Sample) {
        if sample.via_gil {
            self.gil += 1;
        } else {
            self.signal += 1;
        }
        for p in &sample.parts {
            if p.idle && !self.spec.idle {
                continue;
            }
            *self.counts.entry((p.label, p.frames.clone())).or_insert(0) += 1;
        }
    }

    /// What was gathered since the last chunk, with the labels and frames
    /// this client has not been told of yet.
    fn chunk(&mut self, tab: &Interner, out: &mut String) {
        if !self.header_sent {
            let ctx = crate::tracebacker::context();
            encode(
                &Record::Header {
                    worker: ctx.map_or(0, |c| c.worker_id),
                    pid: std::process::id(),
                    hz: self.spec.hz,
                },
                out,
            );
            self.header_sent = true;
        }
        for ((label, frames), count) in self.counts.drain() {
            if self.sent_labels.insert(label) {
                let text = tab.label_text(label).unwrap_or("?").to_string();
                encode(&Record::Label(label, text), out);
            }
            for f in &frames {
                if self.sent_frames.insert(*f) {
                    if let Some(key) = tab.frame_key(*f) {
                        encode(&Record::Frame(*f, key), out);
                    }
                }
            }
            encode(
                &Record::Stack {
                    count,
                    label,
                    frames,
                },
                out,
            );
        }
        encode(
            &Record::Tick {
                unix_ms: crate::log::unix_millis(),
                gil: std::mem::take(&mut self.gil),
                signal: std::mem::take(&mut self.signal),
            },
            out,
        );
    }
}

/// One sample of every thread: exact with the GIL if it comes in time,
/// else from the GIL-free dumper.
fn take_sample(table: &Arc<Mutex<Interner>>) -> Sample {
    let tab = Arc::clone(table);
    let deadline = Instant::now() + GIL_BOUND;
    let with_gil = gil_path::run_with_gil(GIL_BOUND, move |py| {
        if Instant::now() > deadline {
            return None; // the caller has moved on
        }
        let walked = gil_path::walk(py).ok()?;
        let mut t = tab.lock().unwrap_or_else(|e| e.into_inner());
        let stacks: Vec<(u64, Vec<u32>)> = walked
            .iter()
            .map(|(ident, raw)| {
                let mut ids: Vec<u32> = raw
                    .iter()
                    .map(|f| t.code_frame(&f.code, f.lineno))
                    .collect();
                strip_launcher(&mut ids, &t);
                (*ident, ids)
            })
            .collect();
        // Labelled while we hold the GIL: a core in Python cannot start
        // or finish a request meanwhile.
        Some(label(stacks, &mut t))
    });
    if let Ok(Some(parts)) = with_gil {
        return Sample {
            parts,
            via_gil: true,
        };
    }
    let stacks = signal_path::collect().unwrap_or_default();
    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
    let stacks: Vec<(u64, Vec<u32>)> = stacks
        .iter()
        .map(|s| {
            let mut ids = Vec::with_capacity(s.frames.len() + 1);
            if s.cut.is_some() {
                ids.push(t.named_frame(CUT_MARK, "", 0));
            }
            ids.extend(
                s.frames
                    .iter()
                    .map(|f| t.named_frame(&f.function, &f.filename, f.lineno)),
            );
            strip_launcher(&mut ids, &t);
            (s.ident, ids)
        })
        .collect();
    Sample {
        parts: label(stacks, &mut t),
        via_gil: false,
    }
}

/// Leave out the frames of the program that started the server (the
/// console script), under every request of core 0: not the app's.
fn strip_launcher(ids: &mut Vec<u32>, t: &Interner) {
    let Some(launcher) = crate::tracebacker::launcher() else {
        return;
    };
    let under = ids.len() >= launcher.len()
        && ids
            .iter()
            .zip(launcher)
            .all(|(id, (file, func))| t.frame_names(*id) == Some((func, file)));
    if under {
        ids.drain(..launcher.len());
    }
}

/// Label each stack: a core's by the request it serves (or idle), another
/// thread's by its name. Cores without Python frames still count (time in
/// the server, or idle).
fn label(stacks: Vec<(u64, Vec<u32>)>, t: &mut Interner) -> Vec<Part> {
    let Some(ctx) = crate::tracebacker::context() else {
        return Vec::new();
    };
    let mut by_ident: HashMap<u64, Vec<u32>> = stacks.into_iter().collect();
    let mut parts = Vec::with_capacity(by_ident.len() + ctx.scoreboard.threads());
    for core in 0..ctx.scoreboard.threads() {
        let frames = names::core_ident(core)
            .and_then(|i| by_ident.remove(&i))
            .unwrap_or_default();
        let snap = ctx.scoreboard.core(ctx.entry, core).snapshot(core);
        let (text, idle) = match &snap.state {
            CoreState::Busy(r) => (route_label(&r.method, &r.uri), false),
            CoreState::BusyUnread => (STARTING.to_string(), false),
            CoreState::Idle => (IDLE.to_string(), true),
        };
        parts.push(Part {
            label: t.label(&text),
            idle,
            frames,
        });
    }
    for (ident, frames) in by_ident {
        if frames.is_empty() {
            continue;
        }
        let name = names::lookup(ident).unwrap_or_else(|| format!("thread 0x{ident:x}"));
        parts.push(Part {
            label: t.label(&name),
            idle: false,
            frames,
        });
    }
    parts
}
