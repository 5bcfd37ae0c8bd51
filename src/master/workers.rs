//! The master's worker processes: one slot per worker id, each with its
//! current process and, during a reload or a recycle, the successor that
//! starts before the current one retires; and the retiring processes,
//! which no longer own a slot (nor its scoreboard entry) while they finish
//! their requests under a mercy deadline.
//!
//! The transitions live here: spawn, ready, retire (asked, or announced by
//! the worker itself), reaped; a retiring worker is replaced when it
//! retires, not when it exits, and a reload starts the new process first.
//! Recycling is never a crash: only a process that dies unasked before it
//! was ever ready backs off. Workers are told to stop through their control
//! channel (`channel`), not a signal an app could have taken over.

use std::time::{Duration, Instant};

use super::{back_off, describe_exit, remove_socket_file, Master, Phase};
use crate::channel::{self, MasterEnd, Received, ToMaster, ToWorker};
use crate::loader::Spawn;
use crate::log;
use crate::python::Forked;
use crate::worker::{self, EXIT_LOAD_FAILED};

/// Why a process stops (for the log, and what follows its exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// A reload replaced it with new code.
    Reload,
    /// The master recycled it (lifetime, memory): the reason.
    Recycle(&'static str),
    /// It stopped by itself (max-requests, panics, an exception).
    ByItself,
    /// Cheaper mode retired it: its slot stays empty.
    Cheaped,
    /// The server shuts down.
    Shutdown,
}

impl Why {
    fn label(self) -> &'static str {
        match self {
            Why::Reload => "reload",
            Why::Recycle(r) => r,
            Why::ByItself => "retired by itself",
            Why::Cheaped => "cheaper mode",
            Why::Shutdown => "shutdown",
        }
    }
}

/// A stopping process: since when, why, and when mercy ends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stopping {
    pub why: Why,
    pub kill_at: Instant,
    /// The master killed it at the end of mercy.
    pub killed: bool,
}

/// A graceful harakiri under way: the request it was for, and when the
/// worker is killed if that request still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GracefulHarakiri {
    pub core: usize,
    pub started_ms: u64,
    pub kill_at_ms: u64,
}

/// One worker process, from its fork to its reaping.
#[derive(Debug)]
pub(super) struct Proc {
    pub pid: i32,
    /// Worker id, from 1.
    pub id: usize,
    /// Its scoreboard slot.
    pub entry: usize,
    /// The master's end of its control channel (None once closed).
    pub channel: Option<MasterEnd>,
    pub spawned: Instant,
    /// It reported ready (or was seen accepting).
    pub ready: bool,
    /// The app generation it runs.
    pub generation: u64,
    /// Started to replace the slot's current process, for this reason.
    pub replaces: Option<Why>,
    pub stopping: Option<Stopping>,
    pub graceful_harakiri: Option<GracefulHarakiri>,
    /// The master killed it (harakiri, evil reload): its death is expected.
    pub killed: bool,
}

impl Proc {
    /// Tell it something; false if the channel is gone.
    fn tell(&self, m: ToWorker) -> bool {
        self.channel.as_ref().is_some_and(|c| c.send(m).is_ok())
    }
}

/// One worker id.
#[derive(Debug, Default)]
pub(super) struct Slot {
    pub current: Option<Proc>,
    /// The process that takes over once it is ready.
    pub successor: Option<Proc>,
    /// When to start a process in this empty slot.
    pub respawn_at: Option<Instant>,
    /// Deaths in a row before the app was up: drives the back-off.
    pub quick_failures: u32,
    /// When to try a failed successor again, and its failures in a row.
    pub successor_retry: Option<(Instant, Why)>,
    pub successor_failures: u32,
    /// Cheaper mode keeps this slot empty.
    pub cheaped: bool,
    /// A process was started here before (respawns are counted).
    pub spawned_once: bool,
}

impl Slot {
    pub fn busy_replacing(&self) -> bool {
        self.successor.is_some() || self.successor_retry.is_some()
    }
}

