//! The shared-memory scoreboard: one slot per worker and per core (request
//! thread), created by the master before it forks so every worker inherits
//! the same mapping.
//!
//! Workers write only their own slots (request start, deadline, what the
//! request is); the master only reads them (harakiri, status lines, stats).
//! All fields are atomics except the request description, which is guarded
//! by a per-core sequence lock so the master never reads a torn string.
//! This file holds the only `mmap` in the project; it knows nothing of Python.

use std::cell::UnsafeCell;
use std::sync::atomic::{fence, AtomicI32, AtomicU32, AtomicU64, Ordering};

/// Bytes kept per core to describe the running request
/// (`remote\0method\0uri\0headers...`), enough for harakiri's status lines.
pub const INFO_BYTES: usize = 2048;

#[repr(C)]
pub struct WorkerSlot {
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
    /// Times the master killed this slot's process for harakiri.
    pub harakiri_count: AtomicU64,
    /// Times the master started a process in this slot after the first.
    pub respawn_count: AtomicU64,
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
    /// Unix milliseconds at which the running request started.
    pub started_ms: AtomicU64,
    /// Unix seconds after which the master kills the worker; 0 = no limit.
    /// Per core, so one core finishing never clears another's deadline.
    pub deadline: AtomicU64,
    /// Requests this core served.
    pub requests: AtomicU64,
    info_len: AtomicU32,
    info: UnsafeCell<[u8; INFO_BYTES]>,
}

// SAFETY: `info` is only written by the one thread owning the core and read
// under the sequence lock; all other fields are atomics.
unsafe impl Sync for CoreSlot {}

/// What a snapshot of one busy core says (for the master's logs and stats).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub remote: String,
    pub method: String,
    pub uri: String,
    /// `Name: value` lines; only filled when the worker was asked to keep them.
    pub headers: Vec<String>,
}

pub struct Scoreboard {
    base: *mut u8,
    len: usize,
    workers: usize,
    threads: usize,
}

// SAFETY: the mapping lives as long as the Scoreboard and every access goes
// through atomics or the sequence lock.
unsafe impl Send for Scoreboard {}
unsafe impl Sync for Scoreboard {}

impl Scoreboard {
    /// Map zeroed shared memory for `workers` x `threads` cores.
    pub fn new(workers: usize, threads: usize) -> std::io::Result<Scoreboard> {
        let len = workers
            * (std::mem::size_of::<WorkerSlot>() + threads * std::mem::size_of::<CoreSlot>());
        // SAFETY: anonymous shared mapping, no file; checked for MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Scoreboard {
            base: base.cast(),
            len,
            workers,
            threads,
        })
    }

    pub fn worker_count(&self) -> usize {
        self.workers
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    fn worker_offset(&self, id: usize) -> usize {
        (id - 1) * std::mem::size_of::<WorkerSlot>()
    }

    /// Worker `id` counts from 1, as in uWSGI.
    pub fn worker(&self, id: usize) -> &WorkerSlot {
        assert!(id >= 1 && id <= self.workers, "worker id {id} out of range");
        // SAFETY: in bounds (asserted), aligned (repr(C) slots of 8-byte
        // fields laid end to end), zero is a valid bit pattern for atomics.
        unsafe { &*(self.base.add(self.worker_offset(id)) as *const WorkerSlot) }
    }

    /// Core `core` (from 0) of worker `id` (from 1).
    pub fn core(&self, id: usize, core: usize) -> &CoreSlot {
        assert!(
            id >= 1 && id <= self.workers && core < self.threads,
            "core {id}/{core} out of range"
        );
        let off = self.workers * std::mem::size_of::<WorkerSlot>()
            + ((id - 1) * self.threads + core) * std::mem::size_of::<CoreSlot>();
        // SAFETY: in bounds (asserted) and aligned as above.
        unsafe { &*(self.base.add(off) as *const CoreSlot) }
    }

    /// Reset a worker's slots before a new process takes them over.
    pub fn reset_worker(&self, id: usize) {
        let w = self.worker(id);
        w.pid.store(0, Ordering::Relaxed);
        w.accepting.store(0, Ordering::Relaxed);
        w.requests.store(0, Ordering::Relaxed);
        w.busy_micros.store(0, Ordering::Relaxed);
        w.open_conns.store(0, Ordering::Relaxed);
        for b in &w.latency {
            b.store(0, Ordering::Relaxed);
        }
        for c in 0..self.threads {
            let core = self.core(id, c);
            core.in_request.store(0, Ordering::Relaxed);
            core.deadline.store(0, Ordering::Relaxed);
            core.started_ms.store(0, Ordering::Relaxed);
        }
    }
}

