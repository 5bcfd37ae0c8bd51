//! The option table: one row per option uwsgi-rs knows, with its names, its
//! value, its status (same as uWSGI, different, no effect, not honoured yet,
//! rejected), the family that implements it, and how its value is parsed into
//! [`Config`]. `--help`, `--help-migrating` (docs/MIGRATING.md) and the
//! start-up report are all generated from it.
//!
//! Implementing an option family is flipping its rows from [`NotYet`] to
//! [`Same`] (or [`Different`] with a note) once the behaviour exists: the
//! values are already parsed and validated into typed [`Config`] fields here.
//! Nothing in this file does I/O or reads the environment.

use std::path::PathBuf;

use super::report::ConfigError;
use super::values::{self, *};
use super::{Config, HookPhase};

/// Whether an option takes a value. The `&str` is the metavar shown in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// No value; `--x=true/false/1/0/yes/no/on/off` (or ini `x = ...`) also accepted.
    Switch,
    /// Requires a non-empty value: `--x V`, `--x=V`, `-c V`, `-cV`.
    Value(&'static str),
    /// Value only via `--x=V` (or ini); bare `--x` is the switch form.
    Optional(&'static str),
}

/// How uwsgi-rs treats an option compared with uWSGI 2.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Implemented with uWSGI's meaning.
    Same,
    /// Implemented, with a difference the note names (logged at start).
    Different,
    /// Accepted and validated; nothing to do (the note says why; logged at start).
    NoEffect,
    /// Accepted and validated into [`Config`], behaviour not built yet: the
    /// server starts and the start-up report names it.
    NotYet,
    /// A uWSGI option uwsgi-rs will not have: exit 1, the note says what instead.
    Rejected,
    /// uwsgi-rs only.
    Own,
    /// Part of the config language (`ini`, `if-env`, `for`, `set`...):
    /// handled while the configuration is read.
    Language,
}

/// Which part of the server an option belongs to (who implements its behaviour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    Core,
    Syntax,
    App,
    Logging,
    Static,
    Lifecycle,
    Sockets,
    Process,
    Other,
}

impl Family {
    pub fn label(self) -> &'static str {
        match self {
            Family::Core => "core",
            Family::Syntax => "config language",
            Family::App => "app loading",
            Family::Logging => "logging",
            Family::Static => "static files",
            Family::Lifecycle => "worker lifecycle",
            Family::Sockets => "sockets and requests",
            Family::Process => "process",
            Family::Other => "other",
        }
    }
}

/// What an option's apply function gets: the config being built, the option
/// name as typed (`--socket`), and a place for warnings.
pub struct Ctx<'a> {
    pub cfg: &'a mut Config,
    pub name: &'a str,
    pub warnings: &'a mut Vec<String>,
}

type Apply = fn(&mut Ctx<'_>, Option<&str>) -> Result<(), ConfigError>;

/// One row of the option table.
pub struct OptSpec {
    /// Long names without dashes; the first is canonical.
    pub names: &'static [&'static str],
    pub short: Option<char>,
    pub arg: Arg,
    pub status: Status,
    pub family: Family,
    /// What the option does (`--help`).
    pub help: &'static str,
    /// [`Different`]/[`NoEffect`]: how or why; [`Rejected`]: what to do
    /// instead; otherwise an optional remark for docs/MIGRATING.md.
    pub note: &'static str,
    /// Parse the value into the config. Called with `Some(non-empty)` for
    /// [`Arg::Value`]; possibly `None` otherwise. Never called for
    /// [`Rejected`] or [`Language`] rows.
    pub apply: Apply,
}

