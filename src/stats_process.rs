//! The stats process: serves `--stats` (uWSGI's JSON document, Prometheus
//! text with `--stats-http`, and the dashboard) outside the master.
//!
//! Why a process of its own: in the master's poll loop, every stats client
//! was answered on the master's one thread, so 200 clients that never read
//! delayed a real reader by 25 s (52 s over HTTP), and delayed the master's
//! own checks (harakiri!) with it. The master must stay single-threaded
//! (it forks, and it may host a Python interpreter), so the stats server
//! moves out: the master forks this process before the workers, as the
//! workers' user, and respawns it if it dies. Here any number of threads
//! is fine. It reads the scoreboard (shared memory) and talks to the
//! workers' private tracebacker sockets; it never signals anything and
//! holds no lock the master or a worker needs.
//!
//! Every client is served by one nonblocking loop (`control_server`): each
//! has its own deadlines, so a reader that never reads (or an HTTP client
//! that never sends its request) only ever holds its own connection.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::control_server::{self, ClientId, Handler, Limits, ListenerSpec, Reply};
use crate::dashboard::{self, Dashboard};
use crate::listen::Listener;
use crate::scoreboard::Scoreboard;
use crate::stats::{MasterFacts, SocketFacts, StatsListener};

/// Everything the stats process gets from the master.
pub struct StatsArgs<'a> {
    pub cfg: &'a Config,
    pub stats: &'a StatsListener,
    pub listeners: &'a [Listener],
    pub scoreboard: &'static Scoreboard,
    pub master: MasterFacts,
    /// Private tracebacker sockets: base + worker id.
    pub tb_base: String,
    pub credentials: crate::privileges::Credentials,
}

/// Serve until the master goes; returns an exit status only on failure.
pub fn run(args: StatsArgs<'_>) -> i32 {
    if let Err(e) = crate::privileges::drop_to(args.credentials) {
        crate::log::line(&format!("stats server: {e:#}"));
        return 1;
    }
    // SAFETY: prctl/getppid have no memory effects. The process dies with
    // the master (the parent-death signal survives no credential change,
    // hence after dropping them).
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != args.master.pid as i32 {
            return 1;
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        // The master's log-reopen signal: a `kill -USR1` to the whole
        // group must not kill this process.
        libc::signal(libc::SIGUSR1, libc::SIG_IGN);
    }
    raise_fd_limit();
    let http = args.cfg.stats_http;
    let dashboard_allowed = args.stats.is_unix() || args.cfg.stats_dashboard;
    let dashboard = Arc::new(Dashboard::new(
        args.cfg.py_tracebacker_slow,
        args.cfg.harakiri,
    ));
    let timeout = Duration::from_secs(args.cfg.socket_timeout.max(1));
    if http && dashboard_allowed {
        let observer = dashboard::observer::Observer {
            dashboard: Arc::clone(&dashboard),
            scoreboard: args.scoreboard,
            tb_base: args.tb_base.clone(),
            timeout,
        };
        if let Err(e) = observer.spawn() {
            crate::log::line(&format!("stats server: cannot start the dashboard: {e}"));
        }
    }
    let socket = match args.stats.listen_socket() {
        Ok(s) => s,
        Err(e) => {
            crate::log::line(&format!("stats server: {e}"));
            return 1;
        }
    };
    let handler = StatsHandler {
        http,
        dashboard_allowed,
        dashboard,
        scoreboard: args.scoreboard,
        master: args.master.clone(),
        sockets: args
            .listeners
            .iter()
            .map(|l| SocketFacts {
                name: l.name.clone(),
                proto: l.proto_name(),
            })
            .collect(),
        listeners: args.listeners,
    };
    let limits = Limits {
        // uWSGI's clients send nothing and read; HTTP clients send a request.
        request_wait: if http {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        },
        request_max: 8192,
        write_timeout: timeout,
        max_clients: 4096,
        max_buffered: 16 << 20,
    };
    let mut server = match control_server::Server::new(
        "stats server",
        vec![ListenerSpec {
            socket,
            tag: 0,
            limits,
            same_uid_only: true,
        }],
        handler,
    ) {
        Ok(s) => s,
        Err(e) => {
            crate::log::line(&format!("stats server: {e}"));
            return 1;
        }
    };
    loop {
        server.turn(None);
    }
}

/// Many clients at once need many descriptors: take the hard limit.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

