//! uWSGI-compatible command line and ini files -> a validated [`Command`].
//!
//! This module owns:
//! - the option table ([`OPTIONS`]): one row per option with its long names, short
//!   letter, whether it takes a value, its help line and how it applies to [`Config`].
//!   `--help` is generated from the table; adding an option is adding one row;
//! - the argument forms `--flag value`, `--flag=value`, `-x value`, `-xvalue`,
//!   switches (`--master`, `--master=false`), and `--ini FILE[:SECTION]` files
//!   (applied at the position of the `--ini` flag, with `%d`/`%n`/... expansion);
//! - defaults, range checks and the final cross-option validation.
//!
//! It must not: bind sockets, resolve users or groups, touch Python, log, or do any
//! I/O other than reading ini files. It never panics on user input: every problem is
//! a [`ConfigError`] whose message is one line naming the problem and the option.

use std::fmt;
use std::path::{Path, PathBuf};

/// Maximum nesting of `--ini` files that load other ini files.
const MAX_INI_DEPTH: usize = 8;

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
    /// `--help` / `-h`: the full help text, ready to print.
    Help(String),
    /// `--version`: `"uwsgi-rs <version>"`.
    Version(String),
}

/// Every way the command line or an ini file can be wrong. Messages are one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown option: {0}")]
    UnknownOption(String),
    #[error("option {0} is not supported by uwsgi-rs")]
    Unsupported(String),
    #[error("plugin '{plugin}' given to {option} is not supported by uwsgi-rs")]
    UnsupportedPlugin { option: String, plugin: String },
    #[error("option {0} requires a value")]
    MissingValue(String),
    #[error("option {0} requires a non-empty value")]
    EmptyValue(String),
    #[error("invalid value '{value}' for {option}: expected {expected}")]
    InvalidValue {
        option: String,
        value: String,
        expected: String,
    },
    #[error("unexpected argument: {0}")]
    UnexpectedArgument(String),
    #[error("invalid address '{0}': expected :PORT, HOST:PORT, [IPV6]:PORT (port 0-65535) or a unix socket path")]
    InvalidAddress(String),
    #[error("cannot read ini file {path}: {reason}")]
    IniRead { path: String, reason: String },
    #[error("ini file {path} has no [{section}] section")]
    IniMissingSection { path: String, section: String },
    #[error("unknown option '{key}' in ini file {path}:{line}")]
    IniUnknownKey {
        key: String,
        path: String,
        line: usize,
    },
    #[error("invalid line in ini file {path}:{line}: expected KEY = VALUE or [SECTION]")]
    IniSyntax { path: String, line: usize },
    #[error("ini files nested more than {MAX_INI_DEPTH} deep at {0}")]
    IniTooDeep(String),
    /// An option error that came from an ini file line: `"/x.ini:3: <error>"`.
    #[error("{path}:{line}: {error}")]
    InIni {
        path: String,
        line: usize,
        error: Box<ConfigError>,
    },
    #[error("no listener given: use --http, --http-socket or --socket")]
    NoListener,
    #[error("options {0} and {1} are mutually exclusive")]
    Conflict(&'static str, &'static str),
}

/// A listening address: TCP `host:port` or a unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl ListenAddr {
    /// `":8080"` -> `0.0.0.0:8080`; `"127.0.0.1:8080"`; `"[::1]:8080"` -> host `::1`;
    /// `"localhost:80"`. Anything containing `/` or without `:` is a unix socket path.
    /// With a `:`, the port must be a valid u16 and an IPv6 host must be bracketed.
    pub fn parse(s: &str) -> Result<ListenAddr, ConfigError> {
        let bad = || ConfigError::InvalidAddress(s.to_string());
        if s.is_empty() {
            return Err(bad());
        }
        if s.contains('/') || !s.contains(':') {
            return Ok(ListenAddr::Unix(PathBuf::from(s)));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
            if host.is_empty() || host.contains(']') {
                return Err(bad());
            }
            (host, port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
            if host.contains(':') || host.contains('[') || host.contains(']') {
                return Err(bad());
            }
            (if host.is_empty() { "0.0.0.0" } else { host }, port)
        };
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let port: u16 = port.parse().map_err(|_| bad())?;
        Ok(ListenAddr::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            ListenAddr::Tcp { host, port } => write!(f, "{host}:{port}"),
            ListenAddr::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The protocol spoken on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Uwsgi,
}

/// A validated server configuration. See [`OPTIONS`] for the option of each field.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--http`, `--http-socket` -> Http; `-s/--socket/--uwsgi-socket` -> Uwsgi; in order given.
    pub listeners: Vec<(Protocol, ListenAddr)>,
    /// `-w/--module/--wsgi`: `"pkg.mod"` or `"pkg.mod:callable"`, kept verbatim; a
    /// `:callable` suffix overrides `callable` for this module (the caller splits it).
    pub module: Option<String>,
    pub wsgi_file: Option<PathBuf>,
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
    /// `--py-tracebacker-locals`: locals in rich dumps (never in the uWSGI format).
    pub py_tracebacker_locals: bool,
    /// `--py-tracebacker-slow SECONDS`: log slow requests' tracebacks (0 = off).
    pub py_tracebacker_slow: u64,
    /// `--http-underscores-in-headers`: keep HTTP header names containing `_`
    /// (dropped by default: `X_User` and `X-User` are both `HTTP_X_USER`).
    pub http_underscores_in_headers: bool,
    /// Seconds, default 60.
    pub reload_mercy: u64,
    /// Accepted-but-ignored options that were given, by canonical long name without
    /// dashes (e.g. `"vacuum"`), each once, in first-seen order. Use [`option_help`]
    /// for a one-line explanation to log.
    pub ignored: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: Vec::new(),
            module: None,
            wsgi_file: None,
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
            py_tracebacker_locals: false,
            py_tracebacker_slow: 0,
            http_underscores_in_headers: false,
            reload_mercy: 60,
            ignored: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------
// The option table
// ---------------------------------------------------------------------------

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

/// Which part of `--help` an option is listed in, and how it is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Supported.
    Main,
    /// Accepted, validated, recorded in [`Config::ignored`], otherwise no effect.
    Ignored,
    /// A uWSGI option uwsgi-rs rejects with [`ConfigError::Unsupported`].
    Unsupported,
}

type Apply = fn(&mut State, &str, Option<&str>) -> Result<(), ConfigError>;

/// One row of the option table.
pub struct OptSpec {
    /// Long names without dashes; the first is canonical.
    pub names: &'static [&'static str],
    pub short: Option<char>,
    pub arg: Arg,
    pub group: Group,
    pub help: &'static str,
    /// Called with the option name as typed (long form) and the value: always
    /// `Some(non-empty)` for [`Arg::Value`]; possibly `None` otherwise.
    apply: Apply,
}

const fn opt(
    names: &'static [&'static str],
    short: Option<char>,
    arg: Arg,
    group: Group,
    help: &'static str,
    apply: Apply,
) -> OptSpec {
    OptSpec {
        names,
        short,
        arg,
        group,
        help,
        apply,
    }
}

use Arg::{Optional, Switch, Value};
use Group::{Ignored, Main, Unsupported};

