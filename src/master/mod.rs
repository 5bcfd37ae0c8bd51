//! The master process: holds the listening sockets, starts the workers,
//! turns signals into reloads and shutdowns, and runs the checks on a
//! short tick. The workers' books and their transitions (spawn, ready,
//! retire, reap, rolling reload) are in `workers`; each periodic check
//! (harakiri, mercy, memory, lifetime, touched files, cheaper mode, slow
//! requests, listen queues) is one small function in `checks`, as uWSGI's
//! master_checks.c has them.
//!
//! It runs in the user's interpreter (the `uwsgi-rs` console script) but
//! never imports the app: by default a loader process imports it and forks
//! the workers (`loader.rs`); with `--lazy-apps` the master forks bare
//! workers that import it. The master stays single-threaded, which keeps
//! `fork` safe, and holds the GIL only to fork.

mod checks;
mod workers;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::actions::{Action, SignalActions};
use crate::config::{Config, HookPhase};
use crate::cron::Crons;
use crate::daemons::{Daemons, Reaped};
use crate::fifo::MasterFifo;
use crate::hooks;
use crate::listen::{self, Listener};
use crate::loader::{Loader, Spawn};
use crate::log;
use crate::scoreboard::Scoreboard;
use crate::systemd::Notifier;
use crate::worker::{WorkerArgs, EXIT_LOAD_FAILED};
use workers::{Proc, Slot};

/// How often the master checks deadlines when no signal wakes it.
const TICK: Duration = Duration::from_millis(200);

static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);
static MASTER_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // A child just forked runs this handler until it leaves the master's
    // ways: a stop signal sent to it then (a worker still loading is
    // signalled) must not reach the master's pipe, which it shares, as a
    // second SIGTERM (an immediate shutdown). The child's own stop comes
    // through its channel too.
    // SAFETY: getpid is async-signal-safe.
    if unsafe { libc::getpid() } != MASTER_PID.load(Ordering::Relaxed) {
        return;
    }
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    let b = sig as u8;
    // SAFETY: write(2) is async-signal-safe; one byte from a live local.
    unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
}

/// Install `handler` for SIGCHLD and every signal in `actions`.
fn install_signals(handler: libc::sighandler_t, actions: &SignalActions) {
    for sig in actions.signals().chain([libc::SIGCHLD]) {
        // The master's handler only writes a byte.
        crate::worker::set_handler(sig, handler);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Shutting down: every process was told, with its mercy deadline.
    Stopping,
}

pub struct Master {
    cfg: Config,
    listeners: Vec<Listener>,
    scoreboard: &'static Scoreboard,
    /// One per worker id (id = index + 1).
    slots: Vec<Slot>,
    /// Processes told to stop, which no longer own a slot.
    retiring: Vec<Proc>,
    phase: Phase,
    /// Worker ids a reload has still to replace (popped from the end).
    reload_queue: Vec<usize>,
    signal_rd: i32,
    signal_wr: i32,
    /// Base of the private tracebacker sockets (in `private_dir`).
    tb_base: String,
    private_dir: PathBuf,
    any_ready: bool,
    pid: i32,
    stats: Option<crate::stats::StatsListener>,
    /// The stats process (0 while none runs) and when to start the next.
    stats_pid: i32,
    stats_respawn_at: Option<Instant>,
    stats_spawned: Option<Instant>,
    /// Who the master is, as the stats document says (taken at start).
    facts: crate::stats::MasterFacts,
    credentials: crate::privileges::Credentials,
    /// Requests whose slow-request traceback was logged: (pid, core, start ms).
    slow_reported: std::collections::HashSet<(i32, usize, u64)>,
    /// When the last full-listen-queue warning was logged (once a second).
    queue_warned: Option<Instant>,
    /// Preload: the loader workers are forked from (None with --lazy-apps,
    /// or while one is due to be started).
    loader: Option<Loader>,
    /// Preload: the loader of a reload, importing the new code.
    next_loader: Option<Loader>,
    /// The app generation of the current loader (1, then +1 per reload).
    generation: u64,
    /// When to start a loader again after the current one died.
    loader_restart_at: Option<Instant>,
    /// Loader deaths in a row: drives its back-off.
    loader_failures: u32,
    /// State of the periodic checks (`checks`).
    checks: checks::State,
    /// What each signal asks for (README's table; `unix_signal` hooks).
    signal_actions: SignalActions,
    /// `--master-fifo`.
    fifo: Option<MasterFifo>,
    /// systemd's NOTIFY_SOCKET, and what it was last told.
    notifier: Option<Notifier>,
    readiness: Readiness,
    /// `attach-daemon` and friends.
    daemons: Daemons,
    /// `cron`, `unique-cron`.
    crons: Crons,
    /// `hook-master-start`, while it runs.
    master_start: Option<hooks::Sequence>,
    /// A brutal reload (fifo `R`) waits for the new loader, then replaces
    /// every worker at once.
    brutal_reload: bool,
    /// Shutting down: when attached daemons still running are killed.
    daemons_kill_at: Option<Instant>,
    /// When the last reload started: processes started before it are
    /// replaced by it.
    reload_from: Instant,
    /// fifo `C`: no workers until a connection comes.
    gone_cheap: bool,
    /// How to start this master again (fifo `f`): argv and directory.
    reexec: Option<Reexec>,
    /// A new master was forked onto our sockets: leave their files alone.
    reforked: bool,
}

/// What systemd was told last (Type=notify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    Starting,
    Ready,
    Reloading,
    Stopping,
}

