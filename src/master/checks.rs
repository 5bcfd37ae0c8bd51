//! The master's periodic checks, one small function each, as uWSGI's
//! core/master_checks.c has them: harakiri (and its graceful first try),
//! mercy for stopping workers, memory limits (reload-on-rss/as and the
//! evil ones), worker lifetime, touched files, cheaper mode, slow requests
//! and full listen queues. Each reads the scoreboard through its snapshots
//! and `/proc`, decides, and acts through the transitions in `workers`
//! (retire, replace) or a SIGKILL.
//!
//! A check that needs a worker's traceback asks the worker's private
//! tracebacker socket (by its scoreboard entry, in the master's 0700
//! directory), never the public path: that reaches the
//! very process, also while a successor holds the public path.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::workers::{GracefulHarakiri, Why};
use super::{Master, Phase};
use crate::actions::Action;
use crate::cheaper::{self, Active, Cheaper, Decision};
use crate::config::Config;
use crate::harakiri;
use crate::log;
use crate::touch::TouchFiles;

/// What the checks remember between ticks.
pub(super) struct State {
    cheaper: Option<Cheaper>,
    cheaper_next: Instant,
    /// `--touch-reload` files, and `--touch-chain-reload` ones.
    touch_reload: TouchFiles,
    touch_chain_reload: TouchFiles,
    /// `--idle`: requests served by the processes at the last check, and
    /// since when nothing changed.
    idle_served: u64,
    idle_since: Instant,
}

impl State {
    pub fn new(cfg: &Config) -> State {
        let lc = &cfg.lifecycle;
        State {
            cheaper: Cheaper::new(&lc.cheaper, cfg.processes, Instant::now()),
            cheaper_next: Instant::now() + cheaper::INTERVAL,
            touch_reload: TouchFiles::new(&lc.touch_reload),
            touch_chain_reload: TouchFiles::new(&lc.touch_workers_reload),
            idle_served: 0,
            idle_since: Instant::now(),
        }
    }

    /// What to log when the master starts.
    pub fn start_lines(&self) -> Vec<String> {
        self.cheaper
            .as_ref()
            .map(Cheaper::settings)
            .unwrap_or_default()
    }

    /// fifo `+` / `-`: one worker more or fewer at the next cheaper
    /// check. False without cheaper mode.
    pub fn nudge_cheaper(&mut self, delta: i64) -> bool {
        self.cheaper.as_mut().map(|c| c.nudge(delta)).is_some()
    }

    /// How many workers to start with: all of them, or in cheaper mode
    /// `--cheaper-initial` (default `--cheaper`).
    pub fn initial_workers(&self, processes: usize) -> usize {
        self.cheaper
            .as_ref()
            .map_or(processes, |c| c.initial().min(processes))
    }
}

impl Master {
    /// Every check, in uWSGI's order (deadlines first).
    pub(super) fn run_checks(&mut self) {
        self.check_harakiri();
        self.check_mercy();
        self.check_memory();
        self.check_lifetime();
        self.check_touched();
        self.check_cheaper();
        self.check_idle();
        self.check_slow();
        self.check_listen_queues();
    }

    /// Log the traceback of the process `pid` (only core `core`'s if
    /// given), read from its private tracebacker socket.
    fn log_traceback(&self, pid: i32, core: Option<usize>) {
        let Some(entry) = self.procs().find(|p| p.pid == pid).map(|p| p.entry) else {
            return;
        };
        let path = self.tb_private(entry);
        let ask = match core {
            Some(c) => format!("core {c}\n"),
            None => "plain\n".to_string(),
        };
        let dump = crate::tracebacker::client::ask(
            &path.to_string_lossy(),
            ask.as_bytes(),
            Duration::from_secs(2),
        );
        match dump {
            Ok(dump) if !dump.is_empty() => log::block(&dump),
            Ok(_) => log::line("(the worker's tracebacker returned nothing)"),
            Err(e) => log::line(&format!("(cannot read the worker's traceback: {e})")),
        }
    }

    /// The status lines of a process's busy cores, under `label`.
    fn log_status(&self, label: &str, id: usize, entry: usize) {
        let cores = self.scoreboard.snapshot_entry(entry).cores;
        for line in harakiri::status_lines_as(
            label,
            id,
            &cores,
            log::unix_millis(),
            self.cfg.harakiri_verbose,
        ) {
            log::stamped(&line);
        }
    }