/// Every option uwsgi-rs knows, in `--help` order.
#[rustfmt::skip]
pub static OPTIONS: &[OptSpec] = &[
    opt(&["http"], None, Value("ADDR"), Main, "add an HTTP listener (:PORT, HOST:PORT, [IPV6]:PORT or a unix socket path)", |s, _, v| s.listener(Protocol::Http, v)),
    opt(&["http-socket"], None, Value("ADDR"), Main, "add an HTTP listener (same as --http)", |s, _, v| s.listener(Protocol::Http, v)),
    opt(&["socket", "uwsgi-socket"], Some('s'), Value("ADDR"), Main, "add a uwsgi-protocol listener", |s, _, v| s.listener(Protocol::Uwsgi, v)),
    opt(&["module", "wsgi"], Some('w'), Value("MODULE[:CALLABLE]"), Main, "load a WSGI module", |s, o, v| { s.cfg.module = Some(module_value(o, text(v))?); Ok(()) }),
    opt(&["wsgi-file", "file"], None, Value("FILE"), Main, "load a WSGI script file", |s, _, v| { s.cfg.wsgi_file = Some(path(v)); Ok(()) }),
    opt(&["callable"], None, Value("NAME"), Main, "name of the WSGI callable (default: application)", |s, _, v| { s.cfg.callable = text(v).to_string(); Ok(()) }),
    opt(&["chdir"], None, Value("DIR"), Main, "chdir to DIR before loading the app", |s, _, v| { s.cfg.chdir = Some(path(v)); Ok(()) }),
    opt(&["pythonpath", "python-path", "pp"], None, Value("DIR"), Main, "add DIR to sys.path (repeatable)", |s, _, v| { s.cfg.pythonpath.push(path(v)); Ok(()) }),
    opt(&["home", "virtualenv", "venv", "pyhome"], Some('H'), Value("DIR"), Main, "use the Python virtualenv at DIR", |s, _, v| { s.cfg.home = Some(path(v)); Ok(()) }),
    opt(&["env"], None, Value("KEY=VALUE"), Main, "set an environment variable (repeatable)", |s, o, v| { s.cfg.env.push(env_value(o, text(v))?); Ok(()) }),
    opt(&["master"], Some('M'), Switch, Main, "enable the master process", |s, o, v| { s.cfg.master = flag(o, v)?; Ok(()) }),
    opt(&["processes", "workers"], Some('p'), Value("N"), Main, "number of worker processes (1-1024, default 1)", |s, o, v| { s.cfg.processes = int(o, v, 1, 1024)? as usize; Ok(()) }),
    opt(&["threads"], None, Value("N"), Main, "threads per worker (1-512, default 1)", |s, o, v| { s.cfg.threads = int(o, v, 1, 512)? as usize; Ok(()) }),
    opt(&["listen"], Some('l'), Value("N"), Main, "socket listen backlog (default 100)", |s, o, v| { s.cfg.listen = int(o, v, 1, i32::MAX as u64)? as i32; Ok(()) }),
    opt(&["max-requests"], Some('R'), Value("N"), Main, "recycle a worker after N requests (0 = off)", |s, o, v| { s.cfg.max_requests = int(o, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["pidfile"], None, Value("FILE"), Main, "write the master pid to FILE", |s, _, v| { s.cfg.pidfile = Some(path(v)); Ok(()) }),
    opt(&["chmod-socket"], Some('C'), Optional("MODE"), Main, "chmod unix sockets to octal MODE (bare: 666)", |s, o, v| { s.cfg.chmod_socket = Some(mode_value(o, v)?); Ok(()) }),
    opt(&["disable-logging"], Some('L'), Switch, Main, "disable request logging", |s, o, v| { s.cfg.disable_logging = flag(o, v)?; Ok(()) }),
    opt(&["buffer-size"], Some('b'), Value("BYTES"), Main, "max size of a request's headers (default 4096)", |s, o, v| { s.cfg.buffer_size = int(o, v, 1, 1 << 26)? as usize; Ok(()) }),
    opt(&["socket-timeout"], Some('z'), Value("SECONDS"), Main, "socket I/O timeout (default 4)", |s, o, v| { s.cfg.socket_timeout = int(o, v, 1, u64::MAX)?; Ok(()) }),
    opt(&["limit-post"], None, Value("BYTES"), Main, "reject request bodies larger than BYTES (0 = off)", |s, o, v| { s.cfg.limit_post = int(o, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["http-underscores-in-headers"], None, Switch, Main, "keep HTTP request headers whose names contain '_' (dropped by default: X_User would alias X-User)", |s, o, v| { s.cfg.http_underscores_in_headers = flag(o, v)?; Ok(()) }),
    opt(&["py-tracebacker"], None, Value("BASE"), Main, "serve Python stack traces of each worker on unix socket BASE<N>", |s, _, v| { s.cfg.py_tracebacker = Some(text(v).to_string()); Ok(()) }),
    opt(&["harakiri"], Some('t'), Value("SECONDS"), Main, "kill a worker stuck on one request for SECONDS (0 = off)", |s, o, v| { s.cfg.harakiri = int(o, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["harakiri-verbose"], None, Switch, Main, "log more details on harakiri", |s, o, v| { s.cfg.harakiri_verbose = flag(o, v)?; Ok(()) }),
    opt(&["uid"], None, Value("USER"), Main, "drop privileges to USER (name or number)", |s, _, v| { s.cfg.uid = Some(text(v).to_string()); Ok(()) }),
    opt(&["gid"], None, Value("GROUP"), Main, "drop privileges to GROUP (name or number)", |s, _, v| { s.cfg.gid = Some(text(v).to_string()); Ok(()) }),
    opt(&["stats", "stats-server"], None, Value("ADDR"), Main, "serve stats JSON on ADDR", |s, _, v| { s.cfg.stats = Some(text(v).to_string()); Ok(()) }),
    opt(&["stats-http"], None, Switch, Main, "serve stats over HTTP", |s, o, v| { s.cfg.stats_http = flag(o, v)?; Ok(()) }),
    opt(&["reload-mercy", "worker-reload-mercy"], None, Value("SECONDS"), Main, "how long to wait for workers to stop (default 60)", |s, o, v| { s.cfg.reload_mercy = int(o, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["ini"], None, Value("FILE[:SECTION]"), Main, "load options from an ini file section ([uwsgi] by default) at this position", |s, _, v| s.load_ini(text(v))),
    opt(&["connect-and-read"], None, Value("ADDR"), Main, "connect to ADDR (e.g. a tracebacker socket), print what it sends, exit", |s, _, v| { s.connect = Some(text(v).to_string()); Ok(()) }),
    opt(&["tracebacks"], None, Value("BASE"), Main, "print the tracebacks of every worker under tracebacker BASE, with the request each thread serves, and exit", |s, _, v| { s.tracebacks = Some(text(v).to_string()); Ok(()) }),
    opt(&["json"], None, Switch, Main, "with --tracebacks: print one JSON document instead of text", |s, o, v| { s.json = flag(o, v)?; Ok(()) }),
    opt(&["py-tracebacker-locals"], None, Switch, Main, "add each frame's local variables (truncated reprs) to --tracebacks dumps", |s, o, v| { s.cfg.py_tracebacker_locals = flag(o, v)?; Ok(()) }),
    opt(&["py-tracebacker-slow"], None, Value("SECONDS"), Main, "log the traceback of any request still running after SECONDS, once, without killing it (0 = off)", |s, o, v| { s.cfg.py_tracebacker_slow = int(o, v, 0, u64::MAX)?; Ok(()) }),
    opt(&["help"], Some('h'), Switch, Main, "print this help and exit", |s, _, _| { s.early = Some(Command::Help(help_text())); Ok(()) }),
    opt(&["version"], None, Switch, Main, "print the version and exit", |s, _, _| { s.early = Some(Command::Version(version_text())); Ok(()) }),

    opt(&["vacuum"], None, Switch, Ignored, "accepted; uwsgi-rs always removes its unix sockets and pidfile", ignore_switch),
    opt(&["die-on-term"], None, Switch, Ignored, "accepted; SIGTERM always shuts down", ignore_switch),
    opt(&["enable-threads"], Some('T'), Switch, Ignored, "accepted; Python threads are always enabled", ignore_switch),
    opt(&["lazy-apps", "lazy"], None, Switch, Ignored, "accepted; no effect", ignore_switch),
    opt(&["single-interpreter"], Some('i'), Switch, Ignored, "accepted; there is always a single interpreter", ignore_switch),
    opt(&["strict"], None, Switch, Ignored, "accepted; unknown options are always errors", ignore_switch),
    opt(&["need-app"], None, Switch, Ignored, "accepted; no effect", ignore_switch),
    opt(&["thunder-lock"], None, Switch, Ignored, "accepted; no effect", ignore_switch),
    opt(&["http-keepalive"], None, Optional("N"), Ignored, "accepted; no effect", |_, _, _| Ok(())),
    opt(&["auto-procname"], None, Switch, Ignored, "accepted; no effect", ignore_switch),
    opt(&["procname-prefix"], None, Value("PREFIX"), Ignored, "accepted; no effect", |_, _, _| Ok(())),
    opt(&["procname-prefix-spaced"], None, Value("PREFIX"), Ignored, "accepted; no effect", |_, _, _| Ok(())),
    opt(&["no-orphans"], None, Switch, Ignored, "accepted; no effect", ignore_switch),
    opt(&["memory-report"], Some('m'), Switch, Ignored, "accepted; no effect", ignore_switch),
    opt(&["plugin", "plugins"], None, Value("LIST"), Ignored, "accepted for python, python3 and http (built in); other plugins are errors", plugin_value),

    opt(&["emperor"], None, Value("DIR"), Unsupported, "not supported: run one uwsgi-rs per app", noop),
    opt(&["gevent"], None, Value("N"), Unsupported, "not supported: use --threads", noop),
    opt(&["async"], None, Value("N"), Unsupported, "not supported: use --threads", noop),
    opt(&["ugreen"], None, Switch, Unsupported, "not supported: use --threads", noop),
    opt(&["greenlet"], None, Switch, Unsupported, "not supported: use --threads", noop),
    opt(&["logto", "logto2"], None, Value("FILE"), Unsupported, "not supported: logs go to stderr; redirect it", noop),
    opt(&["logger", "req-logger"], None, Value("SPEC"), Unsupported, "not supported: logs go to stderr; redirect it", noop),
    opt(&["daemonize", "daemonize2"], Some('d'), Value("LOGFILE"), Unsupported, "not supported: use a process supervisor", noop),
    opt(&["cheaper"], None, Value("N"), Unsupported, "not supported: the worker count is fixed by --processes", noop),
    opt(&["offload-threads"], None, Value("N"), Unsupported, "not supported", noop),
    opt(&["route", "route-run"], None, Value("RULE"), Unsupported, "not supported: route in a reverse proxy", noop),
    opt(&["https"], None, Value("ADDR,CERT,KEY"), Unsupported, "not supported: terminate TLS in a reverse proxy", noop),
    opt(&["mount"], None, Value("MOUNTPOINT=APP"), Unsupported, "not supported: one app per server", noop),
    opt(&["static-map"], None, Value("MOUNT=DIR"), Unsupported, "not supported: serve static files from a reverse proxy", noop),
    opt(&["touch-reload"], None, Value("FILE"), Unsupported, "not supported", noop),
    opt(&["py-autoreload"], None, Value("SECONDS"), Unsupported, "not supported", noop),
    opt(&["spooler"], Some('Q'), Value("DIR"), Unsupported, "not supported", noop),
    opt(&["mule"], None, Optional("SCRIPT"), Unsupported, "not supported", noop),
    opt(&["attach-daemon"], None, Value("CMD"), Unsupported, "not supported: use a process supervisor", noop),
    opt(&["cron"], None, Value("SPEC"), Unsupported, "not supported", noop),
    opt(&["cache2"], None, Value("SPEC"), Unsupported, "not supported", noop),
    opt(&["master-fifo"], None, Value("FILE"), Unsupported, "not supported: use signals", noop),
];

fn find_long(name: &str) -> Option<&'static OptSpec> {
    OPTIONS.iter().find(|o| o.names.contains(&name))
}

fn find_short(c: char) -> Option<&'static OptSpec> {
    OPTIONS.iter().find(|o| o.short == Some(c))
}

/// The help line of an option given by any long name (with or without leading dashes),
/// e.g. to log why an entry of [`Config::ignored`] has no effect.
pub fn option_help(name: &str) -> Option<&'static str> {
    find_long(name.trim_start_matches('-')).map(|o| o.help)
}

fn version_text() -> String {
    format!("uwsgi-rs {}", env!("CARGO_PKG_VERSION"))
}

fn left_column(o: &OptSpec) -> String {
    let mut s = match o.short {
        Some(c) => format!("-{c}, "),
        None => "    ".to_string(),
    };
    let longs: Vec<String> = o.names.iter().map(|n| format!("--{n}")).collect();
    s.push_str(&longs.join(", "));
    match o.arg {
        Switch => {}
        Value(m) => {
            s.push(' ');
            s.push_str(m);
        }
        Optional(m) => {
            s.push_str("[=");
            s.push_str(m);
            s.push(']');
        }
    }
    s
}

/// The full `--help` text, generated from [`OPTIONS`]: one line per option.
pub fn help_text() -> String {
    let width = OPTIONS
        .iter()
        .map(|o| left_column(o).chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "{}: a WSGI application server with uWSGI's command line\n\n\
         Usage: uwsgi-rs [OPTIONS]\n\
         Switches also accept =true/false/1/0/yes/no/on/off. Ini keys are long option names.\n",
        version_text()
    );
    for (group, title) in [
        (Main, "Options"),
        (Ignored, "Accepted for uWSGI compatibility"),
        (Unsupported, "uWSGI options rejected by uwsgi-rs"),
    ] {
        out.push('\n');
        out.push_str(title);
        out.push_str(":\n");
        for o in OPTIONS.iter().filter(|o| o.group == group) {
            out.push_str(&format!("  {:<width$}   {}\n", left_column(o), o.help));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Value helpers
// ---------------------------------------------------------------------------

fn text(v: Option<&str>) -> &str {
    v.unwrap_or_default()
}

fn path(v: Option<&str>) -> PathBuf {
    PathBuf::from(text(v))
}

fn invalid(option: &str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        option: option.to_string(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// A switch value: absent or empty means on.
fn flag(option: &str, v: Option<&str>) -> Result<bool, ConfigError> {
    match v.map(|s| s.to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("true") | Some("1") | Some("yes") | Some("on") => Ok(true),
        Some("false") | Some("0") | Some("no") | Some("off") => Ok(false),
        Some(_) => Err(invalid(
            option,
            text(v),
            "true/false, 1/0, yes/no or on/off",
        )),
    }
}

/// A plain decimal integer in `min..=max`.
fn int(option: &str, v: Option<&str>, min: u64, max: u64) -> Result<u64, ConfigError> {
    let s = text(v);
    let expected = match (min, max) {
        (0, u64::MAX) => "a non-negative integer".to_string(),
        (1, u64::MAX) => "a positive integer".to_string(),
        _ => format!("an integer from {min} to {max}"),
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(option, s, expected));
    }
    match s.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(option, s, expected)),
    }
}

/// Octal socket mode; absent or empty (switch form) means 0o666.
fn mode_value(option: &str, v: Option<&str>) -> Result<u32, ConfigError> {
    let s = text(v);
    if s.is_empty() {
        return Ok(0o666);
    }
    if s.len() > 4 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(invalid(option, s, "an octal mode like 660 or 0660"));
    }
    u32::from_str_radix(s, 8).map_err(|_| invalid(option, s, "an octal mode like 660 or 0660"))
}

fn module_value(option: &str, s: &str) -> Result<String, ConfigError> {
    let ok = match s.split_once(':') {
        Some((module, callable)) => {
            !module.trim().is_empty() && !callable.trim().is_empty() && !callable.contains(':')
        }
        None => !s.trim().is_empty(),
    };
    if ok {
        Ok(s.to_string())
    } else {
        Err(invalid(option, s, "MODULE or MODULE:CALLABLE"))
    }
}

fn env_value(option: &str, s: &str) -> Result<(String, String), ConfigError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(invalid(option, s, "KEY=VALUE")),
    }
}

fn ignore_switch(_: &mut State, option: &str, v: Option<&str>) -> Result<(), ConfigError> {
    flag(option, v).map(|_| ())
}

fn noop(_: &mut State, _: &str, _: Option<&str>) -> Result<(), ConfigError> {
    Ok(())
}

/// `--plugin(s) LIST`: comma-separated; `python`, `python3`, `pythonNN`, `http`
/// (optionally `N:`-prefixed, or with `_plugin.so`) are built in; anything else is an error.
fn plugin_value(_: &mut State, option: &str, v: Option<&str>) -> Result<(), ConfigError> {
    for item in text(v).split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let name = match item.split_once(':') {
            Some((n, rest)) if n.bytes().all(|b| b.is_ascii_digit()) => rest,
            _ => item,
        };
        let name = name.strip_suffix("_plugin.so").unwrap_or(name);
        let builtin = name == "http"
            || name
                .strip_prefix("python")
                .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit()));
        if !builtin {
            return Err(ConfigError::UnsupportedPlugin {
                option: option.to_string(),
                plugin: item.to_string(),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// Parser state while options are applied in order.
struct State {
    cfg: Config,
    /// Set by `--help` / `--version`: returned as soon as it is seen.
    early: Option<Command>,
    connect: Option<String>,
    tracebacks: Option<String>,
    json: bool,
    ini_depth: usize,
}

impl State {
    fn listener(&mut self, proto: Protocol, v: Option<&str>) -> Result<(), ConfigError> {
        let addr = ListenAddr::parse(text(v))?;
        self.cfg.listeners.push((proto, addr));
        Ok(())
    }

    /// Check the value shape, run the row's apply, record ignored options.
    fn apply(&mut self, o: &OptSpec, name: &str, v: Option<&str>) -> Result<(), ConfigError> {
        if o.group == Unsupported {
            return Err(ConfigError::Unsupported(name.to_string()));
        }
        if let Value(_) = o.arg {
            match v {
                None => return Err(ConfigError::MissingValue(name.to_string())),
                Some("") => return Err(ConfigError::EmptyValue(name.to_string())),
                Some(_) => {}
            }
        }
        (o.apply)(self, name, v).map_err(|e| match e {
            // Name the option in address errors too.
            ConfigError::InvalidAddress(a) => invalid(
                name,
                &a,
                "an address like :PORT, HOST:PORT, [IPV6]:PORT (port 0-65535) or a unix socket path",
            ),
            e => e,
        })?;
        if o.group == Ignored && !self.cfg.ignored.iter().any(|n| n == o.names[0]) {
            self.cfg.ignored.push(o.names[0].to_string());
        }
        Ok(())
    }

    fn load_ini(&mut self, spec: &str) -> Result<(), ConfigError> {
        if self.ini_depth >= MAX_INI_DEPTH {
            return Err(ConfigError::IniTooDeep(spec.to_string()));
        }
        let (file, section) = split_ini_spec(spec);
        let shown = file.display().to_string();
        let content = std::fs::read_to_string(file).map_err(|e| ConfigError::IniRead {
            path: shown.clone(),
            reason: io_reason(&e),
        })?;
        let entries = ini_entries(&content, section, &shown)?;
        let magic = Magic::new(file);
        self.ini_depth += 1;
        let result = self.apply_ini(&entries, &magic, &shown);
        self.ini_depth -= 1;
        result
    }

    fn apply_ini(
        &mut self,
        entries: &[IniEntry<'_>],
        magic: &Magic,
        shown: &str,
    ) -> Result<(), ConfigError> {
        for e in entries {
            let o = find_long(e.key).ok_or_else(|| ConfigError::IniUnknownKey {
                key: e.key.to_string(),
                path: shown.to_string(),
                line: e.line,
            })?;
            let value = e.value.map(|v| magic.expand(v));
            let name = format!("--{}", e.key);
            self.apply(o, &name, value.as_deref())
                .map_err(|err| ConfigError::InIni {
                    path: shown.to_string(),
                    line: e.line,
                    error: Box::new(err),
                })?;
            if self.early.is_some() {
                break;
            }
        }
        Ok(())
    }
}

/// `FILE:SECTION` -> (FILE, SECTION); the section defaults to `uwsgi`.
fn split_ini_spec(spec: &str) -> (&Path, &str) {
    match spec.rsplit_once(':') {
        Some((file, section)) if !file.is_empty() && !section.contains('/') => {
            let section = if section.is_empty() { "uwsgi" } else { section };
            (Path::new(file), section)
        }
        _ => (Path::new(spec), "uwsgi"),
    }
}

/// An io::Error message without the " (os error N)" suffix.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

struct IniEntry<'a> {
    line: usize,
    key: &'a str,
    /// `None` for a bare `key` line (switch on / switch form).
    value: Option<&'a str>,
}

/// The `key = value` lines of every `[section]` block, in order. Lines outside the
/// section are not checked.
fn ini_entries<'a>(
    content: &'a str,
    section: &str,
    shown: &str,
) -> Result<Vec<IniEntry<'a>>, ConfigError> {
    let mut entries = Vec::new();
    let mut found = false;
    let mut inside = false;
    for (i, raw) in content.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name =
                rest.strip_suffix(']')
                    .map(str::trim)
                    .ok_or_else(|| ConfigError::IniSyntax {
                        path: shown.to_string(),
                        line: i + 1,
                    })?;
            inside = name == section;
            found |= inside;
            continue;
        }
        if !inside {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (line, None),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(ConfigError::IniSyntax {
                path: shown.to_string(),
                line: i + 1,
            });
        }
        entries.push(IniEntry {
            line: i + 1,
            key,
            value,
        });
    }
    if found {
        Ok(entries)
    } else {
        Err(ConfigError::IniMissingSection {
            path: shown.to_string(),
            section: section.to_string(),
        })
    }
}

/// uWSGI "magic variables" of an ini file: `%d` directory (absolute, trailing slash),
/// `%n` name without extension, `%s` file name, `%x` extension, `%p` absolute path,
/// `%c` name of the containing directory, `%%` a percent sign. Others stay verbatim.
struct Magic {
    d: String,
    n: String,
    s: String,
    x: String,
    p: String,
    c: String,
}

impl Magic {
    fn new(file: &Path) -> Magic {
        let abs = std::fs::canonicalize(file).unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|d| d.join(file))
                .unwrap_or_else(|_| file.to_path_buf())
        });
        let lossy = |p: Option<&std::ffi::OsStr>| {
            p.map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let parent = abs.parent().unwrap_or(Path::new("/"));
        let mut d = parent.display().to_string();
        if !d.ends_with('/') {
            d.push('/');
        }
        Magic {
            d,
            n: lossy(abs.file_stem()),
            s: lossy(abs.file_name()),
            x: lossy(abs.extension()),
            p: abs.display().to_string(),
            c: lossy(parent.file_name()),
        }
    }

    fn expand(&self, v: &str) -> String {
        let mut out = String::with_capacity(v.len());
        let mut chars = v.chars();
        while let Some(ch) = chars.next() {
            if ch != '%' {
                out.push(ch);
                continue;
            }
            match chars.next() {
                Some('d') => out.push_str(&self.d),
                Some('n') => out.push_str(&self.n),
                Some('s') => out.push_str(&self.s),
                Some('x') => out.push_str(&self.x),
                Some('p') => out.push_str(&self.p),
                Some('c') => out.push_str(&self.c),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }
}

/// Parse the arguments (without argv\[0\]) into a [`Command`].
///
/// `--help`/`--version` return as soon as they are seen. `--connect-and-read` skips
/// the serve validation. Option names in errors are the long names as typed (the
/// canonical long name for short options).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, ConfigError> {
    let args: Vec<String> = args.into_iter().collect();
    let mut st = State {
        cfg: Config::default(),
        early: None,
        connect: None,
        tracebacks: None,
        json: false,
        ini_depth: 0,
    };
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        let (o, name, inline) = if let Some(body) = arg.strip_prefix("--") {
            if body.is_empty() {
                return Err(ConfigError::UnexpectedArgument(arg.to_string()));
            }
            let (n, v) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let o = find_long(n).ok_or_else(|| ConfigError::UnknownOption(format!("--{n}")))?;
            (o, format!("--{n}"), v)
        } else if let Some(body) = arg.strip_prefix('-') {
            let mut chars = body.chars();
            let c = chars
                .next()
                .ok_or_else(|| ConfigError::UnexpectedArgument(arg.to_string()))?;
            let rest = chars.as_str();
            let o = find_short(c).ok_or_else(|| ConfigError::UnknownOption(arg.to_string()))?;
            let glued = match (rest.is_empty(), o.arg) {
                (true, _) => None,
                (false, Value(_)) => Some(rest),
                (false, _) if o.group == Unsupported => None,
                (false, _) => return Err(ConfigError::UnknownOption(arg.to_string())),
            };
            (o, format!("--{}", o.names[0]), glued)
        } else {
            return Err(ConfigError::UnexpectedArgument(arg.to_string()));
        };
        let value = match (o.arg, inline) {
            (Value(_), None) if o.group != Unsupported => match args.get(i) {
                Some(next) if !(next.starts_with('-') && next.len() > 1) => {
                    i += 1;
                    Some(next.as_str())
                }
                _ => None,
            },
            _ => inline,
        };
        st.apply(o, &name, value)?;
        if let Some(cmd) = st.early.take() {
            return Ok(cmd);
        }
    }
    if let Some(base) = st.tracebacks {
        return Ok(Command::Tracebacks {
            base,
            json: st.json,
            timeout_secs: st.cfg.socket_timeout,
        });
    }
    if let Some(addr) = st.connect {
        return Ok(Command::ConnectAndRead {
            addr,
            timeout_secs: st.cfg.socket_timeout,
        });
    }
    validate(&st.cfg)?;
    Ok(Command::Serve(st.cfg))
}

