//! `uwsgi-rs --profile BASE`: ask every worker under a tracebacker base
//! for a profile at once, read their streams concurrently, merge them, and
//! write one result. A worker that cannot be profiled is named on stderr;
//! the others still count.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::profile::Profile;
use super::wire::{decode, Decoder, Record};
use super::Spec;
use crate::config::ProfileFormat;

/// What one worker's stream gave.
pub struct WorkerProfile {
    pub worker: usize,
    pub pid: u32,
    pub profile: Profile,
    /// How the stream ended: `done`, or what went wrong.
    pub end: String,
}

/// One decoded event of a worker's stream, for live readers (`--top`).
pub enum Event {
    /// Samples of one stack.
    Stack {
        label: String,
        frames: Vec<super::wire::FrameKey>,
        count: u64,
    },
    /// One interval of a worker ended.
    Tick { gil: u64, signal: u64 },
    /// The stream ended (`done`, or an error).
    End { worker: usize, why: String },
}

/// Open a profile stream on one worker's socket.
pub fn open(path: &str, spec: Spec, timeout: Duration) -> io::Result<BufReader<UnixStream>> {
    let mut s = UnixStream::connect(path)?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(spec.request_line().as_bytes())?;
    // Chunks come once a second; silence longer than this is a dead worker.
    s.set_read_timeout(Some(timeout + Duration::from_secs(2)))?;
    Ok(BufReader::new(s))
}

/// Read one worker's stream to its end, calling `on` for each event; `on`
/// returning false stops reading (the caller then closes the socket,
/// which ends the worker's session).
pub fn read_stream(
    worker: usize,
    mut reader: impl BufRead,
    mut on: impl FnMut(Event) -> bool,
) -> (u32, String) {
    let mut decoder = Decoder::default();
    let mut line = String::new();
    let mut pid = 0;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return (pid, "the worker closed the stream early".into()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return (pid, "no answer (timed out)".into())
            }
            Err(e) => return (pid, e.to_string()),
        }
        let Some(record) = decode(line.trim_end_matches('\n')) else {
            if line.starts_with(crate::tracebacker::format::HEADER) {
                return (
                    pid,
                    "this worker does not know profiles (older server?)".into(),
                );
            }
            continue;
        };
        match &record {
            Record::Header { pid: p, .. } => pid = *p,
            Record::Stack { count, .. } => {
                if let Some(r) = decoder.feed(&record) {
                    let go_on = on(Event::Stack {
                        label: r.label.to_string(),
                        frames: r.frames.into_iter().cloned().collect(),
                        count: *count,
                    });
                    if !go_on {
                        return (pid, "stopped".into());
                    }
                }
            }
            Record::Tick { gil, signal, .. } => {
                let go_on = on(Event::Tick {
                    gil: *gil,
                    signal: *signal,
                });
                if !go_on {
                    return (pid, "stopped".into());
                }
            }
            Record::End(why) => {
                on(Event::End {
                    worker,
                    why: why.clone(),
                });
                return (pid, why.clone());
            }
            Record::Error(why) => {
                on(Event::End {
                    worker,
                    why: why.clone(),
                });
                return (pid, format!("refused: {why}"));
            }
            _ => {
                decoder.feed(&record);
            }
        }
    }
}

/// Profile one worker into a [`Profile`].
fn profile_worker(worker: usize, path: &str, spec: Spec, timeout: Duration) -> WorkerProfile {
    let mut profile = Profile::default();
    let (pid, end) = match open(path, spec, timeout) {
        Ok(reader) => read_stream(worker, reader, |e| match e {
            Event::Stack {
                label,
                frames,
                count,
                ..
            } => {
                let refs: Vec<&super::wire::FrameKey> = frames.iter().collect();
                profile.add(&label, &refs, count);
                true
            }
            Event::Tick { gil, signal, .. } => {
                profile.gil += gil;
                profile.signal += signal;
                true
            }
            Event::End { .. } => true,
        }),
        Err(e) => (0, format!("cannot connect: {e}")),
    };
    WorkerProfile {
        worker,
        pid,
        profile,
        end,
    }
}

/// Profile every worker under `base` at once.
pub fn profile_all(base: &str, spec: Spec, timeout: Duration) -> Result<Vec<WorkerProfile>> {
    let sockets = crate::tracebacker::client::worker_sockets(base);
    if sockets.is_empty() {
        return Err(anyhow!(
            "no tracebacker sockets found under {base} (expected {base}1, {base}2, ...)"
        ));
    }
    let (tx, rx) = mpsc::channel();
    for (id, path) in sockets {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(profile_worker(id, &path, spec, timeout));
        });
    }
    drop(tx);
    let mut all: Vec<WorkerProfile> = rx.iter().collect();
    all.sort_by_key(|w| w.worker);
    Ok(all)
}

/// The `--profile` command.
pub fn run(
    base: &str,
    spec: Spec,
    format: ProfileFormat,
    output: Option<PathBuf>,
    timeout_secs: u64,
) -> Result<()> {
    let timeout = Duration::from_secs(timeout_secs.max(1));
    let workers = profile_all(base, spec, timeout)?;
    eprintln!(
        "uwsgi-rs: profiled the workers under {base} at {} Hz for {} s:",
        spec.hz, spec.seconds
    );
    let mut merged = Profile::default();
    for w in &workers {
        merged.merge(&w.profile);
        let how = if w.end == "done" {
            String::new()
        } else {
            format!(" ({})", w.end)
        };
        eprintln!(
            "  worker {} (pid: {}): {} samples, {} taken with the GIL, {} GIL-free{how}",
            w.worker,
            w.pid,
            w.profile.total(),
            w.profile.gil,
            w.profile.signal
        );
    }
    if workers.iter().all(|w| w.end != "done") {
        return Err(anyhow!("no worker under {base} could be profiled"));
    }
    let title = format!(
        "uwsgi-rs profile of {base}: {} samples at {} Hz over {} s",
        merged.total(),
        spec.hz,
        spec.seconds
    );
    let mut out: Box<dyn Write> = match &output {
        Some(p) => Box::new(io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        )),
        None => Box::new(io::BufWriter::new(io::stdout().lock())),
    };
    match format {
        ProfileFormat::Folded => merged.write_folded(&mut out)?,
        ProfileFormat::Svg => merged.write_svg(&mut out, &title)?,
        ProfileFormat::Speedscope => merged.write_speedscope(&mut out, &title)?,
    }
    out.flush()?;
    if let Some(p) = output {
        eprintln!("uwsgi-rs: wrote {}", p.display());
    }
    Ok(())
}