/// Where a process is in the master's books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Current(usize),
    Successor(usize),
    Retiring(usize),
}

impl Master {
    /// Every process the master has, in no particular order.
    pub(super) fn procs(&self) -> impl Iterator<Item = &Proc> {
        self.slots
            .iter()
            .flat_map(|s| s.current.iter().chain(s.successor.iter()))
            .chain(self.retiring.iter())
    }

    pub(super) fn procs_mut(&mut self) -> impl Iterator<Item = &mut Proc> {
        self.slots
            .iter_mut()
            .flat_map(|s| s.current.iter_mut().chain(s.successor.iter_mut()))
            .chain(self.retiring.iter_mut())
    }

    fn place(&self, pid: i32) -> Option<Place> {
        for (i, s) in self.slots.iter().enumerate() {
            if s.current.as_ref().is_some_and(|p| p.pid == pid) {
                return Some(Place::Current(i));
            }
            if s.successor.as_ref().is_some_and(|p| p.pid == pid) {
                return Some(Place::Successor(i));
            }
        }
        self.retiring
            .iter()
            .position(|p| p.pid == pid)
            .map(Place::Retiring)
    }

    fn take(&mut self, place: Place) -> Proc {
        match place {
            Place::Current(i) => self.slots[i].current.take(),
            Place::Successor(i) => self.slots[i].successor.take(),
            Place::Retiring(i) => Some(self.retiring.swap_remove(i)),
        }
        .expect("a place found in the books holds a process")
    }

    /// A scoreboard entry no process uses.
    fn free_entry(&self) -> Option<usize> {
        let used: Vec<usize> = self.procs().map(|p| p.entry).collect();
        (0..self.scoreboard.entries()).find(|e| !used.contains(e))
    }

    /// Whether a process of worker `id` runs (whose tracebacker path a new
    /// one must take over).
    fn id_has_process(&self, id: usize) -> bool {
        self.procs().any(|p| p.id == id)
    }

