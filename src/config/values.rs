//! Option values: the parsers that turn one option's text into a typed value,
//! and the typed values of options whose behaviour lands later (static maps,
//! routes, mounts, loggers, hooks...), so that the engineer who implements an
//! option family only writes behaviour.
//!
//! Every parser takes the option name as typed (for the message) and the value
//! after expansion, and returns a [`ConfigError`] naming both on bad input. It
//! never panics and does no I/O. Numbers follow uWSGI's reading where real
//! configs rely on it: a trailing `; comment` or `# comment` after a number or a
//! switch is dropped (uWSGI's ini parser keeps it, and then strtol/`true`
//! tests ignore it).

use std::fmt;
use std::path::PathBuf;

use super::report::ConfigError;

// ---------------------------------------------------------------------------
// Listeners
// ---------------------------------------------------------------------------

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

/// `--protocol`: the protocol of `--socket` listeners (uWSGI's "default
/// sockets"). `http11` is HTTP here: every HTTP listener keeps connections alive.
pub fn protocol_value(option: &str, v: &str) -> Result<Protocol, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "uwsgi" => Ok(Protocol::Uwsgi),
        "http" | "http11" => Ok(Protocol::Http),
        _ => Err(invalid(option, v, "uwsgi, http or http11")),
    }
}

/// `--https ADDR,CERT,KEY[,CIPHERS[,CA]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsListener {
    pub addr: ListenAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ciphers: Option<String>,
    pub ca: Option<PathBuf>,
}

pub fn https(option: &str, s: &str) -> Result<HttpsListener, ConfigError> {
    let bad = || invalid(option, s, "ADDR,CERT,KEY[,CIPHERS[,CA]]");
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() < 3 || parts.len() > 5 || parts[..3].iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    let nonempty = |i: usize| parts.get(i).filter(|p| !p.is_empty());
    Ok(HttpsListener {
        addr: ListenAddr::parse(parts[0]).map_err(|_| bad())?,
        cert: PathBuf::from(parts[1]),
        key: PathBuf::from(parts[2]),
        ciphers: nonempty(3).map(|c| c.to_string()),
        ca: nonempty(4).map(PathBuf::from),
    })
}

// ---------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------

pub fn invalid(option: &str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        option: option.to_string(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// `value ; comment` or `value # comment` -> `value`. Only a `;` or `#` after
/// whitespace starts a comment, so `#anchor` or `a;b` stay.
pub fn strip_inline_comment(v: &str) -> &str {
    let bytes = v.as_bytes();
    for i in 1..bytes.len() {
        if (bytes[i] == b';' || bytes[i] == b'#') && bytes[i - 1].is_ascii_whitespace() {
            return v[..i].trim_end();
        }
    }
    v.trim()
}

/// A switch value: absent or empty means on, as do uWSGI's true words.
pub fn flag(option: &str, v: Option<&str>) -> Result<bool, ConfigError> {
    let Some(raw) = v else { return Ok(true) };
    match strip_inline_comment(raw).to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" | "on" | "y" | "enable" | "enabled" => Ok(true),
        "false" | "0" | "no" | "off" | "n" | "disable" | "disabled" => Ok(false),
        _ => Err(invalid(option, raw, "true/false, 1/0, yes/no or on/off")),
    }
}

/// A plain decimal integer in `min..=max` (a trailing comment is dropped).
pub fn int(option: &str, v: Option<&str>, min: u64, max: u64) -> Result<u64, ConfigError> {
    let raw = v.unwrap_or_default();
    let s = strip_inline_comment(raw);
    let expected = match (min, max) {
        (0, u64::MAX) => "a non-negative integer".to_string(),
        (1, u64::MAX) => "a positive integer".to_string(),
        _ => format!("an integer from {min} to {max}"),
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(option, raw, expected));
    }
    match s.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(option, raw, expected)),
    }
}

/// A byte count: `N`, or `N` with a `k`/`m`/`g` suffix (powers of 1024). uWSGI
/// reads plain numbers for these; the suffixes are uwsgi-rs's convenience.
pub fn bytes(option: &str, v: Option<&str>) -> Result<u64, ConfigError> {
    let raw = v.unwrap_or_default();
    let s = strip_inline_comment(raw).to_ascii_lowercase();
    let (digits, mult) = match s.as_bytes().last() {
        Some(b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s.as_str(), 1),
    };
    let bad = || invalid(option, raw, "a size in bytes (optionally with k, m or g)");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(bad)
}

/// Megabytes as uWSGI reads them (`reload-on-rss = 512`, also `0.5`) -> bytes.
pub fn megabytes(option: &str, v: Option<&str>) -> Result<u64, ConfigError> {
    let raw = v.unwrap_or_default();
    let s = strip_inline_comment(raw);
    let bad = || invalid(option, raw, "a number of megabytes");
    let ok = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.bytes().filter(|&b| b == b'.').count() <= 1
        && s != ".";
    if !ok {
        return Err(bad());
    }
    let mb: f64 = s.parse().map_err(|_| bad())?;
    let b = mb * 1024.0 * 1024.0;
    if !b.is_finite() || b >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(b as u64)
}

/// Octal socket mode; absent or empty (switch form) means 0o666. uWSGI takes
/// three octal digits (`660`); a leading `0` (`0660`) is also accepted.
pub fn mode(option: &str, v: Option<&str>) -> Result<u32, ConfigError> {
    let raw = v.unwrap_or_default();
    let s = strip_inline_comment(raw);
    if s.is_empty() || s == "1" || s.eq_ignore_ascii_case("true") {
        return Ok(0o666);
    }
    octal(option, raw, s, 0o7777, "an octal mode like 660 or 0660")
}

/// `--umask 022`.
pub fn umask(option: &str, v: Option<&str>) -> Result<u32, ConfigError> {
    let raw = v.unwrap_or_default();
    octal(
        option,
        raw,
        strip_inline_comment(raw),
        0o777,
        "an octal umask like 022",
    )
}

fn octal(option: &str, raw: &str, s: &str, max: u32, expected: &str) -> Result<u32, ConfigError> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(invalid(option, raw, expected));
    }
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= max => Ok(m),
        _ => Err(invalid(option, raw, expected)),
    }
}

/// A signal number (`harakiri-graceful-signal = 15`) or name (`SIGTERM`, `TERM`).
pub fn signal(option: &str, v: Option<&str>) -> Result<i32, ConfigError> {
    let raw = v.unwrap_or_default();
    let s = strip_inline_comment(raw).to_ascii_uppercase();
    let name = s.strip_prefix("SIG").unwrap_or(&s);
    let by_name = match name {
        "HUP" => Some(1),
        "INT" => Some(2),
        "QUIT" => Some(3),
        "KILL" => Some(9),
        "USR1" => Some(10),
        "USR2" => Some(12),
        "TERM" => Some(15),
        _ => None,
    };
    if let Some(n) = by_name {
        return Ok(n);
    }
    match name.parse::<i32>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(invalid(
            option,
            raw,
            "a signal number (1-64) or name like SIGTERM",
        )),
    }
}

