//! One worker process: load the app (or take the one its loader preloaded,
//! see `loader`), open the tracebacker, run the cores (request threads), and
//! stop gracefully when told.
//!
//! Core 0 is the process's main thread (so Python's main thread is a request
//! thread, as in uWSGI); cores 1..N are spawned threads. Every core attaches
//! to the interpreter once for its whole life and detaches around waits.
//! The request path itself lives in `serve`; this file is lifecycle only.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::config::{Config, HookPhase};
use crate::conns::{Conns, ListenerInfo};
use crate::listen::Listener;
use crate::poller::Poller;
use crate::scoreboard::Scoreboard;
use crate::serve::{core_loop, ServeConfig, Shared, Stop, StopKind, RUNNING};
use crate::tracebacker::{hook, names};

/// Exit status of a worker whose app (or tracebacker socket) could not be
/// set up: the master treats it as a start-up failure, not a crash.
pub const EXIT_LOAD_FAILED: i32 = 22;

/// How the worker stops (`serve::Stop`'s state), raised by the fallback
/// signals too: the master asks through the control channel (`channel`),
/// which an app cannot take away as it can a signal's handler.
static STOP: AtomicU8 = AtomicU8::new(RUNNING);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// Set just before the first core may take a connection. Until then the
/// worker (loading the app, maybe stuck in its import) holds no request,
/// and a stop signal ends it at once instead of after --reload-mercy.
static SERVING: AtomicBool = AtomicBool::new(false);

/// SIGTERM or SIGHUP from anyone (the master's fallback, an operator,
/// --harakiri-graceful-signal): retire, and the master replaces this
/// worker. Only the master's Shutdown message (or the master gone) makes
/// a worker take what is queued as the server stops.
extern "C" fn on_stop(_sig: libc::c_int) {
    if !SERVING.load(Ordering::Acquire) {
        // SAFETY: _exit is async-signal-safe; nothing was accepted yet.
        unsafe { libc::_exit(0) };
    }
    STOP.fetch_max(StopKind::Retire as u8, Ordering::AcqRel);
    let fd = WAKE_FD.load(Ordering::Acquire);
    if fd >= 0 {
        crate::poller::wake_fd(fd);
    }
}

extern "C" fn on_quit(_sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) };
}

/// libc's sigaction rather than signal-hook (the master installs its own
/// handlers with it too): a worker replaces the
/// master's handlers wholesale after fork (signal-hook's registry would
/// carry the master's actions into it) and needs SIG_IGN and SIG_DFL too.
pub(crate) fn set_handler(sig: i32, handler: libc::sighandler_t) {
    // SAFETY: sigaction is plain data; the handlers only touch atomics and
    // call async-signal-safe functions.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// The current disposition of `sig`.
fn handler_of(sig: i32) -> libc::sighandler_t {
    // SAFETY: sigaction only reads into a zeroed, live struct.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old);
        old.sa_sigaction
    }
}

/// The app a loader imported, handed to each worker it forks
/// (`crate::loader`): the worker skips loading and serves it.
pub struct Preloaded {
    app: Py<PyAny>,
    mounted: Vec<Py<PyAny>>,
}

/// Import the app for preloading (in the loader, before any worker is
/// forked); None when it cannot be, after logging why.
pub fn preload(cfg: &Config) -> Option<Preloaded> {
    // Before the import: a fork at import must be marked, as in a worker.
    crate::forked::install();
    // GIL: held while importing the app.
    let loaded = Python::attach(|py| -> anyhow::Result<Preloaded> {
        hook::install_thread_hook(py).context("cannot hook threading")?;
        let (app, mounted) = load_apps(py, cfg)?;
        // Move what the import created out of the collector's reach: a
        // collection in a worker would otherwise write to every object it
        // tracks, copying the loader's pages into each worker (gc.freeze's
        // purpose). The import's garbage is collected first, or it would
        // stay forever.
        let gc = py.import("gc")?;
        gc.call_method0("collect")?;
        gc.call_method0("freeze")?;
        warn_about_import_threads(py)?;
        Ok(Preloaded { app, mounted })
    });
    crate::forked::exit_if_child();
    match loaded {
        Ok(preloaded) => Some(preloaded),
        Err(e) => {
            crate::log::line(&format!("loader (pid: {}): {e:#}", std::process::id()));
            None
        }
    }
}