impl Drop for Scoreboard {
    fn drop(&mut self) {
        // SAFETY: base/len are the mapping made in `new`.
        unsafe { libc::munmap(self.base.cast(), self.len.max(1)) };
    }
}

impl CoreSlot {
    /// Called by the owning core thread when a request starts.
    pub fn begin(&self, now_ms: u64, deadline_secs: u64, info: &[&[u8]]) {
        self.write_info(info);
        self.started_ms.store(now_ms, Ordering::Relaxed);
        self.deadline.store(deadline_secs, Ordering::Relaxed);
        self.in_request.store(1, Ordering::Release);
    }

    /// Called by the owning core thread when its request ends.
    pub fn end(&self) {
        self.deadline.store(0, Ordering::Relaxed);
        self.in_request.store(0, Ordering::Release);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Store NUL-separated parts; silently truncated at INFO_BYTES.
    fn write_info(&self, parts: &[&[u8]]) {
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
        fence(Ordering::Release);
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// A consistent copy of the request description, or None after a few
    /// torn reads (the core was busy starting another request).
    pub fn read_info(&self) -> Option<RequestInfo> {
        for _ in 0..16 {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let len = (self.info_len.load(Ordering::Relaxed) as usize).min(INFO_BYTES);
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
                let remote = parts.next().unwrap_or_default();
                let method = parts.next().unwrap_or_default();
                let uri = parts.next().unwrap_or_default();
                let headers = parts.filter(|h| !h.is_empty()).collect();
                return Some(RequestInfo {
                    remote,
                    method,
                    uri,
                    headers,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_independent_and_info_round_trips() {
        let sb = Scoreboard::new(2, 3).unwrap();
        sb.core(2, 1)
            .begin(1000, 42, &[b"127.0.0.1", b"GET", b"/x", b"Host: a"]);
        assert_eq!(sb.core(2, 1).deadline.load(Ordering::Relaxed), 42);
        assert_eq!(sb.core(2, 0).deadline.load(Ordering::Relaxed), 0);
        assert_eq!(sb.core(1, 1).in_request.load(Ordering::Relaxed), 0);
        let info = sb.core(2, 1).read_info().unwrap();
        assert_eq!(
            (
                info.remote.as_str(),
                info.method.as_str(),
                info.uri.as_str()
            ),
            ("127.0.0.1", "GET", "/x")
        );
        assert_eq!(info.headers, vec!["Host: a".to_string()]);
        sb.core(2, 1).end();
        assert_eq!(sb.core(2, 1).in_request.load(Ordering::Relaxed), 0);
        assert_eq!(sb.core(2, 1).requests.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn one_core_ending_keeps_the_others_deadline() {
        let sb = Scoreboard::new(1, 2).unwrap();
        sb.core(1, 0).begin(0, 100, &[]);
        sb.core(1, 1).begin(0, 200, &[]);
        sb.core(1, 1).end();
        assert_eq!(sb.core(1, 0).deadline.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn oversized_info_is_truncated_not_overflowed() {
        let sb = Scoreboard::new(1, 1).unwrap();
        let big = vec![b'a'; INFO_BYTES * 2];
        sb.core(1, 0).begin(0, 0, &[b"r", b"GET", &big]);
        let info = sb.core(1, 0).read_info().unwrap();
        assert!(info.uri.len() < INFO_BYTES);
    }
}
