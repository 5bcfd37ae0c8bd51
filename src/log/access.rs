//! The request log: uWSGI's default line byte for byte (so tools that parse
//! uWSGI logs, lnav's uWSGI format for one, keep working), or a
//! `--log-format` of uWSGI's `%(var)` fields; and which requests are
//! logged (`--disable-logging` with `--log-4xx`, `--log-5xx`, `--log-slow`,
//! `--log-big`, `--log-zero`, `--log-ioerror`).
//!
//! Pure: a [`Record`] of one finished request in, bytes out (appended to a
//! caller's buffer, so a request costs no allocation beyond that buffer).
//! The model is uWSGI's `core/logging.c` (`uwsgi_logit_simple`,
//! `uwsgi_build_log_format`, the `uwsgi_lf_*` chunks). Request data is
//! escaped (`\xNN` for anything but printable ASCII), where uWSGI prints it
//! raw: the same bytes for every well-formed request, and no log injection.

use std::io::Write as _;

use super::escape_into;

/// A request's CGI variables, as `%(var.NAME)` looks them up.
pub trait Vars {
    fn var(&self, name: &[u8]) -> Option<&[u8]>;
}

/// Everything the request log can say about one finished request.
pub struct Record<'a> {
    pub pid: u32,
    pub worker: usize,
    pub core: usize,
    /// uWSGI's app id (the default app 0, `--mount` apps in order) and the
    /// requests that app has served in this worker, this one included;
    /// None for a request no app answered (a static file, a route's
    /// answer): uWSGI prints `app: -1|req: -1` then.
    pub app: Option<(usize, u64)>,
    /// Requests served by all workers (uWSGI's `req: N/TOTAL`).
    pub total_requests: u64,
    /// The client (`REMOTE_ADDR`, or X-Forwarded-For with that option).
    pub addr: &'a [u8],
    pub user: &'a [u8],
    pub method: &'a [u8],
    pub uri: &'a [u8],
    pub proto: &'a [u8],
    pub host: &'a [u8],
    pub user_agent: &'a [u8],
    pub referer: &'a [u8],
    pub status: u16,
    /// uWSGI's var count: keys and values each count (2 per variable).
    pub vars: usize,
    /// Size of the request's uwsgi packet (what uWSGI's http parser builds
    /// for an HTTP request).
    pub packet_size: u64,
    pub modifier1: u8,
    pub modifier2: u8,
    /// Unix time of the start, in microseconds.
    pub started_us: u64,
    pub elapsed_us: u64,
    /// Response body bytes.
    pub body_bytes: u64,
    /// Response headers (the status line not counted) and the size of the
    /// whole head (status line, headers, blank line).
    pub header_count: usize,
    pub header_bytes: u64,
    /// The request's Content-Length.
    pub content_length: u64,
    /// Body chunks the app's iterable yielded (uWSGI's "switches").
    pub switches: u64,
    pub via_sendfile: bool,
    pub read_errors: u32,
    pub write_errors: u32,
    /// (rss, vsz) in bytes, when the format asks for them.
    pub memory: Option<(u64, u64)>,
    pub vars_lookup: &'a dyn Vars,
}

/// `%(name)` fields of uWSGI's log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Uri,
    Method,
    User,
    Addr,
    Host,
    Proto,
    Uagent,
    Referer,
    Status,
    Rsize,
    Hsize,
    Size,
    Cl,
    Micros,
    Msecs,
    Secs,
    Tmsecs,
    Tmicros,
    Time,
    Ltime,
    Ftime,
    Ctime,
    Epoch,
    Pid,
    Wid,
    Switches,
    Vars,
    Core,
    Vsz,
    Rss,
    VszM,
    RssM,
    Pktsize,
    Modifier1,
    Modifier2,
    Headers,
    Werr,
    Rerr,
    Ioerr,
}

