//! The shared-memory scoreboard: a slot per worker process and per core
//! (request thread), created by the master before it forks so every worker
//! inherits the same mapping.
//!
//! Process slots are not worker ids: a worker id (1..=processes, uWSGI's
//! numbering) is served by one process at a time, but while a retiring
//! process finishes its requests its replacement already runs, and each
//! writes its own slot. So there is a pool of process slots (entries,
//! [`ENTRIES_PER_WORKER`] per worker id), which the master hands out and
//! takes back, and per worker id the counters that outlive its processes
//! (harakiri, respawns) and which entry is its current process.
//!
//! Workers write only their own slots (request start, deadline, what the
//! request is); everyone else reads them through one read model,
//! [`WorkerSnapshot`] and [`CoreSnapshot`] (the master's harakiri and slow
//! checks, the stats server, the rich dump). All fields are atomics except
//! the request description and start time, which are guarded by a per-core
//! sequence lock so a reader never sees a torn string or another request's
//! start. This file holds the only `mmap` in the project; it knows nothing
//! of Python.

use std::cell::UnsafeCell;
use std::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

use crate::request_ring::RequestRing;

/// Bytes kept per core to describe the running request
/// (`remote\0method\0uri\0headers...`), enough for harakiri's status lines.
pub const INFO_BYTES: usize = 2048;

/// Process slots per worker id: the current process, its successor (a
/// reload starts it before the current one retires) and retiring ones.
pub const ENTRIES_PER_WORKER: usize = 3;

/// What outlives a worker id's processes.
#[repr(C)]
pub struct IdSlot {
    /// Entry + 1 of the process that serves as this worker now; 0 = none.
    current: AtomicU32,
    /// Times the master killed this worker's process for harakiri.
    pub harakiri_count: AtomicU64,
    /// Times the master started a process for this worker after the first.
    pub respawn_count: AtomicU64,
}

/// One worker process (an entry of the pool).
#[repr(C)]
pub struct WorkerSlot {
    /// The worker id this process serves as; 0 while the entry is free.
    pub id: AtomicU32,
    /// 0 while no process runs in this slot.
    pub pid: AtomicI32,
    /// 1 once the app is loaded and the worker accepts connections.
    pub accepting: AtomicU32,
    /// Requests served by the current process in this slot.
    pub requests: AtomicU64,
    /// Requests whose app call raised.
    pub exceptions: AtomicU64,
    /// Response bytes written.
    pub tx: AtomicU64,
    /// Unix seconds of the last spawn.
    pub last_spawn: AtomicU64,
    /// Sum of request durations in microseconds (for the average).
    pub busy_micros: AtomicU64,
    /// Client connections the worker holds open (balances accepting).
    pub open_conns: AtomicU64,
    /// Requests per latency bucket ([`LATENCY_BOUNDS_US`], then +Inf).
    pub latency: [AtomicU64; LATENCY_BUCKETS],
}