pub fn module_value(option: &str, s: &str) -> Result<String, ConfigError> {
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

/// `KEY=VALUE` (the value may contain `=`).
pub fn key_value(option: &str, s: &str) -> Result<(String, String), ConfigError> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(invalid(option, s, "KEY=VALUE")),
    }
}

/// `--plugin(s) LIST`: comma- or space-separated; `python`, `python3`,
/// `pythonNN`, `http` are built in, also given as `N:name`, `name_plugin.so` or
/// a path to one (`/usr/lib/uwsgi/python`). Returns the plugins that are not.
pub fn foreign_plugins(v: &str) -> Vec<String> {
    v.split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .filter(|item| {
            let name = match item.split_once(':') {
                Some((n, rest)) if n.bytes().all(|b| b.is_ascii_digit()) => rest,
                _ => item,
            };
            let name = name.rsplit('/').next().unwrap_or(name);
            let name = name.strip_suffix(".so").unwrap_or(name);
            let name = name.strip_suffix("_plugin").unwrap_or(name);
            let builtin = name == "http"
                || name == "corerouter"
                || name
                    .strip_prefix("python")
                    .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit()));
            !builtin
        })
        .map(str::to_string)
        .collect()
}

/// `USER[:GROUP]` for `--chown-socket`.
pub fn owner(option: &str, s: &str) -> Result<Owner, ConfigError> {
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (u.trim(), Some(g.trim())),
        None => (s.trim(), None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) || s.contains(char::is_whitespace) {
        return Err(invalid(option, s, "USER or USER:GROUP"));
    }
    Ok(Owner {
        user: user.to_string(),
        group: group.map(str::to_string),
    })
}

/// A user and an optional group, by name or number (resolved where used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub user: String,
    pub group: Option<String>,
}

// ---------------------------------------------------------------------------
// Static files
// ---------------------------------------------------------------------------

/// `--static-map MOUNT=PATH` / `--static-map2`: requests under MOUNT are files
/// under PATH. With static-map the mount prefix is replaced by PATH; with
/// static-map2 the whole request path is appended to PATH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticMap {
    pub mount: String,
    pub path: PathBuf,
    pub append_full_path: bool,
}

pub fn static_map(option: &str, s: &str, append_full_path: bool) -> Result<StaticMap, ConfigError> {
    match s.split_once('=') {
        Some((mount, path)) if !mount.trim().is_empty() && !path.trim().is_empty() => {
            Ok(StaticMap {
                mount: mount.trim().to_string(),
                path: PathBuf::from(path.trim()),
                append_full_path,
            })
        }
        _ => Err(invalid(option, s, "MOUNTPOINT=PATH")),
    }
}

/// A regexp the server will compile (routes, static-expires) must compile.
fn regexp(option: &str, pattern: &str) -> Result<(), ConfigError> {
    regex_lite::Regex::new(pattern)
        .map(|_| ())
        .map_err(|e| invalid(option, pattern, format!("a regular expression ({e})")))
}

/// What a `--static-expires*` rule matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiresOn {
    /// `static-expires`: the file name (regexp).
    Filename,
    /// `static-expires-uri`: REQUEST_URI (regexp).
    Uri,
    /// `static-expires-path-info`: PATH_INFO (regexp).
    PathInfo,
    /// `static-expires-type`: the content type (exact).
    ContentType,
}

/// `--static-expires REGEXP SECONDS` (the regexp is compiled where used);
/// `--static-expires-type TYPE=SECONDS`. The `-mtime` variants count the
/// seconds from the file's modification time instead of from now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticExpires {
    pub on: ExpiresOn,
    pub pattern: String,
    pub seconds: u64,
    pub from_mtime: bool,
}

pub fn static_expires(
    option: &str,
    s: &str,
    on: ExpiresOn,
    from_mtime: bool,
) -> Result<StaticExpires, ConfigError> {
    // uWSGI splits a content type from its seconds at '=', a regexp at the
    // first space (so a regexp cannot contain one).
    let (pattern, secs) = if on == ExpiresOn::ContentType {
        (s.trim().rsplit_once('='), "TYPE=SECONDS")
    } else {
        (s.trim().split_once(char::is_whitespace), "REGEXP SECONDS")
    };
    let bad = || invalid(option, s, secs);
    let (pattern, secs) = pattern.ok_or_else(bad)?;
    let pattern = pattern.trim();
    if pattern.is_empty() {
        return Err(bad());
    }
    let seconds = int(option, Some(secs.trim()), 0, u64::MAX).map_err(|_| bad())?;
    if on != ExpiresOn::ContentType {
        regexp(option, pattern)?;
    }
    Ok(StaticExpires {
        on,
        pattern: pattern.to_string(),
        seconds,
        from_mtime,
    })
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// An HTTP header line `Name: value` (`--add-header`, route `addheader:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

pub fn header(option: &str, s: &str) -> Result<Header, ConfigError> {
    let bad = || invalid(option, s, "a header line like 'Name: value'");
    let (name, value) = s.split_once(':').ok_or_else(bad)?;
    let name = name.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) || s.contains(['\r', '\n']) {
        return Err(bad());
    }
    Ok(Header {
        name: name.to_string(),
        value: value.trim().to_string(),
    })
}

/// `--mount MOUNTPOINT=APP`: APP is a file path (`.py`, `.wsgi`) or `module[:callable]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mountpoint: String,
    pub app: String,
}

pub fn mount(option: &str, s: &str) -> Result<Mount, ConfigError> {
    match s.split_once('=') {
        Some((m, app)) if !app.trim().is_empty() => {
            let m = m.trim();
            if !(m.is_empty() || m.starts_with('/')) {
                return Err(invalid(
                    option,
                    s,
                    "MOUNTPOINT=APP with MOUNTPOINT starting with /",
                ));
            }
            Ok(Mount {
                mountpoint: m.trim_end_matches('/').to_string(),
                app: app.trim().to_string(),
            })
        }
        _ => Err(invalid(option, s, "MOUNTPOINT=APP")),
    }
}

/// What a route's condition is tested against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSubject {
    /// `route`: PATH_INFO matches the regexp.
    PathInfo,
    /// `route-uri`: REQUEST_URI.
    RequestUri,
    /// `route-host`: the Host header.
    Host,
    /// `route-qs`: QUERY_STRING.
    QueryString,
    /// `route-if` / `route-if-not`: a named condition (`equal`, `startswith`,
    /// `exists`...) with its argument.
    If { negate: bool, condition: String },
    /// `route-run`: always.
    Always,
}

