//! The dashboard: one self-contained page (HTML, CSS and script inline; no
//! CDN, no external fonts; about 20 KB) served by the stats process to
//! browsers (`GET /` with `Accept: text/html`), and the two documents it
//! polls: `/dashboard/state` (every worker and core, each busy core's live
//! Python traceback, the charts' series) and `/dashboard/flamegraph.svg`
//! (the profile of the last seconds, rendered by inferno, clickable).
//!
//! Who may see it: tracebacks and URIs are what the tracebacker sockets
//! give, so the page gives them to no one else. On a UNIX stats socket
//! (0600, peers of another uid refused, as the tracebacker's) it is always
//! served: whoever can connect could read the tracebacker sockets too. On
//! a TCP address anyone who can connect would see them, so it is served
//! only with `--stats-dashboard`, the operator's explicit opt-in;
//! otherwise those paths answer 403 saying so. (uWSGI's JSON document,
//! which already names each running request's URI, stays as it was.)
//!
//! The data is gathered off the request path by [`observer`]: series all
//! the time (cheap: shared memory), tracebacks and a low-rate profile only
//! while someone looks at the page. Answering never waits on a worker.

pub mod observer;
pub mod series;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::profiler::profile::Profile;
use crate::scoreboard::{CoreState, WorkerSnapshot};
use crate::tracebacker::rich::{FrameDump, WorkerDump};

/// The page itself.
pub const PAGE: &str = include_str!("page.html");

/// How long after the last look the observer keeps fetching tracebacks and
/// profiling.
pub const VIEW_GRACE: Duration = Duration::from_secs(30);
/// Seconds of profile kept for the flame graph.
pub const PROFILE_KEEP: usize = 300;
/// The flame graph's default span.
pub const FLAME_SECONDS: u64 = 60;

/// What the observer gathered, read by the stats loop.
pub struct Dashboard {
    inner: Mutex<Inner>,
    /// Wakes the observer when someone starts looking.
    looked: std::sync::Condvar,
    pub slow_after_s: u64,
    pub harakiri_s: u64,
    pub started_ms: u64,
}

#[derive(Default)]
struct Inner {
    series: series::Series,
    /// Each worker's latest dump: when fetched (unix ms) and the dump.
    dumps: HashMap<usize, (u64, Result<WorkerDump, String>)>,
    /// One profile per second (unix s), every worker merged.
    profile: VecDeque<(u64, Profile)>,
    last_view: Option<Instant>,
    /// The flame graph, rendered at most once a second.
    svg_cache: Option<(Instant, u64, Vec<u8>)>,
}

