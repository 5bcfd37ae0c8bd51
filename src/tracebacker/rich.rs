//! The rich dump: for each thread of a worker, its frames plus what the
//! plain uWSGI format cannot say (which core it is, the request it serves
//! and for how long, whether it held the GIL, optionally frame locals), as
//! JSON; and the text rendering of every worker's dump for `--tracebacks`.
//!
//! The JSON shape is a documented interface (README, "JSON dumps"): fields
//! are only ever added. Pure: no sockets, no Python.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use super::format::ThreadStack;
use crate::scoreboard::{CoreState, WorkerSnapshot};

/// How a dump was taken.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CollectedBy {
    /// Through the interpreter, with the GIL.
    Gil,
    /// Through CPython's GIL-free dumper.
    Signal,
}

/// What a thread was doing when dumped.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ThreadState {
    /// A core serving a request.
    Busy,
    /// A core waiting for a request.
    Idle,
    /// A thread the app started.
    App,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkerDump {
    pub worker: usize,
    pub pid: u32,
    pub collected_by: CollectedBy,
    pub collect_ms: f64,
    /// How long the dump waited for the GIL before it had the exact stacks
    /// or turned to the GIL-free dumper: 0 when it did not wait at all
    /// (the GIL already known stuck: no queueing behind it).
    #[serde(default)]
    pub gil_wait_ms: f64,
    pub threads: Vec<ThreadDump>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThreadDump {
    pub name: String,
    pub ident: u64,
    /// The core (request thread) index, None for threads the app started.
    pub core: Option<usize>,
    pub state: ThreadState,
    pub holds_gil: Option<bool>,
    pub request: Option<RequestDump>,
    pub frames: Vec<FrameDump>,
    /// Set when the dump could not see every frame (see [`CutDump`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<CutDump>,
}

/// Where a thread's frames were cut (GIL-free dumper's limit), never
/// silently: `frames[..at]` are the outermost frames known (from an exact
/// dump `outer_age_ms` earlier; none when null), the live ones follow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CutDump {
    pub at: usize,
    pub outer_age_ms: Option<u64>,
    pub note: String,
}

