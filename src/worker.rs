//! One worker process: start Python, load the app, open the tracebacker,
//! run the cores (request threads), and stop gracefully when told.
//!
//! Core 0 is the process's main thread (so Python's main thread is a request
//! thread, as in uWSGI); cores 1..N are spawned threads. Every core attaches
//! to the interpreter once for its whole life and detaches around waits.
//! The request path itself lives in `serve`; this file is lifecycle only.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;

use crate::config::Config;
use crate::http::Limits;
use crate::listen::Listener;
use crate::poller::Poller;
use crate::scoreboard::Scoreboard;
use crate::serve::{core_loop, ListenerInfo, Shared};

/// How long an idle keep-alive connection is kept open.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Exit status of a worker whose app (or tracebacker socket) could not be
/// set up: the master treats it as a start-up failure, not a crash.
pub const EXIT_LOAD_FAILED: i32 = 22;

static STOP: AtomicBool = AtomicBool::new(false);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop(_sig: libc::c_int) {
    STOP.store(true, Ordering::Release);
    let fd = WAKE_FD.load(Ordering::Acquire);
    if fd >= 0 {
        crate::poller::wake_fd(fd);
    }
}

extern "C" fn on_quit(_sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) };
}

fn set_handler(sig: i32, handler: libc::sighandler_t) {
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

/// Everything a worker gets from the master.
pub struct WorkerArgs<'a> {
    pub cfg: &'a Config,
    pub id: usize,
    pub listeners: &'a [Listener],
    pub scoreboard: &'static Scoreboard,
    pub tracebacker: PathBuf,
    pub master_pid: i32,
    pub credentials: crate::privileges::Credentials,
}

/// Run the worker; returns its exit status.
pub fn run(args: WorkerArgs<'_>) -> i32 {
    // Credentials first: changing them clears the parent-death signal.
    if let Err(e) = crate::privileges::drop_to(args.credentials) {
        crate::log::line(&format!("worker {}: {e:#}", args.id));
        return EXIT_LOAD_FAILED;
    }
    // SAFETY: prctl/getppid have no memory effects. If the master dies,
    // the kernel kills us: no orphan keeps serving the port.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != args.master_pid {
            return 1;
        }
    }
    set_handler(libc::SIGTERM, on_stop as *const () as usize);
    set_handler(libc::SIGHUP, on_stop as *const () as usize);
    set_handler(libc::SIGQUIT, on_quit as *const () as usize);
    set_handler(libc::SIGINT, libc::SIG_IGN); // Ctrl-C reaches the master, which decides
    set_handler(libc::SIGPIPE, libc::SIG_IGN);
    set_handler(libc::SIGCHLD, libc::SIG_DFL);
    // Before Python starts: a fork at import must be marked too.
    crate::forked::install();

    match start(&args) {
        Ok(code) => code,
        Err(code) => code,
    }
}

