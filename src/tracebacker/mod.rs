//! The Python tracebacker: UNIX sockets per worker that answer each
//! connection with the live traceback of every Python thread in the
//! worker (uWSGI's format, or the rich JSON form on request), and stream
//! profiles (`profile HZ SECONDS`, see `crate::profiler`).
//!
//! Every worker has a private socket in the master's 0700 directory (the
//! master's harakiri and slow-request dumps, the stats process) and, with
//! `--py-tracebacker BASE`, a public one. Both are served by one
//! nonblocking loop (`crate::control_server`): a client that never sends or
//! never reads waits on its own deadlines only, and the private socket has
//! its own client budget, so nothing done to the public socket can delay
//! or break a harakiri dump.
//!
//! Dumps always answer within a bound: through the interpreter (exact and
//! complete) if the GIL comes within [`GIL_WAIT`], else through CPython's
//! signal-safe dumper, which needs no GIL. Concurrent clients share one
//! snapshot, and once clients overlap snapshots start at most every
//! [`MIN_GAP`]: twenty clients dumping in a loop cost a worker one snapshot
//! per 50 ms. A lone client is only kept [`LONE_GAP`] apart, so one that
//! dumps again right away is not made to wait. No socket thread ever
//! attaches to Python, so a wedged interpreter cannot wedge them. Peers
//! with another uid (except root) are refused.

pub mod client;
mod deep;
pub mod format;
pub mod gil_path;
pub mod hook;
pub mod names;
pub mod rich;
pub mod signal_path;
pub mod sources;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::control_server::{self, ClientId, Handler, Limits, ListenSocket, ListenerSpec, Reply};
use crate::listen::{bind_unix, UnixPathError};
use crate::scoreboard::Scoreboard;

/// How long a dump waits for the GIL before switching to the GIL-free path.
pub const GIL_WAIT: Duration = Duration::from_millis(60);

/// When the GIL-free dump cut a deep stack, the exact collection already
/// under way may still come (the GIL was only slow, not held in C): it is
/// waited for until this long after the dump began.
const CUT_WAIT: Duration = Duration::from_millis(250);

/// Snapshots start at least this long after the previous one ended when
/// clients overlap (it served more than one, or another was already
/// waiting when it ended); the clients that arrive meanwhile share the
/// next one.
pub const MIN_GAP: Duration = Duration::from_millis(50);

/// The gap after a snapshot one client had to itself with nobody waiting:
/// a lone client dumping back to back (a person, a script, the master's
/// harakiri dump) pays no MIN_GAP, yet gets at most one snapshot per
/// LONE_GAP. uWSGI's clients wait REQUEST_WAIT anyway, which covers it.
pub const LONE_GAP: Duration = Duration::from_millis(10);

/// How long the server waits for an optional request line after a client
/// connects. uWSGI's clients send nothing and get the plain dump.
const REQUEST_WAIT: Duration = Duration::from_millis(10);

/// What the worker tells its tracebacker once, at start.
pub struct Context {
    pub worker_id: usize,
    /// This process's slot on the scoreboard.
    pub entry: usize,
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

/// The launcher's frames, if recorded.
pub fn launcher() -> Option<&'static [(String, String)]> {
    LAUNCHER.get().map(Vec::as_slice).filter(|l| !l.is_empty())
}

/// The worker's context, once the tracebacker started.
pub fn context() -> Option<&'static Context> {
    CONTEXT.get()
}

/// A snapshot of every thread and how it was taken.
pub struct Snapshot {
    pub stacks: Vec<format::ThreadStack>,
    pub collected_by: rich::CollectedBy,
    pub elapsed: Duration,
    /// How long it waited for the GIL (zero when it did not queue).
    pub gil_wait: Duration,
}

/// Take a snapshot: the GIL path if the GIL comes quickly, else the
/// GIL-free path (whose cut stacks are completed or marked).
pub fn snapshot(with_locals: bool) -> Snapshot {
    let t0 = Instant::now();
    let mut gil_wait = Duration::ZERO;
    let (mut stacks, collected_by) = match gil_path::collect(GIL_WAIT, with_locals) {
        Ok(mut s) => {
            gil_wait = t0.elapsed();
            strip_launcher(&mut s);
            (s, rich::CollectedBy::Gil)
        }
        Err(pending) => {
            if pending.queued() {
                gil_wait = t0.elapsed();
            }
            let mut s = signal_path::collect().unwrap_or_default();
            strip_launcher(&mut s);
            let cut = s.iter().any(|t| t.cut.is_some());
            let left = (t0 + CUT_WAIT).saturating_duration_since(Instant::now());
            match cut.then(|| pending.wait(left)).flatten() {
                Some(mut exact) => {
                    strip_launcher(&mut exact);
                    (exact, rich::CollectedBy::Gil)
                }
                None => {
                    deep::complete(&mut s);
                    (s, rich::CollectedBy::Signal)
                }
            }
        }
    };
    if collected_by == rich::CollectedBy::Gil {
        deep::remember(&stacks);
    }
    sources::fill(&mut stacks);
    Snapshot {
        stacks,
        collected_by,
        elapsed: t0.elapsed(),
        gil_wait,
    }
}

