//! uWSGI's configuration -> a validated [`Command`].
//!
//! The pipeline, as in uWSGI (core/uwsgi.c, core/config.c, core/ini.c):
//! 1. [`collect`]: `UWSGI_*` variables, the command line and ini files (read
//!    at their position, magic variables substituted) into one list of
//!    entries; the config language (`if-*`, `for`, `set`...) runs here.
//! 2. [`expand`]: `$(VAR)`, `@(file)`, `%(name)` in every value.
//! 3. apply (here): each entry through its row of the option [`table`]
//!    into [`Config`]; every problem is collected, not only the first.
//! 4. validate (here): listeners, app, and the start-up [`Report`].
//!
//! It must not: bind sockets, resolve users or groups, touch Python, or log.
//! Its I/O is reading config files and the files `@(...)`, `if-exists` and
//! `for-glob` name. It never panics on user input.

mod collect;
mod docs;
mod expand;
mod formats;
mod ini;
pub mod report;
pub mod table;
pub mod values;

use std::path::PathBuf;

pub use collect::Env;
pub use ini::Host;
pub use report::{ConfigError, ConfigErrors, Problem, Report, UnusedKey};
pub use values::{
    CheaperAlgo, CronJob, Daemon, Header, Hook, HookAction, HttpsListener, ListenAddr, LogDate,
    LogRoute, LoggerSpec, Mount, Owner, Protocol, Route, StaticExpires, StaticMap,
};

use collect::{Early, Entry};
use report::suggest;
use table::{find_long, Arg, Ctx, Status};

/// What the process should do.
// Built once per process; boxing Config would only complicate the caller's match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Command {
    /// Run the server.
    Serve(Config),
    /// `--connect-and-read ADDR`: connect, print what the peer sends, exit.
    /// The timeout comes from `--socket-timeout` (default 4).
    ConnectAndRead { addr: String, timeout_secs: u64 },
    /// `--tracebacks BASE [--json]`: every worker's dump under a tracebacker
    /// base, with the request each thread serves.
    Tracebacks {
        base: String,
        json: bool,
        timeout_secs: u64,
    },
    /// `--profile BASE [--duration S] [--rate HZ] [--format F] [--output FILE]
    /// [--idle]`: sample every worker under a tracebacker base, merge, write.
    Profile {
        base: String,
        rate: u32,
        duration: u32,
        idle: bool,
        format: ProfileFormat,
        output: Option<PathBuf>,
        timeout_secs: u64,
    },
    /// `--top BASE [--rate HZ] [--idle]`: a live view of where the time goes.
    Top {
        base: String,
        rate: u32,
        idle: bool,
        timeout_secs: u64,
    },
    /// `--help` / `-h` / `--help-migrating`: the text to print.
    Help(String),
    /// `--version`: `"uwsgi-rs <version>"`.
    Version(String),
}

/// `--format` of `--profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProfileFormat {
    /// Brendan Gregg's collapsed stacks.
    #[default]
    Folded,
    /// An interactive flame graph (inferno).
    Svg,
    /// speedscope's JSON.
    Speedscope,
}

/// The profiler client's options (`--profile`, `--top`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileArgs {
    pub profile: Option<String>,
    pub top: Option<String>,
    /// Seconds, default 10.
    pub duration: u32,
    /// Hz, default 100.
    pub rate: u32,
    pub format: ProfileFormat,
    pub output: Option<PathBuf>,
    /// A bare `--idle` (uWSGI's `--idle SECONDS` is the cheap-mode option).
    pub idle: bool,
}

impl Default for ProfileArgs {
    fn default() -> Self {
        ProfileArgs {
            profile: None,
            top: None,
            duration: 10,
            rate: 100,
            format: ProfileFormat::Folded,
            output: None,
            idle: false,
        }
    }
}