impl OptSpec {
    pub fn canonical(&self) -> &'static str {
        self.names[0]
    }

    /// Whether the value is a number or a switch (a trailing comment is
    /// dropped) rather than text (kept verbatim, as uWSGI does).
    pub fn numeric(&self) -> bool {
        match self.arg {
            Arg::Switch => true,
            Arg::Value(m) | Arg::Optional(m) => {
                matches!(
                    m,
                    "N" | "SECONDS" | "BYTES" | "MB" | "MS" | "MODE" | "SIGNAL" | "LEVEL"
                )
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
const fn opt(
    names: &'static [&'static str],
    short: Option<char>,
    arg: Arg,
    status: Status,
    family: Family,
    help: &'static str,
    note: &'static str,
    apply: Apply,
) -> OptSpec {
    OptSpec {
        names,
        short,
        arg,
        status,
        family,
        help,
        note,
        apply,
    }
}

use Arg::{Optional, Switch, Value};
use Family::*;
use Status::*;

/// `--idle SECONDS` is uWSGI's cheap mode; a bare `--idle` is the
/// profiler's "sample idle cores too".
fn idle_option(c: &mut Ctx<'_>, v: Option<&str>) -> Result<(), ConfigError> {
    match v {
        None => c.cfg.profile_args.idle = true,
        Some(_) => c.cfg.lifecycle.idle = int(c.name, v, 0, u64::MAX)?,
    }
    Ok(())
}

fn profile_format(option: &str, v: Option<&str>) -> Result<super::ProfileFormat, ConfigError> {
    use super::ProfileFormat::*;
    match t(v) {
        "folded" | "collapsed" => Ok(Folded),
        "svg" | "flamegraph" => Ok(Svg),
        "speedscope" => Ok(Speedscope),
        other => Err(ConfigError::InvalidValue {
            option: option.to_string(),
            value: other.to_string(),
            expected: "folded, svg or speedscope".into(),
        }),
    }
}

fn t(v: Option<&str>) -> &str {
    v.unwrap_or_default()
}
fn p(v: Option<&str>) -> PathBuf {
    PathBuf::from(t(v))
}
fn noop(_: &mut Ctx<'_>, _: Option<&str>) -> Result<(), ConfigError> {
    Ok(())
}
fn check_flag(c: &mut Ctx<'_>, v: Option<&str>) -> Result<(), ConfigError> {
    flag(c.name, v).map(|_| ())
}
fn check_int(c: &mut Ctx<'_>, v: Option<&str>) -> Result<(), ConfigError> {
    int(c.name, v, 0, u64::MAX).map(|_| ())
}
fn listener(c: &mut Ctx<'_>, v: Option<&str>, proto: Option<Protocol>) -> Result<(), ConfigError> {
    let addr = ListenAddr::parse(t(v)).map_err(|_| {
        invalid(
            c.name,
            t(v),
            "an address like :PORT, HOST:PORT, [IPV6]:PORT (port 0-65535) or a unix socket path",
        )
    })?;
    c.cfg.pending_listeners.push((proto, addr));
    Ok(())
}
fn hook_row(c: &mut Ctx<'_>, v: Option<&str>, phase: HookPhase) -> Result<(), ConfigError> {
    let h = hook(c.name, t(v))?;
    if h.action == HookAction::UnixSignal && !phase.in_master() {
        return Err(invalid(
            c.name,
            t(v),
            "unix_signal in a hook the master runs: hook-asap, hook-as-root or hook-master-start",
        ));
    }
    c.cfg.lifecycle.hooks.push((phase, h));
    Ok(())
}
fn exec_row(c: &mut Ctx<'_>, v: Option<&str>, phase: HookPhase) -> Result<(), ConfigError> {
    c.cfg.lifecycle.hooks.push((
        phase,
        Hook {
            action: HookAction::Exec,
            arg: t(v).to_string(),
            private: false,
        },
    ));
    Ok(())
}
fn route_row(c: &mut Ctx<'_>, v: Option<&str>, subject: RouteSubject) -> Result<(), ConfigError> {
    let r = route(c.name, t(v), subject)?;
    if !r.action.honoured() {
        c.warnings.push(format!(
            "{} {}: the route action '{}' is not honoured yet; this route is ignored",
            c.name,
            t(v).trim(),
            r.action.name()
        ));
    }
    c.cfg.requests.routes.push(r);
    Ok(())
}
fn plugins(c: &mut Ctx<'_>, v: Option<&str>) -> Result<(), ConfigError> {
    match foreign_plugins(t(v)).into_iter().next() {
        Some(plugin) => Err(ConfigError::UnsupportedPlugin {
            option: c.name.to_string(),
            plugin,
        }),
        None => Ok(()),
    }
}

/// Every option uwsgi-rs knows, in `--help` order within each status.
#[rustfmt::skip]
pub static OPTIONS: &[OptSpec] = &[
    // ---- core: listeners and the app
    opt(&["http"], None, Value("ADDR"), Different, Core, "add an HTTP listener (:PORT, HOST:PORT, [IPV6]:PORT or a unix socket path)", "the workers serve HTTP themselves, like --http-socket; uWSGI starts a separate HTTP router process", |c, v| listener(c, v, Some(Protocol::Http))),
    opt(&["http-socket", "http11-socket"], None, Value("ADDR"), Same, Core, "add an HTTP listener (HTTP/1.1 with keep-alive)", "", |c, v| listener(c, v, Some(Protocol::Http))),
    opt(&["socket"], Some('s'), Value("ADDR"), Same, Core, "add a listener speaking --protocol (default: uwsgi)", "", |c, v| listener(c, v, None)),
    opt(&["uwsgi-socket"], None, Value("ADDR"), Same, Core, "add a uwsgi-protocol listener", "", |c, v| listener(c, v, Some(Protocol::Uwsgi))),
    opt(&["protocol"], None, Value("PROTO"), Same, Core, "protocol of --socket listeners: uwsgi (default), http or http11", "", |c, v| { c.cfg.protocol = Some(protocol_value(c.name, t(v))?); Ok(()) }),
    opt(&["module", "wsgi"], Some('w'), Value("MODULE[:CALLABLE]"), Same, Core, "load a WSGI module", "with --wsgi-file too, the module is loaded and the file only if the module cannot be imported, as in uWSGI", |c, v| { c.cfg.module = Some(module_value(c.name, t(v))?); Ok(()) }),
    opt(&["wsgi-file", "file"], None, Value("FILE"), Same, Core, "load a WSGI script file (any name: app.py, app.wsgi, keystone-wsgi-public)", "", |c, v| { c.cfg.wsgi_file = Some(p(v)); Ok(()) }),
    opt(&["paste"], None, Value("SPEC"), Same, Core, "load a WSGI app with PasteDeploy: loadapp(SPEC), e.g. config:/etc/app/paste.ini", "used when no --module or --wsgi-file is given (uWSGI loads those first); needs PasteDeploy in the app's environment", |c, v| { c.cfg.paste = Some(t(v).to_string()); Ok(()) }),
    opt(&["paste-logger"], None, Switch, Same, Core, "with --paste: configure Python logging from the paste file first (logging.config.fileConfig)", "", |c, v| { c.cfg.paste_logger = flag(c.name, v)?; Ok(()) }),
    opt(&["callable"], None, Value("NAME"), Same, Core, "name of the WSGI callable (default: application)", "", |c, v| { c.cfg.callable = t(v).to_string(); Ok(()) }),
    opt(&["chdir"], None, Value("DIR"), Same, Core, "chdir to DIR before loading the app", "", |c, v| { c.cfg.chdir = Some(p(v)); Ok(()) }),
    opt(&["pythonpath", "python-path", "pp"], None, Value("DIR"), Same, Core, "add DIR to sys.path (repeatable)", "", |c, v| { c.cfg.pythonpath.push(p(v)); Ok(()) }),
    opt(&["home", "virtualenv", "venv", "pyhome"], Some('H'), Value("DIR"), Same, Core, "use the Python virtualenv at DIR", "uwsgi-rs runs in the interpreter of the venv it is installed in, which needs neither; a home that is another venv of the same Python X.Y puts its site-packages first and becomes sys.prefix; one of another X.Y is an error (install uwsgi-rs into it); without it $VIRTUAL_ENV is used the same way (another X.Y only warns)", |c, v| { c.cfg.home = Some(p(v)); Ok(()) }),
    opt(&["env"], None, Value("KEY=VALUE"), Same, Core, "set an environment variable (repeatable)", "", |c, v| { let kv = key_value(c.name, t(v))?; c.cfg.env.push(kv); Ok(()) }),
    // ---- core: processes
    opt(&["master"], Some('M'), Switch, NoEffect, Core, "enable the master process", "there is always a master", |c, v| { c.cfg.master = flag(c.name, v)?; Ok(()) }),
    opt(&["processes", "workers"], Some('p'), Value("N"), Same, Core, "number of worker processes (1-1024, default 1)", "", |c, v| { c.cfg.processes = int(c.name, v, 1, 1024)? as usize; Ok(()) }),
    opt(&["threads"], None, Value("N"), Same, Core, "threads per worker (1-512, default 1)", "Python threads are always enabled", |c, v| { c.cfg.threads = int(c.name, v, 1, 512)? as usize; Ok(()) }),
    opt(&["listen"], Some('l'), Value("N"), Same, Core, "socket listen backlog (default 100)", "", |c, v| { c.cfg.listen = int(c.name, v, 1, i32::MAX as u64)? as i32; Ok(()) }),
    opt(&["max-requests"], Some('R'), Value("N"), Same, Core, "recycle a worker after N requests (0 = off)", "", |c, v| { c.cfg.max_requests = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["pidfile", "safe-pidfile"], None, Value("FILE"), Same, Core, "write the master pid to FILE", "also removed at exit (uWSGI: only with --vacuum)", |c, v| { c.cfg.pidfile = Some(p(v)); Ok(()) }),
    opt(&["chmod-socket", "chmod"], Some('C'), Optional("MODE"), Same, Core, "chmod unix sockets to octal MODE (bare: 666)", "", |c, v| { c.cfg.chmod_socket = Some(mode(c.name, v)?); Ok(()) }),
    opt(&["disable-logging"], Some('L'), Switch, Same, Core, "disable request logging", "", |c, v| { c.cfg.disable_logging = flag(c.name, v)?; Ok(()) }),
    opt(&["buffer-size"], Some('b'), Value("BYTES"), Same, Core, "max size of a request's headers (default 4096)", "", |c, v| { c.cfg.buffer_size = int(c.name, v, 1, 1 << 26)? as usize; Ok(()) }),
    opt(&["socket-timeout"], Some('z'), Value("SECONDS"), Same, Core, "socket I/O timeout (default 4)", "", |c, v| { c.cfg.socket_timeout = int(c.name, v, 1, u64::MAX)?; Ok(()) }),
    opt(&["limit-post"], None, Value("BYTES"), Same, Core, "reject request bodies larger than BYTES (0 = off)", "", |c, v| { c.cfg.limit_post = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["http-underscores-in-headers"], None, Switch, Own, Core, "keep HTTP request headers whose names contain '_'", "by default they are dropped (as nginx and gunicorn do), since X_User and X-User would both become HTTP_X_USER", |c, v| { c.cfg.http_underscores_in_headers = flag(c.name, v)?; Ok(()) }),
    opt(&["harakiri"], Some('t'), Value("SECONDS"), Same, Core, "kill a worker stuck on one request for SECONDS (0 = off)", "the deadline is per request thread, and the traceback of the stuck request is always logged", |c, v| { c.cfg.harakiri = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["harakiri-verbose"], None, Switch, Same, Core, "log more details on harakiri", "", |c, v| { c.cfg.harakiri_verbose = flag(c.name, v)?; Ok(()) }),
    opt(&["uid"], None, Value("USER"), Same, Core, "drop privileges to USER (name or number)", "", |c, v| { c.cfg.uid = Some(t(v).to_string()); Ok(()) }),
    opt(&["gid"], None, Value("GROUP"), Same, Core, "drop privileges to GROUP (name or number)", "", |c, v| { c.cfg.gid = Some(t(v).to_string()); Ok(()) }),
    opt(&["stats", "stats-server"], None, Value("ADDR"), Same, Core, "serve stats JSON on ADDR", "uWSGI's JSON", |c, v| { c.cfg.stats = Some(t(v).to_string()); Ok(()) }),
    opt(&["stats-http"], None, Switch, Same, Core, "serve stats over HTTP", "", |c, v| { c.cfg.stats_http = flag(c.name, v)?; Ok(()) }),
    opt(&["reload-mercy", "worker-reload-mercy"], None, Value("SECONDS"), Same, Core, "how long to wait for workers to stop (default 60)", "one setting under both names (uWSGI has two)", |c, v| { c.cfg.reload_mercy = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["strict"], None, Switch, Same, Core, "unknown keys in config files are errors (default: ignored with one warning)", "", |c, v| { c.cfg.strict = flag(c.name, v)?; Ok(()) }),
    opt(&["lazy-apps", "lazy"], None, Switch, Same, App, "load the app in each worker after fork", "without it the app is preloaded, as uWSGI does by default, but by a loader process rather than the master: workers are forked from it, a reload imports the new code in a new loader before any worker is replaced, and code that does not import leaves the old workers serving", |c, v| { c.cfg.lazy_apps = flag(c.name, v)?; Ok(()) }),
    opt(&["show-config"], None, Switch, Same, Core, "log the configuration, expanded, as ini at start", "", |c, v| { c.cfg.show_config = flag(c.name, v)?; Ok(()) }),
    // ---- tracebacker and the rest of uwsgi-rs's own
    opt(&["py-tracebacker"], None, Value("BASE"), Same, Core, "serve Python stack traces of each worker on unix socket BASE<N>", "same output; also answers while a request holds the GIL; sockets are 0600 and refuse peers with another uid (root excepted)", |c, v| { c.cfg.py_tracebacker = Some(t(v).to_string()); Ok(()) }),
    opt(&["connect-and-read"], None, Value("ADDR"), Same, Core, "connect to ADDR (e.g. a tracebacker socket), print what it sends, exit", "the tracebacker client", |c, v| { c.cfg.connect_and_read = Some(t(v).to_string()); Ok(()) }),
    opt(&["tracebacks"], None, Value("BASE"), Own, Core, "print the tracebacks of every worker under tracebacker BASE, with the request each thread serves, and exit", "", |c, v| { c.cfg.tracebacks = Some(t(v).to_string()); Ok(()) }),
    opt(&["json"], None, Switch, Own, Core, "with --tracebacks: print one JSON document instead of text", "", |c, v| { c.cfg.tracebacks_json = flag(c.name, v)?; Ok(()) }),
    opt(&["py-tracebacker-locals"], None, Switch, Own, Core, "add each frame's local variables (truncated reprs) to --tracebacks dumps", "", |c, v| { c.cfg.py_tracebacker_locals = flag(c.name, v)?; Ok(()) }),
    opt(&["py-tracebacker-slow"], None, Value("SECONDS"), Own, Core, "log the traceback of any request still running after SECONDS, once, without killing it (0 = off)", "", |c, v| { c.cfg.py_tracebacker_slow = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["profile"], None, Value("BASE"), Own, Core, "sample every worker under tracebacker BASE (no ptrace), merge, write the profile (--format, --output) and exit", "", |c, v| { c.cfg.profile_args.profile = Some(t(v).to_string()); Ok(()) }),
    opt(&["top"], None, Value("BASE"), Own, Core, "a live view of the functions and routes using the most time in the workers under tracebacker BASE", "", |c, v| { c.cfg.profile_args.top = Some(t(v).to_string()); Ok(()) }),
    opt(&["duration"], None, Value("SECONDS"), Own, Core, "with --profile: how long to sample (1-86400, default 10)", "", |c, v| { c.cfg.profile_args.duration = int(c.name, v, 1, 86_400)? as u32; Ok(()) }),
    opt(&["rate"], None, Value("HZ"), Own, Core, "with --profile and --top: samples per second per thread (1-1000, default 100)", "", |c, v| { c.cfg.profile_args.rate = int(c.name, v, 1, 1000)? as u32; Ok(()) }),
    opt(&["format"], None, Value("FORMAT"), Own, Core, "with --profile: folded (default), svg or speedscope", "", |c, v| { c.cfg.profile_args.format = profile_format(c.name, v)?; Ok(()) }),
    opt(&["output"], None, Value("FILE"), Own, Core, "with --profile: write the profile to FILE (default: stdout)", "", |c, v| { c.cfg.profile_args.output = Some(p(v)); Ok(()) }),
    opt(&["stats-dashboard"], None, Switch, Own, Core, "with --stats-http on a TCP address: serve the dashboard (live tracebacks, URIs) to anyone who can connect", "on a UNIX stats socket (0600, same-uid peers) the dashboard is always served", |c, v| { c.cfg.stats_dashboard = flag(c.name, v)?; Ok(()) }),
    opt(&["get"], None, Value("OPTION"), Same, Core, "print the value of OPTION (any of its names; the first given), expanded, and exit (repeatable)", "", noop),
    opt(&["help"], Some('h'), Switch, Same, Core, "print this help and exit", "", noop),
    opt(&["help-migrating"], None, Switch, Own, Core, "print the option tables of docs/MIGRATING.md and exit", "", noop),
    opt(&["version"], None, Switch, Same, Core, "print the version and exit", "", noop),

    // ---- the config language (handled while reading; rows for --help and --strict)
    opt(&["ini-paste", "ini-paste-logged"], None, Value("FILE"), Language, Syntax, "load FILE's [uwsgi] section (if it has one), then --paste config:FILE (-logged: and --paste-logger), for a PasteDeploy (Pyramid, Pylons) ini", "", noop),
    opt(&["yaml", "yml"], None, Value("FILE[:SECTION]"), Language, Syntax, "load the uwsgi: mapping (or SECTION) of a YAML file at this position (`uwsgi-rs app.yaml` too), as uWSGI built with libyaml (Debian's) reads it; lines it cannot read are named in the start-up report", "", noop),
    opt(&["xml"], None, Value("FILE[:ID]"), Language, Syntax, "load the <uwsgi> element (the one with id=\"ID\") of an XML file at this position (`uwsgi-rs app.xml` too)", "", noop),
    opt(&["ini"], None, Value("FILE[:SECTION]"), Language, Syntax, "load an ini file section ([uwsgi] by default; `:SECTION` alone: from the last ini file) at this position", "", noop),
    opt(&["set", "set-placeholder", "set-ph"], Some('S'), Value("KEY=VALUE"), Language, Syntax, "set a placeholder (or, --set, an option) for %(KEY)", "", noop),
    opt(&["print", "iprint"], None, Value("TEXT"), Language, Syntax, "print TEXT (expanded) at start", "", noop),
    opt(&["if-env", "if-not-env"], None, Value("VAR[=VALUE]"), Language, Syntax, "the options up to endif apply only if VAR is set (to VALUE); %(_) is its value", "", noop),
    opt(&["if-exists", "if-not-exists"], None, Value("PATH"), Language, Syntax, "the options up to endif apply only if PATH exists; %(_) is PATH", "", noop),
    opt(&["if-file", "if-not-file"], None, Value("PATH"), Language, Syntax, "the options up to endif apply only if PATH is a regular file", "", noop),
    opt(&["if-dir", "if-not-dir"], None, Value("PATH"), Language, Syntax, "the options up to endif apply only if PATH is a directory", "", noop),
    opt(&["if-opt", "if-not-opt"], None, Value("OPTION[=VALUE]"), Language, Syntax, "the options up to endif apply only if OPTION was given earlier (with VALUE)", "", noop),
    opt(&["if-reload", "if-not-reload"], None, Switch, Language, Syntax, "the options up to endif apply only on (not on) a reload: uwsgi-rs never re-reads its configuration, so never (always)", "", noop),
    opt(&["if-hostname", "if-not-hostname"], None, Value("NAME"), Language, Syntax, "the options up to endif apply only on host NAME", "", noop),
    opt(&["if-plugin", "if-not-plugin"], None, Value("NAME"), Language, Syntax, "the options up to endif apply only if plugin NAME is available (python, python3, http)", "", noop),
    opt(&["for", "for-glob", "for-times", "for-readline"], None, Value("ITEMS"), Language, Syntax, "repeat each option up to endfor for every item (words, glob matches, 1..N, lines of a file) as %(_)", "", noop),
    opt(&["endif", "end-if", "endfor", "end-for", "end", "else"], None, Switch, Language, Syntax, "end an if/for block (else: the options after it apply if the if did not)", "", noop),

    // ---- accepted, no effect
    opt(&["vacuum"], None, Switch, NoEffect, Core, "remove unix sockets and the pidfile at exit", "always done", check_flag),
    opt(&["die-on-term"], None, Switch, NoEffect, Core, "shut down on SIGTERM", "SIGTERM always shuts down gracefully (see Signals)", check_flag),
    opt(&["enable-threads"], Some('T'), Switch, NoEffect, Core, "enable Python threads", "Python threads are always enabled", check_flag),
    opt(&["single-interpreter"], Some('i'), Switch, NoEffect, Core, "use a single Python interpreter", "there is always a single interpreter", check_flag),
    opt(&["need-app"], None, Switch, NoEffect, App, "exit if the app cannot be loaded", "a server whose app cannot be loaded at start always exits with status 1", check_flag),
    opt(&["thunder-lock"], None, Switch, NoEffect, Core, "serialize accept()", "no effect: each worker's polling core accepts on its own", check_flag),
    opt(&["http-keepalive"], None, Optional("N"), NoEffect, Sockets, "HTTP keep-alive", "HTTP/1.1 keep-alive is always on", |c, v| { if v.is_some_and(|v| !v.trim().is_empty()) { int(c.name, v, 0, u64::MAX)?; } Ok(()) }),
    opt(&["http-auto-chunked"], None, Switch, NoEffect, Sockets, "chunk HTTP/1.1 responses without Content-Length", "always done on HTTP/1.1 connections", check_flag),
    opt(&["http-chunked-input"], None, Switch, NoEffect, Sockets, "accept chunked request bodies", "chunked request bodies are always decoded", check_flag),
    opt(&["http-raw-body"], None, Switch, NoEffect, Sockets, "pass HTTP bodies unparsed", "the workers read request bodies themselves", check_flag),
    opt(&["close-on-exec"], None, Switch, NoEffect, Process, "set close-on-exec on connection sockets", "every socket is always close-on-exec", check_flag),
    opt(&["close-on-exec2"], None, Switch, NoEffect, Process, "set close-on-exec on server sockets", "every socket is always close-on-exec", check_flag),
    opt(&["socket-write-timeout", "so-write-timeout", "so-send-timeout", "socket-send-timeout"], None, Value("SECONDS"), NoEffect, Sockets, "timeout for socket writes", "writes are bounded by --socket-timeout", check_int),
    opt(&["auto-procname"], None, Switch, NoEffect, Process, "set meaningful process names", "process names are not changed", check_flag),
    opt(&["procname-prefix", "procname-prefix-spaced", "procname-append", "procname", "procname-master"], None, Value("NAME"), NoEffect, Process, "change process names", "process names are not changed", noop),
    opt(&["no-orphans"], None, Switch, NoEffect, Process, "workers exit when the master dies", "always done (parent-death signal)", check_flag),
    opt(&["memory-report"], Some('m'), Switch, NoEffect, Process, "log memory use with each request", "no effect; --stats reports worker RSS", check_flag),
    opt(&["plugin", "plugins"], None, Value("LIST"), NoEffect, Core, "load uWSGI plugins", "python, python3 and http are built in (also given as paths or N:name); any other plugin is an error", plugins),
    opt(&["plugin-dir", "plugins-dir"], None, Value("DIR"), NoEffect, Core, "search plugins in DIR", "the plugins uwsgi-rs accepts are built in", noop),
    opt(&["autoload"], None, Switch, NoEffect, Core, "load plugins for unknown options", "the plugins uwsgi-rs accepts are built in", check_flag),
    opt(&["pcre-jit"], None, Switch, NoEffect, Core, "JIT-compile routing regexps", "no effect", check_flag),
    opt(&["reaper"], Some('r'), Switch, NoEffect, Process, "reap zombie children after each request", "no effect", check_flag),

    // ---- app loading
    opt(&["import", "shared-import", "pyimport", "py-import", "python-import", "shared-pyimport", "shared-py-import", "shared-python-import"], None, Value("MODULE"), Different, App, "import a Python module (or run a .py file) before the app, where the app is imported", "a module that cannot be imported stops the start (uWSGI logs it and goes on); imported where the app is: by the loader before it forks the workers, or by each worker with --lazy-apps (--shared-import too: the master never imports app code)", |c, v| { c.cfg.app.imports.push(t(v).to_string()); Ok(()) }),
    opt(&["py-call-osafterfork"], None, Switch, Same, App, "run os.register_at_fork hooks (and Python signal handling) in the workers", "always on in uwsgi-rs: every worker is forked as os.fork() forks", |c, v| { c.cfg.app.py_call_osafterfork = flag(c.name, v)?; Ok(()) }),
    opt(&["pyargv"], None, Value("ARGS"), Same, App, "set sys.argv to the program's name and the words of ARGS", "split at spaces and tabs, without quoting, as uWSGI splits them; sys.argv[0] is the uwsgi-rs program (uWSGI's is 'uwsgi')", |c, v| { c.cfg.app.pyargv = Some(t(v).to_string()); Ok(()) }),
    opt(&["optimize"], Some('O'), Value("LEVEL"), Different, App, "Python optimization level (-O)", "the Python interpreter runs before uwsgi-rs reads its options: set PYTHONOPTIMIZE=LEVEL in the service's environment (or run python -O -m uwsgi_rs); a worker logs a line when the level differs", |c, v| { c.cfg.app.optimize = int(c.name, v, 0, 2)? as u8; Ok(()) }),
    opt(&["no-site"], None, Switch, NoEffect, App, "do not import the site module", "the interpreter imported site before uwsgi-rs started (site is what puts the virtualenv's packages, uwsgi-rs included, on sys.path)", |c, v| { c.cfg.app.no_site = flag(c.name, v)?; Ok(()) }),
    opt(&["wsgi-disable-file-wrapper"], None, Switch, Same, App, "no wsgi.file_wrapper in the environ", "", |c, v| { c.cfg.app.wsgi_disable_file_wrapper = flag(c.name, v)?; Ok(()) }),
    opt(&["py-autoreload", "python-autoreload"], None, Value("SECONDS"), Different, App, "reload when a Python module changes, checking every SECONDS (development)", "reloads the workers one at a time (as SIGHUP does here), not the whole instance", |c, v| { c.cfg.app.py_autoreload = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["chdir2"], None, Value("DIR"), Same, App, "chdir to DIR after loading the app", "each worker changes directory once the app is loaded, before it serves; a worker that cannot fails to start like one whose app does not load (at the first start the server exits 1)", |c, v| { c.cfg.app.chdir2 = Some(p(v)); Ok(()) }),

    // ---- logging
    opt(&["logto"], None, Value("FILE"), Same, Logging, "log to FILE (opened before dropping privileges)", "", |c, v| { c.cfg.logging.logto = Some(p(v)); Ok(()) }),
    opt(&["logto2"], None, Value("FILE"), Same, Logging, "log to FILE (opened after dropping privileges)", "", |c, v| { c.cfg.logging.logto2 = Some(p(v)); Ok(()) }),
    opt(&["daemonize"], Some('d'), Value("LOGFILE"), Different, Logging, "detach and log to LOGFILE", "the command returns once the sockets are bound, or exits 1 with the reason on the terminal; the umask is kept (uWSGI sets 0)", |c, v| { c.cfg.logging.daemonize = Some(p(v)); Ok(()) }),
    opt(&["daemonize2"], None, Value("LOGFILE"), Different, Logging, "detach after loading the app and log to LOGFILE", "the command returns once a worker has loaded the app, or exits 1 naming the log file; the umask is kept (uWSGI sets 0)", |c, v| { c.cfg.logging.daemonize2 = Some(p(v)); Ok(()) }),
    opt(&["log-reopen"], None, Switch, Different, Logging, "reopen the log file on reload (logrotate)", "a reload (SIGHUP, rolling) reopens the log files; SIGUSR1 reopens them without a reload, with or without this option (uWSGI: SIGUSR1 prints stats)", |c, v| { c.cfg.logging.reopen = flag(c.name, v)?; Ok(()) }),
    opt(&["touch-logreopen"], None, Value("FILE"), Same, Logging, "reopen the log files when FILE is touched", "", |c, v| { c.cfg.logging.touch_reopen.push(p(v)); Ok(()) }),
    opt(&["touch-logrotate"], None, Value("FILE"), Same, Logging, "rotate the log files when FILE is touched", "", |c, v| { c.cfg.logging.touch_rotate.push(p(v)); Ok(()) }),
    opt(&["log-maxsize"], None, Value("BYTES"), Same, Logging, "rotate the log file at BYTES", "", |c, v| { c.cfg.logging.maxsize = bytes(c.name, v)?; Ok(()) }),
    opt(&["log-backupname"], None, Value("FILE"), Same, Logging, "name of the rotated log file", "", |c, v| { c.cfg.logging.backupname = Some(p(v)); Ok(()) }),
    opt(&["log-master"], None, Switch, Same, Logging, "the master writes every log line", "", |c, v| { c.cfg.logging.master = flag(c.name, v)?; Ok(()) }),
    opt(&["threaded-logger"], None, Switch, NoEffect, Logging, "write logs from a thread of the master", "no log write ever waits: lines an output cannot take are dropped and counted", |c, v| { c.cfg.logging.threaded = flag(c.name, v)?; Ok(()) }),
    opt(&["log-date", "logdate"], None, Optional("FORMAT"), Same, Logging, "prefix log lines with the date (or a strftime FORMAT)", "", |c, v| { c.cfg.logging.date = log_date(v); Ok(()) }),
    opt(&["log-format", "logformat"], None, Value("FORMAT"), Same, Logging, "request log line format with %(var) fields", "", |c, v| { c.cfg.logging.format = Some(t(v).to_string()); Ok(()) }),
    opt(&["logformat-strftime", "log-format-strftime"], None, Switch, Same, Logging, "apply strftime to the request log format", "", |c, v| { c.cfg.logging.format_strftime = flag(c.name, v)?; Ok(()) }),
    opt(&["log-4xx"], None, Switch, Same, Logging, "log 4xx responses even with --disable-logging", "", |c, v| { c.cfg.logging.log_4xx = flag(c.name, v)?; Ok(()) }),
    opt(&["log-5xx"], None, Switch, Same, Logging, "log 5xx responses even with --disable-logging", "", |c, v| { c.cfg.logging.log_5xx = flag(c.name, v)?; Ok(()) }),
    opt(&["log-slow"], None, Value("MS"), Same, Logging, "log requests slower than MS milliseconds even with --disable-logging", "", |c, v| { c.cfg.logging.slow_ms = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["log-big"], None, Value("BYTES"), Same, Logging, "log responses bigger than BYTES even with --disable-logging", "", |c, v| { c.cfg.logging.big = bytes(c.name, v)?; Ok(()) }),
    opt(&["log-zero"], None, Switch, Same, Logging, "log responses without a body even with --disable-logging", "", |c, v| { c.cfg.logging.zero = flag(c.name, v)?; Ok(()) }),
    opt(&["log-ioerror"], None, Switch, Different, Logging, "log requests with I/O errors even with --disable-logging", "logs a request whose response could not be written (uWSGI asks for read and write errors both)", |c, v| { c.cfg.logging.ioerror = flag(c.name, v)?; Ok(()) }),
    opt(&["log-micros"], None, Switch, Same, Logging, "response time in microseconds in the request log", "", |c, v| { c.cfg.logging.micros = flag(c.name, v)?; Ok(()) }),
    opt(&["log-x-forwarded-for"], None, Switch, Same, Logging, "log the X-Forwarded-For address instead of the peer's", "", |c, v| { c.cfg.logging.x_forwarded_for = flag(c.name, v)?; Ok(()) }),
    opt(&["logger"], None, Value("[NAME] SPEC"), Same, Logging, "add a logger: file:PATH, fd:N, stdio, syslog[:TAG[,FACILITY]], socket:ADDR", "", |c, v| { let l = logger(c.name, t(v))?; c.cfg.logging.loggers.push(l); Ok(()) }),
    opt(&["req-logger"], None, Value("[NAME] SPEC"), Same, Logging, "add a request logger (as --logger)", "", |c, v| { let l = logger(c.name, t(v))?; c.cfg.logging.req_loggers.push(l); Ok(()) }),
    opt(&["log-route"], None, Value("LOGGER REGEXP"), Same, Logging, "send log lines matching REGEXP to the named logger", "", |c, v| { let r = log_route(c.name, t(v))?; c.cfg.logging.routes.push(r); Ok(()) }),
    opt(&["log-req-route"], None, Value("LOGGER REGEXP"), Same, Logging, "send request log lines matching REGEXP to the named logger", "", |c, v| { let r = log_route(c.name, t(v))?; c.cfg.logging.req_routes.push(r); Ok(()) }),
    opt(&["log-encoder"], None, Value("ENCODER"), Same, Logging, "add an encoder to the log chain: prefix, suffix, nl, format, json (NAME[:LOGGER] ARGS)", "", |c, v| { c.cfg.logging.encoders.push(t(v).to_string()); Ok(()) }),
    opt(&["log-req-encoder"], None, Value("ENCODER"), Same, Logging, "add an encoder to the request log chain (as --log-encoder)", "", |c, v| { c.cfg.logging.req_encoders.push(t(v).to_string()); Ok(()) }),
    opt(&["log-drain"], None, Value("REGEXP"), Same, Logging, "drop log lines matching REGEXP", "", |c, v| { c.cfg.logging.drain.push(t(v).to_string()); Ok(()) }),
    opt(&["logfile-chown"], None, Switch, Same, Logging, "chown the log file to --uid/--gid", "", |c, v| { c.cfg.logging.chown = flag(c.name, v)?; Ok(()) }),
    opt(&["logfile-chmod"], None, Value("MODE"), Same, Logging, "chmod the log file", "", |c, v| { c.cfg.logging.chmod = Some(mode(c.name, v)?); Ok(()) }),
    opt(&["log-master-bufsize"], None, Value("BYTES"), NoEffect, Logging, "buffer size of the master's logger", "the master reads the workers' lines whole, through 1 MiB pipes: no line is cut at a buffer size", |c, v| { c.cfg.logging.master_bufsize = bytes(c.name, v)?; Ok(()) }),

    // ---- static files
    opt(&["static-map"], None, Value("MOUNT=PATH"), Same, Static, "serve the files under PATH at MOUNT", "a directory or a single file; sent with sendfile(2) by offload threads; Content-Type, Last-Modified, If-Modified-Since (304), HEAD, and a single byte Range (206/416, always honoured: uWSGI needs --honour-range; If-Range as RFC 9110). A path that resolves outside the mapped directory (.., %2e%2e, symlinks) goes to the app, as in uWSGI", |c, v| { let m = static_map(c.name, t(v), false)?; c.cfg.statics.maps.push(m); Ok(()) }),
    opt(&["static-map2"], None, Value("MOUNT=PATH"), Same, Static, "like --static-map, appending the whole request path to PATH", "", |c, v| { let m = static_map(c.name, t(v), true)?; c.cfg.statics.maps.push(m); Ok(()) }),
    opt(&["check-static"], None, Value("DIR"), Same, Static, "serve a request from DIR when the file exists there", "", |c, v| { c.cfg.statics.check.push(p(v)); Ok(()) }),
    opt(&["static-index"], None, Value("FILE"), Same, Static, "file served for a directory (index.html)", "", |c, v| { c.cfg.statics.index.push(t(v).to_string()); Ok(()) }),
    opt(&["static-skip-ext"], None, Value("EXT"), Same, Static, "never serve files with this extension statically", "", |c, v| { c.cfg.statics.skip_ext.push(t(v).to_string()); Ok(()) }),
    opt(&["static-safe"], None, Value("DIR"), Same, Static, "allow symlinks pointing into DIR", "a file whose real path is under DIR (whole path components) may be served through a symlink", |c, v| { c.cfg.statics.safe.push(p(v)); Ok(()) }),
    opt(&["static-expires"], None, Value("REGEXP SECONDS"), Same, Static, "Expires header for files whose name matches: now + SECONDS", "", |c, v| { let x = static_expires(c.name, t(v), ExpiresOn::Filename, false)?; c.cfg.statics.expires.push(x); Ok(()) }),
    opt(&["static-expires-mtime"], None, Value("REGEXP SECONDS"), Same, Static, "like --static-expires, counting SECONDS from the file's modification time", "", |c, v| { let x = static_expires(c.name, t(v), ExpiresOn::Filename, true)?; c.cfg.statics.expires.push(x); Ok(()) }),
    opt(&["static-expires-uri"], None, Value("REGEXP SECONDS"), Same, Static, "Expires header for request URIs that match: now + SECONDS", "", |c, v| { let x = static_expires(c.name, t(v), ExpiresOn::Uri, false)?; c.cfg.statics.expires.push(x); Ok(()) }),
    opt(&["static-expires-uri-mtime"], None, Value("REGEXP SECONDS"), Same, Static, "like --static-expires-uri, counting SECONDS from the file's modification time", "", |c, v| { let x = static_expires(c.name, t(v), ExpiresOn::Uri, true)?; c.cfg.statics.expires.push(x); Ok(()) }),
    opt(&["static-expires-path-info"], None, Value("REGEXP SECONDS"), Same, Static, "Expires header for PATH_INFOs that match: now + SECONDS", "", |c, v| { let x = static_expires(c.name, t(v), ExpiresOn::PathInfo, false)?; c.cfg.statics.expires.push(x); Ok(()) }),
    opt(&["static-expires-path-info-mtime"], None, Value("REGEXP SECONDS"), Same, Static, "like --static-expires-path-info, counting SECONDS from the file's modification time", "", |c, v| { let x = static_expires(c.name, t(v), ExpiresOn::PathInfo, true)?; c.cfg.statics.expires.push(x); Ok(()) }),
    opt(&["static-expires-type"], None, Value("TYPE=SECONDS"), Same, Static, "Expires header by content type: now + SECONDS", "", |c, v| { let x = static_expires(c.name, t(v), ExpiresOn::ContentType, false)?; c.cfg.statics.expires.push(x); Ok(()) }),
    opt(&["static-expires-type-mtime"], None, Value("TYPE=SECONDS"), Same, Static, "like --static-expires-type, counting SECONDS from the file's modification time", "", |c, v| { let x = static_expires(c.name, t(v), ExpiresOn::ContentType, true)?; c.cfg.statics.expires.push(x); Ok(()) }),
    opt(&["static-gzip-all"], None, Switch, Same, Static, "serve FILE.gz for FILE when the client accepts gzip", "", |c, v| { c.cfg.statics.gzip_all = flag(c.name, v)?; Ok(()) }),
    opt(&["static-gzip-dir", "static-gzip-prefix"], None, Value("DIR"), Different, Static, "like --static-gzip-all for files under DIR", "a relative DIR is taken from the working directory (uWSGI compares it with the file's absolute path, so it never matches); FILE.br is preferred when the client accepts br, as in uWSGI", |c, v| { c.cfg.statics.gzip_dirs.push(p(v)); Ok(()) }),
    opt(&["static-gzip-ext", "static-gzip-suffix"], None, Value("EXT"), Same, Static, "like --static-gzip-all for files with this extension", "", |c, v| { c.cfg.statics.gzip_exts.push(t(v).to_string()); Ok(()) }),
    opt(&["mimefile", "mime-file"], None, Value("FILE"), Same, Static, "mime types file (default /etc/mime.types)", "", |c, v| { c.cfg.statics.mimefiles.push(p(v)); Ok(()) }),
    opt(&["offload-threads"], None, Value("N"), Different, Static, "threads per worker that send static files (0 = none)", "static files are always sent by offload threads, at least 1 per worker when static files are configured (uWSGI: none unless N > 0); the app's wsgi.file_wrapper responses are still sent by the request thread", |c, v| { c.cfg.statics.offload_threads = int(c.name, v, 0, 1024)? as usize; Ok(()) }),

    // ---- worker lifecycle
    opt(&["reload-on-rss"], None, Value("MB"), Different, Lifecycle, "recycle a worker whose RSS exceeds MB megabytes", "checked by the master every 200 ms, not by the worker after each request; the replacement starts before the worker retires", |c, v| { c.cfg.lifecycle.reload_on_rss = megabytes(c.name, v)?; Ok(()) }),
    opt(&["reload-on-as"], None, Value("MB"), Different, Lifecycle, "recycle a worker whose address space exceeds MB megabytes", "checked by the master every 200 ms, not by the worker after each request; the replacement starts before the worker retires", |c, v| { c.cfg.lifecycle.reload_on_as = megabytes(c.name, v)?; Ok(()) }),
    opt(&["evil-reload-on-rss"], None, Value("MB"), Same, Lifecycle, "kill a worker whose RSS exceeds MB megabytes (checked by the master)", "", |c, v| { c.cfg.lifecycle.evil_reload_on_rss = megabytes(c.name, v)?; Ok(()) }),
    opt(&["evil-reload-on-as"], None, Value("MB"), Same, Lifecycle, "kill a worker whose address space exceeds MB megabytes (checked by the master)", "", |c, v| { c.cfg.lifecycle.evil_reload_on_as = megabytes(c.name, v)?; Ok(()) }),
    opt(&["max-worker-lifetime"], None, Value("SECONDS"), Same, Lifecycle, "recycle a worker after SECONDS", "", |c, v| { c.cfg.lifecycle.max_worker_lifetime = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["max-worker-lifetime-delta"], None, Value("SECONDS"), Same, Lifecycle, "add worker id x SECONDS to --max-worker-lifetime", "", |c, v| { c.cfg.lifecycle.max_worker_lifetime_delta = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["min-worker-lifetime"], None, Value("SECONDS"), Same, Lifecycle, "never recycle a worker younger than SECONDS (default 10)", "", |c, v| { c.cfg.lifecycle.min_worker_lifetime = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["max-requests-delta"], None, Value("N"), Same, Lifecycle, "add worker id x N to --max-requests", "", |c, v| { c.cfg.lifecycle.max_requests_delta = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["reload-on-exception"], None, Switch, Same, Lifecycle, "recycle a worker when the app raises", "", |c, v| { c.cfg.lifecycle.reload_on_exception = flag(c.name, v)?; Ok(()) }),
    opt(&["cheaper"], None, Value("N"), Same, Lifecycle, "adaptive worker count: keep at least N workers, up to --processes", "", |c, v| { c.cfg.lifecycle.cheaper.min = cheaper(c, v)?; Ok(()) }),
    opt(&["cheaper-initial"], None, Value("N"), Same, Lifecycle, "workers started at first in cheaper mode", "", |c, v| { c.cfg.lifecycle.cheaper.initial = Some(int(c.name, v, 0, 1024)? as usize); Ok(()) }),
    opt(&["cheaper-step"], None, Value("N"), Same, Lifecycle, "workers added at a time in cheaper mode", "", |c, v| { c.cfg.lifecycle.cheaper.step = int(c.name, v, 1, 1024)? as usize; Ok(()) }),
    opt(&["cheaper-algo"], None, Value("ALGO"), Same, Lifecycle, "cheaper algorithm: spare (default), spare2, backlog, busyness, manual", "", |c, v| { c.cfg.lifecycle.cheaper.algo = cheaper_algo(c.name, t(v))?; Ok(()) }),
    opt(&["cheaper-overload"], None, Value("SECONDS"), Same, Lifecycle, "how long all workers must be busy before adding one", "", |c, v| { c.cfg.lifecycle.cheaper.overload = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["cheaper-rss-limit-soft"], None, Value("BYTES"), Same, Lifecycle, "add no workers while all workers' RSS is above BYTES", "", |c, v| { c.cfg.lifecycle.cheaper.rss_limit_soft = bytes(c.name, v)?; Ok(()) }),
    opt(&["cheaper-rss-limit-hard"], None, Value("BYTES"), Same, Lifecycle, "retire workers while all workers' RSS is above BYTES", "", |c, v| { c.cfg.lifecycle.cheaper.rss_limit_hard = bytes(c.name, v)?; Ok(()) }),
    opt(&["cheaper-busyness-max"], None, Value("N"), Same, Lifecycle, "busyness algo: add workers above N percent busy", "", |c, v| { c.cfg.lifecycle.cheaper.busyness_max = Some(int(c.name, v, 0, 100)?); Ok(()) }),
    opt(&["cheaper-busyness-min"], None, Value("N"), Same, Lifecycle, "busyness algo: retire workers below N percent busy", "", |c, v| { c.cfg.lifecycle.cheaper.busyness_min = Some(int(c.name, v, 0, 100)?); Ok(()) }),
    opt(&["cheaper-busyness-multiplier"], None, Value("N"), Same, Lifecycle, "busyness algo: cycles a worker must stay idle before it is retired", "", |c, v| { c.cfg.lifecycle.cheaper.busyness_multiplier = Some(int(c.name, v, 0, u64::MAX)?); Ok(()) }),
    opt(&["cheaper-busyness-penalty"], None, Value("N"), Same, Lifecycle, "busyness algo: penalty for a worker retired too early", "", |c, v| { c.cfg.lifecycle.cheaper.busyness_penalty = Some(int(c.name, v, 0, u64::MAX)?); Ok(()) }),
    opt(&["cheaper-busyness-backlog-alert"], None, Value("N"), Same, Lifecycle, "busyness algo: add workers when the listen queue exceeds N", "", |c, v| { c.cfg.lifecycle.cheaper.busyness_backlog_alert = Some(int(c.name, v, 0, u64::MAX)?); Ok(()) }),
    opt(&["cheaper-busyness-backlog-step"], None, Value("N"), Same, Lifecycle, "busyness algo: workers added on a backlog alert", "", |c, v| { c.cfg.lifecycle.cheaper.busyness_backlog_step = Some(int(c.name, v, 0, u64::MAX)?); Ok(()) }),
    opt(&["cheaper-busyness-verbose"], None, Switch, Same, Lifecycle, "busyness algo: log its decisions", "", |c, v| { c.cfg.lifecycle.cheaper.verbose = flag(c.name, v)?; Ok(()) }),
    opt(&["harakiri-graceful-timeout"], None, Value("SECONDS"), Same, Lifecycle, "on harakiri, signal the worker first and kill it after SECONDS", "", |c, v| { c.cfg.lifecycle.harakiri_graceful_timeout = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["harakiri-graceful-signal"], None, Value("SIGNAL"), Same, Lifecycle, "signal of a graceful harakiri (default SIGTERM)", "", |c, v| { c.cfg.lifecycle.harakiri_graceful_signal = signal(c.name, v)?; Ok(()) }),
    opt(&["touch-reload"], None, Value("FILE"), Different, Lifecycle, "graceful reload when FILE is touched", "reloads the workers one at a time (as SIGHUP does here), not all at once", |c, v| { c.cfg.lifecycle.touch_reload.push(p(v)); Ok(()) }),
    opt(&["touch-chain-reload", "touch-workers-reload"], None, Value("FILE"), Same, Lifecycle, "reload the workers one at a time when FILE is touched", "", |c, v| { c.cfg.lifecycle.touch_workers_reload.push(p(v)); Ok(()) }),
    opt(&["master-fifo"], None, Value("FILE"), Different, Lifecycle, "control FIFO: r/R reload, q/Q stop, c/C workers, w/f/l, 0-9 select", "+ and - need cheaper mode and are ignored without it; C lets every worker finish its requests (uWSGI kills them) and starts them again at the next connection; L reopens the log files like l (--log-maxsize rotates)", |c, v| { c.cfg.lifecycle.master_fifo.push(p(v)); Ok(()) }),
    opt(&["attach-daemon", "attach-control-daemon"], None, Value("COMMAND"), Same, Lifecycle, "run COMMAND beside the workers, restart it when it dies, stop it at exit (a control daemon's death stops the server)", "", |c, v| { let mut d = Daemon::new(t(v)); d.control = c.name.contains("control"); c.cfg.lifecycle.daemons.push(d); Ok(()) }),
    opt(&["smart-attach-daemon", "smart-attach-daemon2"], None, Value("PIDFILE COMMAND"), Same, Lifecycle, "like --attach-daemon for a COMMAND that writes PIDFILE (smart-attach-daemon2: the master writes it); it outlives reloads and the server", "", |c, v| { let d = smart_daemon(c.name, t(v))?; c.cfg.lifecycle.daemons.push(d); Ok(()) }),
    opt(&["attach-daemon2"], None, Value("KEY=VALUE,..."), Same, Lifecycle, "--attach-daemon with options: cmd, pidfile, daemonize, freq, control, touch, stopsignal, reloadsignal, stdin, uid, gid, chdir, max_throttle, notifypid", "", |c, v| { let d = daemon2(c.name, t(v))?; c.cfg.lifecycle.daemons.push(d); Ok(()) }),
    opt(&["cron2"], None, Value("[minute=M,hour=H,day=D,month=MON,week=W,unique=1,harakiri=N] CMD"), Same, Lifecycle, "run CMD at uWSGI cron times given as keys (missing ones: any)", "", |c, v| { let j = values::cron2(c.name, t(v))?; c.cfg.lifecycle.crons.push(j); Ok(()) }),
    opt(&["cron-harakiri"], None, Value("SECONDS"), Same, Lifecycle, "kill a cron command (its process group) still running after SECONDS", "", |c, v| { c.cfg.lifecycle.cron_harakiri = int(c.name, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["cron", "unique-cron"], None, Value("M H D MON WDAY CMD"), Same, Lifecycle, "run CMD at uWSGI cron times (-1 = any, -N = every N)", "", |c, v| { let unique = c.name.contains("unique"); let j = values::cron(c.name, t(v), unique)?; c.cfg.lifecycle.crons.push(j); Ok(()) }),
    opt(&["hook-asap"], None, Value("ACTION:ARGS"), Same, Lifecycle, "run a hook as soon as possible", "", |c, v| hook_row(c, v, HookPhase::Asap)),
    opt(&["hook-master-start"], None, Value("ACTION:ARGS"), Same, Lifecycle, "run a hook when the master starts (e.g. unix_signal:15 gracefully_kill_them_all)", "", |c, v| hook_row(c, v, HookPhase::MasterStart)),
    opt(&["hook-pre-app"], None, Value("ACTION:ARGS"), Same, Lifecycle, "run a hook before the app is loaded", "", |c, v| hook_row(c, v, HookPhase::PreApp)),
    opt(&["hook-post-app"], None, Value("ACTION:ARGS"), Same, Lifecycle, "run a hook after the app is loaded", "", |c, v| hook_row(c, v, HookPhase::PostApp)),
    opt(&["hook-post-fork"], None, Value("ACTION:ARGS"), Same, Lifecycle, "run a hook in every worker after fork", "", |c, v| hook_row(c, v, HookPhase::PostFork)),
    opt(&["hook-accepting"], None, Value("ACTION:ARGS"), Same, Lifecycle, "run a hook when a worker starts accepting", "", |c, v| hook_row(c, v, HookPhase::Accepting)),
    opt(&["hook-accepting1"], None, Value("ACTION:ARGS"), Same, Lifecycle, "run a hook when worker 1 starts accepting", "", |c, v| hook_row(c, v, HookPhase::Accepting1)),
    opt(&["hook-accepting-once"], None, Value("ACTION:ARGS"), Same, Lifecycle, "run a hook when a worker starts accepting for the first time", "", |c, v| hook_row(c, v, HookPhase::AcceptingOnce)),
    opt(&["hook-accepting1-once"], None, Value("ACTION:ARGS"), Same, Lifecycle, "run a hook when worker 1 starts accepting for the first time", "", |c, v| hook_row(c, v, HookPhase::Accepting1Once)),
    opt(&["hook-as-root"], None, Value("ACTION:ARGS"), Same, Lifecycle, "run a hook in the master before anything drops privileges", "", |c, v| hook_row(c, v, HookPhase::AsRoot)),
    opt(&["hook-as-user"], None, Value("ACTION:ARGS"), Same, Lifecycle, "run a hook after dropping privileges", "", |c, v| hook_row(c, v, HookPhase::AsUser)),
    opt(&["exec-asap"], None, Value("COMMAND"), Same, Lifecycle, "run COMMAND as soon as possible", "", |c, v| exec_row(c, v, HookPhase::Asap)),
    opt(&["exec-pre-app"], None, Value("COMMAND"), Same, Lifecycle, "run COMMAND before the app is loaded", "", |c, v| exec_row(c, v, HookPhase::PreApp)),
    opt(&["exec-post-app"], None, Value("COMMAND"), Same, Lifecycle, "run COMMAND after the app is loaded", "", |c, v| exec_row(c, v, HookPhase::PostApp)),
    opt(&["exec-as-root"], None, Value("COMMAND"), Same, Lifecycle, "run COMMAND before dropping privileges", "", |c, v| exec_row(c, v, HookPhase::AsRoot)),
    opt(&["exec-as-user"], None, Value("COMMAND"), Same, Lifecycle, "run COMMAND after dropping privileges", "", |c, v| exec_row(c, v, HookPhase::AsUser)),
    opt(&["exit-on-reload"], None, Switch, Same, Lifecycle, "exit instead of reloading (on SIGHUP)", "", |c, v| { c.cfg.lifecycle.exit_on_reload = flag(c.name, v)?; Ok(()) }),
    opt(&["idle"], None, Value("SECONDS"), Same, Lifecycle, "stop the workers after SECONDS without requests (cheap mode); bare --idle with --profile/--top: sample idle cores too", "", idle_option),
    opt(&["die-on-idle"], None, Switch, Same, Lifecycle, "with --idle: exit instead", "", |c, v| { c.cfg.lifecycle.die_on_idle = flag(c.name, v)?; Ok(()) }),

    // ---- sockets and requests
    opt(&["https", "https-socket"], None, Value("ADDR,CERT,KEY"), NotYet, Sockets, "add an HTTPS listener (TLS in the workers)", "meanwhile terminate TLS in the reverse proxy", |c, v| { let h = https(c.name, t(v))?; c.cfg.requests.https.push(h); Ok(()) }),
    opt(&["chown-socket"], None, Value("USER[:GROUP]"), Same, Sockets, "chown unix sockets", "", |c, v| { c.cfg.requests.chown_socket = Some(owner(c.name, t(v))?); Ok(()) }),
    opt(&["umask"], None, Value("MODE"), Same, Sockets, "set the umask (sockets and files created)", "", |c, v| { c.cfg.requests.umask = Some(values::umask(c.name, v)?); Ok(()) }),
    opt(&["http-timeout"], None, Value("SECONDS"), NoEffect, Sockets, "timeout of HTTP connections (uWSGI's router)", "uwsgi-rs has no HTTP router process: the workers serve HTTP themselves, and a connection is cut only after --socket-timeout of silence (a long response to a reading client never is)", |c, v| { c.cfg.requests.http_timeout = Some(int(c.name, v, 1, u64::MAX)?); Ok(()) }),
    opt(&["http-enable-proxy-protocol", "enable-proxy-protocol"], None, Switch, Same, Sockets, "accept the PROXY protocol (v1/v2) and take REMOTE_ADDR from it", "HTTP listeners: a PROXY v1 or v2 header at the start of a connection sets REMOTE_ADDR and REMOTE_PORT (LOCAL/UNKNOWN keep the peer's); without one the connection is served as usual, as in uWSGI; a malformed one is answered 400 and closed", |c, v| { c.cfg.requests.proxy_protocol = flag(c.name, v)?; Ok(()) }),
    opt(&["post-buffering"], None, Value("BYTES"), Same, Sockets, "read request bodies over BYTES to a temp file before calling the app", "Content-Length bodies under BYTES are read into memory, larger ones into an unlinked temporary file, before the app runs (a chunked body streams)", |c, v| { c.cfg.requests.post_buffering = post_buffering(c, v)?; Ok(()) }),
    opt(&["post-buffering-bufsize"], None, Value("BYTES"), Same, Sockets, "buffer size for --post-buffering reads", "", |c, v| { c.cfg.requests.post_buffering_bufsize = bytes(c.name, v)?; Ok(()) }),
    opt(&["add-header"], None, Value("NAME: VALUE"), Same, Sockets, "add a header to every response", "a Connection: close among them closes the connection after each response", |c, v| { let h = header(c.name, t(v))?; c.cfg.requests.add_headers.push(h); Ok(()) }),
    opt(&["del-header"], None, Value("NAME"), Same, Sockets, "remove a header from every response", "", |c, v| { c.cfg.requests.del_headers.push(t(v).to_string()); Ok(()) }),
    opt(&["vhost"], None, Switch, Different, Sockets, "virtual hosting: choose the app by SERVER_NAME", "apps are chosen by mount point (SCRIPT_NAME), never by host, and none is loaded from UWSGI_SCRIPT/UWSGI_MODULE request variables: a deployment with one app (--module, --wsgi-file) serves as in uWSGI, except that request log lines do not start with the host", |c, v| { flag(c.name, v)?; Ok(()) }),
    opt(&["manage-script-name"], None, Switch, Same, Sockets, "split SCRIPT_NAME from PATH_INFO by the --mount points", "", |c, v| { c.cfg.requests.manage_script_name = flag(c.name, v)?; Ok(()) }),
    opt(&["mount"], None, Value("MOUNT=APP"), Same, Sockets, "serve APP (file or module) under MOUNT", "", |c, v| { let m = mount(c.name, t(v))?; c.cfg.requests.mounts.push(m); Ok(()) }),
    opt(&["route"], None, Value("REGEXP ACTION"), Different, Sockets, "apply ACTION (addheader, return, redirect, static...) to requests whose PATH_INFO matches", "actions honoured: addheader, delheader/remheader, return/break-with-status, break, redirect/redirect-302/redirect-301/redirect-permanent, static, continue, last, log, donotlog; a route with another action is ignored (named at start). route-if conditions: equal, startswith, endswith, regexp, exists, isfile, isdir", |c, v| route_row(c, v, RouteSubject::PathInfo)),
    opt(&["route-uri"], None, Value("REGEXP ACTION"), Different, Sockets, "like --route on REQUEST_URI", "actions honoured: addheader, delheader/remheader, return/break-with-status, break, redirect/redirect-302/redirect-301/redirect-permanent, static, continue, last, log, donotlog; a route with another action is ignored (named at start). route-if conditions: equal, startswith, endswith, regexp, exists, isfile, isdir", |c, v| route_row(c, v, RouteSubject::RequestUri)),
    opt(&["route-host"], None, Value("REGEXP ACTION"), Different, Sockets, "like --route on the Host header", "actions honoured: addheader, delheader/remheader, return/break-with-status, break, redirect/redirect-302/redirect-301/redirect-permanent, static, continue, last, log, donotlog; a route with another action is ignored (named at start). route-if conditions: equal, startswith, endswith, regexp, exists, isfile, isdir", |c, v| route_row(c, v, RouteSubject::Host)),
    opt(&["route-qs"], None, Value("REGEXP ACTION"), Different, Sockets, "like --route on QUERY_STRING", "actions honoured: addheader, delheader/remheader, return/break-with-status, break, redirect/redirect-302/redirect-301/redirect-permanent, static, continue, last, log, donotlog; a route with another action is ignored (named at start). route-if conditions: equal, startswith, endswith, regexp, exists, isfile, isdir", |c, v| route_row(c, v, RouteSubject::QueryString)),
    opt(&["route-if"], None, Value("COND:ARG ACTION"), Different, Sockets, "apply ACTION when a condition holds", "actions honoured: addheader, delheader/remheader, return/break-with-status, break, redirect/redirect-302/redirect-301/redirect-permanent, static, continue, last, log, donotlog; a route with another action is ignored (named at start). route-if conditions: equal, startswith, endswith, regexp, exists, isfile, isdir", |c, v| route_row(c, v, RouteSubject::If { negate: false, condition: String::new() })),
    opt(&["route-if-not"], None, Value("COND:ARG ACTION"), Different, Sockets, "apply ACTION when a condition does not hold", "actions honoured: addheader, delheader/remheader, return/break-with-status, break, redirect/redirect-302/redirect-301/redirect-permanent, static, continue, last, log, donotlog; a route with another action is ignored (named at start). route-if conditions: equal, startswith, endswith, regexp, exists, isfile, isdir", |c, v| route_row(c, v, RouteSubject::If { negate: true, condition: String::new() })),
    opt(&["route-run"], None, Value("ACTION"), Different, Sockets, "apply ACTION to every request", "actions honoured: addheader, delheader/remheader, return/break-with-status, break, redirect/redirect-302/redirect-301/redirect-permanent, static, continue, last, log, donotlog; a route with another action is ignored (named at start). route-if conditions: equal, startswith, endswith, regexp, exists, isfile, isdir", |c, v| route_row(c, v, RouteSubject::Always)),
    opt(&["disable-write-exception"], None, Switch, Same, Sockets, "no exception in the app when the client has gone", "", |c, v| { c.cfg.requests.disable_write_exception = flag(c.name, v)?; Ok(()) }),
    opt(&["ignore-sigpipe"], None, Switch, NoEffect, Sockets, "do not log SIGPIPE", "SIGPIPE is always ignored, and never logged", |c, v| { c.cfg.requests.ignore_sigpipe = flag(c.name, v)?; Ok(()) }),
    opt(&["ignore-write-errors"], None, Switch, Same, Sockets, "do not log write errors to clients that have gone", "no traceback is logged when the app's write fails because the client has gone", |c, v| { c.cfg.requests.ignore_write_errors = flag(c.name, v)?; Ok(()) }),
    opt(&["honour-stdin"], None, Switch, Same, Sockets, "keep stdin (instead of /dev/null)", "without it workers read stdin from /dev/null, as in uWSGI", |c, v| { c.cfg.requests.honour_stdin = flag(c.name, v)?; Ok(()) }),
    opt(&["reuse-port"], None, Switch, Same, Sockets, "set SO_REUSEPORT on TCP listeners", "on the listeners uwsgi-rs binds; a socket systemd passes has its unit's ReusePort=", |c, v| { c.cfg.requests.reuse_port = flag(c.name, v)?; Ok(()) }),
    opt(&["so-keepalive"], None, Switch, Same, Sockets, "set SO_KEEPALIVE on connections", "set on the TCP listeners uwsgi-rs binds, whose connections inherit it; a socket systemd passes has its unit's KeepAlive=", |c, v| { c.cfg.requests.so_keepalive = flag(c.name, v)?; Ok(()) }),
    opt(&["no-defer-accept"], None, Switch, Same, Sockets, "do not defer accept() on TCP listeners until the first bytes arrive (TCP_DEFER_ACCEPT)", "", |c, v| { c.cfg.requests.no_defer_accept = flag(c.name, v)?; Ok(()) }),
    opt(&["max-fd"], None, Value("N"), Same, Process, "raise the open-files limit to N", "raises the soft and hard open-files limit at start; if refused, says so and goes on", |c, v| { c.cfg.requests.max_fd = Some(int(c.name, v, 1, u64::MAX)?); Ok(()) }),
    opt(&["pidfile2"], None, Value("FILE"), Same, Process, "write the master pid to FILE after dropping privileges", "written with the --uid/--gid user's file-system ids (the master keeps its own); removed at a clean exit, as --pidfile", |c, v| { c.cfg.requests.pidfile2 = Some(p(v)); Ok(()) }),

    // ---- rejected: exit 1 with what to do instead
    opt(&["emperor"], None, Value("DIR"), Rejected, Other, "run the Emperor", "run one uwsgi-rs (one systemd unit) per app", noop),
    opt(&["gevent", "gevent-early-monkey-patch", "gevent-monkey-patch"], None, Value("N"), Rejected, Other, "gevent loop engine", "use --threads (the app must not rely on gevent's monkey patching)", noop),
    opt(&["async", "ugreen", "greenlet"], None, Value("N"), Rejected, Other, "async cores", "use --threads", noop),
    opt(&["cache2", "cache"], None, Value("SPEC"), Rejected, Other, "uWSGI's shared cache", "use an external cache (Redis, memcached); uwsgi.cache_* is not available", noop),
    opt(&["spooler", "spooler-processes", "spooler-import"], Some('Q'), Value("DIR"), Rejected, Other, "uWSGI's spooler", "run a task queue (Celery, RQ) beside the server", noop),
    opt(&["mule", "mules", "farm"], None, Optional("SCRIPT"), Rejected, Other, "mule processes", "run the script as its own service (another systemd unit)", noop),
    opt(&["legion"], None, Value("SPEC"), Rejected, Other, "uWSGI Legion clustering", "use your orchestrator's leader election", noop),
    opt(&["fastrouter", "subscribe-to"], None, Value("ADDR"), Rejected, Other, "uWSGI routers and subscriptions", "use a reverse proxy (nginx, haproxy)", noop),
];

/// A switch word (`true`, `on`...) given to a numeric option: uWSGI reads it
/// with atoi/strtoul, which find no digits, so the value is 0 (`cheaper = true`
/// turns cheaper mode off, `post-buffering = true` turns buffering off). Keep
/// that, and say so in the start-up report. `None` when the value is not a word.
fn switch_word_is_zero(
    c: &mut Ctx<'_>,
    v: Option<&str>,
    zero_means: &str,
    give: &str,
) -> Option<u64> {
    let word = t(v).trim();
    if word.starts_with(|ch: char| ch.is_ascii_digit()) || flag(c.name, v).is_err() {
        return None;
    }
    c.warnings.push(format!(
        "{} = {word} is 0 ({zero_means}) in uWSGI, which reads a number here; give one (e.g. {give})",
        c.name.trim_start_matches('-'),
    ));
    Some(0)
}

/// `post-buffering` is a size; a switch word is 0 as in uWSGI.
fn post_buffering(c: &mut Ctx<'_>, v: Option<&str>) -> Result<u64, ConfigError> {
    match switch_word_is_zero(c, v, "no buffering", "65536") {
        Some(zero) => Ok(zero),
        None => bytes(c.name, v),
    }
}

/// `cheaper` is a number of workers; a switch word is 0 (off) as in uWSGI.
fn cheaper(c: &mut Ctx<'_>, v: Option<&str>) -> Result<usize, ConfigError> {
    match switch_word_is_zero(c, v, "cheaper mode off", "2") {
        Some(zero) => Ok(zero as usize),
        None => Ok(int(c.name, v, 0, 1024)? as usize),
    }
}

/// Whether a uWSGI option takes a value, for the ones without a row here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UwsgiArg {
    Required,
    None,
    Optional,
}

/// A uWSGI 2.0 option uwsgi-rs has no row for (uwsgi_options.txt): it is
/// ignored with a warning, like an unknown key, but named as what it is.
pub fn uwsgi_only(name: &str) -> Option<UwsgiArg> {
    if find_long(name).is_some() {
        return None;
    }
    include_str!("uwsgi_options.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| match l.split_once(' ') {
            Some((n, a)) if n == name => Some(match a {
                "r" => UwsgiArg::Required,
                "o" => UwsgiArg::Optional,
                _ => UwsgiArg::None,
            }),
            _ => None,
        })
}

/// The row for a long name.
pub fn find_long(name: &str) -> Option<&'static OptSpec> {
    OPTIONS.iter().find(|o| o.names.contains(&name))
}

/// The row for a short letter.
pub fn find_short(c: char) -> Option<&'static OptSpec> {
    OPTIONS.iter().find(|o| o.short == Some(c))
}

/// Every long name, for "did you mean".
pub fn all_names() -> impl Iterator<Item = &'static str> {
    OPTIONS.iter().flat_map(|o| o.names.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        let mut longs = Vec::new();
        let mut shorts = Vec::new();
        for o in OPTIONS {
            assert!(!o.names.is_empty());
            assert!(!o.help.is_empty());
            for n in o.names {
                assert!(
                    !n.starts_with('-') && !n.contains('=') && !n.is_empty(),
                    "{n}"
                );
                assert!(
                    n.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                    "{n}"
                );
                assert!(!longs.contains(n), "duplicate --{n}");
                longs.push(*n);
            }
            if let Some(c) = o.short {
                assert!(!shorts.contains(&c), "duplicate -{c}");
                shorts.push(c);
            }
            // What the operator reads at start must say something.
            if matches!(o.status, Different | NoEffect | Rejected) {
                assert!(!o.note.is_empty(), "--{} needs a note", o.names[0]);
            }
        }
    }

    #[test]
    fn rows_are_uwsgi_options() {
        // Every name of a row that is not uwsgi-rs's own is one of uWSGI's
        // (a typo in the table would accept a typo in a config).
        let names: Vec<&str> = include_str!("uwsgi_options.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for o in OPTIONS.iter().filter(|o| o.status != Own) {
            for n in o.names {
                assert!(
                    names.contains(n) || *n == "end",
                    "--{n} is not a uWSGI option"
                );
            }
        }
        assert_eq!(uwsgi_only("harakiri-no-arh"), Some(UwsgiArg::None));
        assert_eq!(uwsgi_only("cache-blocksize"), Some(UwsgiArg::Required));
        assert_eq!(uwsgi_only("processes"), None);
        assert_eq!(uwsgi_only("vaccum"), None);
    }

    #[test]
    fn families_of_not_yet_rows_are_named() {
        for o in OPTIONS.iter().filter(|o| o.status == NotYet) {
            assert!(
                !matches!(o.family, Core | Syntax | Other),
                "--{} is not honoured yet: give it the family that will implement it",
                o.names[0]
            );
        }
    }
}
