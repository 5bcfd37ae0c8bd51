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
use crate::scoreboard::Scoreboard;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkerDump {
    pub worker: usize,
    pub pid: u32,
    /// "gil" (through the interpreter) or "signal" (GIL-free dumper).
    pub collected_by: String,
    pub collect_ms: f64,
    pub threads: Vec<ThreadDump>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThreadDump {
    pub name: String,
    pub ident: u64,
    /// The core (request thread) index, None for threads the app started.
    pub core: Option<usize>,
    /// "busy" (serving a request), "idle" (a core waiting for one) or "app".
    pub state: String,
    pub holds_gil: Option<bool>,
    pub request: Option<RequestDump>,
    pub frames: Vec<FrameDump>,
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

/// Join the stacks with the scoreboard: every core appears, busy or idle,
/// and every app thread with Python frames.
pub fn build(
    worker: usize,
    sb: &Scoreboard,
    stacks: &[ThreadStack],
    core_ident: impl Fn(usize) -> Option<u64>,
    collected_by: &str,
    collect_ms: f64,
    now_ms: u64,
) -> WorkerDump {
    let mut threads = Vec::new();
    let mut seen = Vec::new();
    for core in 0..sb.threads() {
        let ident = core_ident(core);
        let stack = ident.and_then(|i| stacks.iter().find(|t| t.ident == i));
        let slot = sb.core(worker, core);
        let busy = slot.in_request.load(std::sync::atomic::Ordering::Acquire) == 1;
        let request = if busy {
            slot.read_info().map(|info| {
                let started_ms = slot.started_ms.load(std::sync::atomic::Ordering::Relaxed);
                RequestDump {
                    method: info.method,
                    uri: info.uri,
                    remote: info.remote,
                    started: started_ms / 1000,
                    running_for: now_ms.saturating_sub(started_ms) as f64 / 1000.0,
                }
            })
        } else {
            None
        };
        if let Some(i) = ident {
            seen.push(i);
        }
        threads.push(ThreadDump {
            name: stack
                .map(|s| s.name.clone())
                .unwrap_or_else(|| crate::worker::core_name(worker, core)),
            ident: ident.unwrap_or(0),
            core: Some(core),
            state: if busy { "busy" } else { "idle" }.into(),
            holds_gil: stack.and_then(|s| s.holds_gil),
            request,
            frames: stack.map(frames).unwrap_or_default(),
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
            state: "app".into(),
            holds_gil: s.holds_gil,
            request: None,
            frames: frames(s),
        });
    }
    WorkerDump {
        worker,
        pid: std::process::id(),
        collected_by: collected_by.into(),
        collect_ms,
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
        let how = if dump.collected_by == "signal" {
            "GIL-free dumper"
        } else {
            "interpreter"
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
                None if t.state == "busy" => head.push_str(" busy"),
                None if t.state == "idle" => head.push_str(" idle"),
                None => head.push_str(" (app thread)"),
            }
            if t.holds_gil == Some(true) {
                head.push_str(", HOLDS THE GIL");
            }
            writeln!(out, "{head}")?;
            for f in &t.frames {
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
        let sb = Scoreboard::new(1, 2).unwrap();
        sb.core(1, 1)
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
            },
            ThreadStack {
                ident: 99,
                name: "poller".into(),
                frames: vec![frame],
                holds_gil: Some(false),
            },
        ];
        let d = build(
            1,
            &sb,
            &stacks,
            |c| Some(10 + c as u64),
            "signal",
            1.5,
            12_500,
        );
        assert_eq!(d.threads.len(), 3);
        assert_eq!(d.threads[0].state, "idle");
        assert_eq!(d.threads[1].state, "busy");
        assert_eq!(d.threads[1].holds_gil, Some(true));
        let r = d.threads[1].request.as_ref().unwrap();
        assert_eq!(
            (r.method.as_str(), r.uri.as_str(), r.running_for),
            ("GET", "/slow", 2.5)
        );
        assert_eq!(d.threads[2].state, "app");
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
    }
}