/// A validated server configuration. See [`table::OPTIONS`] for the option of
/// each field. Fields of options not honoured yet are grouped by family.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--http`, `--http-socket` -> Http; `--uwsgi-socket` -> Uwsgi; `--socket`
    /// -> `--protocol` (default Uwsgi); in the order given.
    pub listeners: Vec<(Protocol, ListenAddr)>,
    /// `-w/--module/--wsgi`: `"pkg.mod"` or `"pkg.mod:callable"`, kept verbatim; a
    /// `:callable` suffix overrides `callable` for this module (the caller splits it).
    /// With `wsgi_file` too, the module is loaded first (uWSGI's order).
    pub module: Option<String>,
    pub wsgi_file: Option<PathBuf>,
    /// `--paste config:/etc/app.ini` (or `--ini-paste`): PasteDeploy's
    /// `loadapp(SPEC)`, loaded when neither `module` nor `wsgi_file` is given
    /// (uWSGI loads them first, and the first app loaded is the default).
    pub paste: Option<String>,
    /// `--paste-logger` (`--ini-paste-logged`): configure Python logging
    /// from the paste file first.
    pub paste_logger: bool,
    /// `--callable`, default `"application"`.
    pub callable: String,
    pub chdir: Option<PathBuf>,
    pub pythonpath: Vec<PathBuf>,
    pub home: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub master: bool,
    /// 1..=1024, default 1.
    pub processes: usize,
    /// 1..=512, default 1.
    pub threads: usize,
    /// Listen backlog, default 100.
    pub listen: i32,
    /// 0 = off.
    pub max_requests: u64,
    pub pidfile: Option<PathBuf>,
    /// `--chmod-socket[=MODE]`; the switch form means 0o666.
    pub chmod_socket: Option<u32>,
    pub disable_logging: bool,
    /// 1..=64 MiB, default 4096.
    pub buffer_size: usize,
    /// Seconds, >= 1, default 4.
    pub socket_timeout: u64,
    /// Bytes, 0 = off.
    pub limit_post: u64,
    /// Socket base name, verbatim (may be relative).
    pub py_tracebacker: Option<String>,
    /// Seconds, 0 = off.
    pub harakiri: u64,
    pub harakiri_verbose: bool,
    /// Name or number; resolution happens elsewhere.
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub stats: Option<String>,
    pub stats_http: bool,
    /// `--stats-dashboard`: serve the dashboard (tracebacks, URIs) on a TCP
    /// stats address too, to whoever can connect.
    pub stats_dashboard: bool,
    /// `--py-tracebacker-locals`: locals in rich dumps (never in the uWSGI format).
    pub py_tracebacker_locals: bool,
    /// `--py-tracebacker-slow SECONDS`: log slow requests' tracebacks (0 = off).
    pub py_tracebacker_slow: u64,
    /// `--http-underscores-in-headers`: keep HTTP header names containing `_`
    /// (dropped by default: `X_User` and `X-User` are both `HTTP_X_USER`).
    pub http_underscores_in_headers: bool,
    /// Seconds, default 60.
    pub reload_mercy: u64,
    /// `--strict`: unknown keys are errors.
    pub strict: bool,
    /// `--lazy-apps`: what every worker does today (loads the app after fork).
    pub lazy_apps: bool,
    pub app: AppOptions,
    pub logging: LoggingOptions,
    pub statics: StaticOptions,
    pub lifecycle: LifecycleOptions,
    pub requests: RequestOptions,
    /// What to log at start: unknown keys, options not honoured, warnings.
    pub report: Report,
    // Parsing state, resolved into the fields above by validation.
    pending_listeners: Vec<(Option<Protocol>, ListenAddr)>,
    protocol: Option<Protocol>,
    show_config: bool,
    connect_and_read: Option<String>,
    tracebacks: Option<String>,
    tracebacks_json: bool,
    pub(crate) profile_args: ProfileArgs,
}