const FIELDS: &[(&str, Field)] = &[
    ("uri", Field::Uri),
    ("method", Field::Method),
    ("user", Field::User),
    ("addr", Field::Addr),
    ("host", Field::Host),
    ("proto", Field::Proto),
    ("uagent", Field::Uagent),
    ("referer", Field::Referer),
    ("status", Field::Status),
    ("rsize", Field::Rsize),
    ("hsize", Field::Hsize),
    ("size", Field::Size),
    ("cl", Field::Cl),
    ("micros", Field::Micros),
    ("msecs", Field::Msecs),
    ("secs", Field::Secs),
    ("tmsecs", Field::Tmsecs),
    ("tmicros", Field::Tmicros),
    ("time", Field::Time),
    ("ltime", Field::Ltime),
    ("ftime", Field::Ftime),
    ("ctime", Field::Ctime),
    ("epoch", Field::Epoch),
    ("pid", Field::Pid),
    ("wid", Field::Wid),
    ("switches", Field::Switches),
    ("vars", Field::Vars),
    ("core", Field::Core),
    ("vsz", Field::Vsz),
    ("rss", Field::Rss),
    ("vszM", Field::VszM),
    ("rssM", Field::RssM),
    ("pktsize", Field::Pktsize),
    ("modifier1", Field::Modifier1),
    ("modifier2", Field::Modifier2),
    ("headers", Field::Headers),
    ("werr", Field::Werr),
    ("rerr", Field::Rerr),
    ("ioerr", Field::Ioerr),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    Text(Vec<u8>),
    Field(Field),
    /// `%(var.NAME)`: a request variable.
    Var(Vec<u8>),
    /// `%(metric.NAME)`: uwsgi-rs has no metrics subsystem; prints 0 as
    /// uWSGI does for an unknown metric.
    Metric,
    /// Any other name: a log variable the app would set with
    /// `uwsgi.set_logvar` (uWSGI), which uwsgi-rs does not have: `-`.
    LogVar,
}

/// A parsed `--log-format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    chunks: Vec<Chunk>,
}

impl Format {
    /// Parse as uWSGI does: `%(name)` is a field; anything else is text.
    pub fn parse(s: &str) -> Format {
        let mut chunks = Vec::new();
        let mut text = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find("%(") {
            let Some(end) = rest[i + 2..].find(')') else {
                break;
            };
            text.extend_from_slice(&rest.as_bytes()[..i]);
            let name = &rest[i + 2..i + 2 + end];
            if !text.is_empty() {
                chunks.push(Chunk::Text(std::mem::take(&mut text)));
            }
            chunks.push(match FIELDS.iter().find(|(n, _)| *n == name) {
                Some((_, f)) => Chunk::Field(*f),
                None => match name.strip_prefix("var.") {
                    Some(v) => Chunk::Var(v.as_bytes().to_vec()),
                    None if name.starts_with("metric.") => Chunk::Metric,
                    None => Chunk::LogVar,
                },
            });
            rest = &rest[i + 2 + end + 1..];
        }
        text.extend_from_slice(rest.as_bytes());
        if !text.is_empty() {
            chunks.push(Chunk::Text(text));
        }
        Format { chunks }
    }

    /// The format prints the worker's memory (read only then).
    pub fn needs_memory(&self) -> bool {
        self.chunks.iter().any(|c| {
            matches!(
                c,
                Chunk::Field(Field::Rss | Field::Vsz | Field::RssM | Field::VszM)
            )
        })
    }
}

/// The options that shape the line.
#[derive(Debug, Clone, Default)]
pub struct Style {
    pub format: Option<Format>,
    /// `--log-micros`: the default line says "in N micros".
    pub micros: bool,
    /// `--logformat-strftime` with `--log-date FORMAT`: what `%(ftime)` uses.
    pub ftime: Option<String>,
}

