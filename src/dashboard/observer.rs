//! The stats process's background work for the dashboard, on threads of
//! their own so the stats loop never waits for it:
//! - every 250 ms, the request counters and the rings of recent requests
//!   (shared memory, cheap) into the series;
//! - while someone looks at the page: every second, each worker's rich
//!   dump through its private tracebacker socket (in parallel, each bounded
//!   by the socket timeout, one fetch per worker at a time), and a 50 Hz
//!   profile stream from each worker, kept second by second.
//!
//! Nothing here runs Python or touches the master.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::Dashboard;
use crate::profiler::client::{self, Event};
use crate::profiler::profile::Profile;
use crate::profiler::Spec;
use crate::scoreboard::Scoreboard;

const RING_EVERY: Duration = Duration::from_millis(250);
const VIEW_EVERY: Duration = Duration::from_secs(1);
/// The dashboard's flame graph samples at this rate (per thread).
const PROFILE_HZ: u32 = 50;

pub struct Observer {
    pub dashboard: Arc<Dashboard>,
    pub scoreboard: &'static Scoreboard,
    /// Private tracebacker sockets: base + worker id.
    pub tb_base: String,
    pub timeout: Duration,
}

impl Observer {
    pub fn spawn(self) -> std::io::Result<()> {
        let me = Arc::new(self);
        let rings = Arc::clone(&me);
        std::thread::Builder::new()
            .name("uwsgi-rs-series".into())
            .spawn(move || rings.read_rings())?;
        std::thread::Builder::new()
            .name("uwsgi-rs-observe".into())
            .spawn(move || me.watch())?;
        Ok(())
    }

    fn read_rings(&self) {
        let workers = self.scoreboard.snapshot_all().len();
        // Per worker: the pid last seen, its request count and ring head.
        let mut last: HashMap<usize, (i32, u64, u64)> = HashMap::new();
        loop {
            let now = crate::log::unix_millis();
            let mut done = 0u64;
            for id in 1..=workers {
                // The worker's current process (a retiring one's last
                // requests are not followed).
                let Some(entry) = self.scoreboard.current(id) else {
                    continue;
                };
                let w = self.scoreboard.process(entry);
                let pid = w.pid.load(Ordering::Relaxed);
                let requests = w.requests.load(Ordering::Relaxed);
                let ring = self.scoreboard.ring(entry);
                let (prev_pid, prev_req, prev_head) =
                    last.get(&id)
                        .copied()
                        .unwrap_or((pid, requests, ring.head()));
                let (prev_req, prev_head) = if prev_pid != pid {
                    (0, 0) // a new process: its counters started again
                } else {
                    (prev_req, prev_head)
                };
                done += requests.saturating_sub(prev_req);
                let (records, head) = ring.read_since(prev_head);
                // Records the ring overwrote before we came: scale up.
                let weight = if records.is_empty() {
                    1.0
                } else {
                    (head - prev_head.min(head)) as f64 / records.len() as f64
                };
                self.dashboard.with_series(|s| {
                    for r in &records {
                        s.finished(r.end_ms, &r.route, r.micros, weight);
                    }
                });
                last.insert(id, (pid, requests, head));
            }
            self.dashboard.with_series(|s| s.count(now, done));
            std::thread::sleep(RING_EVERY);
        }
    }

    fn watch(self: Arc<Self>) {
        let workers = self.scoreboard.snapshot_all().len();
        let fetching: Arc<Vec<AtomicBool>> =
            Arc::new((0..=workers).map(|_| AtomicBool::new(false)).collect());
        // Per worker: the pid its profile stream serves, and its stop flag.
        let mut streams: HashMap<usize, (i32, Arc<AtomicBool>)> = HashMap::new();
        loop {
            self.dashboard.wait_for_view(VIEW_EVERY);
            if !self.dashboard.is_viewed() {
                for (_, stop) in streams.values() {
                    stop.store(true, Ordering::Relaxed);
                }
                streams.clear();
                continue;
            }
            for id in 1..=workers {
                let Some(entry) = self.scoreboard.current(id) else {
                    continue;
                };
                let pid = self.scoreboard.process(entry).pid.load(Ordering::Relaxed);
                if pid <= 0 {
                    continue;
                }
                if !fetching[id].swap(true, Ordering::AcqRel) {
                    let me = Arc::clone(&self);
                    let flags = Arc::clone(&fetching);
                    std::thread::spawn(move || {
                        let dump = crate::tracebacker::client::fetch_json(
                            &crate::tracebacker::private_socket(&me.tb_base, entry),
                            me.timeout,
                        );
                        me.dashboard.set_dump(id, dump);
                        flags[id].store(false, Ordering::Release);
                    });
                }
                let alive = streams
                    .get(&id)
                    .is_some_and(|(p, stop)| *p == pid && !stop.load(Ordering::Relaxed));
                if !alive {
                    let stop = Arc::new(AtomicBool::new(false));
                    if let Some((_, old)) = streams.insert(id, (pid, Arc::clone(&stop))) {
                        old.store(true, Ordering::Relaxed);
                    }
                    let me = Arc::clone(&self);
                    std::thread::spawn(move || me.profile_stream(id, entry, stop));
                }
            }
        }
    }

    /// Follow one worker's profile until told to stop or the stream ends;
    /// then mark the stream stopped so `watch` starts another if needed.
    fn profile_stream(&self, id: usize, entry: usize, stop: Arc<AtomicBool>) {
        let spec = Spec {
            hz: PROFILE_HZ,
            seconds: 0,
            idle: false,
        };
        if let Ok(reader) = client::open(
            &crate::tracebacker::private_socket(&self.tb_base, entry),
            spec,
            self.timeout,
        ) {
            let mut second = Profile::default();
            client::read_stream(id, reader, |e| {
                match e {
                    Event::Stack {
                        label,
                        frames,
                        count,
                        ..
                    } => {
                        let refs: Vec<_> = frames.iter().collect();
                        second.add(&label, &refs, count);
                    }
                    Event::Tick { .. } => {
                        let sec = crate::log::unix_secs();
                        self.dashboard
                            .add_profile(sec, &std::mem::take(&mut second));
                    }
                    Event::End { .. } => {}
                }
                !stop.load(Ordering::Relaxed)
            });
        }
        stop.store(true, Ordering::Relaxed);
    }
}