/// App loading options (family "app loading").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppOptions {
    /// `--import` (and aliases): modules imported before the app, in order.
    pub imports: Vec<String>,
    pub py_call_osafterfork: bool,
    pub pyargv: Option<String>,
    /// `--optimize` 0..=2.
    pub optimize: u8,
    pub no_site: bool,
    pub wsgi_disable_file_wrapper: bool,
    /// `--py-autoreload` seconds, 0 = off.
    pub py_autoreload: u64,
    pub chdir2: Option<PathBuf>,
}

/// Logging options (family "logging").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggingOptions {
    pub logto: Option<PathBuf>,
    pub logto2: Option<PathBuf>,
    pub daemonize: Option<PathBuf>,
    pub daemonize2: Option<PathBuf>,
    pub reopen: bool,
    /// `--touch-logreopen`: reopen the log files when one of these is touched.
    pub touch_reopen: Vec<PathBuf>,
    /// `--touch-logrotate`: rotate the log files when one of these is touched.
    pub touch_rotate: Vec<PathBuf>,
    /// Bytes, 0 = no rotation.
    pub maxsize: u64,
    pub backupname: Option<PathBuf>,
    pub master: bool,
    pub threaded: bool,
    /// `--log-date`: None = no date prefix.
    pub date: Option<LogDate>,
    /// `--log-format`, verbatim (`%(method) %(uri) ...`).
    pub format: Option<String>,
    pub format_strftime: bool,
    pub log_4xx: bool,
    pub log_5xx: bool,
    /// Milliseconds, 0 = off.
    pub slow_ms: u64,
    /// Bytes, 0 = off.
    pub big: u64,
    pub zero: bool,
    pub ioerror: bool,
    pub micros: bool,
    pub x_forwarded_for: bool,
    pub loggers: Vec<LoggerSpec>,
    pub req_loggers: Vec<LoggerSpec>,
    pub routes: Vec<LogRoute>,
    pub req_routes: Vec<LogRoute>,
    pub encoders: Vec<String>,
    pub req_encoders: Vec<String>,
    /// Regexps of lines to drop.
    pub drain: Vec<String>,
    pub chown: bool,
    pub chmod: Option<u32>,
    /// Bytes, 0 = default.
    pub master_bufsize: u64,
}

/// Static file options (family "static files").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticOptions {
    pub maps: Vec<StaticMap>,
    /// `--check-static` document roots.
    pub check: Vec<PathBuf>,
    pub index: Vec<String>,
    pub skip_ext: Vec<String>,
    pub safe: Vec<PathBuf>,
    pub expires: Vec<StaticExpires>,
    pub gzip_all: bool,
    pub gzip_dirs: Vec<PathBuf>,
    pub gzip_exts: Vec<String>,
    pub mimefiles: Vec<PathBuf>,
    pub offload_threads: usize,
}

/// When a hook or `exec-*` command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPhase {
    Asap,
    MasterStart,
    PreApp,
    PostApp,
    PostFork,
    Accepting,
    Accepting1,
    AcceptingOnce,
    Accepting1Once,
    AsRoot,
    AsUser,
}

impl HookPhase {
    /// Phases run by the master itself (the others by the loader or a worker).
    pub fn in_master(self) -> bool {
        matches!(
            self,
            HookPhase::Asap | HookPhase::AsRoot | HookPhase::MasterStart
        )
    }

    /// As uWSGI's log names the phase (`running "..." (pre app)...`).
    pub fn label(self) -> &'static str {
        match self {
            HookPhase::Asap => "asap",
            HookPhase::MasterStart => "master-start",
            HookPhase::PreApp => "pre app",
            HookPhase::PostApp => "post app",
            HookPhase::PostFork => "post-fork",
            HookPhase::Accepting => "accepting",
            HookPhase::Accepting1 => "accepting1",
            HookPhase::AcceptingOnce => "accepting-once",
            HookPhase::Accepting1Once => "accepting1-once",
            HookPhase::AsRoot => "as root",
            HookPhase::AsUser => "as user",
        }
    }
}