/// Threads the app started while being imported stay in the loader: fork
/// copies only the forking thread. uWSGI says nothing; say it once.
fn warn_about_import_threads(py: Python<'_>) -> PyResult<()> {
    let threading = py.import("threading")?;
    let main = threading.call_method0("main_thread")?;
    let mut names = Vec::new();
    for t in threading.call_method0("enumerate")?.try_iter()? {
        let t = t?;
        if !t.is(&main) {
            names.push(t.getattr("name")?.extract::<String>()?);
        }
    }
    if !names.is_empty() {
        crate::log::line(&format!(
            "loader (pid: {}): the app started {} thread(s) while being imported ({}): they do not run in the workers (start them in each worker, e.g. lazily on the first request, or use --lazy-apps)",
            std::process::id(),
            names.len(),
            crate::log::escape(names.join(", ").as_bytes())
        ));
    }
    Ok(())
}

/// Import the `--import` modules, then the configured app and the
/// `--mount` ones: (the default app, the mounted ones). On failure log
/// Python's traceback and return the one line that names the problem.
fn load_apps(py: Python<'_>, cfg: &Config) -> anyhow::Result<(Py<PyAny>, Vec<Py<PyAny>>)> {
    run_hooks(py, cfg, HookPhase::PreApp)?;
    for spec in &cfg.app.imports {
        crate::wsgi::app::import_before_app(py, spec).map_err(report_load_error)?;
    }
    let loaded = import_apps(py, cfg)?;
    run_hooks(py, cfg, HookPhase::PostApp)?;
    Ok(loaded)
}

/// The hooks of a phase this process runs (`hooks`), with the GIL released
/// while they run; a `putenv:` among them reaches `os.environ` too.
fn run_hooks(py: Python<'_>, cfg: &Config, phase: HookPhase) -> anyhow::Result<()> {
    if crate::hooks::of(cfg, phase).next().is_none() {
        return Ok(());
    }
    // GIL: released while commands run (nothing else runs Python yet).
    py.detach(|| {
        crate::hooks::run(
            cfg,
            phase,
            &mut crate::hooks::Ctx {
                credentials: Default::default(),
                signals: None,
            },
        )
    })?;
    crate::python::sync_environ(py, &crate::hooks::putenv_pairs(cfg, &[phase]))?;
    Ok(())
}

/// A hook's failure as this process's exit status: `exit:N` exits N, any
/// other failure is a start-up failure.
fn hook_exit(id: usize, e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<crate::hooks::Failure>() {
        Some(crate::hooks::Failure::Exit(code, _)) => *code,
        _ => {
            crate::log::line(&format!("worker {id}: {e:#}"));
            EXIT_LOAD_FAILED
        }
    }
}

/// Log a load failure's traceback; the error is its one line.
fn report_load_error(e: crate::wsgi::app::LoadError) -> anyhow::Error {
    if let Some(tb) = &e.traceback {
        crate::log::block(tb.as_bytes());
    }
    anyhow::anyhow!(e.line)
}

fn import_apps(py: Python<'_>, cfg: &Config) -> anyhow::Result<(Py<PyAny>, Vec<Py<PyAny>>)> {
    let only_mounts = !cfg.has_main_app();
    let main = if only_mounts && !cfg.requests.mounts.is_empty() {
        None
    } else {
        Some(crate::wsgi::app::load(py, cfg).map_err(report_load_error)?)
    };
    let mounted = cfg
        .requests
        .mounts
        .iter()
        .map(|m| crate::wsgi::app::load_mount(py, &m.app, cfg).map_err(report_load_error))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Without --module/--wsgi-file the first mount is the default app,
    // as in uWSGI.
    let app = match main {
        Some(app) => app,
        None => mounted[0].clone_ref(py),
    };
    Ok((app, mounted))
}

/// Everything a worker gets from the master.
pub struct WorkerArgs<'a> {
    pub cfg: &'a Config,
    pub id: usize,
    /// This process's slot on the scoreboard.
    pub entry: usize,
    pub listeners: &'a [Listener],
    pub scoreboard: &'static Scoreboard,
    /// The worker's tracebacker socket in the master's private directory
    /// (one per scoreboard entry: a retiring process keeps its own).
    pub tb_private: PathBuf,
    /// `--py-tracebacker BASE` + id.
    pub tb_public: Option<PathBuf>,
    /// An older process of this worker id may still hold the public path
    /// (it retires while this one starts): take the path over.
    pub tracebacker_takeover: bool,
    pub master_pid: i32,
    pub credentials: crate::privileges::Credentials,
    /// The app, when a loader imported it before forking this worker.
    pub preloaded: Option<Preloaded>,
    /// This process's end of its control channel, made by the master.
    pub channel: Option<crate::channel::WorkerEnd>,
}