/// Which requests are logged.
#[derive(Debug, Clone, Default)]
pub struct When {
    /// Not `--disable-logging`.
    pub all: bool,
    pub status_4xx: bool,
    pub status_5xx: bool,
    /// Milliseconds (0 = off).
    pub slow_ms: u64,
    /// Bytes (0 = off).
    pub big: u64,
    pub zero: bool,
    pub ioerror: bool,
}

impl When {
    /// uWSGI's `log_request`: everything unless disabled; the conditions
    /// log a request even when disabled.
    pub fn wants(&self, r: &Record<'_>) -> bool {
        self.all
            || (self.zero && r.body_bytes == 0)
            || (self.slow_ms > 0 && r.elapsed_us / 1000 >= self.slow_ms)
            || (self.status_4xx && (400..500).contains(&r.status))
            || (self.status_5xx && (500..600).contains(&r.status))
            || (self.big > 0 && r.body_bytes >= self.big)
            || (self.ioerror && (r.read_errors > 0 || r.write_errors > 0))
    }

    /// A request refused before the app saw it (bad head): logged as a
    /// request with this status would be.
    pub fn wants_status(&self, status: u16) -> bool {
        self.all
            || (self.status_4xx && (400..500).contains(&status))
            || (self.status_5xx && (500..600).contains(&status))
    }

    /// Whether any request could be logged (the call site skips building
    /// the record otherwise).
    pub fn any(&self) -> bool {
        self.all
            || self.status_4xx
            || self.status_5xx
            || self.slow_ms > 0
            || self.big > 0
            || self.zero
            || self.ioerror
    }
}

/// Append the request's line (with its newline) to `out`.
pub fn render(style: &Style, r: &Record<'_>, out: &mut Vec<u8>) {
    match &style.format {
        None => default_line(style.micros, r, out),
        Some(f) => {
            for c in &f.chunks {
                match c {
                    Chunk::Text(t) => out.extend_from_slice(t),
                    Chunk::Field(f) => field(*f, style, r, out),
                    Chunk::Var(name) => bytes_or_dash(r.vars_lookup.var(name), out),
                    Chunk::Metric => out.push(b'0'),
                    Chunk::LogVar => out.push(b'-'),
                }
            }
            out.push(b'\n');
        }
    }
}

/// uWSGI's `uwsgi_logit_simple`:
/// `[pid: %d|app: %d|req: %d/%llu] %s (%s) {%d vars in %llu bytes} [%.24s]
/// %s %s => generated %llu bytes in %llu %s%s(%s %d) %d headers in %llu
/// bytes (%d switches on core %d)`.
fn default_line(micros: bool, r: &Record<'_>, out: &mut Vec<u8>) {
    let _ = match r.app {
        Some((app, n)) => write!(out, "[pid: {}|app: {app}|req: {n}/", r.pid),
        None => write!(out, "[pid: {}|app: -1|req: -1/", r.pid),
    };
    let _ = write!(out, "{}] ", r.total_requests);
    escape_into(out, r.addr);
    out.extend_from_slice(b" (");
    escape_into(out, r.user);
    let _ = write!(out, ") {{{} vars in {} bytes}} [", r.vars, r.packet_size);
    super::clock::with_ctime((r.started_us / 1_000_000) as i64, |s| {
        out.extend_from_slice(s.as_bytes())
    });
    out.extend_from_slice(b"] ");
    escape_into(out, r.method);
    out.push(b' ');
    escape_into(out, r.uri);
    let (time, unit) = if micros {
        (r.elapsed_us, "micros")
    } else {
        (r.elapsed_us / 1000, "msecs")
    };
    let via = if r.via_sendfile {
        " via sendfile() "
    } else {
        " "
    };
    let _ = write!(
        out,
        " => generated {} bytes in {time} {unit}{via}(",
        r.body_bytes
    );
    escape_into(out, r.proto);
    let _ = writeln!(
        out,
        " {}) {} headers in {} bytes ({} switches on core {})",
        r.status, r.header_count, r.header_bytes, r.switches, r.core
    );
}