/// The plain dump (uWSGI's format), optionally only the thread of one core.
fn render_plain(snap: &Snapshot, only_core: Option<usize>) -> Vec<u8> {
    let ident = only_core.map(names::core_ident);
    let stacks: Vec<&format::ThreadStack> = snap
        .stacks
        .iter()
        .filter(|t| ident.map_or(true, |i| Some(t.ident) == i))
        .collect();
    let mut out = Vec::with_capacity(4096);
    let _ = format::write_dump(&mut out, stacks);
    out
}

/// The rich dump of this worker, as JSON.
fn render_json(snap: &Snapshot) -> Vec<u8> {
    let Some(ctx) = CONTEXT.get() else {
        return b"{}".to_vec();
    };
    let dump = rich::build(
        &ctx.scoreboard.snapshot_entry(ctx.entry),
        &snap.stacks,
        names::core_ident,
        snap.collected_by,
        snap.elapsed.as_secs_f64() * 1000.0,
        snap.gil_wait.as_secs_f64() * 1000.0,
        crate::log::unix_millis(),
    );
    serde_json::to_vec(&dump).unwrap_or_else(|_| b"{}".to_vec())
}

/// The private socket of the process in scoreboard entry `entry`, under
/// the master's private base (a retiring process and its successor, both of
/// one worker id, each keep their own).
pub fn private_socket(base: &str, entry: usize) -> String {
    format!("{base}.{entry}")
}

/// Where a worker's sockets go.
pub struct Sockets<'a> {
    /// In the master's private directory: the master's and the stats
    /// process's way in.
    pub private: &'a Path,
    /// `--py-tracebacker BASE` + id, with `--chmod-socket`'s mode.
    pub public: Option<(&'a Path, Option<u32>)>,
    /// An older process of this worker id may still hold the public path
    /// (it retires while this one starts): bind beside it and rename over.
    pub takeover: bool,
}

/// The public socket file this process made: removed at exit only if it is
/// still this one (a successor may have taken the path over).
pub struct PublicSocket {
    path: PathBuf,
    ino: u64,
}

impl PublicSocket {
    pub fn remove_if_ours(&self) {
        use std::os::unix::fs::MetadataExt;
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Which listener a client came through.
const PRIVATE: usize = 0;
const PUBLIC: usize = 1;

/// Bind the worker's tracebacker sockets and serve them on a thread of
/// their own. Owner-only (0600) unless `--chmod-socket` says otherwise.
pub fn start(
    sockets: Sockets<'_>,
    timeout: Duration,
    ctx: Context,
) -> Result<Option<PublicSocket>, UnixPathError> {
    use std::os::unix::fs::MetadataExt;
    let _ = CONTEXT.set(ctx);
    let limits = |max_clients| Limits {
        request_wait: REQUEST_WAIT,
        request_max: 256,
        write_timeout: timeout,
        max_clients,
        max_buffered: 64 << 20,
    };
    let mut listeners = vec![ListenerSpec {
        socket: ListenSocket::Unix(bind_unix(sockets.private, Some(0o600))?),
        tag: PRIVATE,
        limits: limits(64),
        same_uid_only: true,
    }];
    let mut public = None;
    if let Some((path, chmod)) = sockets.public {
        let path_err = |source| UnixPathError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bind_at = if sockets.takeover {
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(format!(".{}.new", std::process::id()));
            PathBuf::from(tmp)
        } else {
            path.to_path_buf()
        };
        let l = bind_unix(&bind_at, Some(0o600))?;
        if let Some(mode) = chmod {
            std::fs::set_permissions(&bind_at, std::fs::Permissions::from_mode(mode))
                .map_err(path_err)?;
        }
        if bind_at != path {
            // Atomic: clients see the old socket or this one, never none.
            std::fs::rename(&bind_at, path).map_err(path_err)?;
        }
        let ino = std::fs::symlink_metadata(path).map_err(path_err)?.ino();
        public = Some(PublicSocket {
            path: path.to_path_buf(),
            ino,
        });
        listeners.push(ListenerSpec {
            socket: ListenSocket::Unix(l),
            tag: PUBLIC,
            limits: limits(256),
            same_uid_only: true,
        });
    }
    let io_err = |source| UnixPathError::Io {
        path: PathBuf::from(sockets.private),
        source,
    };
    let dumps = Arc::new(Dumps::default());
    let server = control_server::Server::new(
        "tracebacker",
        listeners,
        TbHandler {
            dumps: Arc::clone(&dumps),
        },
    )
    .map_err(io_err)?;
    let responder = server.responder();
    crate::profiler::sampler::set_responder(responder.clone());
    std::thread::Builder::new()
        .name("uwsgi-rs-tb-dump".into())
        .spawn(move || dumps.run(responder))
        .map_err(io_err)?;
    server.spawn("uwsgi-rs-tracebacker").map_err(io_err)?;
    Ok(public)
}

/// What a client may ask for in its first line.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Ask {
    Plain,
    Json,
    Core(usize),
    Profile(crate::profiler::Spec),
}

pub fn parse_ask(line: &[u8]) -> Ask {
    let line = String::from_utf8_lossy(line);
    let line = line.trim();
    if line == "json" {
        return Ask::Json;
    }
    if let Some(spec) = crate::profiler::Spec::parse(line) {
        return Ask::Profile(spec);
    }
    match line
        .strip_prefix("core ")
        .and_then(|c| c.trim().parse().ok())
    {
        Some(c) => Ask::Core(c),
        None => Ask::Plain,
    }
}

struct TbHandler {
    dumps: Arc<Dumps>,
}

impl Handler for TbHandler {
    fn complete(&self, _tag: usize, buf: &[u8]) -> bool {
        buf.contains(&b'\n')
    }