/// A route's action, typed for the common ones; any other uWSGI action is
/// kept by name (validated against uWSGI's list of actions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    AddHeader(Header),
    DelHeader(String),
    /// `return:STATUS` / `break:STATUS`: answer with that status and stop.
    Return(u16),
    Redirect {
        status: u16,
        url: String,
    },
    Static(PathBuf),
    Rewrite {
        to: String,
        last: bool,
    },
    Continue,
    Last,
    Break,
    Goto(String),
    Log(String),
    Other {
        name: String,
        arg: String,
    },
}

impl RouteAction {
    /// Whether uwsgi-rs carries out this action (see `routing`); routes
    /// with any other are ignored, and named at start.
    pub fn honoured(&self) -> bool {
        match self {
            RouteAction::AddHeader(_)
            | RouteAction::DelHeader(_)
            | RouteAction::Return(_)
            | RouteAction::Break
            | RouteAction::Redirect { .. }
            | RouteAction::Static(_)
            | RouteAction::Continue
            | RouteAction::Last
            | RouteAction::Log(_) => true,
            RouteAction::Other { name, .. } => name == "donotlog",
            RouteAction::Rewrite { .. } | RouteAction::Goto(_) => false,
        }
    }

    /// The action's name as written in a config.
    pub fn name(&self) -> &str {
        match self {
            RouteAction::AddHeader(_) => "addheader",
            RouteAction::DelHeader(_) => "delheader",
            RouteAction::Return(_) => "return",
            RouteAction::Redirect { .. } => "redirect",
            RouteAction::Static(_) => "static",
            RouteAction::Rewrite { .. } => "rewrite",
            RouteAction::Continue => "continue",
            RouteAction::Last => "last",
            RouteAction::Break => "break",
            RouteAction::Goto(_) => "goto",
            RouteAction::Log(_) => "log",
            RouteAction::Other { name, .. } => name,
        }
    }
}

/// A `--route*` rule: subject, pattern (a PCRE regexp, compiled where used;
/// empty for `route-run`) and action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub subject: RouteSubject,
    pub pattern: String,
    pub action: RouteAction,
}

/// Route actions uWSGI 2.0 registers (core and plugins).
const ROUTE_ACTIONS: &[&str] = &[
    "-",
    "access",
    "addheader",
    "addvar",
    "alarm",
    "basicauth",
    "basicauth-next",
    "break",
    "break-with-status",
    "cache",
    "cache-continue",
    "cache-store",
    "cachedec",
    "cachediv",
    "cacheinc",
    "cachemul",
    "cacheset",
    "cachestore",
    "cachevar",
    "call",
    "cgi",
    "cgihelper",
    "chdir",
    "chunked",
    "clearheaders",
    "continue",
    "delheader",
    "disableheaders",
    "donotlog",
    "donotoffload",
    "expires",
    "fastfile",
    "fastfile-next",
    "fcgi",
    "fcgiauth",
    "file",
    "file-next",
    "fixcl",
    "fixpathinfo",
    "flush",
    "forcecl",
    "goto",
    "gzip",
    "harakiri",
    "hash",
    "http",
    "httpconnect",
    "httpdumb",
    "last",
    "log",
    "logvar",
    "memcached",
    "memcached-continue",
    "memcached-store",
    "memcachedstore",
    "metricdec",
    "metricdiv",
    "metricinc",
    "metricmul",
    "metricset",
    "offload",
    "proxyhttp",
    "proxyhttpconnect",
    "proxyuwsgi",
    "redirect",
    "redirect-301",
    "redirect-302",
    "redirect-permanent",
    "redis",
    "redis-continue",
    "redis-store",
    "redisstore",
    "remheader",
    "resetheaders",
    "return",
    "rewrite",
    "rewrite-last",
    "rpc",
    "rpcblob",
    "rpcnext",
    "rpcraw",
    "rpcret",
    "rpcvar",
    "send",
    "send-crnl",
    "sendfile",
    "sendfile-next",
    "setapp",
    "setdocroot",
    "setfile",
    "sethome",
    "setmethod",
    "setmodifier1",
    "setmodifier2",
    "setpathinfo",
    "setprocname",
    "setremoteaddr",
    "setscheme",
    "setscriptname",
    "seturi",
    "setuser",
    "signal",
    "ssi",
    "static",
    "static-next",
    "symcall",
    "symcall-next",
    "template",
    "to-file",
    "tofile",
    "toupper",
    "toxslt",
    "uwsgi",
    "xmldir",
    "xslt",
];

/// Parse a `--route*` value. `subject` comes from the option name.
pub fn route(option: &str, s: &str, subject: RouteSubject) -> Result<Route, ConfigError> {
    let s = s.trim();
    let (subject, pattern, action) = match subject {
        RouteSubject::Always => (RouteSubject::Always, String::new(), s),
        RouteSubject::If { negate, .. } => {
            let (cond, action) = s
                .split_once(char::is_whitespace)
                .ok_or_else(|| invalid(option, s, "CONDITION:ARG ACTION[:ARGS]"))?;
            let (name, arg) = cond
                .split_once(':')
                .ok_or_else(|| invalid(option, s, "CONDITION:ARG ACTION[:ARGS]"))?;
            let subject = RouteSubject::If {
                negate,
                condition: name.to_string(),
            };
            (subject, arg.to_string(), action.trim_start())
        }
        other => {
            let (pattern, action) = s
                .split_once(char::is_whitespace)
                .ok_or_else(|| invalid(option, s, "REGEXP ACTION[:ARGS]"))?;
            regexp(option, pattern)?;
            (other, pattern.to_string(), action.trim_start())
        }
    };
    Ok(Route {
        subject,
        pattern,
        action: route_action(option, action)?,
    })
}