/// A request value, or `-` when empty (uWSGI prints `-` for any empty field).
fn bytes_or_dash(v: Option<&[u8]>, out: &mut Vec<u8>) {
    match v {
        Some(v) if !v.is_empty() => escape_into(out, v),
        _ => out.push(b'-'),
    }
}

fn field(f: Field, style: &Style, r: &Record<'_>, out: &mut Vec<u8>) {
    let start_secs = (r.started_us / 1_000_000) as i64;
    let (rss, vsz) = r.memory.unwrap_or((0, 0));
    let n: u64 = match f {
        Field::Uri => return bytes_or_dash(Some(r.uri), out),
        Field::Method => return bytes_or_dash(Some(r.method), out),
        Field::User => return bytes_or_dash(Some(r.user), out),
        Field::Addr => return bytes_or_dash(Some(r.addr), out),
        Field::Host => return bytes_or_dash(Some(r.host), out),
        Field::Proto => return bytes_or_dash(Some(r.proto), out),
        Field::Uagent => return bytes_or_dash(Some(r.user_agent), out),
        Field::Referer => return bytes_or_dash(Some(r.referer), out),
        Field::Secs => {
            // uWSGI: snprintf(11 bytes, "%f", (float) seconds).
            let mut s = format!("{:.6}", r.elapsed_us as f32 / 1e6);
            s.truncate(10);
            out.extend_from_slice(s.as_bytes());
            return;
        }
        Field::Ltime => {
            let s = super::clock::strftime("%d/%b/%Y:%H:%M:%S %z", start_secs);
            return bytes_or_dash(Some(s.as_bytes()), out);
        }
        Field::Ftime => {
            let fmt = style.ftime.as_deref().unwrap_or("%d/%b/%Y:%H:%M:%S %z");
            let s = super::clock::strftime(fmt, start_secs);
            return bytes_or_dash(Some(s.as_bytes()), out);
        }
        Field::Ctime => {
            return super::clock::with_ctime(start_secs, |s| out.extend_from_slice(s.as_bytes()));
        }
        Field::Status => r.status as u64,
        Field::Rsize => r.body_bytes,
        Field::Hsize => r.header_bytes,
        Field::Size => r.header_bytes + r.body_bytes,
        Field::Cl => r.content_length,
        Field::Micros => r.elapsed_us,
        Field::Msecs => r.elapsed_us / 1000,
        Field::Tmsecs => r.started_us / 1000,
        Field::Tmicros => r.started_us,
        Field::Time => start_secs as u64,
        Field::Epoch => super::clock::unix_secs(),
        Field::Pid => r.pid as u64,
        Field::Wid => r.worker as u64,
        Field::Switches => r.switches,
        Field::Vars => r.vars as u64,
        Field::Core => r.core as u64,
        Field::Vsz => vsz,
        Field::Rss => rss,
        Field::VszM => vsz / 1024 / 1024,
        Field::RssM => rss / 1024 / 1024,
        Field::Pktsize => r.packet_size,
        Field::Modifier1 => r.modifier1 as u64,
        Field::Modifier2 => r.modifier2 as u64,
        Field::Headers => r.header_count as u64,
        Field::Werr => r.write_errors as u64,
        Field::Rerr => r.read_errors as u64,
        Field::Ioerr => (r.read_errors + r.write_errors) as u64,
    };
    let _ = write!(out, "{n}");
}

/// Vars of a uwsgi packet (from nginx and other proxies).
pub struct PacketVars<'a>(pub &'a [(&'a [u8], &'a [u8])]);

impl Vars for PacketVars<'_> {
    fn var(&self, name: &[u8]) -> Option<&[u8]> {
        self.0.iter().find(|(k, _)| *k == name).map(|&(_, v)| v)
    }
}