impl CutDump {
    fn from(cut: super::format::Cut) -> CutDump {
        let (at, note) = cut.mark();
        CutDump {
            at,
            outer_age_ms: match cut {
                super::format::Cut::Spliced { age_ms, .. } => Some(age_ms),
                super::format::Cut::Unknown => None,
            },
            note,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestDump {
    pub method: String,
    pub uri: String,
    pub remote: String,
    /// Unix seconds.
    pub started: u64,
    pub running_for: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FrameDump {
    pub filename: String,
    pub lineno: u32,
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locals: Option<BTreeMap<String, String>>,
}

/// Join the stacks with the worker's scoreboard snapshot: every core
/// appears, busy or idle, and every app thread with Python frames.
pub fn build(
    worker: &WorkerSnapshot,
    stacks: &[ThreadStack],
    core_ident: impl Fn(usize) -> Option<u64>,
    collected_by: CollectedBy,
    collect_ms: f64,
    gil_wait_ms: f64,
    now_ms: u64,
) -> WorkerDump {
    let mut threads = Vec::new();
    let mut seen = Vec::new();
    for c in &worker.cores {
        let ident = core_ident(c.core);
        let stack = ident.and_then(|i| stacks.iter().find(|t| t.ident == i));
        let request = c.state.request().map(|r| RequestDump {
            method: r.method.clone(),
            uri: r.uri.clone(),
            remote: r.remote.clone(),
            started: r.started_ms / 1000,
            running_for: r.running_ms(now_ms) as f64 / 1000.0,
        });
        if let Some(i) = ident {
            seen.push(i);
        }
        threads.push(ThreadDump {
            name: stack
                .map(|s| s.name.clone())
                .unwrap_or_else(|| super::names::core_name(worker.id, c.core)),
            ident: ident.unwrap_or(0),
            core: Some(c.core),
            state: match c.state {
                CoreState::Idle => ThreadState::Idle,
                _ => ThreadState::Busy,
            },
            holds_gil: stack.and_then(|s| s.holds_gil),
            request,
            frames: stack.map(frames).unwrap_or_default(),
            cut: stack.and_then(|s| s.cut).map(CutDump::from),
        });
    }
    for s in stacks
        .iter()
        .filter(|s| !seen.contains(&s.ident) && !s.frames.is_empty())
    {
        threads.push(ThreadDump {
            name: s.name.clone(),
            ident: s.ident,
            core: None,
            state: ThreadState::App,
            holds_gil: s.holds_gil,
            request: None,
            frames: frames(s),
            cut: s.cut.map(CutDump::from),
        });
    }
    WorkerDump {
        worker: worker.id,
        pid: std::process::id(),
        collected_by,
        collect_ms,
        gil_wait_ms,
        threads,
    }
}

fn frames(s: &ThreadStack) -> Vec<FrameDump> {
    s.frames
        .iter()
        .map(|f| FrameDump {
            filename: f.filename.clone(),
            lineno: f.lineno,
            function: f.function.clone(),
            line: (!f.line.is_empty()).then(|| f.line.clone()),
            locals: (!f.locals.is_empty()).then(|| f.locals.iter().cloned().collect()),
        })
        .collect()
}

/// One worker's outcome for `--tracebacks`: its dump, or why there is none.
pub type WorkerResult = (usize, Result<WorkerDump, String>);

/// The text form of `--tracebacks`.
pub fn write_text(out: &mut impl Write, base: &str, workers: &[WorkerResult]) -> io::Result<()> {
    writeln!(
        out,
        "*** uwsgi-rs tracebacks: {} worker(s) under {base} ***",
        workers.len()
    )?;
    for (id, result) in workers {
        writeln!(out)?;
        let dump = match result {
            Ok(d) => d,
            Err(e) => {
                writeln!(out, "=== worker {id}: no answer ({e}) ===")?;
                continue;
            }
        };
        let how = match dump.collected_by {
            CollectedBy::Signal => "GIL-free dumper",
            CollectedBy::Gil => "interpreter",
        };
        writeln!(
            out,
            "=== worker {id} (pid: {}) via the {how} in {:.1} ms ===",
            dump.pid, dump.collect_ms
        )?;
        for t in &dump.threads {
            let mut head = format!("thread {}", t.name);
            if let Some(c) = t.core {
                head.push_str(&format!(" [core {c}]"));
            }
            match &t.request {
                Some(r) => head.push_str(&format!(
                    " busy: {} {} from {} for {:.1} s",
                    r.method,
                    r.uri,
                    if r.remote.is_empty() { "-" } else { &r.remote },
                    r.running_for
                )),
                None => head.push_str(match t.state {
                    ThreadState::Busy => " busy",
                    ThreadState::Idle => " idle",
                    ThreadState::App => " (app thread)",
                }),
            }
            if t.holds_gil == Some(true) {
                head.push_str(", HOLDS THE GIL");
            }
            writeln!(out, "{head}")?;
            for (i, f) in t.frames.iter().enumerate() {
                if let Some(cut) = t.cut.as_ref().filter(|c| c.at == i) {
                    writeln!(out, "  {}", cut.note)?;
                }
                writeln!(
                    out,
                    "  File \"{}\", line {}, in {}",
                    f.filename, f.lineno, f.function
                )?;
                if let Some(line) = &f.line {
                    writeln!(out, "    {line}")?;
                }
                for (k, v) in f.locals.iter().flatten() {
                    writeln!(out, "      {k} = {v}")?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::format::Frame;
    use super::*;

    #[test]
    fn cores_idle_and_busy_and_app_threads() {
        let sb = crate::scoreboard::Scoreboard::new(1, 2).unwrap();
        // Worker 1's current process in entry 0.
        sb.assign(0, 1, 0, 0);
        sb.set_current(1, Some(0));
        let _busy = sb
            .core(0, 1)
            .begin(10_000, 0, &[b"127.0.0.1", b"GET", b"/slow"]);
        let frame = Frame {
            filename: "a.py".into(),
            lineno: 3,
            function: "f".into(),
            line: "x()".into(),
            locals: vec![],
        };
        let stacks = vec![
            ThreadStack {
                ident: 11,
                name: "uWSGIWorker1Core1".into(),
                frames: vec![frame.clone()],
                holds_gil: Some(true),
                cut: None,
            },
            ThreadStack {
                ident: 99,
                name: "poller".into(),
                frames: vec![frame],
                holds_gil: Some(false),
                cut: Some(super::super::format::Cut::Unknown),
            },
        ];
        let d = build(
            &sb.snapshot(1),
            &stacks,
            |c| Some(10 + c as u64),
            CollectedBy::Signal,
            1.5,
            0.0,
            12_500,
        );
        assert_eq!(d.threads.len(), 3);
        assert_eq!(d.threads[0].state, ThreadState::Idle);
        assert_eq!(d.threads[1].state, ThreadState::Busy);
        assert_eq!(d.threads[1].holds_gil, Some(true));
        let r = d.threads[1].request.as_ref().unwrap();
        assert_eq!(
            (r.method.as_str(), r.uri.as_str(), r.running_for),
            ("GET", "/slow", 2.5)
        );
        assert_eq!(d.threads[2].state, ThreadState::App);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["collected_by"], "signal");
        assert_eq!(json["threads"][1]["state"], "busy");
        let mut text = Vec::new();
        write_text(
            &mut text,
            "/tmp/tb",
            &[(1, Ok(d)), (2, Err("timed out".into()))],
        )
        .unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("thread uWSGIWorker1Core1 [core 1] busy: GET /slow from 127.0.0.1 for 2.5 s, HOLDS THE GIL"), "{text}");
        assert!(text.contains("=== worker 2: no answer (timed out) ==="));
        assert!(text.contains("  File \"a.py\", line 3, in f\n    x()\n"));
        assert!(
            text.contains("(app thread)\n  ... more frames (the GIL-free dumper"),
            "{text}"
        );
        assert_eq!(json["threads"][2]["cut"]["at"], 0);
        assert!(json["threads"][1].get("cut").is_none());
    }
}