    /// Start a process for worker `id`: its current one, or the successor
    /// that replaces the current one (for `replaces`) once ready. False if
    /// it could not be started now (a retry is scheduled).
    pub(super) fn spawn(&mut self, id: usize, replaces: Option<Why>) -> bool {
        let retry = |m: &mut Master, after: Duration| {
            let s = &mut m.slots[id - 1];
            match replaces {
                Some(why) => s.successor_retry = Some((Instant::now() + after, why)),
                None => s.respawn_at = Some(Instant::now() + after),
            }
        };
        if !self.cfg.lazy_apps && !self.loader.as_ref().is_some_and(|l| l.ready) {
            retry(self, Duration::ZERO); // spawned once the loader has the app
            return false;
        }
        let Some(entry) = self.free_entry() else {
            // Every entry is held by retiring processes: mercy bounds the wait.
            retry(self, Duration::from_millis(200));
            return false;
        };
        let spawn = Spawn {
            id,
            entry,
            takeover: self.id_has_process(id),
        };
        // Cleared before the process exists: it may serve before the fork
        // returns here (a preloaded worker is ready within a millisecond).
        self.scoreboard.assign(entry, id, 0, log::unix_secs());
        // Counted before the fork: the worker reads it (accepting-once hooks).
        let first = !self.slots[id - 1].spawned_once;
        let respawns = &self.scoreboard.worker_id(id).respawn_count;
        if !first {
            respawns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let pid = channel::pair()
            .map_err(|e| log::line(&format!("cannot make worker {id}'s control channel: {e}")))
            .and_then(|(master_end, worker_end)| {
                let pid = if self.cfg.lazy_apps {
                    self.fork_worker(spawn, worker_end, &master_end)
                } else {
                    let loader = self.loader.as_ref().expect("checked ready above");
                    loader.spawn_worker(spawn, &worker_end).map_err(|e| {
                        log::line(&format!("cannot fork worker {id} from the loader: {e}"));
                    })
                };
                pid.map(|pid| (pid, master_end))
            });
        let Ok((pid, master_end)) = pid else {
            if !first {
                respawns.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.scoreboard.release(entry);
            retry(self, Duration::from_secs(1));
            return false;
        };
        self.scoreboard
            .process(entry)
            .pid
            .store(pid, std::sync::atomic::Ordering::Relaxed);
        let proc = Proc {
            pid,
            id,
            entry,
            channel: Some(master_end),
            spawned: Instant::now(),
            ready: false,
            generation: self.generation,
            replaces,
            stopping: None,
            graceful_harakiri: None,
            killed: false,
        };
        let slot = &mut self.slots[id - 1];
        slot.spawned_once = true;
        match replaces {
            Some(why) => {
                slot.successor_retry = None;
                slot.successor = Some(proc);
                log::line(&format!(
                    "Respawned uwsgi-rs worker {id} (new pid: {pid}) to replace pid {} ({})",
                    slot.current.as_ref().map_or(0, |p| p.pid),
                    why.label()
                ));
            }
            None => {
                slot.respawn_at = None;
                slot.current = Some(proc);
                self.scoreboard.set_current(id, Some(entry));
                if first {
                    log::line(&format!(
                        "spawned uwsgi-rs worker {id} (pid: {pid}, cores: {})",
                        self.cfg.threads
                    ));
                } else {
                    log::line(&format!("Respawned uwsgi-rs worker {id} (new pid: {pid})"));
                }
            }
        }
        true
    }

    /// --lazy-apps: fork a bare worker, which imports the app itself.
    fn fork_worker(
        &self,
        spawn: Spawn,
        worker_end: channel::WorkerEnd,
        master_end: &MasterEnd,
    ) -> Result<i32, ()> {
        // The master is single-threaded, so the child inherits a consistent
        // address space; it runs the worker and never returns.
        match crate::python::fork() {
            Ok(Forked::Parent(pid)) => Ok(pid),
            Ok(Forked::Child) => {
                self.leave_master();
                // SAFETY: the master's end of the new channel, a copy this
                // process never uses (it leaves with _exit).
                unsafe { libc::close(master_end.fd()) };
                let mut args = self.worker_args(spawn);
                args.channel = Some(worker_end);
                let code = worker::run(args);
                // SAFETY: leave without running the master's destructors
                // (which would unlink sockets the master still serves).
                unsafe { libc::_exit(code) }
            }
            Err(e) => {
                log::line(&format!("cannot fork worker {}: {e}", spawn.id));
                Err(())
            }
        }
    }

    /// Read what every process said on its channel and act on it.
    pub(super) fn read_channels(&mut self) {
        let mut said = Vec::new();
        for p in self.procs_mut() {
            let Some(c) = &p.channel else { continue };
            loop {
                match c.recv() {
                    Received::Message(m) => said.push((p.pid, m)),
                    Received::Empty => break,
                    Received::Closed => {
                        p.channel = None;
                        break;
                    }
                }
            }
        }
        for (pid, m) in said {
            match m {
                ToMaster::Ready => self.on_ready(pid),
                ToMaster::Retiring => self.on_retiring(pid),
                ToMaster::Reload => self.on_reload_request(pid),
            }
        }
    }

    /// Channels to wait on, with the others' fds.
    pub(super) fn channel_fds(&self) -> Vec<i32> {
        self.procs()
            .filter_map(|p| p.channel.as_ref().map(MasterEnd::fd))
            .collect()
    }

    /// Processes seen accepting on the scoreboard count as ready too (a
    /// worker without a channel, or a message not read yet).
    pub(super) fn check_ready(&mut self) {
        let seen: Vec<i32> = self
            .procs()
            .filter(|p| !p.ready && p.stopping.is_none())
            .filter(|p| {
                self.scoreboard
                    .process(p.entry)
                    .accepting
                    .load(std::sync::atomic::Ordering::Acquire)
                    == 1
            })
            .map(|p| p.pid)
            .collect();
        for pid in seen {
            self.on_ready(pid);
        }
    }

    /// A process is ready: a successor takes over its slot, and the
    /// process it replaces retires.
    fn on_ready(&mut self, pid: i32) {
        let Some(place) = self.place(pid) else { return };
        match place {
            Place::Current(i) => {
                let slot = &mut self.slots[i];
                if let Some(p) = slot.current.as_mut().filter(|p| !p.ready) {
                    p.ready = true;
                    slot.quick_failures = 0;
                    self.any_ready = true;
                }
            }
            Place::Successor(i) => {
                let mut new = self.take(place);
                new.ready = true;
                self.any_ready = true;
                let why = new.replaces.unwrap_or(Why::Reload);
                let slot = &mut self.slots[i];
                slot.successor_failures = 0;
                slot.quick_failures = 0;
                let old = slot.current.replace(new);
                self.scoreboard
                    .set_current(i + 1, slot.current.as_ref().map(|p| p.entry));
                if let Some(old) = old {
                    self.retire(old, why);
                }
            }
            Place::Retiring(_) => {}
        }
    }

    /// The current process of a slot stopped taking work by itself: it
    /// retires, and its replacement starts now (or the successor already
    /// starting takes over).
    fn on_retiring(&mut self, pid: i32) {
        let Some(place @ (Place::Current(i) | Place::Successor(i))) = self.place(pid) else {
            return; // already retiring (asked by the master)
        };
        let p = self.take(place);
        let replaces = p.replaces;
        self.retire(p, Why::ByItself);
        let id = i + 1;
        if self.phase != Phase::Running {
            return;
        }
        if matches!(place, Place::Successor(_)) {
            // A successor that retires before taking over: start another.
            self.spawn(id, replaces);
        } else if let Some(next) = self.slots[i].successor.take() {
            self.slots[i].current = Some(next);
            self.scoreboard
                .set_current(id, self.slots[i].current.as_ref().map(|p| p.entry));
        } else if !self.slots[i].cheaped {
            self.scoreboard.set_current(id, None);
            self.spawn(id, None);
        }
    }

    /// Ask `p` to stop (it has no slot any more) and keep it until it
    /// exits, or mercy ends.
    pub(super) fn retire(&mut self, mut p: Proc, why: Why) {
        let mercy = Duration::from_secs(self.cfg.reload_mercy);
        let kind = if why == Why::Shutdown {
            ToWorker::Shutdown
        } else {
            ToWorker::Retire
        };
        self.ask_to_stop(&mut p, kind, why, mercy);
        self.retiring.push(p);
    }

    /// Tell `p` to stop (through its channel; a signal if the channel is
    /// gone) and set its mercy deadline (the earlier one if it has one).
    fn ask_to_stop(&self, p: &mut Proc, kind: ToWorker, why: Why, mercy: Duration) {
        // It no longer takes connections: no worker leaves one to it.
        self.scoreboard
            .process(p.entry)
            .accepting
            .store(0, std::sync::atomic::Ordering::Release);
        // One not ready yet may be stuck loading the app (a hung import
        // reads no channel): its stop signal ends it at once if it has
        // not begun serving, and is a graceful stop if it just has.
        if !p.tell(kind) || !p.ready {
            let sig = if kind == ToWorker::Shutdown {
                libc::SIGTERM
            } else {
                libc::SIGHUP
            };
            // SAFETY: kill on our unreaped child.
            unsafe { libc::kill(p.pid, sig) };
        }
        let kill_at = Instant::now() + mercy;
        p.stopping = Some(match p.stopping {
            Some(s) => Stopping {
                kill_at: s.kill_at.min(kill_at),
                ..s
            },
            None => Stopping {
                why,
                kill_at,
                killed: false,
            },
        });
    }

    /// The server shuts down: every process is told, with mercy from now.
    pub(super) fn stop_all(&mut self) {
        let mercy = Duration::from_secs(self.cfg.reload_mercy);
        let mut all: Vec<Proc> = Vec::new();
        for s in &mut self.slots {
            all.extend(s.current.take());
            all.extend(s.successor.take());
            s.respawn_at = None;
            s.successor_retry = None;
        }
        all.append(&mut self.retiring);
        for mut p in all {
            self.ask_to_stop(&mut p, ToWorker::Shutdown, Why::Shutdown, mercy);
            self.retiring.push(p);
        }
    }

    /// Reap every child that exited. Returns an exit status when the
    /// master must stop now (the app cannot be loaded at start).
    pub(super) fn reap(&mut self) -> Option<i32> {
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our children with a live status int.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return None;
            }
            let (how, code) = describe_exit(status);
            if pid == self.stats_pid {
                self.stats_died(&how);
                continue;
            }
            let Some(place) = self.place(pid) else {
                if let Some(code) = self.other_child_exited(pid, status) {
                    return Some(code);
                }
                continue;
            };
            let p = self.take(place);
            self.scoreboard.release(p.entry);
            if self.scoreboard.current(p.id) == Some(p.entry) {
                self.scoreboard.set_current(p.id, None);
            }
            remove_socket_file(&self.tb_private(p.entry));
            if !self.id_has_process(p.id) {
                if let Some(public) = self.tb_public(p.id) {
                    remove_socket_file(&public);
                }
            }
            if let Some(code) = match place {
                Place::Retiring(_) => {
                    self.retired(&p, &how);
                    None
                }
                Place::Successor(i) => {
                    self.successor_died(i, &p, &how, code);
                    None
                }
                Place::Current(i) => self.current_died(i, &p, &how, code),
            } {
                return Some(code);
            }
        }
    }