impl PacketVars<'_> {
    /// uWSGI's `{N vars in M bytes}` of a packet: keys and values each
    /// count; 2 + key + 2 + value bytes per var.
    pub fn size(&self) -> (usize, u64) {
        let bytes = self
            .0
            .iter()
            .map(|(k, v)| 4 + k.len() as u64 + v.len() as u64)
            .sum();
        (self.0.len() * 2, bytes)
    }
}

/// The CGI variables of an HTTP request, as uWSGI's http-socket parser
/// (`proto/http.c`) builds them: its fixed variables, then each header as
/// `HTTP_NAME` (`CONTENT_TYPE`, `CONTENT_LENGTH` without the prefix),
/// repeated headers joined with `, `.
pub struct HttpVars<'a> {
    pub method: &'a [u8],
    pub uri: &'a [u8],
    /// The raw path (before `?`) and query.
    pub path: &'a [u8],
    pub query: &'a [u8],
    pub proto: &'a [u8],
    pub server_name: &'a [u8],
    pub server_port: &'a [u8],
    pub remote_addr: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Does header `name` map to CGI variable `cgi` (`User-Agent` ~ `HTTP_USER_AGENT`)?
fn header_is(name: &str, cgi: &[u8]) -> bool {
    let cgi = match cgi {
        b"CONTENT_TYPE" | b"CONTENT_LENGTH" => cgi,
        _ => match cgi.strip_prefix(b"HTTP_") {
            Some(rest) if rest != b"CONTENT_TYPE" && rest != b"CONTENT_LENGTH" => rest,
            _ => return false,
        },
    };
    name.len() == cgi.len()
        && name.bytes().zip(cgi).all(|(a, &b)| {
            let a = if a == b'-' {
                b'_'
            } else {
                a.to_ascii_uppercase()
            };
            a == b
        })
}

/// The CGI name of a header, for comparing two headers.
fn same_header(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let x = if x == b'-' {
                b'_'
            } else {
                x.to_ascii_uppercase()
            };
            let y = if y == b'-' {
                b'_'
            } else {
                y.to_ascii_uppercase()
            };
            x == y
        })
}

impl Vars for HttpVars<'_> {
    fn var(&self, name: &[u8]) -> Option<&[u8]> {
        match name {
            b"REQUEST_METHOD" => Some(self.method),
            b"REQUEST_URI" => Some(self.uri),
            b"QUERY_STRING" => Some(self.query),
            b"SERVER_PROTOCOL" => Some(self.proto),
            b"SERVER_NAME" => Some(self.server_name),
            b"SERVER_PORT" => Some(self.server_port),
            b"REMOTE_ADDR" => Some(self.remote_addr),
            b"SCRIPT_NAME" => Some(b""),
            // The first value: joining repeats would allocate per request.
            _ => self
                .headers
                .iter()
                .find(|(n, _)| header_is(n, name))
                .map(|&(_, v)| v),
        }
    }
}

impl HttpVars<'_> {
    /// `{N vars in M bytes}` as uWSGI's http-socket would log this request
    /// (whose SERVER_NAME is the host name).
    pub fn size(&self) -> (usize, u64) {
        self.size_with_host(hostname().len())
    }

    fn size_with_host(&self, server_name_len: usize) -> (usize, u64) {
        let var = |k: usize, v: usize| 4 + k as u64 + v as u64;
        let decoded_path = self.path.len() - 2 * percent_escapes(self.path);
        let mut count = 9;
        let mut bytes = var(14, self.method.len())
            + var(9, decoded_path)
            + var(11, self.uri.len())
            + var(12, self.query.len())
            + var(15, self.proto.len())
            + var(11, 0)
            + var(11, server_name_len)
            + var(11, self.server_port.len())
            + var(11, self.remote_addr.len());
        for (i, (name, value)) in self.headers.iter().enumerate() {
            let earlier = self.headers[..i].iter().any(|(n, _)| same_header(n, name));
            if earlier {
                bytes += 2 + value.len() as u64; // ", " + value, merged
                continue;
            }
            count += 1;
            let plain = name.eq_ignore_ascii_case("content-type")
                || name.eq_ignore_ascii_case("content-length");
            bytes += var(name.len() + if plain { 0 } else { 5 }, value.len());
        }
        (count * 2, bytes)
    }
}