/// Run the worker; returns its exit status.
pub fn run(args: WorkerArgs<'_>) -> i32 {
    // Before anything is logged: with --log-master, lines go to the master.
    crate::log::worker_started();
    let born = std::time::Instant::now();
    // Credentials first: changing them clears the parent-death signal.
    if let Err(e) = crate::privileges::drop_to(args.credentials) {
        crate::log::line(&format!("worker {}: {e:#}", args.id));
        return EXIT_LOAD_FAILED;
    }
    // If the master dies, the kernel kills us: no orphan keeps serving the
    // port (and if it died already, we stop here).
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(args.master_pid) {
        return 1;
    }
    set_handler(libc::SIGTERM, on_stop as *const () as usize);
    set_handler(libc::SIGHUP, on_stop as *const () as usize);
    set_handler(libc::SIGQUIT, on_quit as *const () as usize);
    set_handler(libc::SIGINT, libc::SIG_IGN); // Ctrl-C reaches the master, which decides
    set_handler(libc::SIGPIPE, libc::SIG_IGN);
    // The master's log-reopen signal; a `kill -USR1` to the whole group
    // must not kill the workers. A handler the preloaded app installed
    // stays (--harakiri-graceful-signal SIGUSR1 is for it).
    if handler_of(libc::SIGUSR1) == libc::SIG_DFL {
        set_handler(libc::SIGUSR1, libc::SIG_IGN);
    }
    set_handler(libc::SIGCHLD, libc::SIG_DFL);
    if !args.cfg.requests.honour_stdin {
        stdin_from_dev_null();
    }
    crate::serve::install_panic_hook();
    // GIL: only to mirror a putenv hook into os.environ.
    if let Err(e) = Python::attach(|py| run_hooks(py, args.cfg, HookPhase::PostFork)) {
        return hook_exit(args.id, &e);
    }
    if args.preloaded.is_some() {
        // Forked from the loader, which marks its children: this one is
        // the server's own (its loader's fork handler stays installed).
        crate::forked::unmark();
    } else {
        // Before the import: a fork at import must be marked too.
        crate::forked::install();
    }

    let id = args.id;
    match start(args, born) {
        Ok(()) => 0,
        Err(e) => hook_exit(id, &e),
    }
}

/// uWSGI gives workers /dev/null as stdin (unless `--honour-stdin`): an
/// app that reads stdin (a stray `input()`, pdb) gets EOF instead of
/// stealing the terminal or blocking a request thread.
fn stdin_from_dev_null() {
    if let Ok(null) = std::fs::File::open("/dev/null") {
        // SAFETY: dup2 onto fd 0; `null` is a live fd, closed when dropped.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0) };
    }
}