/// The command line that starts this master again (fifo `f`).
pub struct Reexec {
    pub argv: Vec<std::ffi::CString>,
    /// The directory it was started from (before `--chdir`).
    pub cwd: PathBuf,
}

/// The pidfiles the master writes: (option, path, written as the workers'
/// user). `--pidfile` is written as the master's user; `--pidfile2`, which
/// uWSGI writes after dropping privileges, as the workers' (`--uid`).
fn pidfiles(cfg: &Config) -> impl Iterator<Item = (&'static str, &Path, bool)> {
    let first = cfg.pidfile.as_deref().map(|p| ("pidfile", p, false));
    let second = cfg
        .requests
        .pidfile2
        .as_deref()
        .map(|p| ("pidfile2", p, true));
    first.into_iter().chain(second)
}

/// Write the master's pid to `path`, with `creds`' file-system ids if given.
fn write_pidfile(
    path: &Path,
    pid: i32,
    creds: Option<crate::privileges::Credentials>,
) -> std::io::Result<()> {
    let write = || std::fs::write(path, format!("{pid}\n"));
    match creds {
        Some(c) => crate::privileges::with_fs_ids(c, write),
        None => write(),
    }
}

/// `--max-fd N`: raise the open-files limit (soft, and hard when allowed),
/// as uWSGI does at start; a refusal is logged and the server goes on.
fn raise_open_files(n: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let want = Rlimit {
        current: Some(n),
        maximum: Some(cur.maximum.map_or(n, |m| m.max(n))),
    };
    if let Err(e) = setrlimit(Resource::Nofile, want) {
        log::line(&format!(
            "--max-fd {n}: cannot raise the open-files limit ({e}); it stays {}",
            cur.current
                .map_or("unlimited".to_string(), |c| c.to_string())
        ));
    }
}