/// Upper bounds of the latency histogram buckets, in microseconds.
pub const LATENCY_BOUNDS_US: [u64; 12] = [
    1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

impl WorkerSlot {
    /// Count one finished request of `micros` duration.
    pub fn record_latency(&self, micros: u64) {
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.busy_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

#[repr(C)]
pub struct CoreSlot {
    /// Odd while `info` is being rewritten (sequence lock).
    seq: AtomicU32,
    /// 1 while a request runs on this core.
    pub in_request: AtomicU32,
    /// Unix milliseconds at which the running request started (written
    /// under the sequence lock, with `info`).
    started_ms: AtomicU64,
    /// Unix milliseconds after which the master kills the worker; 0 = no
    /// limit. Per core, so one core finishing never clears another's.
    deadline_ms: AtomicU64,
    /// Requests this core served.
    pub requests: AtomicU64,
    info_len: AtomicU32,
    info: UnsafeCell<[u8; INFO_BYTES]>,
}

// SAFETY: `info` is only written by the one thread owning the core and read
// under the sequence lock; all other fields are atomics.
unsafe impl Sync for CoreSlot {}

/// One worker slot as read at one moment: the read model of everything a
/// reader outside the worker may know (harakiri and slow checks, stats,
/// the rich dump; the profiler and dashboard build on it too).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerSnapshot {
    /// Worker id, from 1.
    pub id: usize,
    /// 0 while no process runs in this slot.
    pub pid: i32,
    /// The app is loaded and the worker accepts connections.
    pub accepting: bool,
    /// Requests served by the current process.
    pub requests: u64,
    /// Requests whose app call raised.
    pub exceptions: u64,
    /// Response bytes written.
    pub tx: u64,
    pub harakiri_count: u64,
    pub respawn_count: u64,
    /// Unix seconds of the last spawn.
    pub last_spawn: u64,
    /// Sum of request durations in microseconds.
    pub busy_micros: u64,
    /// Client connections the worker holds open.
    pub open_conns: u64,
    /// Requests per latency bucket ([`LATENCY_BOUNDS_US`], then +Inf).
    pub latency: [u64; LATENCY_BUCKETS],
    pub cores: Vec<CoreSnapshot>,
}

impl WorkerSnapshot {
    /// Whether a process runs in this slot.
    pub fn running(&self) -> bool {
        self.pid > 0
    }

    /// Cores serving a request.
    pub fn busy_cores(&self) -> usize {
        self.cores.iter().filter(|c| c.state.is_busy()).count()
    }

    /// Mean request duration in microseconds (0 before the first request).
    pub fn avg_rt_micros(&self) -> u64 {
        self.busy_micros.checked_div(self.requests).unwrap_or(0)
    }
}

/// One core (request thread) as read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoreSnapshot {
    /// Core index, from 0.
    pub core: usize,
    /// Requests this core served.
    pub requests: u64,
    pub state: CoreState,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum CoreState {
    /// Waiting for a request.
    #[default]
    Idle,
    /// Serving this request.
    Busy(RequestSnapshot),
    /// Serving, but its description was being rewritten at every look: the
    /// core is moving from one request to the next.
    BusyUnread,
}

impl CoreState {
    pub fn is_busy(&self) -> bool {
        !matches!(self, CoreState::Idle)
    }

    pub fn request(&self) -> Option<&RequestSnapshot> {
        match self {
            CoreState::Busy(r) => Some(r),
            _ => None,
        }
    }
}

/// The request a busy core serves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestSnapshot {
    /// Unix milliseconds at which it started.
    pub started_ms: u64,
    /// Unix milliseconds after which harakiri fires; None = no limit.
    pub deadline_ms: Option<u64>,
    /// The client's address (for uwsgi, the one the proxy passed on).
    pub remote: String,
    pub method: String,
    /// As the client sent it, query string included.
    pub uri: String,
    /// `Name: value` lines; only filled when the worker was asked to keep them.
    pub headers: Vec<String>,
}

impl RequestSnapshot {
    /// Milliseconds since it started, at `now_ms`.
    pub fn running_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.started_ms)
    }
}

pub struct Scoreboard {
    base: *mut u8,
    len: usize,
    /// Worker ids (1..=workers).
    workers: usize,
    /// Process slots.
    entries: usize,
    threads: usize,
}

// SAFETY: the mapping lives as long as the Scoreboard and every access goes
// through atomics or the sequence lock.
unsafe impl Send for Scoreboard {}
unsafe impl Sync for Scoreboard {}

