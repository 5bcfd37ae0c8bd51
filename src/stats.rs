//! The stats server: on connect, the master writes one JSON document in the
//! shape of uWSGI's stats server (so `uwsgitop` and friends read it) and
//! closes; with `--stats-http` it is wrapped in an HTTP response.
//!
//! Reads only the scoreboard and /proc; never blocks the master for longer
//! than one bounded write.

use std::fmt::Write as _;
use std::os::unix::net::UnixListener;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::scoreboard::Scoreboard;

/// Per-worker facts only the master knows.
pub struct WorkerFacts {
    pub pid: i32,
    pub running: bool,
}

/// Render the stats document.
pub fn render(
    sb: &Scoreboard,
    workers: &[WorkerFacts],
    sockets: &[String],
    listen_queue: u32,
) -> String {
    let mut j = String::with_capacity(4096);
    // SAFETY: these getters have no preconditions.
    let (pid, uid, gid) = unsafe { (libc::getpid(), libc::getuid(), libc::getgid()) };
    let cwd = std::env::current_dir()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Each core's state is read once, so the document agrees with itself
    // (load, worker status and core entries) even while requests come and go.
    let in_request: Vec<Vec<bool>> = (1..=workers.len())
        .map(|id| {
            (0..sb.threads())
                .map(|c| sb.core(id, c).in_request.load(Ordering::Acquire) == 1)
                .collect()
        })
        .collect();
    let busy_total: usize = in_request
        .iter()
        .map(|w| w.iter().filter(|&&b| b).count())
        .sum();
    let _ = write!(
        j,
        "{{\"version\":\"uwsgi-rs {}\",\"listen_queue\":{listen_queue},\"listen_queue_errors\":0,\"signal_queue\":0,\"load\":{busy_total},\"pid\":{pid},\"uid\":{uid},\"gid\":{gid},\"cwd\":{},",
        env!("CARGO_PKG_VERSION"),
        quote(&cwd)
    );
    j.push_str("\"locks\":[],\"sockets\":[");
    for (i, s) in sockets.iter().enumerate() {
        if i > 0 {
            j.push(',');
        }
        let _ = write!(j, "{{\"name\":{},\"proto\":\"uwsgi\",\"queue\":0,\"max_queue\":0,\"shared\":0,\"can_offload\":0}}", quote(s));
    }
    j.push_str("],\"workers\":[");
    let now = crate::log::unix_secs();
    for (i, f) in workers.iter().enumerate() {
        let id = i + 1;
        let w = sb.worker(id);
        let requests = w.requests.load(Ordering::Relaxed);
        let busy_us = w.busy_micros.load(Ordering::Relaxed);
        let avg_rt = busy_us.checked_div(requests).unwrap_or(0);
        let (rss, vsz) = if f.running { memory(f.pid) } else { (0, 0) };
        let cores_busy = in_request[i].iter().any(|&b| b);
        let status = if !f.running {
            "cheap"
        } else if cores_busy {
            "busy"
        } else {
            "idle"
        };
        let last_spawn = w.last_spawn.load(Ordering::Relaxed);
        if i > 0 {
            j.push(',');
        }
        let _ = write!(
            j,
            "{{\"id\":{id},\"pid\":{},\"accepting\":{},\"requests\":{requests},\"delta_requests\":{requests},\"exceptions\":{},\"harakiri_count\":{},\"signals\":0,\"signal_queue\":0,\"status\":\"{status}\",\"rss\":{rss},\"vsz\":{vsz},\"running_time\":{},\"last_spawn\":{last_spawn},\"respawn_count\":{},\"tx\":{},\"avg_rt\":{avg_rt},\"apps\":[{{\"id\":0,\"modifier1\":0,\"mountpoint\":\"\",\"startup_time\":0,\"requests\":{requests},\"exceptions\":{},\"chdir\":\"\"}}],\"cores\":[",
            f.pid,
            w.accepting.load(Ordering::Relaxed),
            w.exceptions.load(Ordering::Relaxed),
            w.harakiri_count.load(Ordering::Relaxed),
            busy_us,
            w.respawn_count.load(Ordering::Relaxed),
            w.tx.load(Ordering::Relaxed),
            w.exceptions.load(Ordering::Relaxed),
        );
        for (c, &busy) in in_request[i].iter().enumerate() {
            let core = sb.core(id, c);
            if c > 0 {
                j.push(',');
            }
            let _ = write!(
                j,
                "{{\"id\":{c},\"requests\":{},\"static_requests\":0,\"routed_requests\":0,\"offloaded_requests\":0,\"write_errors\":0,\"read_errors\":0,\"in_request\":{},\"vars\":[",
                core.requests.load(Ordering::Relaxed),
                u8::from(busy)
            );
            let mut req_info = String::from("{}");
            if busy {
                if let Some(info) = core.read_info() {
                    let _ = write!(
                        j,
                        "{},{},{}",
                        quote(&format!("REQUEST_METHOD={}", info.method)),
                        quote(&format!("REQUEST_URI={}", info.uri)),
                        quote(&format!("REMOTE_ADDR={}", info.remote))
                    );
                    let started = core.started_ms.load(Ordering::Relaxed);
                    req_info = format!(
                        "{{\"request_start\":{},\"running_for\":{}}}",
                        started / 1000,
                        now.saturating_sub(started / 1000)
                    );
                }
            }
            let _ = write!(j, "],\"req_info\":{req_info}}}");
        }
        j.push_str("]}");
    }
    j.push_str("]}");
    j
}