/// Cheaper mode (adaptive worker count); `min == 0` means off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheaperOptions {
    /// `--cheaper N`: the fewest workers kept.
    pub min: usize,
    pub initial: Option<usize>,
    pub step: usize,
    pub algo: CheaperAlgo,
    /// Seconds.
    pub overload: u64,
    /// Bytes, 0 = off.
    pub rss_limit_soft: u64,
    pub rss_limit_hard: u64,
    pub busyness_max: Option<u64>,
    pub busyness_min: Option<u64>,
    pub busyness_multiplier: Option<u64>,
    pub busyness_penalty: Option<u64>,
    pub busyness_backlog_alert: Option<u64>,
    pub busyness_backlog_step: Option<u64>,
    pub verbose: bool,
}

impl Default for CheaperOptions {
    fn default() -> Self {
        CheaperOptions {
            min: 0,
            initial: None,
            step: 1,
            algo: CheaperAlgo::Spare,
            overload: 3,
            rss_limit_soft: 0,
            rss_limit_hard: 0,
            busyness_max: None,
            busyness_min: None,
            busyness_multiplier: None,
            busyness_penalty: None,
            busyness_backlog_alert: None,
            busyness_backlog_step: None,
            verbose: false,
        }
    }
}

/// Worker lifecycle options (family "worker lifecycle").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleOptions {
    /// Bytes (given in megabytes), 0 = off.
    pub reload_on_rss: u64,
    pub reload_on_as: u64,
    pub evil_reload_on_rss: u64,
    pub evil_reload_on_as: u64,
    /// Seconds, 0 = off.
    pub max_worker_lifetime: u64,
    pub max_worker_lifetime_delta: u64,
    /// Seconds, default 10 (uWSGI's).
    pub min_worker_lifetime: u64,
    pub max_requests_delta: u64,
    pub reload_on_exception: bool,
    pub cheaper: CheaperOptions,
    /// Seconds, 0 = off.
    pub harakiri_graceful_timeout: u64,
    /// Signal number, default SIGTERM.
    pub harakiri_graceful_signal: i32,
    pub touch_reload: Vec<PathBuf>,
    pub touch_workers_reload: Vec<PathBuf>,
    pub master_fifo: Vec<PathBuf>,
    pub daemons: Vec<Daemon>,
    pub crons: Vec<CronJob>,
    /// `--cron-harakiri`: seconds a cron command may run (0: no limit).
    pub cron_harakiri: u64,
    /// `hook-*` and `exec-*` (as `exec:` hooks), in order.
    pub hooks: Vec<(HookPhase, Hook)>,
    pub exit_on_reload: bool,
    /// Seconds, 0 = off.
    pub idle: u64,
    pub die_on_idle: bool,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        LifecycleOptions {
            reload_on_rss: 0,
            reload_on_as: 0,
            evil_reload_on_rss: 0,
            evil_reload_on_as: 0,
            max_worker_lifetime: 0,
            max_worker_lifetime_delta: 0,
            min_worker_lifetime: 10,
            max_requests_delta: 0,
            reload_on_exception: false,
            cheaper: CheaperOptions::default(),
            harakiri_graceful_timeout: 0,
            harakiri_graceful_signal: libc::SIGTERM,
            touch_reload: Vec::new(),
            touch_workers_reload: Vec::new(),
            master_fifo: Vec::new(),
            daemons: Vec::new(),
            crons: Vec::new(),
            cron_harakiri: 0,
            hooks: Vec::new(),
            exit_on_reload: false,
            idle: 0,
            die_on_idle: false,
        }
    }
}

impl Config {
    /// Whether an app other than the `--mount` ones is given (the default
    /// app: `--module`, `--wsgi-file` or `--paste`).
    pub fn has_main_app(&self) -> bool {
        self.module.is_some() || self.wsgi_file.is_some() || self.paste.is_some()
    }

    /// The protocol of `--socket` listeners (`--protocol`, default uwsgi),
    /// also that of sockets systemd passes that no address names.
    pub fn default_protocol(&self) -> Protocol {
        self.protocol.unwrap_or(Protocol::Uwsgi)
    }
}

