//! What the stats server says: uWSGI's stats document (serde types with
//! uWSGI's field names, so `uwsgitop` and friends read it) and the
//! Prometheus text, both from scoreboard snapshots; and the stats
//! listener. Serving it is the stats process's (`stats_process`), so no
//! stats client can ever delay the master. Reads only the scoreboard and
//! /proc.

use std::fmt::Write as _;
use std::os::unix::net::UnixListener;

use serde::Serialize;

use crate::scoreboard::{WorkerSnapshot, LATENCY_BOUNDS_US};

/// A listening socket as the stats document names it.
pub struct SocketFacts {
    pub name: String,
    /// "http" or "uwsgi".
    pub proto: &'static str,
}

/// uWSGI's stats document; the field names are uWSGI's, which readers
/// such as uwsgitop, telegraf and netdata expect.
#[derive(Debug, Serialize)]
pub struct StatsDoc {
    pub version: String,
    pub listen_queue: u32,
    pub listen_queue_errors: u32,
    pub signal_queue: u32,
    /// Cores serving a request, over all workers.
    pub load: usize,
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cwd: String,
    /// uWSGI lists its locks here; there are none to list.
    pub locks: [(); 0],
    pub sockets: Vec<SocketStats>,
    pub workers: Vec<WorkerStats>,
}

#[derive(Debug, Serialize)]
pub struct SocketStats {
    pub name: String,
    pub proto: &'static str,
    pub queue: u32,
    pub max_queue: u32,
    pub shared: u32,
    pub can_offload: u32,
}

#[derive(Debug, Serialize)]
pub struct WorkerStats {
    pub id: usize,
    pub pid: i32,
    pub accepting: u8,
    pub requests: u64,
    pub delta_requests: u64,
    pub exceptions: u64,
    pub harakiri_count: u64,
    pub signals: u64,
    pub signal_queue: u64,
    pub status: WorkerStatus,
    pub rss: u64,
    pub vsz: u64,
    /// Microseconds spent in requests.
    pub running_time: u64,
    pub last_spawn: u64,
    pub respawn_count: u64,
    pub tx: u64,
    /// Mean request time in microseconds.
    pub avg_rt: u64,
    pub apps: Vec<AppStats>,
    pub cores: Vec<CoreStats>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerStatus {
    /// No process in the slot.
    Cheap,
    Busy,
    Idle,
}

#[derive(Debug, Serialize)]
pub struct AppStats {
    pub id: u32,
    pub modifier1: u32,
    pub mountpoint: &'static str,
    pub startup_time: u64,
    pub requests: u64,
    pub exceptions: u64,
    pub chdir: &'static str,
}

#[derive(Debug, Serialize)]
pub struct CoreStats {
    pub id: usize,
    pub requests: u64,
    pub static_requests: u64,
    pub routed_requests: u64,
    pub offloaded_requests: u64,
    pub write_errors: u64,
    pub read_errors: u64,
    pub in_request: u8,
    /// `NAME=value` of the running request.
    pub vars: Vec<String>,
    pub req_info: ReqInfo,
}

/// `{}` while idle.
#[derive(Debug, Default, Serialize)]
pub struct ReqInfo {
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_start: Option<u64>,
    /// Whole seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_for: Option<u64>,
}

/// The master's identity as the stats document gives it (taken in the
/// master: the stats process runs as the workers' user).
#[derive(Debug, Clone)]
pub struct MasterFacts {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cwd: String,
}

impl MasterFacts {
    /// The calling process's.
    pub fn here() -> MasterFacts {
        MasterFacts {
            pid: std::process::id(),
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            cwd: std::env::current_dir()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// Build the stats document from one snapshot of every worker, so it
/// agrees with itself (load, worker status and cores) even while requests
/// come and go.
pub fn document(
    master: &MasterFacts,
    workers: &[WorkerSnapshot],
    sockets: &[SocketFacts],
    listen_queue: u32,
    now_ms: u64,
) -> StatsDoc {
    StatsDoc {
        version: format!("uwsgi-rs {}", env!("CARGO_PKG_VERSION")),
        listen_queue,
        listen_queue_errors: 0,
        signal_queue: 0,
        load: workers.iter().map(WorkerSnapshot::busy_cores).sum(),
        pid: master.pid,
        uid: master.uid,
        gid: master.gid,
        cwd: master.cwd.clone(),
        locks: [],
        sockets: sockets
            .iter()
            .map(|s| SocketStats {
                name: s.name.clone(),
                proto: s.proto,
                queue: 0,
                max_queue: 0,
                shared: 0,
                can_offload: 0,
            })
            .collect(),
        workers: workers.iter().map(|w| worker_stats(w, now_ms)).collect(),
    }
}

fn worker_stats(w: &WorkerSnapshot, now_ms: u64) -> WorkerStats {
    let (rss, vsz) = if w.running() { memory(w.pid) } else { (0, 0) };
    WorkerStats {
        id: w.id,
        pid: w.pid,
        accepting: u8::from(w.accepting),
        requests: w.requests,
        delta_requests: w.requests,
        exceptions: w.exceptions,
        harakiri_count: w.harakiri_count,
        signals: 0,
        signal_queue: 0,
        status: if !w.running() {
            WorkerStatus::Cheap
        } else if w.busy_cores() > 0 {
            WorkerStatus::Busy
        } else {
            WorkerStatus::Idle
        },
        rss,
        vsz,
        running_time: w.busy_micros,
        last_spawn: w.last_spawn,
        respawn_count: w.respawn_count,
        tx: w.tx,
        avg_rt: w.avg_rt_micros(),
        apps: vec![AppStats {
            id: 0,
            modifier1: 0,
            mountpoint: "",
            startup_time: 0,
            requests: w.requests,
            exceptions: w.exceptions,
            chdir: "",
        }],
        cores: w
            .cores
            .iter()
            .map(|c| {
                let request = c.state.request();
                CoreStats {
                    id: c.core,
                    requests: c.requests,
                    static_requests: 0,
                    routed_requests: 0,
                    offloaded_requests: 0,
                    write_errors: 0,
                    read_errors: 0,
                    in_request: u8::from(c.state.is_busy()),
                    vars: request
                        .map(|r| {
                            vec![
                                format!("REQUEST_METHOD={}", r.method),
                                format!("REQUEST_URI={}", r.uri),
                                format!("REMOTE_ADDR={}", r.remote),
                            ]
                        })
                        .unwrap_or_default(),
                    req_info: request
                        .map(|r| ReqInfo {
                            request_start: Some(r.started_ms / 1000),
                            running_for: Some(r.running_ms(now_ms) / 1000),
                        })
                        .unwrap_or_default(),
                }
            })
            .collect(),
    }
}

/// The stats document as JSON.
pub fn render(
    master: &MasterFacts,
    workers: &[WorkerSnapshot],
    sockets: &[SocketFacts],
    listen_queue: u32,
    now_ms: u64,
) -> String {
    serde_json::to_string(&document(master, workers, sockets, listen_queue, now_ms))
        .unwrap_or_else(|_| "{}".into())
}

/// (rss, vsz) in bytes from /proc/PID/statm; (0, 0) for a process gone.
pub fn memory(pid: i32) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/statm")) else {
        return (0, 0);
    };
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0));
    let vsz = it.next().unwrap_or(0);
    let rss = it.next().unwrap_or(0);
    let page = rustix::param::page_size() as u64;
    (rss * page, vsz * page)
}