impl Master {
    pub fn new(cfg: Config) -> Result<Master> {
        let credentials = crate::privileges::resolve(cfg.uid.as_deref(), cfg.gid.as_deref())?;
        let mut signal_actions = SignalActions::default();
        hooks::run(
            &cfg,
            HookPhase::Asap,
            &mut hooks::Ctx {
                credentials: Default::default(),
                signals: Some(&mut signal_actions),
            },
        )?;
        let notifier = Notifier::from_env();
        let passed = crate::systemd::take_listen_fds()?;
        let private_base = private_base();
        sweep_private_dirs(&private_base, credentials.uid);
        if let Some(mask) = cfg.requests.umask {
            // Before anything is created, as uWSGI applies it (sockets,
            // pidfile, and what the workers create).
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
        }
        if let Some(n) = cfg.requests.max_fd {
            raise_open_files(n);
        }
        let owner = match &cfg.requests.chown_socket {
            Some(o) => Some(crate::privileges::resolve_owner(
                &o.user,
                o.group.as_deref(),
            )?),
            None => None,
        };
        let listeners = listen::bind_all(
            &cfg.listeners,
            cfg.listen,
            cfg.chmod_socket,
            listen::TcpOptions {
                reuse_port: cfg.requests.reuse_port,
                keepalive: cfg.requests.so_keepalive,
                no_defer_accept: cfg.requests.no_defer_accept,
            },
            passed,
            cfg.default_protocol(),
        )?;
        if listeners.is_empty() {
            anyhow::bail!(
                "no listener: LISTEN_FDS passed no socket to this process (LISTEN_PID is another's?); use --http, --http-socket or --socket"
            );
        }
        if let Some((uid, gid)) = owner {
            listen::chown_unix(&listeners, uid, gid)?;
        }
        // Everything this start puts on disk, removed again if it fails.
        let mut created = Created::default();
        created
            .files
            .extend(listeners.iter().filter_map(Listener::path));
        let scoreboard: &'static Scoreboard = Box::leak(Box::new(
            Scoreboard::new(cfg.processes, cfg.threads).context("cannot map the scoreboard")?,
        ));
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        // Every worker gets a socket here, whether or not --py-tracebacker
        // names a public one: the harakiri and slow-request dumps (and the
        // stats process) never depend on a socket anyone else can reach.
        let private_dir = private_base.join(format!("{PRIVATE_DIR_PREFIX}{pid}"));
        let _ = std::fs::remove_dir_all(&private_dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private_dir)
            .with_context(|| format!("cannot create {}", private_dir.display()))?;
        created.dirs.push(private_dir.clone());
        if credentials.uid.is_some() || credentials.gid.is_some() {
            // The workers create their sockets here after dropping root.
            std::os::unix::fs::chown(&private_dir, credentials.uid, credentials.gid)
                .with_context(|| format!("cannot chown {}", private_dir.display()))?;
        }
        let tb_base = private_dir
            .join("tracebacker")
            .to_string_lossy()
            .into_owned();
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills a 2-int array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot create the signal pipe");
        }
        for (option, p, as_workers) in pidfiles(&cfg) {
            write_pidfile(p, pid, as_workers.then_some(credentials))
                .with_context(|| format!("cannot write {option} {}", p.display()))?;
            created.files.push(p.to_path_buf());
        }
        let stats = match &cfg.stats {
            Some(addr) => Some(crate::stats::StatsListener::bind(addr)?),
            None => None,
        };
        // Hooks before anything drops privileges, then as the user (in a
        // child that drops them, when --uid/--gid are given).
        hooks::run(
            &cfg,
            HookPhase::AsRoot,
            &mut hooks::Ctx {
                credentials: Default::default(),
                signals: Some(&mut signal_actions),
            },
        )?;
        hooks::run_as_user(&cfg, HookPhase::AsUser, credentials)?;
        let fifo = MasterFifo::open(
            &cfg.lifecycle.master_fifo,
            (credentials.uid, credentials.gid),
        )?;
        created.keep();
        let daemons = Daemons::new(
            &cfg.lifecycle.daemons,
            credentials,
            Duration::from_secs(cfg.reload_mercy),
        );
        let crons = Crons::new(
            &cfg.lifecycle.crons,
            credentials,
            cfg.lifecycle.cron_harakiri,
        );
        let slots = (0..cfg.processes).map(|_| Slot::default()).collect();
        let cfg_for_checks = cfg.clone();
        Ok(Master {
            cfg,
            listeners,
            scoreboard,
            slots,
            retiring: Vec::new(),
            phase: Phase::Running,
            reload_queue: Vec::new(),
            signal_rd: fds[0],
            signal_wr: fds[1],
            tb_base,
            private_dir,
            any_ready: false,
            pid,
            stats,
            stats_pid: 0,
            stats_respawn_at: None,
            stats_spawned: None,
            facts: crate::stats::MasterFacts::here(),
            credentials,
            slow_reported: Default::default(),
            queue_warned: None,
            loader: None,
            next_loader: None,
            generation: 0,
            loader_restart_at: None,
            loader_failures: 0,
            signal_actions,
            fifo,
            notifier,
            readiness: Readiness::Starting,
            daemons,
            crons,
            master_start: None,
            brutal_reload: false,
            daemons_kill_at: None,
            reload_from: Instant::now(),
            gone_cheap: false,
            reexec: None,
            reforked: false,
            checks: checks::State::new(&cfg_for_checks),
        })
    }

    /// How to start this master again, for fifo `f` (the caller knows the
    /// interpreter and the original command line).
    pub fn set_reexec(&mut self, reexec: Reexec) {
        self.reexec = Some(reexec);
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The private tracebacker socket of the process in scoreboard entry
    /// `entry` (a retiring process and its successor each have their own).
    fn tb_private(&self, entry: usize) -> PathBuf {
        PathBuf::from(crate::tracebacker::private_socket(&self.tb_base, entry))
    }

    /// Worker `id`'s public tracebacker socket (`--py-tracebacker`).
    fn tb_public(&self, id: usize) -> Option<PathBuf> {
        self.cfg
            .py_tracebacker
            .as_ref()
            .map(|base| PathBuf::from(format!("{base}{id}")))
    }

    /// Run until shutdown; returns the process exit status.
    pub fn run(mut self) -> Result<i32> {
        SIGNAL_PIPE.store(self.signal_wr, Ordering::Relaxed);
        MASTER_PID.store(std::process::id() as i32, Ordering::Relaxed);
        install_signals(on_signal as *const () as usize, &self.signal_actions);
        for l in &self.listeners {
            log::line(&format!(
                "uwsgi-rs {} serving {} on {}",
                env!("CARGO_PKG_VERSION"),
                l.proto_name(),
                l.name
            ));
        }
        log::line(&format!(
            "master process (pid: {}) with {} worker(s) x {} thread(s)",
            self.pid, self.cfg.processes, self.cfg.threads
        ));
        if let Some(base) = &self.cfg.py_tracebacker {
            log::line(&format!(
                "python tracebacker sockets: {base}1 .. {base}{}",
                self.cfg.processes
            ));
        }
        if self.stats.is_some() {
            self.spawn_stats();
        }
        for line in self.checks.start_lines() {
            log::line(&line);
        }
        let first = self.checks.initial_workers(self.slots.len());
        for (i, s) in self.slots.iter_mut().enumerate() {
            s.cheaped = i >= first;
        }
        if self.cfg.lazy_apps {
            self.generation = 1;
            for id in 1..=first {
                self.spawn(id, None);
            }
        } else {
            // Workers are forked from the loader once it has the app; as
            // their parent the master must adopt them from it.
            // SAFETY: prctl with no memory effects.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
            self.generation = 1;
            self.loader = self.start_loader(1);
            for s in self.slots.iter_mut().take(first) {
                s.respawn_at = Some(Instant::now());
            }
        }
        if let Some(f) = &self.fifo {
            log::line(&format!("master fifo: {}", f.path().display()));
        }
        self.daemons.start_all();
        self.master_start = Some(hooks::Sequence::new(&self.cfg, HookPhase::MasterStart));
        let status = loop {
            self.wait_for_signal_or_tick();
            if let Some(code) = self.handle_signals() {
                break code;
            }
            if let Some(code) = self.check_fifo() {
                break code;
            }
            self.read_channels();
            if let Some(code) = self.reap() {
                break code;
            }
            if let Some(code) = self.check_master_start() {
                break code;
            }
            self.check_daemons();
            self.check_cron();
            self.check_loaders();
            self.check_ready();
            self.run_checks();
            self.advance_reload();
            self.respawn_due();
            self.wake_from_cheap();
            if self.any_ready {
                log::daemon::app_loaded();
            }
            log::tick();
            if self.stats_respawn_at.is_some_and(|t| t <= Instant::now())
                && self.phase == Phase::Running
            {
                self.spawn_stats();
            }
            self.check_systemd();
            if self.phase == Phase::Stopping {
                // Workers are killed at the end of their own mercy
                // (check_mercy); daemons a second later.
                if self.procs().next().is_none() && self.daemons.all_stopped() {
                    break 0;
                }
                if self.daemons_kill_at.is_some_and(|t| Instant::now() >= t) {
                    self.daemons_kill_at = None;
                    log::line("daemons did not stop within the mercy period: killing them");
                    self.daemons.kill_all();
                }
            }
        };
        self.shutdown_now();
        log::relay(); // the workers' last lines
        self.cleanup();
        Ok(status)
    }

    /// Until a signal, a loader report or the tick; lines the workers hand
    /// over (--log-master) are written meanwhile without running the checks.
    fn wait_for_signal_or_tick(&self) {
        // A loader's socket becomes readable when it reports ready (or dies).
        let waiting = |l: &Option<Loader>| match l {
            Some(l) if !l.ready => l.fd(),
            _ => -1,
        };
        let mut fds = vec![
            self.signal_rd,
            waiting(&self.loader),
            waiting(&self.next_loader),
            self.fifo.as_ref().map_or(-1, |f| f.fd()),
        ];
        // A worker's channel: ready, retiring, a reload asked for.
        fds.extend(self.channel_fds());
        if self.gone_cheap {
            // fifo `C`: the first connection brings the workers back.
            fds.extend(self.listeners.iter().map(Listener::fd));
        }
        // Past these, the lines the workers hand over (--log-master).
        let relayed = fds.len();
        let mut pfds: Vec<libc::pollfd> = fds
            .into_iter()
            .chain(log::relay_fds())
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let deadline = Instant::now() + TICK;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            pfds.iter_mut().for_each(|p| p.revents = 0);
            // SAFETY: pollfds in a live vector (a negative fd is ignored).
            let n = unsafe {
                libc::poll(
                    pfds.as_mut_ptr(),
                    pfds.len() as libc::nfds_t,
                    left.as_millis() as i32,
                )
            };
            if pfds[relayed..].iter().any(|p| p.revents != 0) {
                log::relay();
            }
            if n <= 0 || pfds[..relayed].iter().any(|p| p.revents != 0) {
                return;
            }
        }
    }

    /// Start the stats process (`stats_process`): it serves every stats
    /// client, so none can delay this loop.
    fn spawn_stats(&mut self) {
        self.stats_respawn_at = None;
        let pid = match fork_child() {
            Ok(0) => {
                self.leave_master();
                let code = crate::stats_process::run(crate::stats_process::StatsArgs {
                    cfg: &self.cfg,
                    stats: self.stats.as_ref().expect("spawned only with --stats"),
                    listeners: &self.listeners,
                    scoreboard: self.scoreboard,
                    master: self.facts.clone(),
                    tb_base: self.tb_base.clone(),
                    credentials: self.credentials,
                });
                // SAFETY: leave without the master's destructors (which
                // would unlink sockets the master still serves).
                unsafe { libc::_exit(code) };
            }
            Ok(pid) => pid,
            Err(e) => {
                log::line(&format!("cannot fork the stats server: {e}"));
                self.stats_respawn_at = Some(Instant::now() + Duration::from_secs(1));
                return;
            }
        };
        self.stats_pid = pid;
        self.stats_spawned = Some(Instant::now());
        log::line(&format!(
            "stats server (pid: {pid}) serving {}",
            self.cfg.stats.as_deref().unwrap_or("")
        ));
    }

    /// The stats process ended: start another (at once if it ran a while,
    /// else after a second, so a crash at start cannot make us spin).
    fn stats_died(&mut self, how: &str) {
        let pid = std::mem::replace(&mut self.stats_pid, 0);
        if self.phase == Phase::Stopping {
            return;
        }
        let quick = self
            .stats_spawned
            .map_or(true, |t| t.elapsed() < Duration::from_secs(1));
        log::line(&format!(
            "stats server (pid: {pid}) died ({how}): respawning{}",
            if quick { " in 1 s" } else { "" }
        ));
        self.stats_respawn_at = Some(
            Instant::now()
                + if quick {
                    Duration::from_secs(1)
                } else {
                    Duration::ZERO
                },
        );
    }

    /// Returns an exit status when the master must stop now.
    fn handle_signals(&mut self) -> Option<i32> {
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: non-blocking read into a live buffer.
            let n = unsafe { libc::read(self.signal_rd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return None;
            }
            for &sig in &buf[..n as usize] {
                // SIGCHLD: reaped below.
                let Some(action) = self.signal_actions.get(sig as i32) else {
                    continue;
                };
                if let Some(code) =
                    self.act(action, &format!("{} received", signal_name(sig as i32)))
                {
                    return Some(code);
                }
            }
        }
    }

    /// `--master-fifo`: carry out the commands waiting in it.
    fn check_fifo(&mut self) -> Option<i32> {
        let actions = self.fifo.as_mut().map(MasterFifo::read).unwrap_or_default();
        for action in actions {
            let source = format!("master fifo: {}", action.describe());
            if let Some(code) = self.act(action, &source) {
                return Some(code);
            }
        }
        None
    }

    /// Do what a signal, the fifo or a hook asked for; `source` starts the
    /// log line. Returns an exit status when the master must stop now.
    fn act(&mut self, action: Action, source: &str) -> Option<i32> {
        let running = self.phase == Phase::Running;
        match action {
            Action::GracefulReload | Action::BrutalReload if self.cfg.lifecycle.exit_on_reload => {
                log::line(&format!(
                    "{source}: --exit-on-reload: exiting instead of reloading"
                ));
                if action == Action::BrutalReload {
                    return Some(0);
                }
                self.shutdown(source);
            }
            Action::GracefulReload if running => self.reload(source),
            Action::BrutalReload if running => self.brutal_reload(source),
            Action::ChainReload if running => {
                log::line(&format!("{source}: chain reload starting..."));
                self.reloading_notice("chain reload");
                self.start_reload();
            }
            Action::ReloadWorkers if running => {
                log::line(&format!(
                    "{source}: gracefully replacing every worker at once"
                ));
                self.reloading_notice("reloading the workers");
                self.replace_all_now();
            }
            Action::BrutalReloadWorkers if running => {
                log::line(&format!(
                    "{source}: killing and replacing every worker at once"
                ));
                self.reloading_notice("reloading the workers");
                self.kill_workers();
            }
            Action::GracefulStop if running => self.shutdown(source),
            Action::GracefulStop | Action::ImmediateStop => {
                log::line(&format!(
                    "{source}: immediate shutdown requested: killing workers"
                ));
                return Some(0);
            }
            Action::GoCheap if running => self.go_cheap(source),
            Action::CheaperIncrease | Action::CheaperDecrease if running => {
                let delta = if action == Action::CheaperIncrease {
                    1
                } else {
                    -1
                };
                if !self.checks.nudge_cheaper(delta) {
                    log::line(&format!(
                        "{source}: not available (needs --cheaper mode): ignored"
                    ));
                }
            }
            Action::Refork if running => self.refork(source),
            // (--log-maxsize rotates by size; L reopens like l.)
            Action::ReopenLogs | Action::RotateLogs => log::reopen(source),
            Action::UpdatePidfile => {
                for (_, p, as_workers) in pidfiles(&self.cfg) {
                    let creds = as_workers.then_some(self.credentials);
                    if let Err(e) = write_pidfile(p, self.pid, creds) {
                        log::line(&format!("{source}: cannot write {}: {e}", p.display()));
                    }
                }
            }
            Action::FifoSlot(_) => {} // done by the fifo itself
            _ => log::line(&format!("{source}: ignored while shutting down")),
        }
        None
    }

    /// A graceful reload (SIGHUP, fifo `r`, a touched file,
    /// --py-autoreload): the workers are replaced one at a time by
    /// processes running the app anew (with preloading, once a new loader
    /// has imported it); plain daemons restart. With --exit-on-reload, a
    /// graceful shutdown instead.
    fn reload(&mut self, cause: &str) {
        if self.cfg.lifecycle.exit_on_reload {
            log::line(&format!(
                "{cause}: --exit-on-reload: exiting instead of reloading"
            ));
            self.shutdown(cause);
            return;
        }
        log::reopen_for_reload();
        self.reloading_notice("graceful reload");
        if self.cfg.lazy_apps {
            log::line(&format!("{cause}: gracefully reloading workers..."));
            self.generation += 1;
            self.retire_stale_successors();
            self.start_reload();
        } else {
            self.reload_preloaded(cause);
        }
        self.daemons.reload();
    }

    /// fifo `R`: the new code, then every worker replaced at once.
    fn brutal_reload(&mut self, source: &str) {
        log::reopen_for_reload();
        self.reloading_notice("brutal reload");
        if self.cfg.lazy_apps {
            log::line(&format!("{source}: ...brutally killing workers..."));
            self.generation += 1;
            self.kill_workers();
        } else {
            self.brutal_reload = true;
            self.reload_preloaded(source);
        }
        self.daemons.reload();
    }

    /// Graceful shutdown (SIGTERM, SIGINT, fifo `q`): every worker finishes
    /// what it has (and what is queued), for up to --reload-mercy; daemons
    /// are stopped too.
    fn shutdown(&mut self, source: &str) {
        log::line(&format!(
            "{source}: shutting down gracefully (up to {} s for in-flight requests)...",
            self.cfg.reload_mercy
        ));
        self.phase = Phase::Stopping;
        self.readiness = Readiness::Stopping;
        if let Some(n) = &mut self.notifier {
            n.stopping("shutting down gracefully");
        }
        self.reload_queue.clear();
        self.stop_loaders();
        self.stop_all();
        self.daemons.stop_all();
        self.daemons_kill_at =
            Some(Instant::now() + Duration::from_secs(self.cfg.reload_mercy + 1));
    }

    /// Tell systemd a reload started (READY=1 follows once it is done).
    fn reloading_notice(&mut self, what: &str) {
        self.readiness = Readiness::Reloading;
        if let Some(n) = &mut self.notifier {
            n.reloading(what);
        }
    }

    /// What a worker gets, whether the master or a loader forks it.
    fn worker_args(&self, spawn: Spawn) -> WorkerArgs<'_> {
        WorkerArgs {
            cfg: &self.cfg,
            id: spawn.id,
            entry: spawn.entry,
            listeners: &self.listeners,
            scoreboard: self.scoreboard,
            tb_private: self.tb_private(spawn.entry),
            tb_public: self.tb_public(spawn.id),
            tracebacker_takeover: spawn.takeover,
            master_pid: self.pid,
            credentials: self.credentials,
            preloaded: None,
            channel: None,
        }
    }

    /// In a process forked from the master: drop what is only the master's.
    /// Its ends of the loaders' sockets too: a loader leaves when its
    /// socket closes, which a copy held elsewhere would prevent; and of the
    /// workers' channels, whose EOF tells a worker the master is gone.
    fn leave_master(&self) {
        let loaders = [&self.loader, &self.next_loader]
            .into_iter()
            .flatten()
            .map(|l| l.fd());
        let channels = self.channel_fds();
        let fifo = self
            .fifo
            .as_ref()
            .map(MasterFifo::all_fds)
            .unwrap_or_default();
        for fd in [self.signal_rd, self.signal_wr]
            .into_iter()
            .chain(loaders)
            .chain(channels)
            .chain(fifo)
        {
            // SAFETY: the master's fds; this process never uses them (and
            // leaves with _exit, so no owner closes them again).
            unsafe { libc::close(fd) };
        }
        install_signals(libc::SIG_DFL, &self.signal_actions);
        // The daemon's start-up pipe is the master's; with --log-master,
        // lines (and the app's stdout and stderr) go to the master.
        log::worker_started();
    }

    /// Fork a loader for app generation `generation`; None (and a retry
    /// soon) if the fork fails.
    fn start_loader(&mut self, generation: u64) -> Option<Loader> {
        let started = Loader::start(
            generation,
            self.pid,
            || self.leave_master(),
            self.credentials,
            &self.cfg,
            |spawn| self.worker_args(spawn),
        );
        match started {
            Ok(l) => Some(l),
            Err(e) => {
                log::line(&format!("cannot fork the loader: {e}"));
                self.loader_restart_at = Some(Instant::now() + Duration::from_secs(1));
                None
            }
        }
    }

    /// A reload with preloading: import the new code in a new loader; the
    /// workers are replaced only once it has (check_loaders).
    fn reload_preloaded(&mut self, cause: &str) {
        if let Some(pending) = self.next_loader.take() {
            // A reload while one loads: the newer code wins.
            // SAFETY: kill on our unreaped child.
            unsafe { libc::kill(pending.pid, libc::SIGKILL) };
        }
        log::line(&format!(
            "{cause}: loading the app anew (generation {}); the workers are replaced once it is loaded...",
            self.generation + 1
        ));
        self.next_loader = self.start_loader(self.generation + 1);
    }

    /// A loader reported ready: the first one lets workers start; a
    /// reload's replaces the current one, and the workers follow one at a
    /// time (advance_reload). A dead loader is restarted when due.
    fn check_loaders(&mut self) {
        if let Some(l) = &mut self.loader {
            if !l.ready && l.check_ready() {
                self.loader_failures = 0;
            }
        }
        if self.next_loader.as_mut().is_some_and(|l| l.check_ready()) {
            // Dropping the old handle closes its socket: the old loader exits.
            let old = std::mem::replace(&mut self.loader, self.next_loader.take());
            self.generation += 1;
            let brutal = std::mem::take(&mut self.brutal_reload);
            log::line(&format!(
                "replacing the workers {} with generation {}{}",
                if brutal {
                    "all at once"
                } else {
                    "one at a time"
                },
                self.generation,
                old.map(|o| format!("; the loader of the old one (pid: {}) leaves", o.pid))
                    .unwrap_or_default()
            ));
            if brutal {
                self.kill_workers();
            } else {
                self.start_reload();
            }
        }
        let due = self.loader_restart_at.is_some_and(|t| t <= Instant::now());
        if self.loader.is_none() && due && self.phase == Phase::Running {
            self.loader_restart_at = None;
            self.loader = self.start_loader(self.generation);
        }
    }

    /// A loader exited. A reload's that failed leaves the old workers
    /// serving; the current one is restarted (with a back-off), except at
    /// first start, where an app that cannot be imported ends the server.
    fn loader_exited(&mut self, pid: i32, how: &str, exit_code: Option<i32>) -> Option<i32> {
        if self.next_loader.as_ref().is_some_and(|l| l.pid == pid) {
            self.next_loader = None;
            self.brutal_reload = false;
            log::line(&format!(
                "reload failed: the new code did not load ({how}, see above); keeping the workers of generation {}",
                self.generation
            ));
            return None;
        }
        if !self.loader.as_ref().is_some_and(|l| l.pid == pid) {
            return None; // a retired loader leaving, or an orphan adopted
        }
        let was_ready = self.loader.take().is_some_and(|l| l.ready);
        if self.phase != Phase::Running {
            return None;
        }
        if !was_ready && !self.any_ready && exit_code == Some(EXIT_LOAD_FAILED) {
            log::line("uwsgi-rs: could not load the app (see above): exiting");
            return Some(1);
        }
        self.loader_failures += 1;
        let delay = back_off(self.loader_failures);
        log::line(&format!(
            "DAMN ! the loader (pid: {pid}) died, {how}: starting a new one in {} ms",
            delay.as_millis()
        ));
        self.loader_restart_at = Some(Instant::now() + delay);
        None
    }

    /// Shutting down: loaders have nothing to finish. Returns their pids.
    fn stop_loaders(&mut self) -> Vec<i32> {
        let mut pids = Vec::new();
        for l in [self.loader.take(), self.next_loader.take()]
            .into_iter()
            .flatten()
        {
            // SAFETY: kill on our unreaped child; reaped in reap() or shutdown_now.
            unsafe { libc::kill(l.pid, libc::SIGKILL) };
            pids.push(l.pid);
        }
        pids
    }

    /// A child that is no worker: a daemon, a cron job, a hook's command,
    /// a loader. Returns an exit status when the master must stop now.
    fn other_child_exited(&mut self, pid: i32, status: i32) -> Option<i32> {
        match self.daemons.reaped(pid, status) {
            Reaped::ControlDied => {
                if self.phase == Phase::Running {
                    self.shutdown("a control daemon died");
                }
                return None;
            }
            Reaped::Handled => return None,
            Reaped::NotOurs => {}
        }
        if self.crons.reaped(pid) {
            return None;
        }
        if let Some(result) = self
            .master_start
            .as_mut()
            .and_then(|s| s.reaped(pid, status))
        {
            if let Err(f) = result {
                return Some(self.fatal_hook(f));
            }
            return None;
        }
        let (how, code) = describe_exit(status);
        self.loader_exited(pid, &how, code)
    }

    /// `hook-master-start`: run what is due, without blocking.
    fn check_master_start(&mut self) -> Option<i32> {
        let seq = self.master_start.as_mut()?;
        let progress = seq.advance(&mut hooks::Ctx {
            credentials: self.credentials,
            signals: Some(&mut self.signal_actions),
        });
        match progress {
            hooks::Progress::Running => None,
            hooks::Progress::Done => {
                self.master_start = None;
                // unix_signal hooks may have bound new signals.
                install_signals(on_signal as *const () as usize, &self.signal_actions);
                None
            }
            hooks::Progress::Stopped(f) => {
                self.master_start = None;
                Some(self.fatal_hook(f))
            }
        }
    }

    /// A master hook failed: as uWSGI, the instance goes (`exit:N` exits N).
    fn fatal_hook(&mut self, f: hooks::Failure) -> i32 {
        log::line(&format!("{f}"));
        match f {
            hooks::Failure::Exit(code, _) => code,
            hooks::Failure::Failed { .. } => {
                log::stamped("FATAL hook failed, destroying instance");
                1
            }
        }
    }

    /// Attached daemons: restarts, pidfiles, touch files, stop deadlines.
    fn check_daemons(&mut self) {
        self.daemons.check(Instant::now());
    }

    /// `--cron`: start the jobs due now.
    fn check_cron(&mut self) {
        if self.phase == Phase::Running {
            self.crons.check(log::unix_secs() as i64);
        }
    }

    /// systemd: READY=1 once every worker accepts (after a start or a
    /// reload), the watchdog fed.
    fn check_systemd(&mut self) {
        if self.notifier.is_none() {
            return;
        }
        // Every slot has a ready process that is not being replaced, or is
        // empty on purpose (cheaper mode), or waits for nothing.
        let settled = self.any_ready
            && !self.reloading()
            && self.next_loader.is_none()
            && self.slots.iter().all(|s| match &s.current {
                Some(p) => p.ready && p.stopping.is_none(),
                None => s.respawn_at.is_none(),
            });
        let up = self.slots.iter().filter(|s| s.current.is_some()).count();
        let Some(n) = &mut self.notifier else {
            return;
        };
        n.tick(Instant::now());
        if settled && matches!(self.readiness, Readiness::Starting | Readiness::Reloading) {
            let status = format!(
                "uwsgi-rs is ready: {up} worker(s) x {} thread(s){}",
                self.cfg.threads,
                if self.generation > 1 {
                    format!(", app generation {}", self.generation)
                } else {
                    String::new()
                }
            );
            n.ready(&status);
            self.readiness = Readiness::Ready;
        }
    }

    /// fifo `f` (uWSGI's refork): start a new master from the same command
    /// line, in its own session, handing it the listening sockets as
    /// systemd would (LISTEN_FDS); this one keeps serving until told to go
    /// (`q` through another fifo slot, or a signal).
    fn refork(&mut self, source: &str) {
        let Some(reexec) = &self.reexec else {
            log::line(&format!(
                "{source}: this master cannot start itself again: ignored"
            ));
            return;
        };
        match crate::refork::spawn(reexec, &self.listeners) {
            Ok(pid) => {
                self.reforked = true;
                log::stamped(&format!("{source}: new master copy spawned with pid {pid}"));
            }
            Err(e) => log::line(&format!("{source}: cannot start a new master: {e}")),
        }
    }

    /// Kill whatever still runs and wait for it (SIGQUIT, or after the loop).
    fn shutdown_now(&mut self) {
        for pid in self.daemons.kill_all() {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
        for pid in self.stop_loaders() {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
        if self.stats_pid > 0 {
            // SAFETY: kill and wait on our own unreaped child.
            unsafe {
                libc::kill(self.stats_pid, libc::SIGKILL);
                libc::waitpid(self.stats_pid, std::ptr::null_mut(), 0);
            }
            self.stats_pid = 0;
        }
        self.kill_all_and_wait();
    }

    fn cleanup(&self) {
        if !self.reforked {
            // After `f` the new master serves on the same socket files.
            for l in &self.listeners {
                l.remove_file();
            }
        }
        if let Some(f) = &self.fifo {
            f.remove();
        }
        for id in 1..=self.slots.len() {
            if let Some(p) = self.tb_public(id) {
                remove_socket_file(&p);
            }
        }
        // The private sockets go with their directory.
        let _ = std::fs::remove_dir_all(&self.private_dir);
        for (_, p, _) in pidfiles(&self.cfg) {
            // Unless a new master (fifo `f`) has written its own pid there.
            let ours = std::fs::read_to_string(p).is_ok_and(|t| t.trim() == self.pid.to_string());
            if ours {
                let _ = std::fs::remove_file(p);
            }
        }
        if let Some(s) = &self.stats {
            s.remove_file();
        }
        log::line("goodbye to uwsgi-rs");
    }
}

/// "SIGHUP", as the log names a signal.
fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGTSTP => "SIGTSTP",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// How long to wait before starting again what died `failures` times in a
/// row before it was up: at once, then 250 ms doubling up to 16 s.
fn back_off(failures: u32) -> Duration {
    let n = failures.min(8);
    if n <= 1 {
        Duration::ZERO
    } else {
        Duration::from_millis(125 << (n - 1)).min(Duration::from_secs(16))
    }
}

/// "exit code N" or "killed by signal N", and the exit code if it exited.
fn describe_exit(status: i32) -> (String, Option<i32>) {
    if libc::WIFEXITED(status) {
        let c = libc::WEXITSTATUS(status);
        (format!("exit code {c}"), Some(c))
    } else {
        (format!("killed by signal {}", libc::WTERMSIG(status)), None)
    }
}

/// Fork (through the interpreter's fork hooks); the child gets 0. The
/// master is single-threaded, so the child inherits a consistent address
/// space; the caller makes the child run its part and never return.
fn fork_child() -> std::io::Result<i32> {
    match crate::python::fork()? {
        crate::python::Forked::Parent(pid) => Ok(pid),
        crate::python::Forked::Child => Ok(0),
    }
}

/// The private tracebacker directory is `<temp dir>/uwsgi-rs.<master pid>`.
const PRIVATE_DIR_PREFIX: &str = "uwsgi-rs.";

/// Files and directories a start created, removed when it is dropped
/// before [`Created::keep`]: a start that fails leaves nothing behind.
#[derive(Default)]
struct Created {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Created {
    /// The start succeeded: the master's cleanup owns them from now on.
    fn keep(&mut self) {
        self.files.clear();
        self.dirs.clear();
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Remove the private tracebacker directories of masters that are gone
/// (killed with SIGKILL, nothing ran their cleanup): `uwsgi-rs.<pid>`
/// directories owned by this user (or the `--uid` user they were handed
/// to) whose pid no longer exists. A live master's directory is never
/// touched; one whose pid was reused waits for a later start.
/// Where the private directory goes: the temp dir ($TMPDIR), unless the
/// sockets inside it would not fit in a UNIX socket address (107 bytes;
/// a long TMPDIR would otherwise stop every worker at start), then /tmp.
fn private_base() -> PathBuf {
    let tmp = std::env::temp_dir();
    if private_base_fits(&tmp) {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

fn private_base_fits(dir: &Path) -> bool {
    let longest = dir
        .join(format!("{PRIVATE_DIR_PREFIX}{}", i32::MAX))
        .join("tracebacker");
    let longest = crate::tracebacker::private_socket(&longest.to_string_lossy(), u16::MAX.into());
    longest.len() < 108
}

fn sweep_private_dirs(tmp: &Path, worker_uid: Option<u32>) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PRIVATE_DIR_PREFIX))
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            continue;
        };
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let owner = std::os::unix::fs::MetadataExt::uid(&meta);
        if !meta.is_dir() || (owner != me && Some(owner) != worker_uid.filter(|_| me == 0)) {
            continue;
        }
        // ESRCH: no such process. EPERM means it exists (another user's).
        if rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Remove a socket file we created; anything else at the path is left.
fn remove_socket_file(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

use std::os::unix::fs::DirBuilderExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_temp_dir_is_not_used_for_sockets() {
        assert!(private_base_fits(Path::new("/tmp")));
        assert!(private_base_fits(Path::new(
            "/tmp/pytest-of-root/pytest-1/test_x0"
        )));
        assert!(!private_base_fits(&Path::new("/tmp").join("d".repeat(80))));
    }
}