/// Sockets and requests options (family "sockets and requests").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// `--https` listeners (not bound yet).
    pub https: Vec<HttpsListener>,
    pub chown_socket: Option<Owner>,
    pub umask: Option<u32>,
    /// Seconds.
    pub http_timeout: Option<u64>,
    pub proxy_protocol: bool,
    /// Bytes, 0 = off.
    pub post_buffering: u64,
    pub post_buffering_bufsize: u64,
    pub add_headers: Vec<Header>,
    pub del_headers: Vec<String>,
    pub manage_script_name: bool,
    pub mounts: Vec<Mount>,
    pub routes: Vec<Route>,
    pub disable_write_exception: bool,
    pub ignore_sigpipe: bool,
    pub ignore_write_errors: bool,
    pub honour_stdin: bool,
    pub reuse_port: bool,
    pub so_keepalive: bool,
    /// `--no-defer-accept`: TCP listeners without TCP_DEFER_ACCEPT.
    pub no_defer_accept: bool,
    pub max_fd: Option<u64>,
    pub pidfile2: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: Vec::new(),
            module: None,
            wsgi_file: None,
            paste: None,
            paste_logger: false,
            callable: "application".to_string(),
            chdir: None,
            pythonpath: Vec::new(),
            home: None,
            env: Vec::new(),
            master: false,
            processes: 1,
            threads: 1,
            listen: 100,
            max_requests: 0,
            pidfile: None,
            chmod_socket: None,
            disable_logging: false,
            buffer_size: 4096,
            socket_timeout: 4,
            limit_post: 0,
            py_tracebacker: None,
            harakiri: 0,
            harakiri_verbose: false,
            uid: None,
            gid: None,
            stats: None,
            stats_http: false,
            stats_dashboard: false,
            py_tracebacker_locals: false,
            py_tracebacker_slow: 0,
            http_underscores_in_headers: false,
            reload_mercy: 60,
            strict: false,
            lazy_apps: false,
            app: AppOptions::default(),
            logging: LoggingOptions::default(),
            statics: StaticOptions::default(),
            lifecycle: LifecycleOptions::default(),
            requests: RequestOptions::default(),
            report: Report::default(),
            pending_listeners: Vec::new(),
            protocol: None,
            show_config: false,
            connect_and_read: None,
            tracebacks: None,
            tracebacks_json: false,
            profile_args: ProfileArgs::default(),
        }
    }
}

/// The options that add a listener.
const LISTENER_KEYS: &[&str] = &[
    "http",
    "http-socket",
    "http11-socket",
    "socket",
    "uwsgi-socket",
];

/// Parse the arguments (without argv\[0\]) with the process environment.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, ConfigErrors> {
    let args: Vec<String> = args.into_iter().collect();
    let env: Env = std::env::vars().collect();
    parse_with(&args, &env, &Host::current())
}

/// Parse the arguments with a given environment and host facts.
pub fn parse_with(args: &[String], env: &Env, host: &Host) -> Result<Command, ConfigErrors> {
    let collected = collect::collect(args, env, host);
    let notes = collected.warnings.clone();
    parse_collected(collected, env).map_err(|e| ConfigErrors { notes, ..e })
}