/// This machine's host name (uWSGI's SERVER_NAME on an http-socket).
fn hostname() -> &'static [u8] {
    static NAME: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most buf.len() bytes into buf.
        if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
            return Vec::new();
        }
        buf.iter().take_while(|&&b| b != 0).copied().collect()
    })
}

/// `%XX` sequences uWSGI's URL decoding turns into one byte each.
fn percent_escapes(s: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i + 2 < s.len() {
        if s[i] == b'%' && s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit() {
            n += 1;
            i += 3;
        } else {
            i += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoVars;
    impl Vars for NoVars {
        fn var(&self, _: &[u8]) -> Option<&[u8]> {
            None
        }
    }

    fn record<'a>(vars: &'a dyn Vars) -> Record<'a> {
        Record {
            pid: 4242,
            worker: 2,
            core: 3,
            app: Some((0, 7)),
            total_requests: 19,
            addr: b"127.0.0.1",
            user: b"",
            method: b"GET",
            uri: b"/hello?x=1",
            proto: b"HTTP/1.1",
            host: b"localhost:8000",
            user_agent: b"curl/8.5.0",
            referer: b"",
            status: 200,
            vars: 24,
            packet_size: 417,
            modifier1: 0,
            modifier2: 0,
            started_us: 1_700_000_000_123_456,
            elapsed_us: 2_345,
            body_bytes: 12,
            header_count: 2,
            header_bytes: 79,
            content_length: 0,
            switches: 1,
            via_sendfile: false,
            read_errors: 0,
            write_errors: 0,
            memory: None,
            vars_lookup: vars,
        }
    }

    fn line(style: &Style, r: &Record<'_>) -> String {
        let mut out = Vec::new();
        render(style, r, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_default_line_is_uwsgis_byte_for_byte() {
        let r = record(&NoVars);
        let ctime = super::super::clock::ctime(1_700_000_000);
        assert_eq!(
            line(&Style::default(), &r),
            format!(
                "[pid: 4242|app: 0|req: 7/19] 127.0.0.1 () {{24 vars in 417 bytes}} [{ctime}] \
                 GET /hello?x=1 => generated 12 bytes in 2 msecs (HTTP/1.1 200) 2 headers in 79 \
                 bytes (1 switches on core 3)\n"
            )
        );
        let micros = Style {
            micros: true,
            ..Style::default()
        };
        let sendfile = Record {
            via_sendfile: true,
            app: None,
            ..record(&NoVars)
        };
        let l = line(&micros, &sendfile);
        assert!(l.contains("=> generated 12 bytes in 2345 micros via sendfile() (HTTP/1.1 200)"));
        assert!(l.starts_with("[pid: 4242|app: -1|req: -1/19] "), "{l}");
    }

    #[test]
    fn lnavs_uwsgi_pattern_matches_the_default_line() {
        // lnav's uwsgi_log format (formats/uwsgi_log.json), as a Rust regex.
        let re = regex_lite::Regex::new(
            r"^\[pid: (?<s_pid>\d+)\|app: (?<s_app>[\-\d]+)\|req: (?<s_req>[\-\d]+)/(?<s_worker_reqs>\d+)\] (?<c_ip>[^ ]+) \((?<cs_username>[^\)]*)\) \{(?<cs_vars>\d+) vars in (?<cs_bytes>\d+) bytes\} \[(?<timestamp>[^\]]+)\] (?<cs_method>[A-Z]+) (?<cs_uri_stem>[^ \?]+)(?:\?(?<cs_uri_query>[^ ]*))? => generated (?<sc_bytes>\d+) bytes in (?<s_runtime>\d+) (?<rt_unit>\w+) \((?<cs_version>[^ ]+) (?<sc_status>\d+)\) (?<sc_headers>\d+) headers in (?<sc_header_bytes>\d+) bytes \((?<s_switches>\d+) switches on core (?<s_core>\d+)\)",
        )
        .unwrap();
        let l = line(&Style::default(), &record(&NoVars));
        let c = re.captures(&l).expect(&l);
        assert_eq!(&c["cs_uri_query"], "x=1");
        assert_eq!(&c["s_core"], "3");
    }

    #[test]
    fn request_data_is_escaped() {
        let r = Record {
            uri: b"/a\r\nFAKE",
            method: b"G\x1bT",
            ..record(&NoVars)
        };
        let l = line(&Style::default(), &r);
        assert!(l.contains("G\\x1bT /a\\x0d\\x0aFAKE =>"), "{l}");
        assert_eq!(l.matches('\n').count(), 1);
    }

    #[test]
    fn formats_use_uwsgis_fields() {
        let vars = PacketVars(&[(&b"HTTP_X_TRACE"[..], &b"abc"[..])]);
        let r = record(&vars);
        let f = Style {
            format: Some(Format::parse(
                "%(addr) - %(user) \"%(method) %(uri) %(proto)\" %(status) %(size) %(msecs)ms \
                 %(micros) [%(pid):%(wid):%(core)] %(var.HTTP_X_TRACE) %(var.NOPE) %(referer) \
                 %(uagent) %(host) %(cl) %(rsize) %(hsize) %(headers) %(vars) %(pktsize) \
                 %(switches) %(time) %(tmsecs) %(secs) %(metric.x) %(mine) %(unclosed",
            )),
            ..Style::default()
        };
        assert_eq!(
            line(&f, &r),
            "127.0.0.1 - - \"GET /hello?x=1 HTTP/1.1\" 200 91 2ms 2345 [4242:2:3] abc - - \
             curl/8.5.0 localhost:8000 0 12 79 2 24 417 1 1700000000 1700000000123 0.002345 0 - \
             %(unclosed\n"
        );
    }

    #[test]
    fn time_fields() {
        let r = record(&NoVars);
        let ctime = super::super::clock::ctime(1_700_000_000);
        let ltime = super::super::clock::strftime("%d/%b/%Y:%H:%M:%S %z", 1_700_000_000);
        let f = |s: &str, ftime: Option<&str>| {
            line(
                &Style {
                    format: Some(Format::parse(s)),
                    ftime: ftime.map(str::to_string),
                    ..Style::default()
                },
                &r,
            )
        };
        assert_eq!(f("[%(ctime)]", None), format!("[{ctime}]\n"));
        assert_eq!(f("%(ltime)", None), format!("{ltime}\n"));
        assert_eq!(f("%(ftime)", None), format!("{ltime}\n"));
        assert_eq!(f("%(ftime)", Some("%s")), "1700000000\n");
        assert!(f("%(epoch)", None).trim().parse::<u64>().unwrap() > 1_700_000_000);
    }

    #[test]
    fn memory_fields_are_read_only_when_asked() {
        assert!(Format::parse("%(rssM)MB").needs_memory());
        assert!(!Format::parse("%(status)").needs_memory());
        let r = Record {
            memory: Some((64 << 20, 128 << 20)),
            ..record(&NoVars)
        };
        let s = Style {
            format: Some(Format::parse("%(rss) %(rssM) %(vszM)")),
            ..Style::default()
        };
        assert_eq!(line(&s, &r), format!("{} 64 128\n", 64 << 20));
    }

    #[test]
    fn which_requests_are_logged() {
        let r = |status, body, us| Record {
            status,
            body_bytes: body,
            elapsed_us: us,
            ..record(&NoVars)
        };
        let all = When {
            all: true,
            ..When::default()
        };
        assert!(all.wants(&r(200, 1, 0)));
        let none = When::default();
        assert!(!none.any() && !none.wants(&r(500, 0, 9_999_999)));
        let w = When {
            status_4xx: true,
            status_5xx: true,
            slow_ms: 100,
            big: 1000,
            zero: true,
            ..When::default()
        };
        assert!(w.any());
        assert!(w.wants(&r(404, 5, 0)));
        assert!(w.wants(&r(503, 5, 0)));
        assert!(!w.wants(&r(200, 5, 99_999)));
        assert!(w.wants(&r(200, 5, 100_000)));
        assert!(w.wants(&r(200, 0, 0)));
        assert!(w.wants(&r(200, 1000, 0)));
        assert!(!w.wants(&r(302, 5, 0)));
    }

    /// `GET /a%20b?x=1 HTTP/1.1` from 127.0.0.1 to port 8000, with `headers`.
    fn http_vars<'a>(headers: &'a [(&'a str, &'a [u8])]) -> HttpVars<'a> {
        HttpVars {
            method: b"GET",
            uri: b"/a%20b?x=1",
            path: b"/a%20b",
            query: b"x=1",
            proto: b"HTTP/1.1",
            server_name: b"host",
            server_port: b"8000",
            remote_addr: b"127.0.0.1",
            headers,
        }
    }

    /// The cost of one default line (`cargo test --release render_cost --
    /// --ignored --nocapture`): formatting only, the write is one syscall.
    #[test]
    #[ignore]
    fn render_cost() {
        let headers = vec![
            ("Host", &b"localhost:8000"[..]),
            ("User-Agent", &b"wrk/4.2"[..]),
        ];
        let v = http_vars(&headers);
        let mut out = Vec::with_capacity(512);
        let n = 1_000_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            out.clear();
            let (vars, size) = v.size();
            let r = Record {
                vars,
                packet_size: size,
                ..record(&v)
            };
            render(&Style::default(), &r, &mut out);
        }
        let ns = t.elapsed().as_nanos() / n;
        println!(
            "default request line: {ns} ns to count vars and format ({} bytes)",
            out.len()
        );
    }

    #[test]
    fn http_vars_count_as_uwsgis_http_socket() {
        let headers = vec![
            ("Host", &b"localhost:8000"[..]),
            ("User-Agent", &b"curl/8.5.0"[..]),
            ("Accept", &b"*/*"[..]),
            ("accept", &b"text/html"[..]),
            ("Content-Type", &b"text/plain"[..]),
        ];
        let v = http_vars(&headers);
        let (count, bytes) = v.size_with_host(4);
        assert_eq!(count, 2 * (9 + 4));
        assert_eq!(v.size().1, bytes - 4 + hostname().len() as u64);
        let fixed = (4 + 14 + 3)
            + (4 + 9 + 4)
            + (4 + 11 + 10)
            + (4 + 12 + 3)
            + (4 + 15 + 8)
            + (4 + 11)
            + (4 + 11 + 4)
            + (4 + 11 + 4)
            + (4 + 11 + 9);
        let hdrs = (4 + 9 + 14) + (4 + 15 + 10) + (4 + 11 + 3 + 2 + 9) + (4 + 12 + 10);
        assert_eq!(bytes, fixed + hdrs);
        assert_eq!(v.var(b"HTTP_USER_AGENT"), Some(&b"curl/8.5.0"[..]));
        assert_eq!(v.var(b"CONTENT_TYPE"), Some(&b"text/plain"[..]));
        assert_eq!(v.var(b"HTTP_CONTENT_TYPE"), None);
        assert_eq!(v.var(b"QUERY_STRING"), Some(&b"x=1"[..]));
        let p = PacketVars(&[(&b"A"[..], &b"bc"[..])]);
        assert_eq!(p.size(), (2, 7));
    }
}