struct StatsHandler<'a> {
    http: bool,
    dashboard_allowed: bool,
    dashboard: Arc<Dashboard>,
    scoreboard: &'static Scoreboard,
    master: MasterFacts,
    sockets: Vec<SocketFacts>,
    listeners: &'a [Listener],
}

/// What an HTTP client asked for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// uWSGI's JSON (any path, for clients that do not ask for HTML).
    Json,
    Metrics,
    Page,
    State,
    /// The flame graph of the last this many seconds.
    Flame(u64),
}

fn route(request: &[u8]) -> Route {
    let head = String::from_utf8_lossy(request);
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("");
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let wants_html = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .any(|(k, v)| k.trim().eq_ignore_ascii_case("accept") && v.contains("text/html"));
    if method != "GET" && method != "HEAD" {
        return Route::Json;
    }
    match path {
        "/metrics" => Route::Metrics,
        "/dashboard/state" => Route::State,
        "/dashboard/flamegraph.svg" => Route::Flame(
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix("seconds="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(dashboard::FLAME_SECONDS)
                .clamp(1, dashboard::PROFILE_KEEP as u64),
        ),
        "/" | "/dashboard" | "/dashboard/" if wants_html => Route::Page,
        _ => Route::Json,
    }
}

fn http_response(status: &str, ctype: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

impl StatsHandler<'_> {
    fn json(&self) -> String {
        let queue: u32 = self.listeners.iter().map(|l| l.queue_len()).sum();
        crate::stats::render(
            &self.master,
            &self.scoreboard.snapshot_all(),
            &self.sockets,
            queue,
            crate::log::unix_millis(),
        )
    }
}

impl Handler for StatsHandler<'_> {
    fn complete(&self, _tag: usize, buf: &[u8]) -> bool {
        memchr::memmem::find(buf, b"\r\n\r\n").is_some()
            || memchr::memmem::find(buf, b"\n\n").is_some()
    }

    fn request(&mut self, _id: ClientId, _tag: usize, buf: &[u8]) -> Reply {
        if !self.http {
            return Reply::Now(self.json().into_bytes());
        }
        let route = route(buf);
        let dashboard = matches!(route, Route::Page | Route::State | Route::Flame(_));
        if dashboard && !self.dashboard_allowed {
            return Reply::Now(http_response(
                "403 Forbidden",
                "text/plain; charset=utf-8",
                dashboard::REFUSED.as_bytes(),
            ));
        }
        if dashboard {
            self.dashboard.viewed();
        }
        Reply::Now(match route {
            Route::Json => http_response("200 OK", "application/json", self.json().as_bytes()),
            Route::Metrics => http_response(
                "200 OK",
                "text/plain; version=0.0.4",
                crate::stats::render_metrics(&self.scoreboard.snapshot_all()).as_bytes(),
            ),
            Route::Page => http_response(
                "200 OK",
                "text/html; charset=utf-8",
                dashboard::PAGE.as_bytes(),
            ),
            Route::State => {
                let state = self
                    .dashboard
                    .state(&self.scoreboard.snapshot_all(), crate::log::unix_millis());
                http_response(
                    "200 OK",
                    "application/json",
                    &serde_json::to_vec(&state).unwrap_or_default(),
                )
            }
            Route::Flame(seconds) => http_response(
                "200 OK",
                "image/svg+xml",
                &self.dashboard.flamegraph(seconds, crate::log::unix_secs()),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_path_and_accept() {
        let html = b"GET / HTTP/1.1\r\nHost: x\r\nAccept: text/html,application/xhtml+xml\r\n\r\n";
        assert_eq!(route(html), Route::Page);
        assert_eq!(route(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Route::Json);
        assert_eq!(route(b"GET /anything HTTP/1.1\r\n\r\n"), Route::Json);
        assert_eq!(route(b""), Route::Json);
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\n\r\n"), Route::Metrics);
        assert_eq!(
            route(b"GET /dashboard/state HTTP/1.1\r\n\r\n"),
            Route::State
        );
        assert_eq!(
            route(b"GET /dashboard/flamegraph.svg?seconds=10 HTTP/1.1\r\n\r\n"),
            Route::Flame(10)
        );
        assert_eq!(
            route(b"GET /dashboard/flamegraph.svg?seconds=999999 HTTP/1.1\r\n\r\n"),
            Route::Flame(dashboard::PROFILE_KEEP as u64)
        );
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::Json);
    }
}