    /// A request over its harakiri deadline: the worker is killed, after
    /// its traceback is logged. With --harakiri-graceful-timeout the first
    /// try sends --harakiri-graceful-signal instead, and the kill follows
    /// if that request still runs when the timeout ends (uWSGI 2.0.22+).
    fn check_harakiri(&mut self) {
        let now = log::unix_millis();
        let mut due = Vec::new();
        let mut done = Vec::new();
        for p in self.procs().filter(|p| !p.killed) {
            let cores = self.scoreboard.snapshot_entry(p.entry).cores;
            if let Some(g) = p.graceful_harakiri {
                let same_request = cores
                    .get(g.core)
                    .and_then(|c| c.state.request())
                    .is_some_and(|r| r.started_ms == g.started_ms);
                if !same_request {
                    done.push(p.pid); // it ended in time
                } else if now >= g.kill_at_ms {
                    due.push((p.pid, g.core, false));
                }
                continue;
            }
            if let Some(core) = harakiri::overdue_core(&cores, now) {
                due.push((
                    p.pid,
                    core,
                    self.cfg.lifecycle.harakiri_graceful_timeout > 0,
                ));
            }
        }
        for p in self.procs_mut().filter(|p| done.contains(&p.pid)) {
            p.graceful_harakiri = None;
        }
        for (pid, core, graceful) in due {
            self.harakiri(pid, core, graceful);
        }
    }

    /// Log the worker's dump and the status of its busy cores, then kill
    /// it (or, for a graceful first try, signal it).
    fn harakiri(&mut self, pid: i32, core: usize, graceful: bool) {
        let Some((id, entry, tries)) = self
            .procs()
            .find(|p| p.pid == pid)
            .map(|p| (p.id, p.entry, 1 + p.graceful_harakiri.is_some() as u8))
        else {
            return;
        };
        log::stamped(&format!(
            "*** HARAKIRI ON WORKER {id} (pid: {pid}, try: {tries}, graceful: {}) ***",
            if graceful { "yes" } else { "no" }
        ));
        self.log_traceback(pid, None);
        // Read after the dump: the status describes the moment of the kill.
        self.log_status("HARAKIRI", id, entry);
        log::stamped(&format!(
            "HARAKIRI triggered by worker {id} core {core} !!!"
        ));
        let started_ms = self
            .scoreboard
            .snapshot_entry(entry)
            .cores
            .get(core)
            .and_then(|c| c.state.request().map(|r| r.started_ms));
        let lc = &self.cfg.lifecycle;
        if let (true, Some(started_ms)) = (graceful, started_ms) {
            let kill_at_ms = log::unix_millis() + lc.harakiri_graceful_timeout * 1000;
            log::stamped(&format!(
                "HARAKIRI: graceful termination attempt on worker {id} with signal {}. Next harakiri: {}",
                lc.harakiri_graceful_signal,
                kill_at_ms / 1000
            ));
            // SAFETY: kill on our unreaped child.
            unsafe { libc::kill(pid, lc.harakiri_graceful_signal) };
            if let Some(p) = self.procs_mut().find(|p| p.pid == pid) {
                p.graceful_harakiri = Some(GracefulHarakiri {
                    core,
                    started_ms,
                    kill_at_ms,
                });
            }
            return;
        }
        // SAFETY: kill on our unreaped child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        self.scoreboard
            .worker_id(id)
            .harakiri_count
            .fetch_add(1, Ordering::Relaxed);
        if let Some(p) = self.procs_mut().find(|p| p.pid == pid) {
            p.killed = true;
        }
    }

    /// A stopping worker still busy when its mercy ends (--reload-mercy,
    /// a hard bound: a request that never returns cannot hold a reload or a
    /// shutdown) is killed, with its traceback logged as at harakiri.
    fn check_mercy(&mut self) {
        let now = Instant::now();
        let due: Vec<(i32, usize, usize)> = self
            .retiring
            .iter()
            .filter(|p| !p.killed && p.stopping.is_some_and(|s| !s.killed && now >= s.kill_at))
            .map(|p| (p.pid, p.id, p.entry))
            .collect();
        for (pid, id, entry) in due {
            log::stamped(&format!(
                "*** MERCY EXPIRED ON WORKER {id} (pid: {pid}): still busy {} s after it was told to stop: killing it ***",
                self.cfg.reload_mercy
            ));
            self.log_traceback(pid, None);
            self.log_status("MERCY", id, entry);
            // SAFETY: kill on our unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            if let Some(s) = self
                .retiring
                .iter_mut()
                .find(|p| p.pid == pid)
                .and_then(|p| p.stopping.as_mut())
            {
                s.killed = true;
            }
        }
    }

    /// Whether worker `id`'s current process may be recycled now: ready,
    /// not stopping, no replacement under way, and older than
    /// --min-worker-lifetime.
    fn recyclable(&self, id: usize) -> Option<(i32, usize)> {
        let s = &self.slots[id - 1];
        let p = s.current.as_ref()?;
        let min = Duration::from_secs(self.cfg.lifecycle.min_worker_lifetime);
        (p.ready
            && p.stopping.is_none()
            && !p.killed
            && !s.busy_replacing()
            && p.spawned.elapsed() >= min
            && self.phase == Phase::Running)
            .then_some((p.pid, p.entry))
    }