fn route_action(option: &str, s: &str) -> Result<RouteAction, ConfigError> {
    let (name, arg) = match s.split_once(':') {
        Some((n, a)) => (n.trim(), a),
        None => (s.trim(), ""),
    };
    let status = |arg: &str| -> Result<u16, ConfigError> {
        match arg.split_whitespace().next().map(str::parse::<u16>) {
            Some(Ok(n)) if (100..=599).contains(&n) => Ok(n),
            _ => Err(invalid(
                option,
                s,
                format!("{name}:STATUS with a status from 100 to 599"),
            )),
        }
    };
    let needs_arg = |what: &str| -> Result<String, ConfigError> {
        if arg.trim().is_empty() {
            Err(invalid(option, s, format!("{name}:{what}")))
        } else {
            Ok(arg.trim().to_string())
        }
    };
    Ok(match name {
        "addheader" => RouteAction::AddHeader(header(option, arg)?),
        "delheader" | "remheader" => RouteAction::DelHeader(needs_arg("NAME")?),
        "return" | "break-with-status" => RouteAction::Return(status(arg)?),
        "break" if !arg.trim().is_empty() => RouteAction::Return(status(arg)?),
        "break" => RouteAction::Break,
        "redirect" | "redirect-302" => RouteAction::Redirect {
            status: 302,
            url: needs_arg("URL")?,
        },
        "redirect-301" | "redirect-permanent" => RouteAction::Redirect {
            status: 301,
            url: needs_arg("URL")?,
        },
        "static" => RouteAction::Static(PathBuf::from(needs_arg("PATH")?)),
        "rewrite" => RouteAction::Rewrite {
            to: needs_arg("PATH")?,
            last: false,
        },
        "rewrite-last" => RouteAction::Rewrite {
            to: needs_arg("PATH")?,
            last: true,
        },
        "continue" => RouteAction::Continue,
        "last" => RouteAction::Last,
        "goto" => RouteAction::Goto(needs_arg("LABEL")?),
        "log" => RouteAction::Log(arg.to_string()),
        other if ROUTE_ACTIONS.contains(&other) => RouteAction::Other {
            name: other.to_string(),
            arg: arg.to_string(),
        },
        _ => return Err(invalid(
            option,
            s,
            "a uWSGI route action (addheader, return, redirect, static, rewrite, continue, ...)",
        )),
    })
}

// ---------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------

/// `--logger [NAME] PLUGIN[:ARGS]` / `--req-logger`: e.g. `file:/var/log/x.log`,
/// `stdio`, `syslog:tag`, `cron file:/x.log` (named logger for `log-route`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerSpec {
    pub name: Option<String>,
    pub plugin: String,
    pub arg: String,
}

pub fn logger(option: &str, s: &str) -> Result<LoggerSpec, ConfigError> {
    let s = s.trim();
    let (name, spec) = match s.split_once(char::is_whitespace) {
        Some((n, rest)) if !n.contains(':') => (Some(n.to_string()), rest.trim()),
        _ => (None, s),
    };
    let (plugin, arg) = match spec.split_once(':') {
        Some((p, a)) => (p, a),
        None => (spec, ""),
    };
    const KNOWN: &[&str] = &[
        "file",
        "stdio",
        "syslog",
        "rsyslog",
        "socket",
        "udp",
        "fd",
        "redislog",
        "mongodblog",
        "zeromq",
        "graylog2",
        "systemd",
        "sqlite3",
        "crypto",
        "pipe",
    ];
    if !KNOWN.contains(&plugin) || (plugin == "file" && arg.is_empty()) {
        return Err(invalid(
            option,
            s,
            "[NAME] file:PATH, stdio, syslog[:TAG], socket:ADDR or another uWSGI logger",
        ));
    }
    Ok(LoggerSpec {
        name,
        plugin: plugin.to_string(),
        arg: arg.to_string(),
    })
}

/// `--log-route NAME REGEXP` / `--log-req-route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRoute {
    pub logger: String,
    pub pattern: String,
}

pub fn log_route(option: &str, s: &str) -> Result<LogRoute, ConfigError> {
    match s.trim().split_once(char::is_whitespace) {
        Some((name, re)) if !re.trim().is_empty() => Ok(LogRoute {
            logger: name.to_string(),
            pattern: re.trim().to_string(),
        }),
        _ => Err(invalid(option, s, "LOGGER REGEXP")),
    }
}

/// `--log-date[=FORMAT]`: bare or a true word means uWSGI's default date
/// prefix; anything else is a strftime format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDate {
    Default,
    Strftime(String),
}

pub fn log_date(v: Option<&str>) -> Option<LogDate> {
    let Some(raw) = v else {
        return Some(LogDate::Default);
    };
    let s = raw.trim();
    match s.to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "on" | "yes" => Some(LogDate::Default),
        "false" | "0" | "off" | "no" => None,
        _ => Some(LogDate::Strftime(s.to_string())),
    }
}

// ---------------------------------------------------------------------------
// Worker lifecycle
// ---------------------------------------------------------------------------

/// `--cheaper-algo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheaperAlgo {
    Spare,
    Spare2,
    Backlog,
    Busyness,
    Manual,
}

pub fn cheaper_algo(option: &str, s: &str) -> Result<CheaperAlgo, ConfigError> {
    match strip_inline_comment(s).to_ascii_lowercase().as_str() {
        "spare" => Ok(CheaperAlgo::Spare),
        "spare2" => Ok(CheaperAlgo::Spare2),
        "backlog" => Ok(CheaperAlgo::Backlog),
        "busyness" => Ok(CheaperAlgo::Busyness),
        "manual" => Ok(CheaperAlgo::Manual),
        _ => Err(invalid(
            option,
            s,
            "spare, spare2, backlog, busyness or manual",
        )),
    }
}

/// A uWSGI hook (`hook-master-start = unix_signal:15 gracefully_kill_them_all`,
/// `hook-pre-app = exec:./manage.py migrate`): action and argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub action: HookAction,
    pub arg: String,
    /// `!action:`: uWSGI's private hook, run without echoing its argument.
    pub private: bool,
}

/// The hook actions uWSGI's core registers (core/hooks.c) that uwsgi-rs
/// runs; `mount`, `call*`, `rpc`, `alarm`, `hostname` are not among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAction {
    /// `exec:CMD`: run CMD with /bin/sh and wait; failing is fatal.
    Exec,
    /// `safeexec:CMD`: the same, its failure only logged.
    SafeExec,
    /// `print:` / `log:` TEXT: a log line.
    Print,
    /// `write:FILE TEXT`, `writen:` (adds a newline), `append:`, `appendn:`.
    Write,
    Writen,
    Append,
    Appendn,
    /// `writefifo:FIFO TEXT`: write TEXT to a fifo that has a reader
    /// (another master's `--master-fifo`); nobody reading is not an error.
    WriteFifo,
    /// `spinningfifo:FIFO TEXT`: wait until the fifo has a reader, then write.
    SpinningFifo,
    /// `create:` / `creat:` FILE: create (truncate) it.
    Create,
    Unlink,
    Mkdir,
    /// `cd:` / `chdir:` DIR.
    Chdir,
    /// `putenv:NAME=VALUE`.
    Putenv,
    /// `chmod:FILE MODE` (octal).
    Chmod,
    Sticky,
    /// `chown:FILE USER GROUP`, `chown2:FILE UID GID`.
    Chown,
    Chown2,
    /// `exit:[CODE]`.
    Exit,
    /// `unix_signal:N FUNCTION`: signal N asks the master for what the uWSGI
    /// function FUNCTION does (gracefully_kill_them_all, grace_them_all...).
    UnixSignal,
    /// `wait_for_file:`, `wait_for_dir:`, `wait_for_fs:` PATH and
    /// `wait_for_socket:ADDR`: wait until it exists (accepts).
    WaitForFile,
    WaitForDir,
    WaitForFs,
    WaitForSocket,
}