/// Set up and serve until told to stop. An error is a start-up failure:
/// the app, the interpreter, the tracebacker socket or a core could not be
/// set up (the master then stops retrying if no worker ever came up).
fn start(args: WorkerArgs<'_>, born: std::time::Instant) -> anyhow::Result<()> {
    let cfg = args.cfg;
    let loaded_at = std::time::Instant::now();
    let preloaded = args.preloaded;
    let channel = args.channel;
    let how = match preloaded {
        Some(_) => "app preloaded, started",
        None => "app loaded",
    };
    crate::uwsgi_module::set_worker_id(args.id);
    let poller = Poller::new().context("cannot create poller")?;
    WAKE_FD.store(poller.wake_fd(), Ordering::Release);

    // GIL: held while loading the app and preparing per-worker objects.
    let loaded = Python::attach(|py| -> anyhow::Result<_> {
        hook::name_core(py, args.id, 0)?;
        // Per process: its own file for faulthandler's output.
        crate::tracebacker::signal_path::install(py)
            .context("cannot install the GIL-free tracebacker")?;
        let (app, mounted) = match preloaded {
            Some(Preloaded { app, mounted }) => (app, mounted),
            None => {
                hook::install_thread_hook(py).context("cannot hook threading")?;
                load_apps(py, cfg)?
            }
        };
        let environs = args
            .listeners
            .iter()
            .map(|l| {
                crate::wsgi::environ::template(
                    py,
                    l,
                    cfg.threads > 1,
                    cfg.processes > 1,
                    !cfg.app.wsgi_disable_file_wrapper,
                )
            })
            .collect::<PyResult<Vec<Py<PyDict>>>>()?;
        Ok((app, mounted, environs))
    });
    // A process the app forked while loading goes no further.
    crate::forked::exit_if_child();
    let (app, mounted, environs) = loaded?;
    // uWSGI's place for it: each worker, once the app is loaded (by its
    // loader or by itself), before it serves.
    if let Some(dir) = &cfg.app.chdir2 {
        std::env::set_current_dir(dir)
            .with_context(|| format!("--chdir2: cannot chdir to {}", dir.display()))?;
    }
    let (front, notes) = crate::serve::Front::new(cfg)?;
    for note in notes {
        crate::log::line(&format!("worker {}: {note}", args.id));
    }
    // An app that closed stdout or stderr at import: /dev/null in the hole,
    // before the first accept could take the number.
    crate::log::fds::ensure_std_open();

    let serve_cfg = ServeConfig::new(cfg, args.id);
    let public_tb = crate::tracebacker::start(
        crate::tracebacker::Sockets {
            private: &args.tb_private,
            public: args.tb_public.as_deref().map(|p| (p, cfg.chmod_socket)),
            takeover: args.tracebacker_takeover,
        },
        serve_cfg.socket_timeout,
        crate::tracebacker::Context {
            worker_id: args.id,
            entry: args.entry,
            scoreboard: args.scoreboard,
            locals: cfg.py_tracebacker_locals,
        },
    )
    .context("cannot open the tracebacker socket")?;

    let listeners = args
        .listeners
        .iter()
        .map(|l| ListenerInfo {
            fd: l.fd(),
            protocol: l.protocol,
            is_unix: l.is_unix(),
            server_name: l.server_name.clone(),
            server_port: l.server_port.clone(),
        })
        .collect();
    let conns = Conns::new(
        args.id,
        poller,
        listeners,
        &args.scoreboard.process(args.entry).open_conns,
        serve_cfg.conn_bounds(),
    )
    .context("cannot watch listener")?;
    if let Some(c) = &channel {
        conns
            .watch_control(c.as_fd())
            .context("cannot watch the control channel")?;
    }
    let stop = Stop::new(&STOP, serve_cfg.mercy, serve_cfg.quota(born));
    let mut shared = Shared::new(
        serve_cfg,
        conns,
        stop,
        args.scoreboard,
        args.entry,
        app,
        environs,
    );
    shared.front = front;
    shared.set_mounts(mounted, cfg.has_main_app());
    shared.channel = channel;
    let shared = Arc::new(shared);
    let offload_threads = shared
        .front
        .as_ref()
        .and_then(|f| f.offload.as_ref())
        .map_or(0, |o| o.threads());
    for lane in 0..offload_threads {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("uWSGIWorker{}Offload{lane}", args.id))
            .spawn(move || {
                if let Some(o) = shared.front.as_ref().and_then(|f| f.offload.as_ref()) {
                    o.run(lane, &shared.conns, shared.cfg.socket_timeout);
                }
            })
            .with_context(|| format!("cannot start offload thread {lane}"))?;
    }

    // From here a core may accept: a stop signal is a graceful stop.
    SERVING.store(true, Ordering::Release);
    for core in 1..cfg.threads {
        let shared = Arc::clone(&shared);
        let worker = args.id;
        std::thread::Builder::new()
            .name(names::core_name(worker, core))
            .spawn(move || {
                // GIL: this thread attaches once for its whole life; core_loop
                // detaches around every wait.
                Python::attach(|py| {
                    let _ = hook::name_core(py, worker, core);
                    core_loop(py, &shared, core);
                });
            })
            .with_context(|| format!("cannot start core {core}"))?;
    }
    // uWSGI runs these once the worker accepts; here just before it says
    // so, so that a failing one is a start-up failure (with back-off).
    let first = args
        .scoreboard
        .worker_id(args.id)
        .respawn_count
        .load(Ordering::Relaxed)
        == 0;
    for (phase, when) in [
        (HookPhase::Accepting, true),
        (HookPhase::AcceptingOnce, first),
        (HookPhase::Accepting1, args.id == 1),
        (HookPhase::Accepting1Once, args.id == 1 && first),
    ] {
        if when {
            // GIL: only to mirror a putenv hook into os.environ.
            Python::attach(|py| run_hooks(py, cfg, phase))?;
        }
    }
    let me = args.scoreboard.process(args.entry);
    // The master stores the pid too, but only once its fork (or the
    // loader's) returns, which can be after this worker is ready: a stats
    // reader that saw "ready" must not find pid 0.
    me.pid.store(std::process::id() as i32, Ordering::Relaxed);
    me.accepting.store(1, Ordering::Release);
    crate::log::line(&format!(
        "worker {} (pid: {}) ready: {how} in {} ms, {} core(s)",
        args.id,
        std::process::id(),
        loaded_at.elapsed().as_millis(),
        cfg.threads
    ));
    if let Some(c) = &shared.channel {
        let _ = c.send(crate::channel::ToMaster::Ready);
    }
    if cfg.app.py_autoreload > 0 {
        let shared = Arc::clone(&shared);
        crate::autoreload::start(
            std::time::Duration::from_secs(cfg.app.py_autoreload),
            move |_| shared.tell_master(crate::channel::ToMaster::Reload),
        );
    }
    // GIL: core 0 attaches on the main thread, like the others.
    Python::attach(|py| core_loop(py, &shared, 0));
    args.scoreboard
        .process(args.entry)
        .accepting
        .store(0, Ordering::Release);
    let _ = std::fs::remove_file(&args.tb_private);
    if let Some(p) = &public_tb {
        p.remove_if_ours();
    }
    Ok(())
}