    fn retired(&self, p: &Proc, how: &str) {
        let Some(s) = p.stopping else { return };
        if s.killed {
            log::line(&format!(
                "worker {} (pid: {}) killed at the end of its mercy period",
                p.id, p.pid
            ));
        } else if s.why == Why::Shutdown {
            log::line(&format!("worker {} (pid: {}) stopped ({how})", p.id, p.pid));
        } else if how == "exit code 0" {
            log::line(&format!(
                "worker {} killed successfully (pid: {}) ({})",
                p.id,
                p.pid,
                s.why.label()
            ));
        } else {
            log::line(&format!(
                "worker {} (pid: {}) retired ({}), {how}",
                p.id,
                p.pid,
                s.why.label()
            ));
        }
        if s.why == Why::Cheaped {
            // uWSGI's line: the slot stays empty until the algorithm
            // wants the worker back.
            log::line(&format!("uWSGI worker {} cheaped.", p.id));
        }
    }

    /// A successor died before it took over: the current process keeps
    /// serving, and the successor is tried again after a back-off.
    fn successor_died(&mut self, i: usize, p: &Proc, how: &str, code: Option<i32>) {
        let id = i + 1;
        let slot = &mut self.slots[i];
        slot.successor_failures += 1;
        let delay = back_off(slot.successor_failures + 1);
        log::line(&format!(
            "DAMN ! worker {id} (pid: {}) died before taking over, {how}{} :( worker {id} (pid: {}) keeps serving; trying again in {} ms",
            p.pid,
            if code == Some(EXIT_LOAD_FAILED) { " (could not load the app, see above)" } else { "" },
            slot.current.as_ref().map_or(0, |c| c.pid),
            delay.as_millis()
        ));
        if self.phase == Phase::Running {
            let why = p.replaces.unwrap_or(Why::Reload);
            if slot.current.is_some() {
                slot.successor_retry = Some((Instant::now() + delay, why));
            } else {
                slot.respawn_at = Some(Instant::now() + delay);
            }
        }
    }