/// [`parse_with`] after the sources are read.
fn parse_collected(collected: collect::Collected, env: &Env) -> Result<Command, ConfigErrors> {
    // A file that could not be read or an unknown argument may hide a
    // listener: then "no listener" would only be noise.
    let unreadable = !collected.problems.is_empty();
    let mut problems = collected.problems;
    if let Some(early) = collected.early {
        if !problems.is_empty() {
            return Err(errors(problems, None));
        }
        return Ok(match early {
            Early::Help => Command::Help(docs::help_text()),
            Early::HelpMigrating => Command::Help(docs::migrating_markdown()),
            Early::Version => Command::Version(docs::version_text()),
        });
    }
    let mut entries = collected.entries;
    let expansion = expand::expand(&mut entries, env);
    if entries.iter().any(|e| e.key == "get") {
        return if problems.is_empty() {
            Ok(Command::Help(get(&entries)))
        } else {
            Err(errors(problems, None))
        };
    }
    let mut cfg = Config::default();
    let mut warnings = collected.warnings;
    let mut unknown: Vec<usize> = Vec::new();
    let pending_of = |i: usize| expansion.pending.iter().find(|p| p.entry == i);
    for (i, e) in entries.iter().enumerate() {
        if e.placeholder {
            continue;
        }
        let Some(o) = find_long(&e.key) else {
            unknown.push(i);
            continue;
        };
        let at = e.origin.at();
        let mut fail = |error: ConfigError| {
            problems.push(Problem {
                at: at.clone(),
                error,
            })
        };
        let name = format!("--{}", e.key);
        match o.status {
            Status::Language => {
                if e.key == "print" || e.key == "iprint" {
                    cfg.report.prints.push(e.value.clone().unwrap_or_default());
                }
                continue;
            }
            Status::Rejected => {
                fail(ConfigError::Unsupported {
                    name,
                    instead: o.note,
                });
                continue;
            }
            _ => {}
        }
        if let Some(p) = pending_of(i) {
            fail(p.error.clone());
            continue;
        }
        let value = e.value.as_deref();
        if let Arg::Value(_) = o.arg {
            match value.map(str::trim) {
                // A bare --idle is the profiler's (see table::idle_option).
                None if o.canonical() == "idle" => {}
                None => {
                    fail(ConfigError::MissingValue(name));
                    continue;
                }
                Some("") => {
                    fail(ConfigError::EmptyValue(name));
                    continue;
                }
                Some(_) => {}
            }
        }
        if let (Some(v), false) = (value, o.numeric()) {
            if values::strip_inline_comment(v) != v.trim() {
                warnings.push(format!(
                    "{}: the value of {name} contains what looks like a comment ('{v}'); \
                     uWSGI and uwsgi-rs keep it as part of the value",
                    e.origin.describe()
                ));
            }
        }
        let mut ctx = Ctx {
            cfg: &mut cfg,
            name: &name,
            warnings: &mut warnings,
        };
        if let Err(error) = (o.apply)(&mut ctx, value) {
            fail(error);
            continue;
        }
        let report = &mut cfg.report;
        match o.status {
            Status::NotYet => Report::note(&mut report.not_yet, &e.key, o.help),
            Status::NoEffect => Report::note(&mut report.no_effect, &e.key, o.note),
            Status::Different => Report::note(&mut report.different, &e.key, o.note),
            _ => {}
        }
    }
    unknown_keys(&entries, &unknown, &expansion, &mut cfg, &mut problems);
    let given = |keys: &[&str]| entries.iter().any(|e| keys.contains(&e.key.as_str()));
    if let Some(base) = cfg.tracebacks.take() {
        return finish(problems, &cfg, || Command::Tracebacks {
            base,
            json: cfg.tracebacks_json,
            timeout_secs: cfg.socket_timeout,
        });
    }
    if let Some(base) = cfg.profile_args.profile.take() {
        let a = cfg.profile_args.clone();
        return finish(problems, &cfg, || Command::Profile {
            base,
            rate: a.rate,
            duration: a.duration,
            idle: a.idle,
            format: a.format,
            output: a.output,
            timeout_secs: cfg.socket_timeout,
        });
    }
    if let Some(base) = cfg.profile_args.top.take() {
        let a = cfg.profile_args.clone();
        return finish(problems, &cfg, || Command::Top {
            base,
            rate: a.rate,
            idle: a.idle,
            timeout_secs: cfg.socket_timeout,
        });
    }
    if let Some(addr) = cfg.connect_and_read.take() {
        return finish(problems, &cfg, || Command::ConnectAndRead {
            addr,
            timeout_secs: cfg.socket_timeout,
        });
    }
    if given(&["connect-and-read", "tracebacks", "profile", "top"]) && !problems.is_empty() {
        // A client command whose own value was wrong: that is the problem.
        return Err(errors(problems, cfg.report.unused_line()));
    }
    // Sockets systemd passes (LISTEN_FDS) are listeners too.
    let activated = crate::systemd::activation_pending(
        env.get("LISTEN_PID").map(String::as_str),
        env.get("LISTEN_FDS").map(String::as_str),
    );
    let listener_given = given(LISTENER_KEYS) || unreadable || activated;
    validate(&mut cfg, listener_given, &mut warnings, &mut problems);
    if cfg.show_config {
        cfg.report.show_config = show_config(&entries);
    }
    cfg.report.warnings.extend(warnings);
    if !problems.is_empty() {
        return Err(errors(problems, cfg.report.unused_line()));
    }
    Ok(Command::Serve(cfg))
}