fn start(args: &WorkerArgs<'_>) -> Result<i32, i32> {
    let cfg = args.cfg;
    let loaded_at = std::time::Instant::now();
    crate::uwsgi_module::set_facts(crate::uwsgi_module::WorkerFacts {
        worker_id: args.id,
        processes: cfg.processes,
        threads: cfg.threads,
    });
    for (k, v) in &cfg.env {
        std::env::set_var(k, v); // single-threaded here: nothing else reads env
    }
    if let Err(e) = crate::python::init(cfg) {
        crate::log::line(&format!("worker {}: {e:#}", args.id));
        return Err(EXIT_LOAD_FAILED);
    }
    let poller = Poller::new().map_err(|e| {
        crate::log::line(&format!("worker {}: cannot create poller: {e}", args.id));
        EXIT_LOAD_FAILED
    })?;
    WAKE_FD.store(poller.wake_fd(), Ordering::Release);

    // GIL: held while loading the app and preparing per-worker objects.
    let loaded = Python::attach(|py| -> Result<(Py<PyAny>, Vec<ListenerInfo>), String> {
        crate::python::name_current_thread(py, &core_name(args.id, 0), true)
            .map_err(|e| e.to_string())?;
        crate::tracebacker::names::record_core(
            crate::tracebacker::names::current_ident(),
            &core_name(args.id, 0),
            0,
        );
        install_thread_hook(py).map_err(|e| format!("cannot hook threading: {e}"))?;
        crate::tracebacker::signal_path::install(py)
            .map_err(|e| format!("cannot install the GIL-free tracebacker: {e}"))?;
        let app = crate::wsgi::app::load(py, cfg).map_err(|e| {
            if let Some(tb) = &e.traceback {
                crate::log::block(tb.as_bytes());
            }
            e.line
        })?;
        let mut infos = Vec::new();
        for l in args.listeners {
            let environ = crate::wsgi::environ::template(py, l, cfg.threads > 1, cfg.processes > 1)
                .map_err(|e| e.to_string())?;
            infos.push(ListenerInfo {
                fd: l.fd(),
                protocol: l.protocol,
                is_unix: l.is_unix(),
                environ,
            });
        }
        Ok((app, infos))
    });
    crate::forked::exit_if_child();
    let (app, infos) = loaded.map_err(|line| {
        crate::log::line(&format!("worker {}: {line}", args.id));
        EXIT_LOAD_FAILED
    })?;

    let timeout = Duration::from_secs(cfg.socket_timeout.max(1));
    if let Err(e) = crate::tracebacker::start(
        &args.tracebacker,
        if cfg.py_tracebacker.is_some() {
            cfg.chmod_socket
        } else {
            None
        },
        timeout,
        crate::tracebacker::Context {
            worker_id: args.id,
            scoreboard: args.scoreboard,
            locals: cfg.py_tracebacker_locals,
        },
    ) {
        crate::log::line(&format!(
            "worker {}: cannot open the tracebacker socket: {e}",
            args.id
        ));
        return Err(EXIT_LOAD_FAILED);
    }

    for (i, l) in infos.iter().enumerate() {
        if let Err(e) = poller.add_listener(i, l.fd) {
            crate::log::line(&format!("worker {}: cannot watch listener: {e}", args.id));
            return Err(EXIT_LOAD_FAILED);
        }
    }
    let shared = Arc::new(Shared {
        worker_id: args.id,
        threads: cfg.threads,
        poller,
        listeners: infos,
        app,
        scoreboard: args.scoreboard,
        limits: Limits {
            max_head: cfg.buffer_size,
            max_uri: cfg.buffer_size.max(8192),
            max_headers: 100,
            limit_post: cfg.limit_post,
            underscores_in_headers: cfg.http_underscores_in_headers,
        },
        timeout,
        harakiri_secs: cfg.harakiri,
        keep_headers: cfg.harakiri_verbose,
        logging: !cfg.disable_logging,
        max_requests: cfg.max_requests,
        stopping: &STOP,
        listeners_removed: AtomicBool::new(false),
        stop_started: std::sync::Mutex::new(None),
        mercy: Duration::from_secs(cfg.reload_mercy.max(1)),
        deadlines: Default::default(),
        keepalive: KEEPALIVE_TIMEOUT,
        busy: AtomicUsize::new(0),
        leader: Default::default(),
    });

    for core in 1..cfg.threads {
        let shared = Arc::clone(&shared);
        let name = core_name(args.id, core);
        let spawned = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                // GIL: this thread attaches once for its whole life; core_loop
                // detaches around every wait.
                Python::attach(|py| {
                    let _ = crate::python::name_current_thread(py, &name, false);
                    crate::tracebacker::names::record_core(
                        crate::tracebacker::names::current_ident(),
                        &name,
                        core,
                    );
                    core_loop(py, &shared, core);
                });
            });
        if let Err(e) = spawned {
            crate::log::line(&format!(
                "worker {}: cannot start core {core}: {e}",
                args.id
            ));
            return Err(EXIT_LOAD_FAILED);
        }
    }
    args.scoreboard
        .worker(args.id)
        .accepting
        .store(1, Ordering::Release);
    crate::log::line(&format!(
        "worker {} (pid: {}) ready: app loaded in {} ms, {} core(s)",
        args.id,
        std::process::id(),
        loaded_at.elapsed().as_millis(),
        cfg.threads
    ));
    // GIL: core 0 attaches on the main thread, like the others.
    Python::attach(|py| core_loop(py, &shared, 0));
    args.scoreboard
        .worker(args.id)
        .accepting
        .store(0, Ordering::Release);
    let _ = std::fs::remove_file(&args.tracebacker);
    Ok(0)
}

/// `uWSGIWorker<W>Core<C>`, as uWSGI names its request threads.
pub fn core_name(worker: usize, core: usize) -> String {
    format!("uWSGIWorker{worker}Core{core}")
}

/// Record the names of threads the app starts, so the GIL-free dump path
/// can name them too (it cannot ask `threading` while the GIL is held).
fn install_thread_hook(py: Python<'_>) -> PyResult<()> {
    // Wrapping start() (not the thread's own bootstrap) keeps the hook out
    // of the new thread's stack: start() returns once ident and native_id
    // are known. Renames go through the `name` property, wrapped too.
    let code = cr#"
import threading, uwsgi
_uwsgi_rs_orig_start = threading.Thread.start
def _uwsgi_rs_start(self):
    _uwsgi_rs_orig_start(self)
    try:
        uwsgi._register_thread(self.ident, self.name, getattr(self, "native_id", 0) or 0)
    except Exception:
        pass
threading.Thread.start = _uwsgi_rs_start
_uwsgi_rs_name = threading.Thread.name
def _uwsgi_rs_set_name(self, name):
    _uwsgi_rs_name.fset(self, name)
    if self.ident is not None:
        try:
            uwsgi._register_thread(self.ident, self.name, getattr(self, "native_id", 0) or 0)
        except Exception:
            pass
threading.Thread.name = property(_uwsgi_rs_name.fget, _uwsgi_rs_set_name, doc=_uwsgi_rs_name.__doc__)
"#;
    PyModule::from_code(
        py,
        code,
        c"uwsgi_rs_thread_hook.py",
        c"uwsgi_rs_thread_hook",
    )?;
    Ok(())
}