fn validate(cfg: &Config) -> Result<(), ConfigError> {
    if cfg.listeners.is_empty() {
        return Err(ConfigError::NoListener);
    }
    if cfg.module.is_some() && cfg.wsgi_file.is_some() {
        return Err(ConfigError::Conflict("--module", "--wsgi-file"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn parse(s: &[&str]) -> Result<Command, ConfigError> {
        parse_args(args(s))
    }

    fn serve(s: &[&str]) -> Config {
        match parse(s) {
            Ok(Command::Serve(c)) => c,
            other => panic!("expected Serve for {s:?}, got {other:?}"),
        }
    }

    fn err(s: &[&str]) -> String {
        match parse(s) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("expected an error for {s:?}, got {c:?}"),
        }
    }

    fn tcp(host: &str, port: u16) -> ListenAddr {
        ListenAddr::Tcp {
            host: host.to_string(),
            port,
        }
    }

    /// A temp ini file removed on drop.
    struct TempIni {
        path: PathBuf,
    }

    impl TempIni {
        fn new(tag: &str, content: &str) -> TempIni {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir();
            let name = format!(
                "uwsgi_rs_cfg_{}_{}_{}.ini",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst),
                tag
            );
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            TempIni { path }
        }
        fn p(&self) -> String {
            self.path.display().to_string()
        }
    }

    impl Drop for TempIni {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    // --- ListenAddr ---

    #[test]
    fn listen_addr_parse() {
        assert_eq!(ListenAddr::parse(":8080").unwrap(), tcp("0.0.0.0", 8080));
        assert_eq!(
            ListenAddr::parse("127.0.0.1:8080").unwrap(),
            tcp("127.0.0.1", 8080)
        );
        assert_eq!(ListenAddr::parse("[::1]:8080").unwrap(), tcp("::1", 8080));
        assert_eq!(
            ListenAddr::parse("localhost:80").unwrap(),
            tcp("localhost", 80)
        );
        assert_eq!(ListenAddr::parse(":0").unwrap(), tcp("0.0.0.0", 0));
        assert_eq!(
            ListenAddr::parse("/tmp/app.sock").unwrap(),
            ListenAddr::Unix(PathBuf::from("/tmp/app.sock"))
        );
        assert_eq!(
            ListenAddr::parse("app.sock").unwrap(),
            ListenAddr::Unix(PathBuf::from("app.sock"))
        );
        assert_eq!(
            ListenAddr::parse("./a:b").unwrap(),
            ListenAddr::Unix(PathBuf::from("./a:b"))
        );
    }

    #[test]
    fn listen_addr_errors() {
        for bad in [
            "",
            ":99999",
            ":",
            "host:",
            "host:http",
            ":-1",
            ":+80",
            "::1:80",
            "[::1]",
            "[]:80",
            "[::1]80",
        ] {
            assert_eq!(
                ListenAddr::parse(bad),
                Err(ConfigError::InvalidAddress(bad.to_string())),
                "{bad}"
            );
        }
        assert_eq!(
            ListenAddr::parse(":99999").unwrap_err().to_string(),
            "invalid address ':99999': expected :PORT, HOST:PORT, [IPV6]:PORT (port 0-65535) or a unix socket path"
        );
    }

    #[test]
    fn listen_addr_display() {
        assert_eq!(tcp("0.0.0.0", 8080).to_string(), "0.0.0.0:8080");
        assert_eq!(tcp("::1", 8080).to_string(), "[::1]:8080");
        assert_eq!(ListenAddr::parse(":80").unwrap().to_string(), "0.0.0.0:80");
        assert_eq!(
            ListenAddr::Unix("/run/a.sock".into()).to_string(),
            "/run/a.sock"
        );
    }

    // --- defaults and forms ---

    #[test]
    fn defaults() {
        let c = serve(&["--http", ":8080"]);
        assert_eq!(c.listeners, vec![(Protocol::Http, tcp("0.0.0.0", 8080))]);
        assert_eq!(c.module, None);
        assert_eq!(c.wsgi_file, None);
        assert_eq!(c.callable, "application");
        assert_eq!(c.chdir, None);
        assert!(c.pythonpath.is_empty());
        assert_eq!(c.home, None);
        assert!(c.env.is_empty());
        assert!(!c.master);
        assert_eq!(c.processes, 1);
        assert_eq!(c.threads, 1);
        assert_eq!(c.listen, 100);
        assert_eq!(c.max_requests, 0);
        assert_eq!(c.pidfile, None);
        assert_eq!(c.chmod_socket, None);
        assert!(!c.disable_logging);
        assert_eq!(c.buffer_size, 4096);
        assert_eq!(c.socket_timeout, 4);
        assert_eq!(c.limit_post, 0);
        assert_eq!(c.py_tracebacker, None);
        assert_eq!(c.harakiri, 0);
        assert!(!c.harakiri_verbose);
        assert_eq!(c.uid, None);
        assert_eq!(c.gid, None);
        assert_eq!(c.stats, None);
        assert!(!c.stats_http);
        assert!(!c.http_underscores_in_headers);
        assert_eq!(c.reload_mercy, 60);
        assert!(c.ignored.is_empty());
        assert!(
            serve(&["--http", ":8080", "--http-underscores-in-headers"])
                .http_underscores_in_headers
        );
    }

    #[test]
    fn listeners_in_order_with_protocols() {
        let c = serve(&[
            "--http",
            ":1",
            "--socket",
            "/tmp/u.sock",
            "--http-socket=127.0.0.1:2",
            "-s",
            ":3",
            "--uwsgi-socket",
            "[::1]:4",
        ]);
        assert_eq!(
            c.listeners,
            vec![
                (Protocol::Http, tcp("0.0.0.0", 1)),
                (Protocol::Uwsgi, ListenAddr::Unix("/tmp/u.sock".into())),
                (Protocol::Http, tcp("127.0.0.1", 2)),
                (Protocol::Uwsgi, tcp("0.0.0.0", 3)),
                (Protocol::Uwsgi, tcp("::1", 4)),
            ]
        );
    }

    #[test]
    fn bad_listener_names_option() {
        assert_eq!(
            err(&["--http", ":70000"]),
            "invalid value ':70000' for --http: expected an address like :PORT, HOST:PORT, [IPV6]:PORT (port 0-65535) or a unix socket path"
        );
        assert!(err(&["-s", "x:y"]).starts_with("invalid value 'x:y' for --socket: "));
    }

    #[test]
    fn every_scalar_option_long_form() {
        let c = serve(&[
            "--http",
            ":8080",
            "--module",
            "pkg.app:make",
            "--callable",
            "app",
            "--chdir",
            "/srv",
            "--pythonpath",
            "/a",
            "--home",
            "/venv",
            "--env",
            "A=1",
            "--master",
            "--processes",
            "4",
            "--threads",
            "8",
            "--listen",
            "1024",
            "--max-requests",
            "1000",
            "--pidfile",
            "/run/p.pid",
            "--chmod-socket=660",
            "--disable-logging",
            "--buffer-size",
            "32768",
            "--socket-timeout",
            "10",
            "--limit-post",
            "1048576",
            "--py-tracebacker",
            "/tmp/tb",
            "--harakiri",
            "30",
            "--harakiri-verbose",
            "--uid",
            "www-data",
            "--gid",
            "33",
            "--stats",
            "127.0.0.1:9191",
            "--stats-http",
            "--reload-mercy",
            "15",
        ]);
        assert_eq!(c.module.as_deref(), Some("pkg.app:make"));
        assert_eq!(c.callable, "app");
        assert_eq!(c.chdir, Some(PathBuf::from("/srv")));
        assert_eq!(c.pythonpath, vec![PathBuf::from("/a")]);
        assert_eq!(c.home, Some(PathBuf::from("/venv")));
        assert_eq!(c.env, vec![("A".to_string(), "1".to_string())]);
        assert!(c.master);
        assert_eq!(c.processes, 4);
        assert_eq!(c.threads, 8);
        assert_eq!(c.listen, 1024);
        assert_eq!(c.max_requests, 1000);
        assert_eq!(c.pidfile, Some(PathBuf::from("/run/p.pid")));
        assert_eq!(c.chmod_socket, Some(0o660));
        assert!(c.disable_logging);
        assert_eq!(c.buffer_size, 32768);
        assert_eq!(c.socket_timeout, 10);
        assert_eq!(c.limit_post, 1048576);
        assert_eq!(c.py_tracebacker.as_deref(), Some("/tmp/tb"));
        assert_eq!(c.harakiri, 30);
        assert!(c.harakiri_verbose);
        assert_eq!(c.uid.as_deref(), Some("www-data"));
        assert_eq!(c.gid.as_deref(), Some("33"));
        assert_eq!(c.stats.as_deref(), Some("127.0.0.1:9191"));
        assert!(c.stats_http);
        assert_eq!(c.reload_mercy, 15);
    }

    #[test]
    fn equals_form() {
        let c = serve(&[
            "--http=:8080",
            "--processes=3",
            "--module=a.b",
            "--env=K=V=W",
        ]);
        assert_eq!(c.listeners[0].1, tcp("0.0.0.0", 8080));
        assert_eq!(c.processes, 3);
        assert_eq!(c.module.as_deref(), Some("a.b"));
        assert_eq!(c.env, vec![("K".to_string(), "V=W".to_string())]);
    }

    #[test]
    fn short_forms() {
        let c = serve(&[
            "-s", ":9000", "-w", "slow", "-p", "2", "-M", "-H", "/venv", "-l", "64", "-R", "5",
            "-L", "-b", "8192", "-z", "7", "-t", "9", "-C",
        ]);
        assert_eq!(c.listeners, vec![(Protocol::Uwsgi, tcp("0.0.0.0", 9000))]);
        assert_eq!(c.module.as_deref(), Some("slow"));
        assert_eq!(c.processes, 2);
        assert!(c.master);
        assert_eq!(c.home, Some(PathBuf::from("/venv")));
        assert_eq!(c.listen, 64);
        assert_eq!(c.max_requests, 5);
        assert!(c.disable_logging);
        assert_eq!(c.buffer_size, 8192);
        assert_eq!(c.socket_timeout, 7);
        assert_eq!(c.harakiri, 9);
        assert_eq!(c.chmod_socket, Some(0o666));
    }

    #[test]
    fn glued_short_value() {
        let c = serve(&["-s:9000", "-p2", "-wslow"]);
        assert_eq!(c.processes, 2);
        assert_eq!(c.module.as_deref(), Some("slow"));
        assert_eq!(err(&["-ML"]), "unknown option: -ML");
    }

    #[test]
    fn aliases() {
        let c = serve(&[
            "--http",
            ":1",
            "--wsgi",
            "m",
            "--workers",
            "3",
            "--venv",
            "/v",
        ]);
        assert_eq!(c.module.as_deref(), Some("m"));
        assert_eq!(c.processes, 3);
        assert_eq!(c.home, Some(PathBuf::from("/v")));
        for alias in ["--home", "--virtualenv", "--venv", "--pyhome", "-H"] {
            assert_eq!(
                serve(&["--http", ":1", alias, "/x"]).home,
                Some(PathBuf::from("/x"))
            );
        }
        for alias in ["--wsgi-file", "--file"] {
            assert_eq!(
                serve(&["--http", ":1", alias, "app.wsgi"]).wsgi_file,
                Some(PathBuf::from("app.wsgi"))
            );
        }
        let c = serve(&[
            "--http",
            ":1",
            "--pythonpath",
            "a",
            "--pp",
            "b",
            "--python-path",
            "c",
        ]);
        assert_eq!(
            c.pythonpath,
            vec![PathBuf::from("a"), PathBuf::from("b"), PathBuf::from("c")]
        );
        assert_eq!(
            serve(&["--http", ":1", "--worker-reload-mercy", "5"]).reload_mercy,
            5
        );
        assert_eq!(
            serve(&["--http", ":1", "--stats-server", "/tmp/s"])
                .stats
                .as_deref(),
            Some("/tmp/s")
        );
    }

    #[test]
    fn scalars_last_wins_repeatables_append() {
        let c = serve(&[
            "--http",
            ":1",
            "-p",
            "2",
            "--processes",
            "5",
            "--env",
            "A=1",
            "--env",
            "B=2",
            "--env",
            "A=3",
        ]);
        assert_eq!(c.processes, 5);
        assert_eq!(
            c.env,
            vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "2".to_string()),
                ("A".to_string(), "3".to_string())
            ]
        );
    }

    #[test]
    fn switch_values() {
        for v in ["true", "1", "yes", "on", "TRUE", "Yes"] {
            assert!(
                serve(&["--http", ":1", &format!("--master={v}")]).master,
                "{v}"
            );
        }
        for v in ["false", "0", "no", "off", "FALSE"] {
            assert!(
                !serve(&["--http", ":1", "-M", &format!("--master={v}")]).master,
                "{v}"
            );
        }
        assert_eq!(
            err(&["--http", ":1", "--master=maybe"]),
            "invalid value 'maybe' for --master: expected true/false, 1/0, yes/no or on/off"
        );
        // A switch never consumes the next argument.
        assert_eq!(
            err(&["--http", ":1", "--master", "true"]),
            "unexpected argument: true"
        );
    }

    #[test]
    fn missing_and_empty_values() {
        assert_eq!(err(&["--http"]), "option --http requires a value");
        assert_eq!(
            err(&["--http", "--master"]),
            "option --http requires a value"
        );
        assert_eq!(err(&["-w"]), "option --module requires a value");
        assert_eq!(
            err(&["--http="]),
            "option --http requires a non-empty value"
        );
        assert_eq!(
            err(&["--http", ""]),
            "option --http requires a non-empty value"
        );
        assert_eq!(
            err(&["--http", ":1", "--module="]),
            "option --module requires a non-empty value"
        );
        assert_eq!(
            err(&["--http", ":1", "--py-tracebacker="]),
            "option --py-tracebacker requires a non-empty value"
        );
    }

    #[test]
    fn unexpected_and_unknown() {
        assert_eq!(err(&["app.py"]), "unexpected argument: app.py");
        assert_eq!(
            err(&["--http", ":1", "extra"]),
            "unexpected argument: extra"
        );
        assert_eq!(err(&["-"]), "unexpected argument: -");
        assert_eq!(err(&["--"]), "unexpected argument: --");
        assert_eq!(err(&["--foo"]), "unknown option: --foo");
        assert_eq!(err(&["--foo=bar"]), "unknown option: --foo");
        assert_eq!(err(&["-Y"]), "unknown option: -Y");
        assert_eq!(err(&["-é"]), "unknown option: -é");
        assert_eq!(err(&["--=x"]), "unknown option: --");
    }

    #[test]
    fn numbers() {
        let e = |opt: &str, v: &str| err(&["--http", ":1", opt, v]);
        assert_eq!(
            e("--processes", "x"),
            "invalid value 'x' for --processes: expected an integer from 1 to 1024"
        );
        assert_eq!(
            e("--processes", "0"),
            "invalid value '0' for --processes: expected an integer from 1 to 1024"
        );
        assert_eq!(
            e("--processes", "1025"),
            "invalid value '1025' for --processes: expected an integer from 1 to 1024"
        );
        assert_eq!(serve(&["--http", ":1", "-p", "1024"]).processes, 1024);
        assert_eq!(
            e("--threads", "513"),
            "invalid value '513' for --threads: expected an integer from 1 to 512"
        );
        assert_eq!(serve(&["--http", ":1", "--threads", "512"]).threads, 512);
        assert_eq!(
            e("-p", "+2"),
            "invalid value '+2' for --processes: expected an integer from 1 to 1024"
        );
        assert_eq!(e("--workers", "-1"), "option --workers requires a value");
        assert_eq!(
            e("--socket-timeout", "0"),
            "invalid value '0' for --socket-timeout: expected a positive integer"
        );
        assert_eq!(
            e("--harakiri", "1.5"),
            "invalid value '1.5' for --harakiri: expected a non-negative integer"
        );
        assert_eq!(serve(&["--http", ":1", "--harakiri", "0"]).harakiri, 0);
        assert_eq!(e("--max-requests", "99999999999999999999"), "invalid value '99999999999999999999' for --max-requests: expected a non-negative integer");
        assert_eq!(
            e("--buffer-size", "0"),
            "invalid value '0' for --buffer-size: expected an integer from 1 to 67108864"
        );
        assert_eq!(
            e("--buffer-size", "67108865"),
            "invalid value '67108865' for --buffer-size: expected an integer from 1 to 67108864"
        );
        assert_eq!(
            serve(&["--http", ":1", "-b", "67108864"]).buffer_size,
            1 << 26
        );
        assert_eq!(
            e("--listen", "0"),
            "invalid value '0' for --listen: expected an integer from 1 to 2147483647"
        );
        assert_eq!(
            e("--limit-post", "1k"),
            "invalid value '1k' for --limit-post: expected a non-negative integer"
        );
        assert_eq!(
            e("--reload-mercy", "x"),
            "invalid value 'x' for --reload-mercy: expected a non-negative integer"
        );
    }

    #[test]
    fn chmod_socket_forms() {
        assert_eq!(
            serve(&["--http", ":1", "--chmod-socket"]).chmod_socket,
            Some(0o666)
        );
        assert_eq!(
            serve(&["--http", ":1", "--chmod-socket=660"]).chmod_socket,
            Some(0o660)
        );
        assert_eq!(
            serve(&["--http", ":1", "--chmod-socket=0660"]).chmod_socket,
            Some(0o660)
        );
        assert_eq!(
            serve(&["--http", ":1", "--chmod-socket=777"]).chmod_socket,
            Some(0o777)
        );
        // The bare form does not consume the next argument.
        assert_eq!(
            err(&["--http", ":1", "--chmod-socket", "660"]),
            "unexpected argument: 660"
        );
        assert_eq!(
            err(&["--http", ":1", "--chmod-socket=888"]),
            "invalid value '888' for --chmod-socket: expected an octal mode like 660 or 0660"
        );
        assert!(err(&["--http", ":1", "--chmod-socket=07777"]).starts_with("invalid value '07777'"));
    }

    #[test]
    fn env_values() {
        let c = serve(&["--http", ":1", "--env", "A=", "--env", "B=x=y"]);
        assert_eq!(
            c.env,
            vec![
                ("A".to_string(), String::new()),
                ("B".to_string(), "x=y".to_string())
            ]
        );
        assert_eq!(
            err(&["--http", ":1", "--env", "NOEQ"]),
            "invalid value 'NOEQ' for --env: expected KEY=VALUE"
        );
        assert_eq!(
            err(&["--http", ":1", "--env", "=v"]),
            "invalid value '=v' for --env: expected KEY=VALUE"
        );
    }

    #[test]
    fn module_values() {
        assert_eq!(
            serve(&["--http", ":1", "-w", "a.b:app"]).module.as_deref(),
            Some("a.b:app")
        );
        for bad in [":app", "mod:", "a:b:c"] {
            assert_eq!(
                err(&["--http", ":1", "-w", bad]),
                format!("invalid value '{bad}' for --module: expected MODULE or MODULE:CALLABLE")
            );
        }
    }

    #[test]
    fn validation() {
        assert_eq!(
            err(&[]),
            "no listener given: use --http, --http-socket or --socket"
        );
        assert_eq!(
            err(&["-w", "app"]),
            "no listener given: use --http, --http-socket or --socket"
        );
        assert_eq!(
            err(&["--http", ":1", "-w", "app", "--wsgi-file", "app.py"]),
            "options --module and --wsgi-file are mutually exclusive"
        );
        // No app is fine (uWSGI's "dynamic mode").
        assert!(serve(&["--http", ":1"]).module.is_none());
    }

    #[test]
    fn ignored_options_recorded_once() {
        let c = serve(&[
            "--http",
            ":1",
            "--vacuum",
            "--die-on-term",
            "-T",
            "--lazy",
            "--lazy-apps",
            "--single-interpreter",
            "--strict",
            "--need-app",
            "--thunder-lock",
            "--http-keepalive",
            "--auto-procname",
            "--procname-prefix",
            "app-",
            "--vacuum",
            "--plugin",
            "python3",
            "--plugins=http,python",
            "--no-orphans",
            "-m",
            "--procname-prefix-spaced",
            "x",
            "--enable-threads=false",
        ]);
        assert_eq!(
            c.ignored,
            [
                "vacuum",
                "die-on-term",
                "enable-threads",
                "lazy-apps",
                "single-interpreter",
                "strict",
                "need-app",
                "thunder-lock",
                "http-keepalive",
                "auto-procname",
                "procname-prefix",
                "plugin",
                "no-orphans",
                "memory-report",
                "procname-prefix-spaced",
            ]
        );
        assert_eq!(
            err(&["--http", ":1", "--vacuum=sure"]),
            "invalid value 'sure' for --vacuum: expected true/false, 1/0, yes/no or on/off"
        );
        assert_eq!(
            err(&["--http", ":1", "--procname-prefix"]),
            "option --procname-prefix requires a value"
        );
        assert_eq!(
            option_help("--vacuum"),
            Some("accepted; uwsgi-rs always removes its unix sockets and pidfile")
        );
        assert_eq!(option_help("nope"), None);
    }

    #[test]
    fn plugins() {
        for ok in [
            "python",
            "python3",
            "python312",
            "http",
            "0:python3",
            "python3,http",
            "python3_plugin.so",
        ] {
            assert_eq!(
                serve(&["--http", ":1", "--plugin", ok]).ignored,
                ["plugin"],
                "{ok}"
            );
        }
        assert_eq!(
            err(&["--http", ":1", "--plugin", "gevent"]),
            "plugin 'gevent' given to --plugin is not supported by uwsgi-rs"
        );
        assert_eq!(
            err(&["--http", ":1", "--plugins", "python3,router_static"]),
            "plugin 'router_static' given to --plugins is not supported by uwsgi-rs"
        );
    }

    #[test]
    fn unsupported_options() {
        assert_eq!(
            err(&["--emperor", "/etc/uwsgi"]),
            "option --emperor is not supported by uwsgi-rs"
        );
        assert_eq!(
            err(&["--http", ":1", "--gevent", "100"]),
            "option --gevent is not supported by uwsgi-rs"
        );
        assert_eq!(
            err(&["--logto=/tmp/x"]),
            "option --logto is not supported by uwsgi-rs"
        );
        assert_eq!(
            err(&["-d", "/tmp/log"]),
            "option --daemonize is not supported by uwsgi-rs"
        );
        for o in OPTIONS.iter().filter(|o| o.group == Unsupported) {
            for n in o.names {
                assert_eq!(
                    err(&[&format!("--{n}")]),
                    format!("option --{n} is not supported by uwsgi-rs")
                );
            }
        }
    }

    #[test]
    fn help_and_version() {
        let Ok(Command::Help(h)) = parse(&["--help"]) else {
            panic!()
        };
        assert_eq!(h, help_text());
        assert!(matches!(parse(&["-h"]), Ok(Command::Help(_))));
        // Returned as soon as seen: later junk is not parsed.
        assert!(matches!(parse(&["--help", "--foo"]), Ok(Command::Help(_))));
        assert_eq!(err(&["--foo", "--help"]), "unknown option: --foo");
        let Ok(Command::Version(v)) = parse(&["--version"]) else {
            panic!()
        };
        assert_eq!(v, format!("uwsgi-rs {}", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn help_lists_every_option() {
        let h = help_text();
        assert!(h.contains("\n  -w, --module, --wsgi MODULE[:CALLABLE]"));
        assert!(h.contains("   load a WSGI module\n"));
        for o in OPTIONS {
            let left = left_column(o);
            let line = h
                .lines()
                .find(|l| l.starts_with(&format!("  {left} ")))
                .unwrap_or_else(|| panic!("--{} missing from help", o.names[0]));
            for n in o.names {
                assert!(line.contains(&format!("--{n}")), "{n}");
            }
            if let Some(c) = o.short {
                assert!(line.starts_with(&format!("  -{c}, ")), "{line}");
            }
            assert!(line.ends_with(o.help), "{line}");
        }
        assert_eq!(
            h.lines()
                .filter(|l| l.trim_start().starts_with('-'))
                .count(),
            OPTIONS.len()
        );
    }

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
                assert!(!longs.contains(n), "duplicate --{n}");
                longs.push(*n);
            }
            if let Some(c) = o.short {
                assert!(!shorts.contains(&c), "duplicate -{c}");
                shorts.push(c);
            }
        }
    }

    #[test]
    fn connect_and_read() {
        match parse(&["--connect-and-read", "/tmp/tb1"]) {
            Ok(Command::ConnectAndRead { addr, timeout_secs }) => {
                assert_eq!(addr, "/tmp/tb1");
                assert_eq!(timeout_secs, 4);
            }
            other => panic!("{other:?}"),
        }
        match parse(&[
            "-z",
            "9",
            "-w",
            "x",
            "--wsgi-file",
            "y",
            "--connect-and-read=/tmp/tb2",
        ]) {
            Ok(Command::ConnectAndRead { addr, timeout_secs }) => {
                assert_eq!(addr, "/tmp/tb2");
                assert_eq!(timeout_secs, 9);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err(&["--connect-and-read"]),
            "option --connect-and-read requires a value"
        );
        assert_eq!(
            err(&["--connect-and-read", "x", "-p", "0"]),
            "invalid value '0' for --processes: expected an integer from 1 to 1024"
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        let odd = [
            "",
            "-",
            "--",
            "---",
            "--=",
            "-=",
            "=",
            "-é",
            "--é",
            "-pé",
            "--http=[",
            "--http=[:",
            "--ini=",
            "--ini=:",
            "--chmod-socket=",
            "-C=1",
            "\u{0}",
            "--env==",
        ];
        for a in odd {
            let _ = parse(&[a]);
            let _ = parse(&["--http", ":1", a]);
            let _ = parse(&[a, a]);
        }
    }

    // --- ini files ---

    #[test]
    fn ini_basic() {
        let ini = TempIni::new(
            "basic",
            "# comment\n; another\n\n[other]\nhttp = :1\nbogus = 1\n\n[uwsgi]\n  http = :8080  \nmodule = slow\nmaster = true\nprocesses = 4\nenv = A=1=2\nenv = B=2\npythonpath = /a\npythonpath = /b\nvacuum = true\nchmod-socket = 0600\n",
        );
        let c = serve(&["--ini", &ini.p()]);
        assert_eq!(c.listeners, vec![(Protocol::Http, tcp("0.0.0.0", 8080))]);
        assert_eq!(c.module.as_deref(), Some("slow"));
        assert!(c.master);
        assert_eq!(c.processes, 4);
        assert_eq!(
            c.env,
            vec![
                ("A".to_string(), "1=2".to_string()),
                ("B".to_string(), "2".to_string())
            ]
        );
        assert_eq!(c.pythonpath, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(c.ignored, ["vacuum"]);
        assert_eq!(c.chmod_socket, Some(0o600));
        // --ini=FILE works too.
        assert_eq!(serve(&[&format!("--ini={}", ini.p())]).processes, 4);
    }

    #[test]
    fn ini_named_section_and_repeated_sections() {
        let ini = TempIni::new(
            "section",
            "[uwsgi]\nhttp = :1\n[prod]\nhttp = :2\nprocesses = 8\n[uwsgi]\nprocesses = 3\n",
        );
        let c = serve(&["--ini", &format!("{}:prod", ini.p())]);
        assert_eq!(c.listeners, vec![(Protocol::Http, tcp("0.0.0.0", 2))]);
        assert_eq!(c.processes, 8);
        let c = serve(&["--ini", &ini.p()]);
        assert_eq!(c.processes, 3);
        assert_eq!(
            err(&["--ini", &format!("{}:staging", ini.p())]),
            format!("ini file {} has no [staging] section", ini.p())
        );
    }

    #[test]
    fn ini_switch_values() {
        let ini = TempIni::new(
            "switch",
            "[uwsgi]\nhttp = :1\nmaster = on\ndisable-logging = yes\nharakiri-verbose = 1\nstats-http\nmaster = off\nchmod-socket\n",
        );
        let c = serve(&["--ini", &ini.p()]);
        assert!(!c.master);
        assert!(c.disable_logging);
        assert!(c.harakiri_verbose);
        assert!(c.stats_http);
        assert_eq!(c.chmod_socket, Some(0o666));
        let c = serve(&["-M", "--ini", &ini.p()]);
        assert!(!c.master, "ini after the flag overrides it");
        let c = serve(&["--ini", &ini.p(), "-M"]);
        assert!(c.master, "flag after the ini overrides it");
    }

    #[test]
    fn ini_position_semantics() {
        let ini = TempIni::new("pos", "[uwsgi]\nhttp = :2\nprocesses = 4\nenv = B=2\n");
        let c = serve(&[
            "--http",
            ":1",
            "-p",
            "2",
            "--env",
            "A=1",
            "--ini",
            &ini.p(),
            "--http",
            ":3",
        ]);
        assert_eq!(
            c.listeners
                .iter()
                .map(|(_, a)| a.to_string())
                .collect::<Vec<_>>(),
            ["0.0.0.0:1", "0.0.0.0:2", "0.0.0.0:3"]
        );
        assert_eq!(c.processes, 4);
        assert_eq!(c.env.len(), 2);
        let c = serve(&["--ini", &ini.p(), "-p", "7"]);
        assert_eq!(c.processes, 7);
        // Repeated --ini applies twice.
        assert_eq!(
            serve(&["--ini", &ini.p(), "--ini", &ini.p()])
                .listeners
                .len(),
            2
        );
    }

    #[test]
    fn ini_magic_variables() {
        let ini = TempIni::new(
            "magic",
            "[uwsgi]\nhttp = %dapp.sock\npy-tracebacker = /tmp/%n-tb\npidfile = %d%n.pid\nchdir = %d\nenv = FILE=%s\nenv = EXT=%x\nenv = PATH=%p\nenv = PCT=100%%\nenv = KEEP=%q%\nenv = DIR=%c\n",
        );
        let abs = std::fs::canonicalize(&ini.path).unwrap();
        let dir = format!("{}/", abs.parent().unwrap().display());
        let stem = abs.file_stem().unwrap().to_string_lossy().into_owned();
        let c = serve(&["--ini", &ini.p()]);
        assert_eq!(
            c.listeners[0].1,
            ListenAddr::Unix(format!("{dir}app.sock").into())
        );
        assert_eq!(c.py_tracebacker, Some(format!("/tmp/{stem}-tb")));
        assert_eq!(c.pidfile, Some(format!("{dir}{stem}.pid").into()));
        assert_eq!(c.chdir, Some(PathBuf::from(&dir)));
        let env: Vec<(&str, &str)> = c
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let name = abs.file_name().unwrap().to_string_lossy().into_owned();
        let parent = abs
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let path = abs.display().to_string();
        assert_eq!(
            env,
            [
                ("FILE", name.as_str()),
                ("EXT", "ini"),
                ("PATH", path.as_str()),
                ("PCT", "100%"),
                ("KEEP", "%q%"),
                ("DIR", parent.as_str())
            ]
        );
    }

    #[test]
    fn ini_errors() {
        let missing = std::env::temp_dir().join("uwsgi_rs_cfg_definitely_missing.ini");
        assert_eq!(
            err(&["--ini", &missing.display().to_string()]),
            format!(
                "cannot read ini file {}: No such file or directory",
                missing.display()
            )
        );
        let ini = TempIni::new("nosection", "[app]\nhttp = :1\n");
        assert_eq!(
            err(&["--ini", &ini.p()]),
            format!("ini file {} has no [uwsgi] section", ini.p())
        );
        let ini = TempIni::new("empty", "");
        assert_eq!(
            err(&["--ini", &ini.p()]),
            format!("ini file {} has no [uwsgi] section", ini.p())
        );
        let ini = TempIni::new("unknown", "[uwsgi]\nhttp = :1\n\nfoo = bar\n");
        assert_eq!(
            err(&["--ini", &ini.p()]),
            format!("unknown option 'foo' in ini file {}:4", ini.p())
        );
        let ini = TempIni::new("badval", "[uwsgi]\nhttp = :1\nprocesses = lots\n");
        assert_eq!(
            err(&["--ini", &ini.p()]),
            format!(
                "{}:3: invalid value 'lots' for --processes: expected an integer from 1 to 1024",
                ini.p()
            )
        );
        let ini = TempIni::new("unsup", "[uwsgi]\nemperor = /etc\n");
        assert_eq!(
            err(&["--ini", &ini.p()]),
            format!(
                "{}:2: option --emperor is not supported by uwsgi-rs",
                ini.p()
            )
        );
        let ini = TempIni::new("noval", "[uwsgi]\nhttp\n");
        assert_eq!(
            err(&["--ini", &ini.p()]),
            format!("{}:2: option --http requires a value", ini.p())
        );
        let ini = TempIni::new("emptyval", "[uwsgi]\nmodule =\n");
        assert_eq!(
            err(&["--ini", &ini.p()]),
            format!("{}:2: option --module requires a non-empty value", ini.p())
        );
        let ini = TempIni::new("syntax", "[uwsgi]\nhttp :1\n");
        assert_eq!(
            err(&["--ini", &ini.p()]),
            format!(
                "invalid line in ini file {}:2: expected KEY = VALUE or [SECTION]",
                ini.p()
            )
        );
        let ini = TempIni::new("header", "[uwsgi\nhttp = :1\n");
        assert_eq!(
            err(&["--ini", &ini.p()]),
            format!(
                "invalid line in ini file {}:1: expected KEY = VALUE or [SECTION]",
                ini.p()
            )
        );
        let ini = TempIni::new("switchval", "[uwsgi]\nmaster = perhaps\n");
        assert_eq!(
            err(&["--ini", &ini.p()]),
            format!("{}:2: invalid value 'perhaps' for --master: expected true/false, 1/0, yes/no or on/off", ini.p())
        );
        // Errors are raised before anything in a file with no section is applied.
        assert_eq!(err(&["--ini"]), "option --ini requires a value");
    }

    #[test]
    fn ini_nested_and_depth_limit() {
        let inner = TempIni::new("inner", "[uwsgi]\nprocesses = 6\n");
        let outer = TempIni::new(
            "outer",
            &format!("[uwsgi]\nhttp = :1\nini = {}\nthreads = 2\n", inner.p()),
        );
        let c = serve(&["--ini", &outer.p()]);
        assert_eq!((c.processes, c.threads), (6, 2));
        let selfref = TempIni::new("loop", "[uwsgi]\nhttp = :1\nini = %p\n");
        let e = err(&["--ini", &selfref.p()]);
        assert!(e.starts_with(&format!("{}:3: ", selfref.p())), "{e}");
        assert!(e.contains("ini files nested more than 8 deep at "), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn ini_help_stops() {
        let ini = TempIni::new("help", "[uwsgi]\nhelp = true\nfoo = bar\n");
        assert!(matches!(parse(&["--ini", &ini.p()]), Ok(Command::Help(_))));
    }

    #[test]
    fn ini_spec_split() {
        assert_eq!(split_ini_spec("a.ini"), (Path::new("a.ini"), "uwsgi"));
        assert_eq!(split_ini_spec("a.ini:prod"), (Path::new("a.ini"), "prod"));
        assert_eq!(split_ini_spec("a.ini:"), (Path::new("a.ini"), "uwsgi"));
        assert_eq!(
            split_ini_spec("/x:y/a.ini"),
            (Path::new("/x:y/a.ini"), "uwsgi")
        );
    }

    #[test]
    fn all_messages_are_one_line() {
        let cases: &[&[&str]] = &[
            &["--foo"],
            &["--emperor"],
            &["--http"],
            &["--http="],
            &["x"],
            &["-p", "0"],
            &[],
            &["--http", ":1", "-w", "a", "--file", "b"],
            &["--ini", "/nonexistent/x.ini"],
        ];
        for c in cases {
            let e = err(c);
            assert!(!e.contains('\n') && !e.is_empty(), "{e}");
        }
    }
}