fn errors(problems: Vec<Problem>, unknown_line: Option<String>) -> ConfigErrors {
    ConfigErrors {
        problems,
        unknown_line,
        notes: Vec::new(),
    }
}

fn finish(
    problems: Vec<Problem>,
    cfg: &Config,
    command: impl FnOnce() -> Command,
) -> Result<Command, ConfigErrors> {
    if problems.is_empty() {
        Ok(command())
    } else {
        Err(errors(problems, cfg.report.unused_line()))
    }
}

/// Keys that are no option: placeholders some `%(name)` uses are fine; the
/// rest are listed once in the report (or, with `--strict`, are errors).
fn unknown_keys(
    entries: &[Entry],
    unknown: &[usize],
    expansion: &expand::Expansion,
    cfg: &mut Config,
    problems: &mut Vec<Problem>,
) {
    let mut seen: Vec<&str> = Vec::new();
    for &i in unknown {
        let e = &entries[i];
        if seen.contains(&e.key.as_str()) {
            continue;
        }
        seen.push(&e.key);
        let used = expansion.referenced.contains(&e.key);
        if used {
            if let Some(p) = expansion.pending.iter().find(|p| p.entry == i) {
                problems.push(Problem {
                    at: e.origin.at(),
                    error: p.error.clone(),
                });
            }
        }
        let uwsgi = table::uwsgi_only(&e.key).is_some();
        let suggestion = if uwsgi {
            None
        } else {
            suggest(&e.key, table::all_names())
        };
        let error = match (cfg.strict, used, uwsgi) {
            (false, true, false) => None,
            (false, _, _) => {
                cfg.report.unused.push(UnusedKey {
                    key: e.key.clone(),
                    at: e.origin.describe(),
                    suggestion,
                    uwsgi,
                });
                None
            }
            (true, _, true) => Some(ConfigError::UwsgiOnly(e.key.clone())),
            (true, true, false) => Some(ConfigError::Logic(format!(
                "unknown option '{}' (--strict): declare a placeholder with set-placeholder = {}=VALUE",
                e.key, e.key
            ))),
            (true, false, false) => Some(ConfigError::UnknownKey {
                key: e.key.clone(),
                suggestion,
            }),
        };
        if let Some(error) = error {
            problems.push(Problem {
                at: e.origin.at(),
                error,
            });
        }
    }
}