/// JSON string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// (rss, vsz) in bytes from /proc/PID/statm.
fn memory(pid: i32) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/statm")) else {
        return (0, 0);
    };
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0));
    let vsz = it.next().unwrap_or(0);
    let rss = it.next().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    (rss * page, vsz * page)
}

/// A client connection of either kind.
trait ReadWrite: std::io::Read + std::io::Write {
    fn timeouts(&self, write: Option<Duration>, read: Option<Duration>);
    fn half_close(&self);
}

impl ReadWrite for std::net::TcpStream {
    fn timeouts(&self, write: Option<Duration>, read: Option<Duration>) {
        let _ = self.set_write_timeout(write);
        let _ = self.set_read_timeout(read);
    }
    fn half_close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl ReadWrite for std::os::unix::net::UnixStream {
    fn timeouts(&self, write: Option<Duration>, read: Option<Duration>) {
        let _ = self.set_write_timeout(write);
        let _ = self.set_read_timeout(read);
    }
    fn half_close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// The Prometheus text exposition of the scoreboard.
pub fn render_metrics(sb: &Scoreboard, workers: &[WorkerFacts]) -> String {
    use crate::scoreboard::LATENCY_BOUNDS_US;
    let mut m = String::with_capacity(8192);
    let per_worker =
        |m: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(usize) -> u64| {
            let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for id in 1..=workers.len() {
                let _ = writeln!(m, "{name}{{worker=\"{id}\"}} {}", value(id));
            }
        };
    per_worker(
        &mut m,
        "uwsgi_rs_requests_total",
        "counter",
        "Requests served by the worker's current process.",
        &|id| sb.worker(id).requests.load(Ordering::Relaxed),
    );
    per_worker(
        &mut m,
        "uwsgi_rs_exceptions_total",
        "counter",
        "Requests whose app call raised.",
        &|id| sb.worker(id).exceptions.load(Ordering::Relaxed),
    );
    per_worker(
        &mut m,
        "uwsgi_rs_harakiri_total",
        "counter",
        "Workers killed by harakiri in this slot.",
        &|id| sb.worker(id).harakiri_count.load(Ordering::Relaxed),
    );
    per_worker(
        &mut m,
        "uwsgi_rs_respawns_total",
        "counter",
        "Processes started in this slot after the first.",
        &|id| sb.worker(id).respawn_count.load(Ordering::Relaxed),
    );
    per_worker(
        &mut m,
        "uwsgi_rs_busy_cores",
        "gauge",
        "Request threads serving a request now.",
        &|id| {
            (0..sb.threads())
                .filter(|&c| sb.core(id, c).in_request.load(Ordering::Relaxed) == 1)
                .count() as u64
        },
    );
    per_worker(
        &mut m,
        "uwsgi_rs_worker_rss_bytes",
        "gauge",
        "Resident memory of the worker.",
        &|id| {
            let f = &workers[id - 1];
            if f.running {
                memory(f.pid).0
            } else {
                0
            }
        },
    );
    per_worker(
        &mut m,
        "uwsgi_rs_transmitted_bytes_total",
        "counter",
        "Response bytes written.",
        &|id| sb.worker(id).tx.load(Ordering::Relaxed),
    );
    let name = "uwsgi_rs_request_duration_seconds";
    let _ = writeln!(m, "# HELP {name} Time from parsed request head to the end of the app call.\n# TYPE {name} histogram");
    for id in 1..=workers.len() {
        let w = sb.worker(id);
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
            cumulative += w.latency[i].load(Ordering::Relaxed);
            let _ = writeln!(
                m,
                "{name}_bucket{{worker=\"{id}\",le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        cumulative += w.latency[LATENCY_BOUNDS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            m,
            "{name}_bucket{{worker=\"{id}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            m,
            "{name}_sum{{worker=\"{id}\"}} {}",
            w.busy_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(m, "{name}_count{{worker=\"{id}\"}} {cumulative}");
    }
    m
}

/// The stats listener, TCP or UNIX.
pub enum StatsListener {
    Tcp(std::net::TcpListener),
    Unix(UnixListener, std::path::PathBuf),
}

impl StatsListener {
    pub fn bind(addr: &str) -> anyhow::Result<StatsListener> {
        let parsed = crate::config::ListenAddr::parse(addr)
            .map_err(|e| anyhow::anyhow!("--stats {addr}: {e}"))?;
        Ok(match parsed {
            crate::config::ListenAddr::Tcp { host, port } => StatsListener::Tcp(
                std::net::TcpListener::bind((host.as_str(), port))
                    .map_err(|e| anyhow::anyhow!("cannot bind stats server {addr}: {e}"))?,
            ),
            crate::config::ListenAddr::Unix(p) => {
                let l = crate::listen::bind_unix(&p, Some(0o600))
                    .map_err(|e| anyhow::anyhow!("cannot bind stats server: {e}"))?;
                StatsListener::Unix(l, p)
            }
        })
    }

    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        match self {
            StatsListener::Tcp(l) => l.as_raw_fd(),
            StatsListener::Unix(l, _) => l.as_raw_fd(),
        }
    }

    /// Answer one pending client: the JSON document, or with `--stats-http`
    /// and `GET /metrics`, the Prometheus text.
    pub fn answer(&self, json: impl Fn() -> String, metrics: impl Fn() -> String, http: bool) {
        let timeout = Some(Duration::from_secs(1));
        let mut stream: Box<dyn ReadWrite> = match self {
            StatsListener::Tcp(l) => match l.accept() {
                Ok((s, _)) => Box::new(s),
                Err(_) => return,
            },
            StatsListener::Unix(l, _) => match l.accept() {
                Ok((s, _)) => {
                    // SAFETY: geteuid has no preconditions.
                    let me = unsafe { libc::geteuid() };
                    use std::os::fd::AsRawFd;
                    match crate::listen::peer_uid(s.as_raw_fd()) {
                        Ok(uid) if uid == me || uid == 0 => Box::new(s),
                        _ => return,
                    }
                }
                Err(_) => return,
            },
        };
        stream.timeouts(timeout, Some(Duration::from_millis(200)));
        let mut buf = [0u8; 4096];
        let payload = if http {
            let n = stream.read(&mut buf).unwrap_or(0);
            let wants_metrics = buf[..n].starts_with(b"GET /metrics");
            let (ctype, body) = if wants_metrics {
                ("text/plain; version=0.0.4", metrics())
            } else {
                ("application/json", json())
            };
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        } else {
            json()
        };
        let _ = stream.write_all(payload.as_bytes());
        // Half-close, then drain what the client sent (e.g. a request line),
        // so closing does not reset the connection before it read the answer.
        stream.half_close();
        let _ = stream.read(&mut buf);
    }

    pub fn remove_file(&self) {
        if let StatsListener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn render_is_json_shaped() {
        let sb = Scoreboard::new(2, 2).unwrap();
        sb.core(1, 1)
            .begin(1_000, 0, &[b"127.0.0.1", b"GET", b"/x\"y"]);
        let doc = render(
            &sb,
            &[
                WorkerFacts {
                    pid: 1,
                    running: true,
                },
                WorkerFacts {
                    pid: 0,
                    running: false,
                },
            ],
            &["0.0.0.0:80".into()],
            0,
        );
        assert!(doc.starts_with("{\"version\""));
        assert!(doc.contains("\"in_request\":1"));
        assert!(doc.contains("REQUEST_URI=/x\\\"y"));
        assert_eq!(doc.matches("\"id\":").count(), 2 + 4 + 2); // workers, cores, apps
    }
}
