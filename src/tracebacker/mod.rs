//! The Python tracebacker: a UNIX socket per worker that answers every
//! connection with the live traceback of every Python thread in the worker,
//! in uWSGI's format, then closes.
//!
//! It always answers within a bound: first through the interpreter (the GIL
//! path, exact and complete) if the GIL comes within [`GIL_WAIT`], else
//! through CPython's signal-safe dumper (the signal path), which needs no
//! GIL at all. The socket thread never attaches to Python itself, so a
//! wedged interpreter cannot wedge it. Peers with another uid (except root)
//! are refused.

pub mod client;
pub mod format;
pub mod gil_path;
pub mod hook;
pub mod names;
pub mod rich;
pub mod signal_path;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::listen::{bind_unix, peer_uid, UnixPathError};
use crate::scoreboard::Scoreboard;

/// How long a dump waits for the GIL before switching to the GIL-free path.
pub const GIL_WAIT: Duration = Duration::from_millis(60);

/// How long the server waits for an optional request line after a client
/// connects. uWSGI's clients send nothing and get the plain dump.
const REQUEST_WAIT: Duration = Duration::from_millis(10);

/// What the worker tells its tracebacker once, at start.
pub struct Context {
    pub worker_id: usize,
    pub scoreboard: &'static Scoreboard,
    pub locals: bool,
}

static CONTEXT: OnceLock<Context> = OnceLock::new();

/// The Python frames (filename, function) of the program that started the
/// server, outermost first: the `uwsgi-rs` console script calling
/// `uwsgi_rs.main()` (with runpy's under `python -m uwsgi_rs`). Every
/// process is forked from inside them, so each worker's main thread (core
/// 0) carries them under its requests; they are not the app's and dumps
/// leave them out.
static LAUNCHER: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Record the launcher's frames; the master calls this once, before forking.
pub fn set_launcher_frames(frames: Vec<(String, String)>) {
    let _ = LAUNCHER.set(frames);
}

fn strip_launcher(stacks: &mut [format::ThreadStack]) {
    let Some(launcher) = LAUNCHER.get().filter(|l| !l.is_empty()) else {
        return;
    };
    for t in stacks {
        let under = t.frames.len() >= launcher.len()
            && t.frames
                .iter()
                .zip(launcher)
                .all(|(f, (file, func))| f.filename == *file && f.function == *func);
        if under {
            t.frames.drain(..launcher.len());
        }
    }
}

/// A snapshot of every thread and how it was taken.
pub struct Snapshot {
    pub stacks: Vec<format::ThreadStack>,
    pub collected_by: rich::CollectedBy,
    pub elapsed: Duration,
}

/// Take a snapshot: the GIL path if the GIL comes quickly, else the
/// GIL-free path.
pub fn snapshot(with_locals: bool) -> Snapshot {
    let t0 = Instant::now();
    let (mut stacks, collected_by) = match gil_path::collect(GIL_WAIT, with_locals) {
        Some(s) => (s, rich::CollectedBy::Gil),
        None => (
            signal_path::collect().unwrap_or_default(),
            rich::CollectedBy::Signal,
        ),
    };
    strip_launcher(&mut stacks);
    Snapshot {
        stacks,
        collected_by,
        elapsed: t0.elapsed(),
    }
}

/// The plain dump (uWSGI's format), optionally only the thread of one core.
pub fn dump_plain(only_core: Option<usize>) -> Vec<u8> {
    let snap = snapshot(false);
    let stacks: Vec<format::ThreadStack> = match only_core {
        Some(core) => {
            let ident = names::core_ident(core);
            snap.stacks
                .into_iter()
                .filter(|t| Some(t.ident) == ident)
                .collect()
        }
        None => snap.stacks,
    };
    let mut out = Vec::with_capacity(4096);
    let _ = format::write_dump(&mut out, &stacks);
    out
}

/// The rich dump of this worker, as JSON.
pub fn dump_json() -> Vec<u8> {
    let Some(ctx) = CONTEXT.get() else {
        return b"{}".to_vec();
    };
    let snap = snapshot(ctx.locals);
    let dump = rich::build(
        &ctx.scoreboard.snapshot(ctx.worker_id),
        &snap.stacks,
        names::core_ident,
        snap.collected_by,
        snap.elapsed.as_secs_f64() * 1000.0,
        crate::log::unix_millis(),
    );
    serde_json::to_vec(&dump).unwrap_or_else(|_| b"{}".to_vec())
}

/// Bind the worker's tracebacker socket and serve it on its own thread.
/// Owner-only (0600) unless `chmod` says otherwise.
pub fn start(
    path: &Path,
    chmod: Option<u32>,
    timeout: Duration,
    ctx: Context,
) -> Result<(), UnixPathError> {
    let _ = CONTEXT.set(ctx);
    let listener = bind_unix(path, Some(0o600))?;
    if let Some(mode) = chmod {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
            |source| UnixPathError::Io {
                path: path.to_path_buf(),
                source,
            },
        )?;
    }
    let shown: PathBuf = path.to_path_buf();
    std::thread::Builder::new()
        .name("uwsgi-rs-tracebacker".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    // Never on a stdout/stderr number the app closed.
                    Ok(s) => serve(crate::log::fds::off_std(s.into()).into(), timeout),
                    Err(e) => {
                        crate::log::line(&format!("tracebacker {}: accept: {e}", shown.display()));
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(|source| UnixPathError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(())
}

/// What a client may ask for in its first line.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    Plain,
    Json,
    Core(usize),
}

fn parse_ask(line: &[u8]) -> Ask {
    let line = String::from_utf8_lossy(line);
    let line = line.trim();
    if line == "json" {
        return Ask::Json;
    }
    match line
        .strip_prefix("core ")
        .and_then(|c| c.trim().parse().ok())
    {
        Some(c) => Ask::Core(c),
        None => Ask::Plain,
    }
}

/// Answer one client. Bounded by `timeout` for a client that never reads.
fn serve(mut stream: UnixStream, timeout: Duration) {
    let me = rustix::process::geteuid().as_raw();
    match peer_uid(&stream) {
        Ok(uid) if uid == me || uid == 0 => {}
        Ok(uid) => {
            crate::log::line(&format!("tracebacker: refused a connection from uid {uid}"));
            return;
        }
        Err(e) => {
            crate::log::line(&format!("tracebacker: cannot check the peer: {e}"));
            return;
        }
    }
    let _ = stream.set_read_timeout(Some(REQUEST_WAIT));
    let mut first = [0u8; 64];
    let n = stream.read(&mut first).unwrap_or(0);
    let body = match parse_ask(&first[..n]) {
        Ask::Plain => dump_plain(None),
        Ask::Json => dump_json(),
        Ask::Core(c) => dump_plain(Some(c)),
    };
    let _ = stream.set_write_timeout(Some(timeout));
    let _ = stream.write_all(&body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_optional_and_plain_by_default() {
        assert_eq!(parse_ask(b""), Ask::Plain);
        assert_eq!(parse_ask(b"json\n"), Ask::Json);
        assert_eq!(parse_ask(b"core 3\n"), Ask::Core(3));
        assert_eq!(parse_ask(b"garbage"), Ask::Plain);
    }
}