impl Dashboard {
    pub fn new(slow_after_s: u64, harakiri_s: u64) -> Dashboard {
        Dashboard {
            inner: Mutex::new(Inner::default()),
            looked: std::sync::Condvar::new(),
            slow_after_s,
            harakiri_s,
            started_ms: crate::log::unix_millis(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Someone is looking: keep tracebacks and the profile coming.
    pub fn viewed(&self) {
        let mut inner = self.lock();
        let first = inner.last_view.map_or(true, |t| t.elapsed() >= VIEW_GRACE);
        inner.last_view = Some(Instant::now());
        if first {
            self.looked.notify_all();
        }
    }

    /// Wait up to `d`, less if someone starts looking meanwhile.
    pub fn wait_for_view(&self, d: Duration) {
        let inner = self.lock();
        let _ = self.looked.wait_timeout(inner, d);
    }

    pub fn is_viewed(&self) -> bool {
        self.lock()
            .last_view
            .is_some_and(|t| t.elapsed() < VIEW_GRACE)
    }

    pub fn with_series<T>(&self, f: impl FnOnce(&mut series::Series) -> T) -> T {
        f(&mut self.lock().series)
    }

    pub fn set_dump(&self, worker: usize, dump: Result<WorkerDump, String>) {
        self.lock()
            .dumps
            .insert(worker, (crate::log::unix_millis(), dump));
    }

    /// Add one worker's samples of second `sec`.
    pub fn add_profile(&self, sec: u64, p: &Profile) {
        let mut inner = self.lock();
        let q = &mut inner.profile;
        match q.iter_mut().rev().find(|(s, _)| *s == sec) {
            Some((_, merged)) => merged.merge(p),
            None => {
                q.push_back((sec, p.clone()));
                q.make_contiguous().sort_by_key(|(s, _)| *s);
                while q.len() > PROFILE_KEEP {
                    q.pop_front();
                }
            }
        }
    }

    /// The flame graph of the last `seconds`.
    pub fn flamegraph(&self, seconds: u64, now_s: u64) -> Vec<u8> {
        let mut inner = self.lock();
        if let Some((at, s, svg)) = &inner.svg_cache {
            if *s == seconds && at.elapsed() < Duration::from_secs(1) {
                return svg.clone();
            }
        }
        let mut merged = Profile::default();
        for (_, p) in inner.profile.iter().filter(|(s, _)| *s + seconds > now_s) {
            merged.merge(p);
        }
        let title = format!(
            "last {seconds} s: {} samples (all workers, 50 Hz per thread)",
            merged.total()
        );
        let mut svg = Vec::new();
        let _ = merged.write_svg(&mut svg, &title);
        inner.svg_cache = Some((Instant::now(), seconds, svg.clone()));
        svg
    }

    /// The state document the page polls.
    pub fn state(&self, workers: &[WorkerSnapshot], now_ms: u64) -> State {
        let mut inner = self.lock();
        let charts = inner.series.charts(now_ms);
        let profile_seconds = inner.profile.len();
        let workers = workers
            .iter()
            .map(|w| {
                let dump = inner
                    .dumps
                    .get(&w.id)
                    .and_then(|(at, d)| Some((*at, d.as_ref().ok()?)))
                    .filter(|(_, d)| d.pid as i32 == w.pid);
                self.worker_state(w, dump, now_ms)
            })
            .collect();
        State {
            now_ms,
            uptime_s: now_ms.saturating_sub(self.started_ms) / 1000,
            version: env!("CARGO_PKG_VERSION"),
            slow_after_s: self.slow_after_s,
            harakiri_s: self.harakiri_s,
            workers,
            charts,
            profile_seconds,
        }
    }

    fn worker_state(
        &self,
        w: &WorkerSnapshot,
        dump: Option<(u64, &WorkerDump)>,
        now_ms: u64,
    ) -> WorkerState {
        let cores = w
            .cores
            .iter()
            .map(|c| {
                let request = c.state.request().map(|r| {
                    let running_ms = r.running_ms(now_ms);
                    RequestState {
                        method: r.method.clone(),
                        uri: r.uri.clone(),
                        remote: r.remote.clone(),
                        running_for: running_ms as f64 / 1000.0,
                        slow: self.slow_after_s > 0 && running_ms >= self.slow_after_s * 1000,
                    }
                });
                // The dump's traceback, if it shows this same request.
                let thread = dump.and_then(|(at, d)| {
                    let t = d.threads.iter().find(|t| t.core == Some(c.core))?;
                    Some((at, t))
                });
                let same = |t: &crate::tracebacker::rich::ThreadDump| match (&c.state, &t.request) {
                    (CoreState::Busy(r), Some(tr)) => {
                        tr.uri == r.uri && tr.started == r.started_ms / 1000
                    }
                    _ => false,
                };
                let (frames, traceback_age_ms, holds_gil) = match thread {
                    Some((at, t)) if same(t) => (
                        t.frames.clone(),
                        Some(now_ms.saturating_sub(at)),
                        t.holds_gil,
                    ),
                    _ => (Vec::new(), None, None),
                };
                CoreView {
                    core: c.core,
                    state: match c.state {
                        CoreState::Idle => "idle",
                        _ => "busy",
                    },
                    requests: c.requests,
                    request,
                    frames,
                    traceback_age_ms,
                    holds_gil,
                }
            })
            .collect();
        let app_threads = dump
            .map(|(_, d)| {
                d.threads
                    .iter()
                    .filter(|t| t.core.is_none())
                    .map(|t| AppThread {
                        name: t.name.clone(),
                        frames: t.frames.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        WorkerState {
            id: w.id,
            pid: w.pid,
            status: if !w.running() {
                "down"
            } else if !w.accepting {
                "starting"
            } else if w.busy_cores() > 0 {
                "busy"
            } else {
                "idle"
            },
            requests: w.requests,
            exceptions: w.exceptions,
            respawns: w.respawn_count,
            harakiri: w.harakiri_count,
            rss: if w.running() {
                crate::stats::memory(w.pid).0
            } else {
                0
            },
            avg_ms: w.avg_rt_micros() as f64 / 1000.0,
            cores,
            app_threads,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct State {
    pub now_ms: u64,
    pub uptime_s: u64,
    pub version: &'static str,
    pub slow_after_s: u64,
    pub harakiri_s: u64,
    pub workers: Vec<WorkerState>,
    pub charts: series::Charts,
    /// Seconds of profile held for the flame graph.
    pub profile_seconds: usize,
}

#[derive(Debug, Serialize)]
pub struct WorkerState {
    pub id: usize,
    pub pid: i32,
    pub status: &'static str,
    pub requests: u64,
    pub exceptions: u64,
    pub respawns: u64,
    pub harakiri: u64,
    pub rss: u64,
    pub avg_ms: f64,
    pub cores: Vec<CoreView>,
    pub app_threads: Vec<AppThread>,
}

#[derive(Debug, Serialize)]
pub struct CoreView {
    pub core: usize,
    pub state: &'static str,
    pub requests: u64,
    pub request: Option<RequestState>,
    pub frames: Vec<FrameDump>,
    pub traceback_age_ms: Option<u64>,
    pub holds_gil: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct RequestState {
    pub method: String,
    pub uri: String,
    pub remote: String,
    pub running_for: f64,
    /// Past `--py-tracebacker-slow`.
    pub slow: bool,
}

#[derive(Debug, Serialize)]
pub struct AppThread {
    pub name: String,
    pub frames: Vec<FrameDump>,
}

/// The answer to a dashboard path when the dashboard may not be shown.
pub const REFUSED: &str =
    "The uwsgi-rs dashboard shows live tracebacks and request URIs, so it is \
served only on a UNIX stats socket (0600, same-uid peers) or, on a TCP address, with \
--stats-dashboard (anyone who can connect then sees it). uWSGI's JSON stays at any other path \
for clients that do not ask for HTML; Prometheus text is at /metrics.\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoreboard::Scoreboard;
    use crate::tracebacker::rich::{CollectedBy, RequestDump, ThreadDump, ThreadState};

    fn dump_for(pid: u32, uri: &str, started: u64) -> WorkerDump {
        WorkerDump {
            worker: 1,
            pid,
            collected_by: CollectedBy::Gil,
            collect_ms: 1.0,
            gil_wait_ms: 0.5,
            threads: vec![ThreadDump {
                name: "uWSGIWorker1Core1".into(),
                ident: 1,
                core: Some(1),
                state: ThreadState::Busy,
                holds_gil: Some(false),
                request: Some(RequestDump {
                    method: "GET".into(),
                    uri: uri.into(),
                    remote: "127.0.0.1".into(),
                    started,
                    running_for: 1.0,
                }),
                frames: vec![FrameDump {
                    filename: "/app/slow.py".into(),
                    lineno: 4,
                    function: "dormi".into(),
                    line: Some("time.sleep(60)".into()),
                    locals: None,
                }],
                cut: None,
            }],
        }
    }

    #[test]
    fn a_core_shows_the_traceback_of_its_own_request_only() {
        let sb = Scoreboard::new(1, 2).unwrap();
        // Worker 1's current process in entry 0.
        sb.assign(0, 1, 77, 0);
        sb.set_current(1, Some(0));
        let _busy = sb
            .core(0, 1)
            .begin(10_000, 0, &[b"127.0.0.1", b"GET", b"/slow"]);
        let d = Dashboard::new(2, 0);
        d.set_dump(1, Ok(dump_for(77, "/slow", 10)));
        let s = d.state(&sb.snapshot_all(), 13_000);
        let core = &s.workers[0].cores[1];
        assert_eq!(core.request.as_ref().unwrap().uri, "/slow");
        assert!(
            core.request.as_ref().unwrap().slow,
            "3 s past a 2 s threshold"
        );
        assert_eq!(core.frames[0].function, "dormi");
        assert_eq!(s.workers[0].cores[0].state, "idle");
        // Another request (or another process) on that core: no stale traceback.
        d.set_dump(1, Ok(dump_for(77, "/other", 10)));
        assert!(d.state(&sb.snapshot_all(), 13_000).workers[0].cores[1]
            .frames
            .is_empty());
        d.set_dump(1, Ok(dump_for(78, "/slow", 10)));
        assert!(d.state(&sb.snapshot_all(), 13_000).workers[0].cores[1]
            .frames
            .is_empty());
        let json = serde_json::to_value(d.state(&sb.snapshot_all(), 13_000)).unwrap();
        assert_eq!(json["workers"][0]["cores"][1]["request"]["method"], "GET");
    }

    #[test]
    fn the_flame_graph_covers_the_seconds_asked() {
        let d = Dashboard::new(0, 0);
        let f = |name: &str| crate::profiler::wire::FrameKey {
            function: name.into(),
            filename: "a.py".into(),
            lineno: 1,
        };
        let mut old = Profile::default();
        old.add("GET /old", &[&f("old_fn")], 5);
        let mut new = Profile::default();
        new.add("GET /new", &[&f("new_fn")], 5);
        d.add_profile(100, &old);
        d.add_profile(190, &new);
        d.add_profile(190, &new);
        let svg = String::from_utf8(d.flamegraph(30, 200)).unwrap();
        assert!(svg.contains("new_fn") && !svg.contains("old_fn"));
        assert!(svg.contains("10 samples"), "two workers' seconds merged");
        // Self-contained: nothing fetched from elsewhere.
        assert!(PAGE.len() < 40_000);
        for outside in [
            "src=\"http",
            "href=\"http",
            "url(",
            "@import",
            "<link",
            "//cdn",
            "fonts.",
        ] {
            assert!(!PAGE.contains(outside), "{outside}");
        }
    }
}