    /// The current process of a slot died without being asked to stop.
    fn current_died(&mut self, i: usize, p: &Proc, how: &str, code: Option<i32>) -> Option<i32> {
        let id = i + 1;
        if self.phase != Phase::Running {
            log::line(&format!("worker {id} (pid: {}) stopped ({how})", p.pid));
            return None;
        }
        if code == Some(EXIT_LOAD_FAILED) && !self.any_ready {
            log::line(&format!(
                "uwsgi-rs: worker {id} could not load the app (see above): exiting"
            ));
            return Some(1);
        }
        // A worker leaves with status 0 only after it served: never a crash.
        let clean = code == Some(0);
        if clean {
            log::line(&format!(
                "worker {id} (pid: {}) finished its work: respawning",
                p.pid
            ));
        } else {
            log::line(&format!(
                "DAMN ! worker {id} (pid: {}) died, {how} :( trying respawn ...",
                p.pid
            ));
        }
        let slot = &mut self.slots[i];
        if let Some(next) = slot.successor.take() {
            slot.current = Some(next);
            self.scoreboard
                .set_current(id, slot.current.as_ref().map(|p| p.entry));
            return None;
        }
        if slot.cheaped {
            return None;
        }
        let delay = if p.ready || clean || p.killed {
            slot.quick_failures = 0;
            Duration::ZERO
        } else {
            slot.quick_failures += 1;
            let d = back_off(slot.quick_failures);
            if !d.is_zero() {
                log::line(&format!(
                    "worker {id} died {} times in a row before serving: respawning in {} ms",
                    slot.quick_failures,
                    d.as_millis()
                ));
            }
            d
        };
        if delay.is_zero() {
            self.spawn(id, None);
        } else {
            slot.respawn_at = Some(Instant::now() + delay);
        }
        None
    }