impl HookAction {
    const NAMES: &'static [(&'static str, HookAction)] = &[
        ("exec", HookAction::Exec),
        ("safeexec", HookAction::SafeExec),
        ("print", HookAction::Print),
        ("log", HookAction::Print),
        ("write", HookAction::Write),
        ("writen", HookAction::Writen),
        ("append", HookAction::Append),
        ("appendn", HookAction::Appendn),
        ("writefifo", HookAction::WriteFifo),
        ("spinningfifo", HookAction::SpinningFifo),
        ("create", HookAction::Create),
        ("creat", HookAction::Create),
        ("unlink", HookAction::Unlink),
        ("mkdir", HookAction::Mkdir),
        ("cd", HookAction::Chdir),
        ("chdir", HookAction::Chdir),
        ("putenv", HookAction::Putenv),
        ("chmod", HookAction::Chmod),
        ("sticky", HookAction::Sticky),
        ("chown", HookAction::Chown),
        ("chown2", HookAction::Chown2),
        ("exit", HookAction::Exit),
        ("unix_signal", HookAction::UnixSignal),
        ("wait_for_file", HookAction::WaitForFile),
        ("wait_for_dir", HookAction::WaitForDir),
        ("wait_for_fs", HookAction::WaitForFs),
        ("wait_for_socket", HookAction::WaitForSocket),
    ];

    pub fn parse(name: &str) -> Option<HookAction> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
    }

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("?", |(n, _)| n)
    }
}

/// `unix_signal:N FUNCTION` -> (N, FUNCTION), FUNCTION one the master knows.
pub fn unix_signal_arg(option: &str, arg: &str) -> Result<(i32, String), ConfigError> {
    let known = || {
        crate::actions::SIGNAL_FUNCTIONS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let bad = || {
        invalid(
            option,
            &format!("unix_signal:{arg}"),
            format!(
                "unix_signal:SIGNAL FUNCTION with FUNCTION one of {}",
                known()
            ),
        )
    };
    let (sig, func) = arg.trim().split_once(char::is_whitespace).ok_or_else(bad)?;
    let sig: i32 = sig.parse().map_err(|_| bad())?;
    let func = func.trim();
    if crate::actions::signal_function(func).is_none() {
        return Err(bad());
    }
    if crate::actions::signal_reserved(sig) {
        return Err(invalid(
            option,
            &format!("unix_signal:{arg}"),
            "a signal the master can handle (not KILL, STOP or CHLD)",
        ));
    }
    Ok((sig, func.to_string()))
}

pub fn hook(option: &str, s: &str) -> Result<Hook, ConfigError> {
    let names = || {
        HookAction::NAMES
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match s.trim().split_once(':') {
        Some((action, arg)) if !action.is_empty() && !action.contains(char::is_whitespace) => {
            // `!action` is uWSGI's private hook (not echoed in the log).
            let private = action.starts_with('!');
            let action = action.strip_prefix('!').unwrap_or(action);
            let Some(action) = HookAction::parse(action) else {
                return Err(invalid(
                    option,
                    s,
                    format!("a hook action uwsgi-rs runs: {}", names()),
                ));
            };
            if action == HookAction::UnixSignal {
                unix_signal_arg(option, arg)?;
            }
            Ok(Hook {
                action,
                arg: arg.to_string(),
                private,
            })
        }
        _ => Err(invalid(option, s, "ACTION:ARGS, e.g. exec:COMMAND")),
    }
}

/// `--cron` / `--unique-cron MIN HOUR MDAY MON WDAY COMMAND` (-1 = any,
/// -N = every N). uWSGI's fields, not cron(8)'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronJob {
    /// minute, hour, day of month, month, day of week.
    pub fields: [i32; 5],
    pub command: String,
    /// `unique-cron`: never two runs of this job at once.
    pub unique: bool,
    /// `cron2 harakiri=N`: kill the command after N seconds (`Some(0)`:
    /// never, even with `--cron-harakiri`); `None`: `--cron-harakiri`'s.
    pub harakiri: Option<u64>,
}

pub fn cron(option: &str, s: &str, unique: bool) -> Result<CronJob, ConfigError> {
    let bad = || {
        invalid(
            option,
            s,
            "MINUTE HOUR DAY MONTH WEEKDAY COMMAND (numbers, -1 = any)",
        )
    };
    let mut rest = s.trim();
    let mut fields = [0i32; 5];
    for f in fields.iter_mut() {
        let (tok, tail) = rest.split_once(char::is_whitespace).ok_or_else(bad)?;
        *f = tok.parse().map_err(|_| bad())?;
        rest = tail.trim_start();
    }
    if rest.is_empty() {
        return Err(bad());
    }
    Ok(CronJob {
        fields,
        command: rest.to_string(),
        unique,
        harakiri: None,
    })
}

/// `--cron2 [minute=M,hour=H,day=D,month=MON,week=W,unique=1,harakiri=N] COMMAND`
/// (uWSGI's `uwsgi_opt_add_cron2`): the fields not given are -1 (any), so
/// a bare COMMAND runs every minute. The key list is the first word when it
/// has an `=`; uWSGI's `legion` key is refused (uwsgi-rs has no legions).
pub fn cron2(option: &str, s: &str) -> Result<CronJob, ConfigError> {
    let s = s.trim();
    let (keys, command) = match s.split_once(' ') {
        Some((first, rest)) if first.contains('=') => (first, rest.trim_start()),
        _ if !s.contains(' ') && s.contains('=') => (s, ""),
        _ => ("", s),
    };
    if command.is_empty() {
        return Err(invalid(
            option,
            s,
            "[minute=M,hour=H,day=D,month=MON,week=W,unique=1,harakiri=N] COMMAND",
        ));
    }
    let mut job = CronJob {
        fields: [-1; 5],
        command: command.to_string(),
        unique: false,
        harakiri: None,
    };
    for kv in keys.split(',').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let n: i64 = v
            .parse()
            .map_err(|_| invalid(option, s, format!("{k}= takes a number")))?;
        let field = |i: usize, job: &mut CronJob| {
            i32::try_from(n)
                .map(|n| job.fields[i] = n)
                .map_err(|_| invalid(option, s, format!("{k}={v} is out of range")))
        };
        match k {
            "minute" => field(0, &mut job)?,
            "hour" => field(1, &mut job)?,
            "day" => field(2, &mut job)?,
            "month" => field(3, &mut job)?,
            "week" => field(4, &mut job)?,
            "unique" => job.unique = n != 0,
            "harakiri" => job.harakiri = Some(n.max(0) as u64),
            "legion" => {
                return Err(invalid(option, s, "legion= needs uWSGI's legions, which uwsgi-rs has not: drop it (one server runs the job) or run the job from your scheduler"))
            }
            _ => {
                return Err(invalid(
                    option,
                    s,
                    format!("unknown key {k} (minute, hour, day, month, week, unique, harakiri)"),
                ))
            }
        }
    }
    Ok(job)
}