    fn request(&mut self, id: ClientId, _tag: usize, buf: &[u8]) -> Reply {
        match parse_ask(buf) {
            Ask::Profile(spec) => match crate::profiler::sampler::start(id, spec) {
                Ok(limit) => Reply::Later(limit),
                Err(e) => Reply::Now(format!("error {e}\n").into_bytes()),
            },
            ask => {
                self.dumps.ask(id, ask);
                // A snapshot is bounded (GIL_WAIT, CUT_WAIT, the GIL-free
                // dumper): this only guards against a bug.
                Reply::Later(Duration::from_secs(30))
            }
        }
    }

    fn closed(&mut self, id: ClientId) {
        crate::profiler::sampler::stop(id);
    }
}

/// Dump requests waiting for the next snapshot.
#[derive(Default)]
struct Dumps {
    pending: Mutex<Vec<(ClientId, Ask)>>,
    cv: Condvar,
}

impl Dumps {
    fn ask(&self, id: ClientId, ask: Ask) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, ask));
        self.cv.notify_one();
    }

    /// Take one snapshot per batch of waiting clients, no sooner than
    /// MIN_GAP (LONE_GAP after a lone client's) after the last, and answer
    /// each from it.
    fn run(&self, responder: control_server::Responder) {
        let mut next_start: Option<Instant> = None;
        loop {
            {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                while p.is_empty() {
                    p = self.cv.wait(p).unwrap_or_else(|e| e.into_inner());
                }
            }
            if let Some(t) = next_start {
                std::thread::sleep(t.saturating_duration_since(Instant::now()));
            }
            let batch =
                std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
            let shared = batch.len() > 1;
            let locals = CONTEXT.get().is_some_and(|c| c.locals)
                && batch.iter().any(|(_, a)| *a == Ask::Json);
            let snap = snapshot(locals);
            // Before any answer goes out: a lone client cannot be back yet.
            let waiting = !self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            let gap = if shared || waiting { MIN_GAP } else { LONE_GAP };
            let mut rendered: Vec<(Ask, Arc<[u8]>)> = Vec::new();
            for (id, ask) in batch {
                let body = match rendered.iter().find(|(a, _)| *a == ask) {
                    Some((_, b)) => Arc::clone(b),
                    None => {
                        let b: Arc<[u8]> = match ask {
                            Ask::Json => render_json(&snap),
                            Ask::Core(c) => render_plain(&snap, Some(c)),
                            _ => render_plain(&snap, None),
                        }
                        .into();
                        rendered.push((ask, Arc::clone(&b)));
                        b
                    }
                };
                responder.reply(id, body);
            }
            next_start = Some(Instant::now() + gap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_optional_and_plain_by_default() {
        assert_eq!(parse_ask(b""), Ask::Plain);
        assert_eq!(parse_ask(b"plain\n"), Ask::Plain);
        assert_eq!(parse_ask(b"json\n"), Ask::Json);
        assert_eq!(parse_ask(b"core 3\n"), Ask::Core(3));
        assert_eq!(parse_ask(b"garbage"), Ask::Plain);
        assert!(matches!(parse_ask(b"profile 100 5\n"), Ask::Profile(_)));
    }
}
