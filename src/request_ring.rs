//! A ring of each worker's most recent requests (route, status, duration,
//! end time), in the scoreboard's shared memory: written by the worker as
//! a request finishes, read by the stats process for the dashboard's
//! per-route charts.
//!
//! The writer does a handful of relaxed stores and one counter increment
//! (its cores finish requests under the GIL, so the counter is not even
//! contended): no lock, no syscall, nothing it could wait on. Each record
//! carries a sequence number, odd while written, so a reader skips a
//! record being rewritten instead of reading it torn. A reader slower than
//! the ring loses the oldest records and knows how many (the counter), so
//! per-route rates are scaled from what it saw. Only `METHOD PATH` is kept
//! (no query string, cut at [`ROUTE_BYTES`]). Knows nothing of Python.

use std::sync::atomic::{fence, AtomicU64, Ordering};

/// Records kept per worker.
pub const RING: usize = 512;
/// Bytes of `METHOD PATH` kept per record.
pub const ROUTE_BYTES: usize = 48;
const ROUTE_WORDS: usize = ROUTE_BYTES / 8;

#[repr(C)]
pub struct Record {
    /// 2n+1 while record n is written, 2n+2 once it is complete.
    seq: AtomicU64,
    end_ms: AtomicU64,
    /// Duration in microseconds << 16 | status.
    micros_status: AtomicU64,
    route: [AtomicU64; ROUTE_WORDS],
}

#[repr(C)]
pub struct RequestRing {
    /// Records written so far; record n lives at n % RING.
    head: AtomicU64,
    records: [Record; RING],
}

/// One finished request as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub end_ms: u64,
    pub micros: u64,
    pub status: u16,
    pub route: String,
}

impl RequestRing {
    /// Record a finished request. Called by the worker only.
    pub fn push(&self, method: &[u8], path: &[u8], status: u16, micros: u64, end_ms: u64) {
        let n = self.head.fetch_add(1, Ordering::Relaxed);
        let r = &self.records[(n % RING as u64) as usize];
        r.seq.store(2 * n + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        r.end_ms.store(end_ms, Ordering::Relaxed);
        r.micros_status.store(
            (micros.min(u64::MAX >> 16) << 16) | status as u64,
            Ordering::Relaxed,
        );
        let mut bytes = [0u8; ROUTE_BYTES];
        let path = path
            .split(|&b| b == b'?' || b == b'#')
            .next()
            .unwrap_or(b"");
        for (dst, &b) in bytes.iter_mut().zip(method.iter().chain(b" ").chain(path)) {
            *dst = b;
        }
        for (w, chunk) in r.route.iter().zip(bytes.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            w.store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        r.seq.store(2 * n + 2, Ordering::Release);
    }

    /// Records written so far (also the position a reader resumes from).
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// The records from `from` (a previous head) to now, skipping those
    /// overwritten or being written; returns them and the new head.
    pub fn read_since(&self, from: u64) -> (Vec<Finished>, u64) {
        let head = self.head();
        let start = from.max(head.saturating_sub(RING as u64));
        let mut out = Vec::with_capacity((head - start.min(head)) as usize);
        for n in start..head {
            let r = &self.records[(n % RING as u64) as usize];
            let s1 = r.seq.load(Ordering::Acquire);
            if s1 != 2 * n + 2 {
                continue;
            }
            let end_ms = r.end_ms.load(Ordering::Relaxed);
            let ms = r.micros_status.load(Ordering::Relaxed);
            let mut bytes = [0u8; ROUTE_BYTES];
            for (w, chunk) in r.route.iter().zip(bytes.chunks_exact_mut(8)) {
                chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            fence(Ordering::Acquire);
            if r.seq.load(Ordering::Relaxed) != s1 {
                continue;
            }
            let len = bytes.iter().position(|&b| b == 0).unwrap_or(ROUTE_BYTES);
            out.push(Finished {
                end_ms,
                micros: ms >> 16,
                status: (ms & 0xffff) as u16,
                route: String::from_utf8_lossy(&bytes[..len]).into_owned(),
            });
        }
        (out, head)
    }

    /// Forget everything (a new process takes the worker slot over).
    pub fn reset(&self) {
        for r in &self.records {
            r.seq.store(0, Ordering::Relaxed);
        }
        self.head.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Box<RequestRing> {
        // SAFETY: all-zero bytes are a valid RequestRing (atomics).
        unsafe { Box::new(std::mem::zeroed()) }
    }

    #[test]
    fn records_round_trip_without_query_and_cut_to_size() {
        let r = ring();
        r.push(b"GET", b"/a/b?secret=1", 200, 1500, 10);
        r.push(b"POST", &[b'x'; 100], 500, 7, 11);
        let (got, head) = r.read_since(0);
        assert_eq!(head, 2);
        assert_eq!(
            got[0],
            Finished {
                end_ms: 10,
                micros: 1500,
                status: 200,
                route: "GET /a/b".into()
            }
        );
        assert_eq!(got[1].route.len(), ROUTE_BYTES);
        assert_eq!(got[1].status, 500);
        assert!(r.read_since(head).0.is_empty());
    }

    #[test]
    fn a_slow_reader_loses_the_oldest_and_knows_it() {
        let r = ring();
        for i in 0..(RING as u64 + 10) {
            r.push(b"GET", b"/", 200, i, i);
        }
        let (got, head) = r.read_since(0);
        assert_eq!(head, RING as u64 + 10);
        assert_eq!(got.len(), RING);
        assert_eq!(got[0].end_ms, 10);
        r.reset();
        assert_eq!(r.read_since(0), (vec![], 0));
    }

    #[test]
    fn a_reader_never_sees_a_torn_record() {
        let r: &'static RequestRing = Box::leak(ring());
        let stop: &'static std::sync::atomic::AtomicBool =
            Box::leak(Box::new(std::sync::atomic::AtomicBool::new(false)));
        let writer = std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let path = format!("/{i}");
                r.push(b"GET", path.as_bytes(), 200, i, i);
            }
        });
        let mut from = 0;
        let mut checked = 0;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while checked < 20_000 && std::time::Instant::now() < until {
            let (got, head) = r.read_since(from);
            from = head;
            for f in got {
                assert_eq!(f.route, format!("GET /{}", f.micros));
                assert_eq!(f.end_ms, f.micros);
                checked += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(checked > 0);
    }
}