    /// --reload-on-rss / --reload-on-as: a worker over the limit is
    /// replaced (its successor starts first; it then retires gracefully).
    /// --evil-reload-on-rss / -as: it is killed at once. Read from /proc
    /// by the master every tick (uWSGI's worker checks the first two after
    /// each request; its master, the evil ones).
    fn check_memory(&mut self) {
        let lc = &self.cfg.lifecycle;
        let (rss_limit, as_limit) = (lc.reload_on_rss, lc.reload_on_as);
        let (evil_rss, evil_as) = (lc.evil_reload_on_rss, lc.evil_reload_on_as);
        if rss_limit == 0 && as_limit == 0 && evil_rss == 0 && evil_as == 0 {
            return;
        }
        let mut evil = Vec::new();
        for p in self.procs().filter(|p| !p.killed) {
            let (rss, vsz) = crate::stats::memory(p.pid);
            if evil_as > 0 && vsz >= evil_as {
                log::line(&format!(
                    "*** EVIL RELOAD ON WORKER {} ADDRESS SPACE: {vsz} (pid: {}) ***",
                    p.id, p.pid
                ));
                evil.push(p.pid);
            } else if evil_rss > 0 && rss >= evil_rss {
                log::line(&format!(
                    "*** EVIL RELOAD ON WORKER {} RSS: {rss} (pid: {}) ***",
                    p.id, p.pid
                ));
                evil.push(p.pid);
            }
        }
        for p in self.procs_mut().filter(|p| evil.contains(&p.pid)) {
            // SAFETY: kill on our unreaped child.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
            p.killed = true;
        }
        if rss_limit == 0 && as_limit == 0 {
            return;
        }
        for id in 1..=self.slots.len() {
            let Some((pid, _)) = self.recyclable(id) else {
                continue;
            };
            let (rss, vsz) = crate::stats::memory(pid);
            let over = if as_limit > 0 && vsz >= as_limit {
                Some(("reload-on-as", vsz, as_limit))
            } else if rss_limit > 0 && rss >= rss_limit {
                Some(("reload-on-rss", rss, rss_limit))
            } else {
                None
            };
            if let Some((what, have, limit)) = over {
                log::line(&format!(
                    "...The work of process {pid} is done ({what} limit reached ({have} >= {limit})). Seeya!"
                ));
                self.replace(id, Why::Recycle(what));
            }
        }
    }

    /// --max-worker-lifetime (+ worker id - 1 times
    /// --max-worker-lifetime-delta): an older worker is replaced.
    fn check_lifetime(&mut self) {
        let lc = &self.cfg.lifecycle;
        let (max, delta) = (lc.max_worker_lifetime, lc.max_worker_lifetime_delta);
        if max == 0 {
            return;
        }
        for id in 1..=self.slots.len() {
            let Some(age) = self
                .recyclable(id)
                .and(self.slots[id - 1].current.as_ref())
                .map(|p| p.spawned.elapsed().as_secs())
            else {
                continue;
            };
            if age > max + (id as u64 - 1) * delta {
                log::line(&format!(
                    "worker {id} lifetime reached, it was running for {age} second(s)"
                ));
                self.replace(id, Why::Recycle("max-worker-lifetime"));
            }
        }
    }

    /// --touch-reload (a graceful reload) and --touch-chain-reload (alias
    /// --touch-workers-reload: the workers one at a time, same code): a
    /// file whose modification time changed, as uWSGI logs it.
    fn check_touched(&mut self) {
        let touched = [
            (
                &mut self.checks.touch_reload,
                "grace them all",
                Action::GracefulReload,
            ),
            (
                &mut self.checks.touch_chain_reload,
                "chain reload",
                Action::ChainReload,
            ),
        ]
        .into_iter()
        .find_map(|(files, what, action)| {
            files.touched().map(|p| {
                (
                    format!("*** {} has been touched... {what} !!! ***", p.display()),
                    action,
                )
            })
        });
        if let (Some((line, action)), Phase::Running) = (touched, self.phase) {
            log::line(&line);
            // Not an exit: --exit-on-reload stops gracefully.
            let _ = self.act(action, "a touched file");
        }
    }