    /// Start what is due: empty slots, successors tried again.
    pub(super) fn respawn_due(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        let now = Instant::now();
        for id in 1..=self.slots.len() {
            let s = &self.slots[id - 1];
            if s.current.is_none() && !s.cheaped && s.respawn_at.is_some_and(|t| t <= now) {
                self.spawn(id, None);
            }
            let s = &self.slots[id - 1];
            if let Some((at, why)) = s.successor_retry {
                if at <= now && s.successor.is_none() {
                    self.slots[id - 1].successor_retry = None;
                    if self.slots[id - 1].current.is_some() {
                        self.spawn(id, Some(why));
                    }
                }
            }
        }
    }

    /// Replace worker `id`'s current process with a new one (started
    /// first; the current one retires once it is ready). False if nothing
    /// was started (no current process, or a replacement is under way).
    pub(super) fn replace(&mut self, id: usize, why: Why) -> bool {
        let s = &self.slots[id - 1];
        if s.current.is_none() || s.busy_replacing() || self.phase != Phase::Running {
            return false;
        }
        self.spawn(id, Some(why))
    }

    /// A reload: every worker is replaced with the current generation, one
    /// at a time (the next once the previous replacement took over), so the
    /// others keep serving throughout.
    pub(super) fn start_reload(&mut self) {
        self.reload_queue = (1..=self.slots.len()).rev().collect();
        self.reload_from = Instant::now();
    }

    /// A reload with `--lazy-apps` while successors of an older one still
    /// start: they run the older code, and one stuck in its import (a
    /// deploy that hangs) held every later reload behind it for ever. Each
    /// is asked to stop (killed at mercy if its import never returns; one
    /// that may have begun to accept is never killed at once) and its slot
    /// is replaced anew, with the newer code.
    pub(super) fn retire_stale_successors(&mut self) {
        for i in 0..self.slots.len() {
            let generation = self.generation;
            let Some(p) = self.slots[i]
                .successor
                .take_if(|p| p.generation < generation)
            else {
                continue;
            };
            log::line(&format!(
                "worker {} (pid: {}) had not taken over with the older code (generation {}): retired for generation {generation}",
                p.id, p.pid, p.generation
            ));
            self.retire(p, Why::Reload);
        }
    }

    pub(super) fn advance_reload(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        while !self.slots.iter().any(Slot::busy_replacing) {
            let Some(id) = self.reload_queue.pop() else {
                return;
            };
            let s = &self.slots[id - 1];
            // Older code, or started before this reload (a chain reload
            // replaces the processes of the current generation too).
            let stale = s
                .current
                .as_ref()
                .is_some_and(|p| p.generation < self.generation || p.spawned < self.reload_from);
            if stale && self.replace(id, Why::Reload) {
                return;
            }
            // An empty (or cheaped) slot starts with the new code anyway.
        }
    }