impl Scoreboard {
    /// Map zeroed shared memory for `workers` ids and their process slots
    /// of `threads` cores each.
    pub fn new(workers: usize, threads: usize) -> std::io::Result<Scoreboard> {
        let entries = workers * ENTRIES_PER_WORKER;
        let len = workers * std::mem::size_of::<IdSlot>()
            + entries
                * (std::mem::size_of::<WorkerSlot>()
                    + threads * std::mem::size_of::<CoreSlot>()
                    + std::mem::size_of::<RequestRing>());
        // SAFETY: a new anonymous shared mapping, no file, aliasing nothing.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len.max(1),
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
            )
        }?;
        Ok(Scoreboard {
            base: base.cast(),
            len,
            workers,
            entries,
            threads,
        })
    }

    /// Cores (request threads) per worker.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Process slots run from 0 to this (exclusive).
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// What outlives the processes of worker `id` (from 1, as in uWSGI).
    pub fn worker_id(&self, id: usize) -> &IdSlot {
        assert!(id >= 1 && id <= self.workers, "worker id {id} out of range");
        // SAFETY: in bounds (asserted), aligned (repr(C) slots of 8-byte
        // fields laid end to end), zero is a valid bit pattern for atomics.
        unsafe { &*(self.base.add((id - 1) * std::mem::size_of::<IdSlot>()) as *const IdSlot) }
    }

    /// Process slot `entry` (from 0).
    pub fn process(&self, entry: usize) -> &WorkerSlot {
        assert!(entry < self.entries, "entry {entry} out of range");
        let off = self.workers * std::mem::size_of::<IdSlot>()
            + entry * std::mem::size_of::<WorkerSlot>();
        // SAFETY: in bounds (asserted) and aligned as above.
        unsafe { &*(self.base.add(off) as *const WorkerSlot) }
    }

    /// Core `core` (from 0) of process slot `entry`.
    pub fn core(&self, entry: usize, core: usize) -> &CoreSlot {
        assert!(
            entry < self.entries && core < self.threads,
            "core {entry}/{core} out of range"
        );
        let off = self.workers * std::mem::size_of::<IdSlot>()
            + self.entries * std::mem::size_of::<WorkerSlot>()
            + (entry * self.threads + core) * std::mem::size_of::<CoreSlot>();
        // SAFETY: in bounds (asserted) and aligned as above.
        unsafe { &*(self.base.add(off) as *const CoreSlot) }
    }

    /// The ring of recent requests of process slot `entry` (after every
    /// core slot): each process writes its own, as it does its slot.
    pub fn ring(&self, entry: usize) -> &RequestRing {
        assert!(entry < self.entries, "entry {entry} out of range");
        let off = self.workers * std::mem::size_of::<IdSlot>()
            + self.entries
                * (std::mem::size_of::<WorkerSlot>()
                    + self.threads * std::mem::size_of::<CoreSlot>())
            + entry * std::mem::size_of::<RequestRing>();
        // SAFETY: in bounds (asserted; `new` sized the mapping for it),
        // aligned (8-byte fields throughout), zero is valid for atomics.
        unsafe { &*(self.base.add(off) as *const RequestRing) }
    }

    /// The entry of worker `id`'s current process, if one runs.
    pub fn current(&self, id: usize) -> Option<usize> {
        match self.worker_id(id).current.load(Ordering::Acquire) {
            0 => None,
            e => Some(e as usize - 1),
        }
    }

    /// Make `entry` (or nothing) worker `id`'s current process: the one
    /// stats and dumps by worker id show.
    pub fn set_current(&self, id: usize, entry: Option<usize>) {
        let v = entry.map_or(0, |e| e as u32 + 1);
        self.worker_id(id).current.store(v, Ordering::Release);
    }

    /// Hand `entry` to a new process of worker `id` (`pid` may be 0 and set
    /// once known): everything the last one left is cleared. Call it
    /// before the process starts, which writes the entry from then on.
    pub fn assign(&self, entry: usize, id: usize, pid: i32, now_secs: u64) {
        let w = self.process(entry);
        w.accepting.store(0, Ordering::Relaxed);
        w.requests.store(0, Ordering::Relaxed);
        w.exceptions.store(0, Ordering::Relaxed);
        w.tx.store(0, Ordering::Relaxed);
        w.busy_micros.store(0, Ordering::Relaxed);
        w.open_conns.store(0, Ordering::Relaxed);
        for b in &w.latency {
            b.store(0, Ordering::Relaxed);
        }
        self.ring(entry).reset();
        for c in 0..self.threads {
            let core = self.core(entry, c);
            core.in_request.store(0, Ordering::Relaxed);
            core.deadline_ms.store(0, Ordering::Relaxed);
            core.started_ms.store(0, Ordering::Relaxed);
            core.requests.store(0, Ordering::Relaxed);
        }
        w.last_spawn.store(now_secs, Ordering::Relaxed);
        w.pid.store(pid, Ordering::Relaxed);
        w.id.store(id as u32, Ordering::Release);
    }

    /// The process in `entry` is gone: the entry is free again.
    pub fn release(&self, entry: usize) {
        let w = self.process(entry);
        w.accepting.store(0, Ordering::Relaxed);
        w.pid.store(0, Ordering::Relaxed);
        w.id.store(0, Ordering::Release);
    }

    /// Worker `id`'s current process (none: pid 0) and its cores as they
    /// are now, with the counters of the id.
    pub fn snapshot(&self, id: usize) -> WorkerSnapshot {
        let mut s = match self.current(id) {
            Some(e) => self.snapshot_entry(e),
            None => WorkerSnapshot {
                cores: (0..self.threads)
                    .map(|core| CoreSnapshot {
                        core,
                        ..CoreSnapshot::default()
                    })
                    .collect(),
                ..WorkerSnapshot::default()
            },
        };
        let counters = self.worker_id(id);
        s.id = id;
        s.harakiri_count = counters.harakiri_count.load(Ordering::Relaxed);
        s.respawn_count = counters.respawn_count.load(Ordering::Relaxed);
        s
    }

    /// The process in `entry` and its cores as they are now.
    pub fn snapshot_entry(&self, entry: usize) -> WorkerSnapshot {
        let w = self.process(entry);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerSnapshot {
            id: w.id.load(Ordering::Acquire) as usize,
            pid: w.pid.load(Ordering::Relaxed),
            accepting: w.accepting.load(Ordering::Acquire) == 1,
            requests: load(&w.requests),
            exceptions: load(&w.exceptions),
            tx: load(&w.tx),
            harakiri_count: 0,
            respawn_count: 0,
            last_spawn: load(&w.last_spawn),
            busy_micros: load(&w.busy_micros),
            open_conns: load(&w.open_conns),
            latency: std::array::from_fn(|i| load(&w.latency[i])),
            cores: (0..self.threads)
                .map(|c| self.core(entry, c).snapshot(c))
                .collect(),
        }
    }

    /// Every worker id's current process, in id order.
    pub fn snapshot_all(&self) -> Vec<WorkerSnapshot> {
        (1..=self.workers).map(|id| self.snapshot(id)).collect()
    }

    /// Whether a process other than the one in `me` that can take a
    /// connection now (accepting, with an idle core) holds fewer
    /// connections. A retiring process does not accept. On the hot path
    /// (accept), so it reads the atomics directly rather than through a
    /// snapshot.
    pub fn has_lighter_worker(&self, me: usize) -> bool {
        let mine = self.process(me).open_conns.load(Ordering::Relaxed);
        (0..self.entries).filter(|&e| e != me).any(|e| {
            let w = self.process(e);
            w.accepting.load(Ordering::Relaxed) == 1
                && w.open_conns.load(Ordering::Relaxed) < mine
                && (0..self.threads)
                    .any(|c| self.core(e, c).in_request.load(Ordering::Relaxed) == 0)
        })
    }

    /// Whether another accepting process holds fewer connections than the
    /// one in `me`, busy or not: `me` leaves a queued connection to it.
    pub fn has_fewer_conns_elsewhere(&self, me: usize) -> bool {
        let mine = self.process(me).open_conns.load(Ordering::Relaxed);
        (0..self.entries).filter(|&e| e != me).any(|e| {
            let w = self.process(e);
            w.accepting.load(Ordering::Relaxed) == 1 && w.open_conns.load(Ordering::Relaxed) < mine
        })
    }
}