    /// Cheaper mode: once a second the algorithm decides whether to start
    /// cheaped workers or retire an idle one (not during a reload).
    fn check_cheaper(&mut self) {
        let now = Instant::now();
        if self.checks.cheaper.is_none()
            || now < self.checks.cheaper_next
            || self.phase != Phase::Running
            || self.gone_cheap
            || self.reloading()
        {
            return;
        }
        self.checks.cheaper_next = now + cheaper::INTERVAL;
        let mut active = Vec::new();
        let mut ages = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            let Some(p) = s
                .current
                .as_ref()
                .filter(|p| p.ready && p.stopping.is_none())
            else {
                continue;
            };
            let snap = self.scoreboard.snapshot_entry(p.entry);
            let busy = snap.busy_cores() > 0;
            active.push(Active {
                id: i + 1,
                busy,
                running_micros: snap.busy_micros,
                rss: crate::stats::memory(p.pid).0,
            });
            ages.push((i + 1, busy, p.spawned));
        }
        let cheaped: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.cheaped && s.current.is_none() && s.successor.is_none())
            .map(|(i, _)| i + 1)
            .collect();
        let backlog: u32 = self.listeners.iter().map(|l| l.queue_len()).sum();
        let Some(algo) = self.checks.cheaper.as_mut() else {
            return;
        };
        let (decision, lines) = algo.decide(now, &active, cheaped.len(), backlog);
        for line in lines {
            log::line(&line);
        }
        match decision {
            Decision::Hold => {}
            Decision::Spawn(n) => {
                for &id in cheaped.iter().take(n) {
                    self.slots[id - 1].cheaped = false;
                    self.spawn(id, None);
                }
            }
            Decision::Retire => {
                let Some(id) = cheaper::pick_retiree(&ages) else {
                    return;
                };
                let slot = &mut self.slots[id - 1];
                slot.cheaped = true;
                if let Some(p) = slot.current.take() {
                    self.scoreboard.set_current(id, None);
                    self.retire(p, Why::Cheaped);
                }
            }
        }
    }

    /// `--idle N`: after N seconds without a request, go cheap (every
    /// worker retires until a connection comes), or with `--die-on-idle`
    /// shut down, as uWSGI's master does.
    fn check_idle(&mut self) {
        let idle = self.cfg.lifecycle.idle;
        let now = Instant::now();
        if idle == 0 || self.phase != Phase::Running || self.gone_cheap {
            self.checks.idle_since = now;
            return;
        }
        let (mut served, mut busy) = (0, false);
        for p in self.procs() {
            let snap = self.scoreboard.snapshot_entry(p.entry);
            served += snap.requests;
            busy |= snap.busy_cores() > 0;
        }
        if busy || served != self.checks.idle_served {
            self.checks.idle_served = served;
            self.checks.idle_since = now;
            return;
        }
        if now.duration_since(self.checks.idle_since) < Duration::from_secs(idle) {
            return;
        }
        self.checks.idle_since = now;
        log::line(&format!(
            "workers have been inactive for more than {idle} seconds"
        ));
        if self.cfg.lifecycle.die_on_idle {
            self.shutdown("--die-on-idle");
        } else {
            self.go_cheap(&format!("--idle {idle}"));
        }
    }

    /// `--py-tracebacker-slow`: log once the traceback of every request
    /// running longer than the threshold, without touching it.
    fn check_slow(&mut self) {
        let limit_ms = self.cfg.py_tracebacker_slow * 1000;
        if limit_ms == 0 {
            return;
        }
        let now = log::unix_millis();
        let mut current = std::collections::HashSet::new();
        let procs: Vec<(i32, usize, usize)> =
            self.procs().map(|p| (p.pid, p.id, p.entry)).collect();
        for (pid, id, entry) in procs {
            for c in self.scoreboard.snapshot_entry(entry).cores {
                let Some(r) = c.state.request() else { continue };
                let key = (pid, c.core, r.started_ms);
                current.insert(key);
                if r.running_ms(now) < limit_ms || self.slow_reported.contains(&key) {
                    continue;
                }
                self.slow_reported.insert(key);
                log::stamped(&format!(
                    "SLOW REQUEST on worker {id} core {} (pid: {pid}): {} {} from {} running for {:.1} s",
                    c.core,
                    log::escape(r.method.as_bytes()),
                    log::escape(r.uri.as_bytes()),
                    if r.remote.is_empty() { "-" } else { r.remote.as_str() },
                    r.running_ms(now) as f64 / 1000.0
                ));
                self.log_traceback(pid, Some(c.core));
            }
        }
        // Forget requests that ended, so the set stays small.
        self.slow_reported.retain(|k| current.contains(k));
    }

    /// Warn (at most once a second) while a listen queue is full: clients
    /// are waiting for a worker, and the kernel will soon refuse new ones.
    fn check_listen_queues(&mut self) {
        if self
            .queue_warned
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        for l in &self.listeners {
            let queued = l.queue_len();
            if queued > 0 && queued as i64 >= self.cfg.listen as i64 {
                log::stamped(&format!(
                    "*** listen queue of socket {} full ({queued}/{}): all workers busy, requests are waiting ***",
                    l.name, self.cfg.listen
                ));
                self.queue_warned = Some(Instant::now());
            }
        }
    }
}