/// A command the master starts and supervises (`attach-daemon`,
/// `smart-attach-daemon PIDFILE COMMAND`, `attach-daemon2 KEY=VALUE,...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    pub command: String,
    /// Smart daemons: the pidfile the command (or, with `daemonize`, the
    /// master) writes; the daemon outlives reloads and the master's exit.
    pub pidfile: Option<PathBuf>,
    /// `smart-attach-daemon2`, `daemonize=1`: the master writes the pidfile.
    pub daemonize: bool,
    /// Pidfile checks (one a second) before a smart daemon that has not
    /// written its pidfile is said not to have daemonized (default 10).
    pub freq: u32,
    /// `attach-control-daemon`, `control=1`: its death stops the server.
    pub control: bool,
    pub stop_signal: i32,
    /// Signal that stops it on a reload (default: `stop_signal`).
    pub reload_signal: Option<i32>,
    /// `stdin=1`: keep the server's stdin (default /dev/null).
    pub honour_stdin: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub chdir: Option<PathBuf>,
    /// Seconds: the longest respawn delay (default 300).
    pub max_throttle: Option<u64>,
    /// `notifypid=1`: a smart daemon is signalled on reload and stop too.
    pub notifypid: bool,
    /// `touch=FILE;FILE`: restart it when one of them is touched.
    pub touch: Vec<PathBuf>,
}

impl Daemon {
    pub fn new(command: &str) -> Daemon {
        Daemon {
            command: command.trim().to_string(),
            pidfile: None,
            daemonize: false,
            freq: 10,
            control: false,
            stop_signal: 15,
            reload_signal: None,
            honour_stdin: false,
            uid: None,
            gid: None,
            chdir: None,
            max_throttle: None,
            notifypid: false,
            touch: Vec::new(),
        }
    }
}

/// `smart-attach-daemon[2] PIDFILE[,FREQ] COMMAND`.
pub fn smart_daemon(option: &str, s: &str) -> Result<Daemon, ConfigError> {
    match s.trim().split_once(char::is_whitespace) {
        Some((pidfile, cmd)) if !cmd.trim().is_empty() => {
            let mut d = Daemon::new(cmd);
            let (pidfile, freq) = match pidfile.split_once(',') {
                Some((p, f)) => (
                    p,
                    Some(
                        f.parse::<u32>()
                            .map_err(|_| invalid(option, s, "PIDFILE[,FREQ] COMMAND"))?,
                    ),
                ),
                None => (pidfile, None),
            };
            d.pidfile = Some(PathBuf::from(pidfile));
            d.freq = freq.unwrap_or(10);
            d.daemonize = option.ends_with('2');
            Ok(d)
        }
        _ => Err(invalid(option, s, "PIDFILE COMMAND")),
    }
}

/// `attach-daemon2 cmd=COMMAND,pidfile=...,daemonize=1,...` (uWSGI's keys;
/// a `\` escapes a comma or a backslash in a value).
pub fn daemon2(option: &str, s: &str) -> Result<Daemon, ConfigError> {
    let mut d = Daemon::new("");
    let mut command = None;
    for (key, value) in kv_list(s) {
        let bad = |what: &str| invalid(option, s, format!("{key}={value}: {what}"));
        let flag = || !matches!(value.as_str(), "" | "0" | "false" | "no" | "off");
        let number = || value.parse::<u64>().map_err(|_| bad("a number"));
        match key.as_str() {
            "command" | "cmd" | "exec" => command = Some(value.clone()),
            "freq" => d.freq = number()? as u32,
            "pidfile" => d.pidfile = Some(PathBuf::from(&value)),
            "control" => d.control = flag(),
            "daemonize" | "daemon" => d.daemonize = flag(),
            "touch" => d.touch = value.split(';').filter(|t| !t.is_empty()).map(PathBuf::from).collect(),
            "stopsignal" | "stop_signal" => d.stop_signal = signal(option, Some(&value))?,
            "reloadsignal" | "reload_signal" => d.reload_signal = Some(signal(option, Some(&value))?),
            "stdin" => d.honour_stdin = flag(),
            "uid" => d.uid = Some(number()? as u32),
            "gid" => d.gid = Some(number()? as u32),
            "chdir" => d.chdir = Some(PathBuf::from(&value)),
            "max_throttle" => d.max_throttle = Some(number()?),
            "notifypid" => d.notifypid = flag(),
            "ns_pid" | "legion" => {
                return Err(bad("not supported by uwsgi-rs"));
            }
            _ => return Err(bad("unknown key (cmd, pidfile, daemonize, freq, control, touch, stopsignal, reloadsignal, stdin, uid, gid, chdir, max_throttle, notifypid)")),
        }
    }
    match command {
        Some(c) if !c.trim().is_empty() => d.command = c.trim().to_string(),
        _ => return Err(invalid(option, s, "a cmd= key: cmd=COMMAND,...")),
    }
    if d.daemonize && d.pidfile.is_none() {
        return Err(invalid(option, s, "daemonize=1 needs a pidfile= key"));
    }
    Ok(d)
}