    /// Whether a reload is still going on.
    pub(super) fn reloading(&self) -> bool {
        !self.reload_queue.is_empty() || self.slots.iter().any(Slot::busy_replacing)
    }

    /// A worker asks for a reload (`--py-autoreload`): one reload per
    /// generation, however many workers ask.
    fn on_reload_request(&mut self, pid: i32) {
        let Some(p) = self.procs().find(|p| p.pid == pid) else {
            return;
        };
        // One reload at a time: the others asking saw the same change.
        let under_way = self.next_loader.is_some() || self.reloading();
        if p.generation == self.generation && self.phase == Phase::Running && !under_way {
            self.reload("a worker saw a module change (--py-autoreload)");
        }
    }

    /// fifo `w`: every worker finishes its requests and is replaced at
    /// once (the new process starts while the old one drains).
    pub(super) fn replace_all_now(&mut self) {
        self.reload_queue.clear();
        for id in 1..=self.slots.len() {
            if self.empty_slot(id, Why::Reload) && !self.slots[id - 1].cheaped {
                self.spawn(id, None);
            }
        }
    }

    /// Retire worker `id`'s processes (its current one and a successor),
    /// leaving the slot empty. False if it had none.
    fn empty_slot(&mut self, id: usize, why: Why) -> bool {
        let s = &mut self.slots[id - 1];
        s.successor_retry = None;
        let old: Vec<Proc> = s
            .successor
            .take()
            .into_iter()
            .chain(s.current.take())
            .collect();
        self.scoreboard.set_current(id, None);
        let had = !old.is_empty();
        for p in old {
            self.retire(p, why);
        }
        had
    }

    /// fifo `W` (and `R` once the new code is loaded): SIGKILL every worker;
    /// each is replaced as soon as it is reaped, without a back-off.
    pub(super) fn kill_workers(&mut self) {
        self.reload_queue.clear();
        for s in &mut self.slots {
            s.successor_retry = None;
        }
        for p in self.procs_mut() {
            // SAFETY: kill on our unreaped child.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
            p.killed = true;
        }
    }

    /// fifo `C` (uWSGI's go_cheap): every worker retires (finishing its
    /// requests) and the slots stay empty until a connection comes.
    pub(super) fn go_cheap(&mut self, source: &str) {
        if self.gone_cheap {
            return;
        }
        log::line(&format!("{source}: going cheap..."));
        self.gone_cheap = true;
        self.reload_queue.clear();
        for id in 1..=self.slots.len() {
            let s = &mut self.slots[id - 1];
            s.cheaped = true;
            s.respawn_at = None;
            self.empty_slot(id, Why::Cheaped);
        }
        log::line("cheap mode enabled: waiting for socket connection...");
    }

    /// After `C`: a connection waits on a listener, so the workers come
    /// back (as many as at start).
    pub(super) fn wake_from_cheap(&mut self) {
        if !self.gone_cheap || self.phase != Phase::Running {
            return;
        }
        let mut pfds: Vec<libc::pollfd> = self
            .listeners
            .iter()
            .map(|l| libc::pollfd {
                fd: l.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: pollfds in a live vector; no wait.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 0) };
        if n <= 0 {
            return;
        }
        self.gone_cheap = false;
        let first = self.checks.initial_workers(self.slots.len());
        log::line(&format!(
            "a connection came in cheap mode: spawning {first} worker(s)"
        ));
        for id in 1..=first {
            self.slots[id - 1].cheaped = false;
            self.spawn(id, None);
        }
    }

    /// SIGKILL every process and wait for each (immediate shutdown).
    pub(super) fn kill_all_and_wait(&mut self) {
        let pids: Vec<i32> = self.procs().map(|p| p.pid).collect();
        for pid in &pids {
            // SAFETY: kill on our unreaped child.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        for pid in pids {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
        for s in &mut self.slots {
            s.current = None;
            s.successor = None;
        }
        self.retiring.clear();
    }
}