/// Cross-option checks and what the server resolves from several options.
fn validate(
    cfg: &mut Config,
    listener_given: bool,
    warnings: &mut Vec<String>,
    problems: &mut Vec<Problem>,
) {
    let default_proto = cfg.protocol.unwrap_or(Protocol::Uwsgi);
    cfg.listeners = cfg
        .pending_listeners
        .drain(..)
        .map(|(p, a)| (p.unwrap_or(default_proto), a))
        .collect();
    // A listener given with a bad value is its own problem already.
    if cfg.listeners.is_empty() && !listener_given {
        problems.push(Problem {
            at: None,
            error: if cfg.requests.https.is_empty() {
                ConfigError::NoListener
            } else {
                ConfigError::Logic(
                    "no listener: the only one given is --https, which is not honoured yet; \
                     terminate TLS in a reverse proxy and use --http-socket or --socket behind it"
                        .into(),
                )
            },
        });
    }
    lifecycle_rules(cfg, warnings, problems);
    if let (Some(m), Some(f)) = (&cfg.module, &cfg.wsgi_file) {
        warnings.push(format!(
            "--module {m} and --wsgi-file {} are both given: as uWSGI does, the module is loaded, \
             and the file only if the module cannot be imported",
            f.display()
        ));
    }
}

/// uWSGI's start-up rules for the worker lifecycle options (core/init.c):
/// what it refuses to start with, and what it corrects with a warning.
fn lifecycle_rules(cfg: &mut Config, warnings: &mut Vec<String>, problems: &mut Vec<Problem>) {
    let mut refuse = |why: String| {
        problems.push(Problem {
            at: None,
            error: ConfigError::Logic(why),
        })
    };
    let lc = &mut cfg.lifecycle;
    if lc.max_worker_lifetime > 0 && lc.min_worker_lifetime >= lc.max_worker_lifetime {
        refuse(format!(
            "invalid min-worker-lifetime value ({}), must be lower than max-worker-lifetime ({}) (min-worker-lifetime defaults to 10)",
            lc.min_worker_lifetime, lc.max_worker_lifetime
        ));
    }
    let c = &mut lc.cheaper;
    if c.min == 0 {
        return;
    }
    if c.min >= cfg.processes {
        refuse(format!(
            "invalid cheaper value ({}): must be lower than processes ({})",
            c.min, cfg.processes
        ));
    }
    if c.rss_limit_hard > 0 && c.rss_limit_soft == 0 {
        refuse(
            "enabling cheaper-rss-limit-hard requires setting also cheaper-rss-limit-soft".into(),
        );
    } else if c.rss_limit_hard > 0 && c.rss_limit_hard <= c.rss_limit_soft {
        refuse(
            "cheaper-rss-limit-hard value must be higher than cheaper-rss-limit-soft value".into(),
        );
    }
    match c.initial {
        Some(n) if n < c.min => {
            warnings.push(format!(
                "invalid cheaper-initial value ({n}), must be equal or higher than cheaper ({}), using {} as initial number of workers",
                c.min, c.min
            ));
            c.initial = Some(c.min);
        }
        Some(n) if n > cfg.processes => {
            warnings.push(format!(
                "invalid cheaper-initial value ({n}), must be lower or equal than worker count ({}), using {} as initial number of workers",
                cfg.processes, cfg.processes
            ));
            c.initial = Some(cfg.processes);
        }
        _ => {}
    }
}

/// `--get OPTION`: the first value of each option asked for, one per line
/// (nothing for an option not given), as uWSGI prints it. Any name of the
/// option finds it.
fn get(entries: &[Entry]) -> String {
    let mut out = String::new();
    for want in entries.iter().filter(|e| e.key == "get") {
        let want = want.value.as_deref().unwrap_or_default().trim();
        let names: &[&str] = match find_long(want) {
            Some(o) => o.names,
            None => std::slice::from_ref(&want),
        };
        let found = entries
            .iter()
            .find(|e| e.key != "get" && names.contains(&e.key.as_str()))
            .and_then(|e| e.value.as_deref());
        if let Some(v) = found {
            out.push_str(v);
            out.push('\n');
        }
    }
    out
}

/// `--show-config`: the configuration after expansion, as ini lines.
fn show_config(entries: &[Entry]) -> Vec<String> {
    let mut out = vec!["[uwsgi]".to_string()];
    for e in entries {
        match &e.value {
            Some(v) => out.push(format!("{} = {v}", e.key)),
            None => out.push(format!("{} = true", e.key)),
        }
    }
    out
}

#[cfg(test)]
mod tests;