/// `k=v,k=v` with `\` escaping the next character.
fn kv_list(s: &str) -> Vec<(String, String)> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = s.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            ',' => items.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    items.push(cur);
    items
        .into_iter()
        .filter(|i| !i.trim().is_empty())
        .map(|i| match i.split_once('=') {
            Some((k, v)) => (k.trim().to_string(), v.to_string()),
            None => (i.trim().to_string(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(r: Result<impl fmt::Debug, ConfigError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn inline_comments() {
        assert_eq!(strip_inline_comment("true ; delete sockets"), "true");
        assert_eq!(strip_inline_comment("65536  # Increase"), "65536");
        assert_eq!(strip_inline_comment("60\t; seconds"), "60");
        assert_eq!(strip_inline_comment("a;b#c"), "a;b#c");
        assert_eq!(strip_inline_comment(" 5 "), "5");
        assert_eq!(strip_inline_comment(";x"), ";x");
    }

    #[test]
    fn flags() {
        for t in [
            None,
            Some(""),
            Some("true"),
            Some("On"),
            Some("1 ; yes"),
            Some("yes"),
        ] {
            assert!(flag("--x", t).unwrap(), "{t:?}");
        }
        for f in ["false", "OFF", "0", "no # never"] {
            assert!(!flag("--x", Some(f)).unwrap(), "{f}");
        }
        assert_eq!(
            e(flag("--master", Some("perhaps"))),
            "invalid value 'perhaps' for --master: expected true/false, 1/0, yes/no or on/off"
        );
    }

    #[test]
    fn integers_and_sizes() {
        assert_eq!(int("--x", Some("60 ; seconds"), 0, u64::MAX).unwrap(), 60);
        assert!(int("--x", Some("6O"), 0, 100).is_err());
        assert_eq!(
            e(int("--processes", Some("0"), 1, 1024)),
            "invalid value '0' for --processes: expected an integer from 1 to 1024"
        );
        assert_eq!(bytes("--x", Some("16192")).unwrap(), 16192);
        assert_eq!(bytes("--x", Some("64k")).unwrap(), 65536);
        assert_eq!(bytes("--x", Some("2G")).unwrap(), 2 << 30);
        assert!(bytes("--x", Some("true")).is_err());
        assert!(bytes("--x", Some("99999999999999999999g")).is_err());
        assert_eq!(megabytes("--x", Some("512")).unwrap(), 512 << 20);
        assert_eq!(megabytes("--x", Some("0.5")).unwrap(), 1 << 19);
        assert!(megabytes("--x", Some("1.2.3")).is_err());
        assert!(megabytes("--x", Some("-1")).is_err());
    }

    #[test]
    fn modes_and_signals() {
        assert_eq!(mode("--c", None).unwrap(), 0o666);
        assert_eq!(mode("--c", Some("660")).unwrap(), 0o660);
        assert_eq!(mode("--c", Some("0600")).unwrap(), 0o600);
        assert!(mode("--c", Some("999")).is_err());
        assert_eq!(umask("--umask", Some("0022")).unwrap(), 0o022);
        assert!(umask("--umask", Some("1777")).is_err());
        assert_eq!(signal("--s", Some("15")).unwrap(), 15);
        assert_eq!(signal("--s", Some("SIGUSR1")).unwrap(), 10);
        assert_eq!(signal("--s", Some("term")).unwrap(), 15);
        assert!(signal("--s", Some("0")).is_err());
    }

    #[test]
    fn https_listeners() {
        let h = https("--https", "0.0.0.0:8443,/opt/n.crt,/opt/n.key").unwrap();
        assert_eq!(h.addr, ListenAddr::parse("0.0.0.0:8443").unwrap());
        assert_eq!(
            (h.cert, h.key),
            (PathBuf::from("/opt/n.crt"), PathBuf::from("/opt/n.key"))
        );
        assert_eq!(h.ciphers, None);
        let h = https("--https", ":443,c,k,HIGH,ca.pem").unwrap();
        assert_eq!(
            (h.ciphers.as_deref(), h.ca),
            (Some("HIGH"), Some(PathBuf::from("ca.pem")))
        );
        assert!(https("--https", ":443,cert").is_err());
        assert!(https("--https", ":99999,c,k").is_err());
    }

    #[test]
    fn plugins() {
        assert!(foreign_plugins("python3,http").is_empty());
        assert!(foreign_plugins("0:python3 http_plugin.so").is_empty());
        assert!(foreign_plugins("/usr/lib/uwsgi/python").is_empty());
        assert!(foreign_plugins("python311").is_empty());
        assert_eq!(foreign_plugins("python3,router_static"), ["router_static"]);
        assert_eq!(foreign_plugins("gevent"), ["gevent"]);
    }

    #[test]
    fn owners_and_pairs() {
        assert_eq!(
            owner("--chown-socket", "nginx:nginx").unwrap(),
            Owner {
                user: "nginx".into(),
                group: Some("nginx".into())
            }
        );
        assert_eq!(owner("--c", "www-data").unwrap().group, None);
        assert!(owner("--c", "a:").is_err());
        assert_eq!(
            key_value("--env", "A=1=2").unwrap(),
            ("A".to_string(), "1=2".to_string())
        );
        assert!(key_value("--env", "=1").is_err());
    }

    #[test]
    fn static_maps_and_expires() {
        let m = static_map("--static-map", "/static=/srv/app/static", false).unwrap();
        assert_eq!(m.mount, "/static");
        assert_eq!(m.path, PathBuf::from("/srv/app/static"));
        assert!(!m.append_full_path);
        assert!(static_map("--static-map", "/static", false).is_err());
        assert!(static_map("--static-map", "=/x", false).is_err());
        let x = static_expires("--static-expires", "/* 86400", ExpiresOn::Filename, false).unwrap();
        assert_eq!((x.pattern.as_str(), x.seconds), ("/*", 86400));
        assert!(static_expires("--static-expires", "86400", ExpiresOn::Uri, false).is_err());
        assert!(static_expires("--static-expires", "/x soon", ExpiresOn::Uri, false).is_err());
        let t = static_expires(
            "--static-expires-type",
            "text/css=3600",
            ExpiresOn::ContentType,
            true,
        )
        .unwrap();
        assert_eq!(
            (t.pattern.as_str(), t.seconds, t.from_mtime),
            ("text/css", 3600, true)
        );
        assert!(static_expires(
            "--static-expires-type",
            "text/css 3600",
            ExpiresOn::ContentType,
            false
        )
        .is_err());
    }

    #[test]
    fn headers_and_mounts() {
        let h = header("--add-header", "Connection: close").unwrap();
        assert_eq!((h.name.as_str(), h.value.as_str()), ("Connection", "close"));
        assert!(header("--add-header", "no colon").is_err());
        assert!(header("--add-header", "Bad Name: x").is_err());
        let m = mount("--mount", "/kpi=/srv/kobo/wsgi.py").unwrap();
        assert_eq!(
            (m.mountpoint.as_str(), m.app.as_str()),
            ("/kpi", "/srv/kobo/wsgi.py")
        );
        assert_eq!(mount("--mount", "=app:application").unwrap().mountpoint, "");
        assert_eq!(mount("--mount", "/a/=x").unwrap().mountpoint, "/a");
        assert!(mount("--mount", "kpi=x").is_err());
        assert!(mount("--mount", "/kpi=").is_err());
    }

    #[test]
    fn routes() {
        let r = route(
            "--route",
            "^/static/ addheader:Content-Security-Policy: sandbox",
            RouteSubject::PathInfo,
        )
        .unwrap();
        assert_eq!(r.pattern, "^/static/");
        assert_eq!(
            r.action,
            RouteAction::AddHeader(Header {
                name: "Content-Security-Policy".into(),
                value: "sandbox".into()
            })
        );
        let r = route("--route", ".* redirect:/offline", RouteSubject::PathInfo).unwrap();
        assert_eq!(
            r.action,
            RouteAction::Redirect {
                status: 302,
                url: "/offline".into()
            }
        );
        let r = route("--route", "^/x return:403", RouteSubject::PathInfo).unwrap();
        assert_eq!(r.action, RouteAction::Return(403));
        let r = route("--route-run", "fixpathinfo:", RouteSubject::Always).unwrap();
        assert_eq!(r.subject, RouteSubject::Always);
        assert!(matches!(r.action, RouteAction::Other { ref name, .. } if name == "fixpathinfo"));
        let r = route(
            "--route-if",
            "equal:${PATH_INFO};/x break:404",
            RouteSubject::If {
                negate: false,
                condition: String::new(),
            },
        )
        .unwrap();
        assert_eq!(
            r.subject,
            RouteSubject::If {
                negate: false,
                condition: "equal".into()
            }
        );
        assert_eq!(r.pattern, "${PATH_INFO};/x");
        assert_eq!(r.action, RouteAction::Return(404));
        assert!(route("--route", "^/x", RouteSubject::PathInfo).is_err());
        assert!(route("--route", "^/x frobnicate:1", RouteSubject::PathInfo).is_err());
        assert!(route("--route", "^/x return:abc", RouteSubject::PathInfo).is_err());
        assert!(route("--route", "^/x static:", RouteSubject::PathInfo).is_err());
    }

    #[test]
    fn loggers() {
        let l = logger("--logger", "file:/var/log/x.log").unwrap();
        assert_eq!(
            (l.name, l.plugin.as_str(), l.arg.as_str()),
            (None, "file", "/var/log/x.log")
        );
        let l = logger("--logger", "cron file:/opt/logs/cron.log").unwrap();
        assert_eq!(l.name.as_deref(), Some("cron"));
        assert_eq!(logger("--logger", "stdio").unwrap().plugin, "stdio");
        assert!(logger("--logger", "file:").is_err());
        assert!(logger("--logger", "carrier-pigeon:x").is_err());
        let r = log_route("--log-route", "cron uwsgi-cron").unwrap();
        assert_eq!(
            (r.logger.as_str(), r.pattern.as_str()),
            ("cron", "uwsgi-cron")
        );
        assert_eq!(log_date(None), Some(LogDate::Default));
        assert_eq!(log_date(Some("true")), Some(LogDate::Default));
        assert_eq!(log_date(Some("false")), None);
        assert_eq!(
            log_date(Some("%Y-%m-%d")),
            Some(LogDate::Strftime("%Y-%m-%d".into()))
        );
    }

    #[test]
    fn lifecycle_values() {
        assert_eq!(
            cheaper_algo("--a", "busyness").unwrap(),
            CheaperAlgo::Busyness
        );
        assert!(cheaper_algo("--a", "lazy").is_err());
        let h = hook(
            "--hook-master-start",
            "unix_signal:15 gracefully_kill_them_all",
        )
        .unwrap();
        assert_eq!(
            (h.action, h.arg.as_str()),
            (HookAction::UnixSignal, "15 gracefully_kill_them_all")
        );
        assert!(hook("--hook-pre-app", "no action").is_err());
        assert!(hook("--hook-pre-app", "mount:proc none /proc").is_err());
        assert!(hook("--hook-master-start", "unix_signal:15 no_such_function").is_err());
        assert!(hook(
            "--hook-master-start",
            "unix_signal:9 gracefully_kill_them_all"
        )
        .is_err());
        assert_eq!(
            hook("--hook-asap", "!print:x").unwrap().action,
            HookAction::Print
        );
        let c = cron(
            "--unique-cron",
            "-15 -1 -1 -1 -1 ./manage.py runjobs quarter_hourly",
            true,
        )
        .unwrap();
        assert_eq!(c.fields, [-15, -1, -1, -1, -1]);
        assert_eq!(c.command, "./manage.py runjobs quarter_hourly");
        assert!(cron("--cron", "0 0 * * * cmd", false).is_err());
        // cla_backend's jobs.
        let c = cron2(
            "cron2",
            "minute=-15,unique=1,harakiri=30 python /home/app/django/manage.py monitor",
        )
        .unwrap();
        assert_eq!(c.fields, [-15, -1, -1, -1, -1]);
        assert!(c.unique);
        assert_eq!(c.harakiri, Some(30));
        assert_eq!(c.command, "python /home/app/django/manage.py monitor");
        let c = cron2(
            "cron2",
            "minute=0,hour=5,unique=1 python manage.py housekeeping",
        )
        .unwrap();
        assert_eq!(c.fields, [0, 5, -1, -1, -1]);
        let c = cron2("cron2", "touch /tmp/every-minute").unwrap();
        assert_eq!((c.fields, c.unique, c.harakiri), ([-1; 5], false, None));
        assert_eq!(c.command, "touch /tmp/every-minute");
        assert_eq!(cron2("cron2", "harakiri=0 x").unwrap().harakiri, Some(0));
        assert!(cron2("cron2", "minute=5").is_err());
        assert!(cron2("cron2", "minute=x cmd").is_err());
        assert!(cron2("cron2", "minutes=5 cmd").is_err());
        assert!(cron2("cron2", "legion=l1 cmd").is_err());
        assert!(cron("--cron", "0 0 1 1 1", false).is_err());
        let d = smart_daemon("--smart-attach-daemon", "/tmp/x.pid memcached -d").unwrap();
        assert_eq!(d.pidfile, Some(PathBuf::from("/tmp/x.pid")));
        assert!(!d.daemonize);
        assert!(smart_daemon("--smart-attach-daemon", "/tmp/x.pid").is_err());
        let d = smart_daemon("smart-attach-daemon2", "/tmp/x.pid,3 sleep 9").unwrap();
        assert!(d.daemonize);
        assert_eq!((d.freq, d.command.as_str()), (3, "sleep 9"));
        let d = daemon2(
            "--attach-daemon2",
            r"cmd=echo a\,b,pidfile=/tmp/p,daemonize=1,stopsignal=SIGINT,touch=/a;/b",
        )
        .unwrap();
        assert_eq!(d.command, "echo a,b");
        assert!(d.daemonize);
        assert_eq!(d.stop_signal, 2);
        assert_eq!(d.touch, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert!(daemon2("--attach-daemon2", "pidfile=/x").is_err());
        assert!(daemon2("--attach-daemon2", "cmd=x,daemonize=1").is_err());
        assert!(daemon2("--attach-daemon2", "cmd=x,bogus=1").is_err());
        assert_eq!(
            protocol_value("--protocol", "http").unwrap(),
            Protocol::Http
        );
        assert!(protocol_value("--protocol", "fastcgi").is_err());
    }
}