impl Drop for Scoreboard {
    fn drop(&mut self) {
        // SAFETY: base/len are the mapping made in `new`, unused from here.
        let _ = unsafe { rustix::mm::munmap(self.base.cast(), self.len.max(1)) };
    }
}

/// A core's slot while it serves a request; dropping it (however the
/// request ends) marks the core idle and counts the request.
#[must_use]
pub struct InRequest<'a>(&'a CoreSlot);

impl Drop for InRequest<'_> {
    fn drop(&mut self) {
        let slot = self.0;
        slot.deadline_ms.store(0, Ordering::Relaxed);
        slot.in_request.store(0, Ordering::Release);
        slot.requests.fetch_add(1, Ordering::Relaxed);
    }
}

impl CoreSlot {
    /// Called by the owning core thread when a request starts; `info` is
    /// remote, method, uri, then any header lines. The core is busy until
    /// the returned guard drops.
    pub fn begin(&self, now_ms: u64, deadline_ms: u64, info: &[&[u8]]) -> InRequest<'_> {
        self.write_request(now_ms, info);
        self.deadline_ms.store(deadline_ms, Ordering::Relaxed);
        self.in_request.store(1, Ordering::Release);
        InRequest(self)
    }

    /// Move the running request's deadline (`uwsgi.set_user_harakiri`);
    /// 0 = no limit.
    pub fn set_deadline_ms(&self, deadline_ms: u64) {
        self.deadline_ms.store(deadline_ms, Ordering::Relaxed);
    }

    /// Store the start time and NUL-separated parts under the sequence
    /// lock; the parts are silently truncated at INFO_BYTES.
    fn write_request(&self, started_ms: u64, parts: &[&[u8]]) {
        self.seq.fetch_add(1, Ordering::Acquire);
        fence(Ordering::Release);
        let dst = self.info.get();
        let mut n = 0usize;
        for part in parts {
            for &b in part.iter() {
                if n >= INFO_BYTES - 1 {
                    break;
                }
                // SAFETY: n < INFO_BYTES; only this core's thread writes here,
                // readers detect concurrent writes through `seq`.
                unsafe { std::ptr::write_volatile((dst as *mut u8).add(n), b) };
                n += 1;
            }
            if n < INFO_BYTES {
                // SAFETY: as above.
                unsafe { std::ptr::write_volatile((dst as *mut u8).add(n), 0) };
                n += 1;
            }
        }
        self.info_len.store(n as u32, Ordering::Relaxed);
        self.started_ms.store(started_ms, Ordering::Relaxed);
        fence(Ordering::Release);
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// This core as it is now; `core` is its index.
    pub fn snapshot(&self, core: usize) -> CoreSnapshot {
        let requests = self.requests.load(Ordering::Relaxed);
        let state = if self.in_request.load(Ordering::Acquire) == 0 {
            CoreState::Idle
        } else {
            let deadline = self.deadline_ms.load(Ordering::Relaxed);
            match self.read_request() {
                // The request may have ended while we read: say so.
                _ if self.in_request.load(Ordering::Acquire) == 0 => CoreState::Idle,
                Some(mut r) => {
                    r.deadline_ms = (deadline != 0).then_some(deadline);
                    CoreState::Busy(r)
                }
                None => CoreState::BusyUnread,
            }
        };
        CoreSnapshot {
            core,
            requests,
            state,
        }
    }

    /// A consistent copy of the request's start and description, or None
    /// after a few torn reads (the core was busy starting another request).
    fn read_request(&self) -> Option<RequestSnapshot> {
        for _ in 0..16 {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let len = (self.info_len.load(Ordering::Relaxed) as usize).min(INFO_BYTES);
            let started_ms = self.started_ms.load(Ordering::Relaxed);
            let mut copy = vec![0u8; len];
            let src = self.info.get() as *const u8;
            for (i, b) in copy.iter_mut().enumerate() {
                // SAFETY: i < len <= INFO_BYTES; torn reads are detected below.
                *b = unsafe { std::ptr::read_volatile(src.add(i)) };
            }
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                let mut parts = copy
                    .split(|&b| b == 0)
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                return Some(RequestSnapshot {
                    started_ms,
                    deadline_ms: None,
                    remote: parts.next().unwrap_or_default(),
                    method: parts.next().unwrap_or_default(),
                    uri: parts.next().unwrap_or_default(),
                    headers: parts.filter(|h| !h.is_empty()).collect(),
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(sb: &Scoreboard, id: usize, core: usize) -> RequestSnapshot {
        match sb.snapshot(id).cores[core].state.clone() {
            CoreState::Busy(r) => r,
            other => panic!("core {id}/{core} not readable as busy: {other:?}"),
        }
    }

    /// A scoreboard whose worker `id` runs in entry `id - 1`.
    fn board(workers: usize, threads: usize) -> Scoreboard {
        let sb = Scoreboard::new(workers, threads).unwrap();
        for id in 1..=workers {
            sb.assign(id - 1, id, 100 + id as i32, 0);
            sb.set_current(id, Some(id - 1));
        }
        sb
    }

    #[test]
    fn slots_are_independent_and_requests_round_trip() {
        let sb = board(2, 3);
        let req = sb
            .core(1, 1)
            .begin(1000, 42, &[b"127.0.0.1", b"GET", b"/x", b"Host: a"]);
        let r = busy(&sb, 2, 1);
        assert_eq!(
            (
                r.started_ms,
                r.deadline_ms,
                r.remote.as_str(),
                r.method.as_str(),
                r.uri.as_str()
            ),
            (1000, Some(42), "127.0.0.1", "GET", "/x")
        );
        assert_eq!(r.headers, vec!["Host: a".to_string()]);
        assert_eq!(r.running_ms(1500), 500);
        assert_eq!(sb.snapshot(2).cores[0].state, CoreState::Idle);
        assert_eq!(sb.snapshot(1).busy_cores(), 0);
        assert_eq!(sb.snapshot(2).busy_cores(), 1);
        drop(req);
        let w = sb.snapshot(2);
        assert_eq!(w.cores[1].state, CoreState::Idle);
        assert_eq!(w.cores[1].requests, 1);
    }

    #[test]
    fn one_core_ending_keeps_the_others_deadline() {
        let sb = board(1, 2);
        let _first = sb.core(0, 0).begin(0, 100, &[]);
        drop(sb.core(0, 1).begin(0, 200, &[]));
        assert_eq!(busy(&sb, 1, 0).deadline_ms, Some(100));
    }

    #[test]
    fn no_deadline_reads_as_none() {
        let sb = board(1, 1);
        let _req = sb.core(0, 0).begin(0, 0, &[]);
        assert_eq!(busy(&sb, 1, 0).deadline_ms, None);
        sb.core(0, 0).set_deadline_ms(7);
        assert_eq!(busy(&sb, 1, 0).deadline_ms, Some(7));
    }

    #[test]
    fn oversized_info_is_truncated_not_overflowed() {
        let sb = board(1, 1);
        let big = vec![b'a'; INFO_BYTES * 2];
        let _req = sb.core(0, 0).begin(0, 0, &[b"r", b"GET", &big]);
        assert!(busy(&sb, 1, 0).uri.len() < INFO_BYTES);
    }

    #[test]
    fn worker_counters_and_latency_are_in_the_snapshot() {
        let sb = Scoreboard::new(2, 1).unwrap();
        sb.assign(4, 2, 77, 9);
        sb.set_current(2, Some(4));
        let w = sb.process(4);
        w.requests.store(4, Ordering::Relaxed);
        w.record_latency(500); // first bucket (<= 1 ms)
        w.record_latency(20_000_000); // +Inf
        sb.worker_id(2).respawn_count.store(3, Ordering::Relaxed);
        let s = sb.snapshot(2);
        assert!(s.running() && !sb.snapshot(1).running());
        assert_eq!((s.id, s.pid, s.requests, s.last_spawn), (2, 77, 4, 9));
        assert_eq!(s.respawn_count, 3, "the id's counters");
        assert_eq!(s.latency[0], 1);
        assert_eq!(s.latency[LATENCY_BUCKETS - 1], 1);
        assert_eq!(s.avg_rt_micros(), 20_000_500 / 4);
        assert_eq!(sb.snapshot_all().len(), 2);
        assert_eq!(sb.snapshot(1).cores.len(), 1, "no process: idle cores");
    }

    #[test]
    fn a_new_process_starts_clean_and_the_old_keeps_its_own_slot() {
        let sb = board(1, 1);
        let old = sb.current(1).unwrap();
        let _in_request = sb.core(old, 0).begin(5, 0, &[b"r", b"GET", b"/slow"]);
        sb.process(old).requests.store(9, Ordering::Relaxed);
        // The successor takes another entry; the old one keeps writing its own.
        sb.assign(2, 1, 555, 0);
        sb.set_current(1, Some(2));
        let now = sb.snapshot(1);
        assert_eq!((now.pid, now.requests, now.busy_cores()), (555, 0, 0));
        let retiring = sb.snapshot_entry(old);
        assert_eq!(
            (retiring.id, retiring.requests, retiring.busy_cores()),
            (1, 9, 1)
        );
        sb.release(old);
        assert_eq!(sb.snapshot_entry(old).pid, 0);
    }

    #[test]
    fn a_lighter_worker_needs_an_idle_core_and_fewer_connections() {
        let sb = board(2, 1);
        let (me, other) = (sb.process(0), sb.process(1));
        me.open_conns.store(3, Ordering::Relaxed);
        other.open_conns.store(1, Ordering::Relaxed);
        assert!(!sb.has_lighter_worker(0), "the other is not accepting");
        other.accepting.store(1, Ordering::Relaxed);
        assert!(sb.has_lighter_worker(0));
        assert!(!sb.has_lighter_worker(1), "worker 1 holds more");
        let _busy = sb.core(1, 0).begin(0, 0, &[]);
        assert!(!sb.has_lighter_worker(0), "no idle core there");
    }

    #[test]
    fn rings_are_per_process_and_do_not_overlap_the_slots() {
        let sb = Scoreboard::new(2, 3).unwrap();
        let last = sb.entries() - 1;
        let _busy = sb.core(last, 2).begin(5, 0, &[b"r", b"GET", b"/x"]);
        sb.ring(0).push(b"GET", b"/one", 200, 1, 1);
        sb.ring(last).push(b"GET", b"/two", 200, 2, 2);
        assert_eq!(sb.ring(0).read_since(0).0[0].route, "GET /one");
        assert_eq!(sb.ring(last).read_since(0).0[0].route, "GET /two");
        assert!(
            sb.core(last, 2).snapshot(2).state.is_busy(),
            "the slots are intact"
        );
        sb.assign(last, 2, 0, 0);
        assert_eq!(sb.ring(last).head(), 0, "a new process starts a new ring");
        assert_eq!(sb.ring(0).head(), 1);
    }

    #[test]
    fn a_reader_never_sees_a_torn_request() {
        // One thread rewrites the slot as fast as it can; every snapshot
        // must pair a start time with the description written with it.
        let sb: &'static Scoreboard = Box::leak(Box::new(board(1, 1)));
        let stop: &'static std::sync::atomic::AtomicBool =
            Box::leak(Box::new(std::sync::atomic::AtomicBool::new(false)));
        let writer = std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let uri = format!("/{i}");
                // Never ended: the core stays busy with ever new requests.
                std::mem::forget(sb.core(0, 0).begin(i, 0, &[b"r", b"GET", uri.as_bytes()]));
            }
        });
        let mut checked = 0;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while checked < 2_000 && std::time::Instant::now() < until {
            if let CoreState::Busy(r) = &sb.snapshot(1).cores[0].state {
                assert_eq!(r.uri, format!("/{}", r.started_ms));
                checked += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(checked > 0);
    }
}