/// The Prometheus text exposition of the scoreboard.
pub fn render_metrics(workers: &[WorkerSnapshot]) -> String {
    let mut m = String::with_capacity(8192);
    let per_worker = |m: &mut String,
                      name: &str,
                      kind: &str,
                      help: &str,
                      value: &dyn Fn(&WorkerSnapshot) -> u64| {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for w in workers {
            let _ = writeln!(m, "{name}{{worker=\"{}\"}} {}", w.id, value(w));
        }
    };
    per_worker(
        &mut m,
        "uwsgi_rs_requests_total",
        "counter",
        "Requests served by the worker's current process.",
        &|w| w.requests,
    );
    per_worker(
        &mut m,
        "uwsgi_rs_exceptions_total",
        "counter",
        "Requests whose app call raised.",
        &|w| w.exceptions,
    );
    per_worker(
        &mut m,
        "uwsgi_rs_harakiri_total",
        "counter",
        "Workers killed by harakiri in this slot.",
        &|w| w.harakiri_count,
    );
    per_worker(
        &mut m,
        "uwsgi_rs_respawns_total",
        "counter",
        "Processes started in this slot after the first.",
        &|w| w.respawn_count,
    );
    per_worker(
        &mut m,
        "uwsgi_rs_busy_cores",
        "gauge",
        "Request threads serving a request now.",
        &|w| w.busy_cores() as u64,
    );
    per_worker(
        &mut m,
        "uwsgi_rs_worker_rss_bytes",
        "gauge",
        "Resident memory of the worker.",
        &|w| if w.running() { memory(w.pid).0 } else { 0 },
    );
    per_worker(
        &mut m,
        "uwsgi_rs_transmitted_bytes_total",
        "counter",
        "Response bytes written.",
        &|w| w.tx,
    );
    let name = "uwsgi_rs_request_duration_seconds";
    let _ = writeln!(m, "# HELP {name} Time from parsed request head to the end of the app call.\n# TYPE {name} histogram");
    for w in workers {
        let id = w.id;
        let mut cumulative = 0u64;
        for (count, bound) in w.latency.iter().zip(LATENCY_BOUNDS_US) {
            cumulative += count;
            let _ = writeln!(
                m,
                "{name}_bucket{{worker=\"{id}\",le=\"{}\"}} {cumulative}",
                bound as f64 / 1e6
            );
        }
        cumulative += w.latency[LATENCY_BOUNDS_US.len()];
        let _ = writeln!(
            m,
            "{name}_bucket{{worker=\"{id}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            m,
            "{name}_sum{{worker=\"{id}\"}} {}",
            w.busy_micros as f64 / 1e6
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

    /// A listener the stats process serves (a duplicate descriptor: the
    /// master keeps its own to hand to a respawned stats process).
    pub fn listen_socket(&self) -> std::io::Result<crate::control_server::ListenSocket> {
        use crate::control_server::ListenSocket;
        Ok(match self {
            StatsListener::Tcp(l) => ListenSocket::Tcp(l.try_clone()?),
            StatsListener::Unix(l, _) => ListenSocket::Unix(l.try_clone()?),
        })
    }

    pub fn is_unix(&self) -> bool {
        matches!(self, StatsListener::Unix(..))
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
    use crate::scoreboard::Scoreboard;

    fn two_workers() -> Vec<WorkerSnapshot> {
        let sb = Scoreboard::new(2, 2).unwrap();
        sb.assign(0, 1, 1, 0);
        sb.set_current(1, Some(0));
        let _busy = sb
            .core(0, 1)
            .begin(1_000, 0, &[b"127.0.0.1", b"GET", b"/x\"y"]);
        sb.snapshot_all()
    }

    #[test]
    fn document_has_uwsgis_shape() {
        let sockets = [
            SocketFacts {
                name: "0.0.0.0:80".into(),
                proto: "http",
            },
            SocketFacts {
                name: "/tmp/s".into(),
                proto: "uwsgi",
            },
        ];
        let master = MasterFacts {
            pid: 42,
            uid: 1,
            gid: 2,
            cwd: "/srv".into(),
        };
        let doc = render(&master, &two_workers(), &sockets, 3, 4_500);
        assert!(doc.starts_with("{\"version\""), "{doc}");
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(v["listen_queue"], 3);
        assert_eq!(
            (v["pid"].as_u64(), v["cwd"].as_str()),
            (Some(42), Some("/srv"))
        );
        assert_eq!(v["load"], 1);
        assert_eq!(v["locks"], serde_json::json!([]));
        assert_eq!(v["sockets"][0]["proto"], "http");
        assert_eq!(v["sockets"][1]["proto"], "uwsgi");
        let w = &v["workers"];
        assert_eq!(
            (w[0]["status"].as_str(), w[1]["status"].as_str()),
            (Some("busy"), Some("cheap"))
        );
        let busy = &w[0]["cores"][1];
        assert_eq!(busy["in_request"], 1);
        assert_eq!(busy["vars"][1], "REQUEST_URI=/x\"y");
        assert_eq!(
            busy["req_info"],
            serde_json::json!({"request_start": 1, "running_for": 3})
        );
        let idle = &w[0]["cores"][0];
        assert_eq!(idle["vars"], serde_json::json!([]));
        assert_eq!(idle["req_info"], serde_json::json!({}));
        assert_eq!(doc.matches("\"id\":").count(), 2 + 4 + 2); // workers, cores, apps
    }

    #[test]
    fn metrics_histogram_is_cumulative() {
        let sb = Scoreboard::new(1, 1).unwrap();
        sb.assign(0, 1, 1, 0);
        sb.set_current(1, Some(0));
        sb.process(0).record_latency(2_000);
        sb.process(0).record_latency(60_000_000);
        let m = render_metrics(&sb.snapshot_all());
        assert!(
            m.contains("uwsgi_rs_request_duration_seconds_bucket{worker=\"1\",le=\"0.001\"} 0\n"),
            "{m}"
        );
        assert!(
            m.contains("uwsgi_rs_request_duration_seconds_bucket{worker=\"1\",le=\"0.005\"} 1\n"),
            "{m}"
        );
        assert!(
            m.contains("uwsgi_rs_request_duration_seconds_bucket{worker=\"1\",le=\"+Inf\"} 2\n"),
            "{m}"
        );
        assert!(
            m.contains("uwsgi_rs_request_duration_seconds_count{worker=\"1\"} 2\n"),
            "{m}"
        );
    }
}
