//! Deadlines of connections parked in the poller: a client that stops in
//! the middle of a request head (slowloris) or connects and says nothing is
//! cut after `--socket-timeout`; an idle keep-alive connection after the
//! keep-alive timeout. Without this, such clients would hold descriptors
//! forever (they never hold a core: parked connections cost no thread).
//!
//! A deadline is set before a connection is handed to the poller and
//! cleared by the core that takes it back, before that core can close it,
//! so the sweeper never touches a descriptor that was closed and reused.
//! The sweeper only shuts the socket down; the poller then hands the
//! connection to a core, which sees EOF and closes it the normal way.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// A deadline is set and cleared on every request of a keep-alive
/// connection: hashing the fd with SipHash (the default, built against
/// hash flooding, which small fds chosen by the kernel cannot do) was half
/// of that cost. A multiply and a fold spread them over the table: the
/// fds of a shard share their low bits, which must not pick the bucket.
#[derive(Default)]
struct FdHasher(u64);

impl Hasher for FdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.mix(self.0 << 8 | u64::from(b));
        }
    }

    fn write_i32(&mut self, fd: i32) {
        self.mix(u64::from(fd as u32));
    }
}

impl FdHasher {
    fn mix(&mut self, x: u64) {
        let h = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }
}

type FdMap = HashMap<RawFd, Instant, BuildHasherDefault<FdHasher>>;

pub struct Deadlines {
    /// fd -> deadline, sharded by fd to keep cores from contending.
    shards: [Mutex<FdMap>; SHARDS],
    /// Milliseconds since `epoch` of the last sweep: checked on every loop
    /// of every core, so a plain atomic rather than a lock.
    last_sweep_ms: AtomicU64,
    epoch: Instant,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            shards: std::array::from_fn(|_| Mutex::new(FdMap::default())),
            last_sweep_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Deadlines {
    fn shard(&self, fd: RawFd) -> &Mutex<FdMap> {
        &self.shards[fd.unsigned_abs() as usize % SHARDS]
    }

    /// Must be called before the connection is handed to the poller.
    pub fn set(&self, fd: RawFd, deadline: Instant) {
        if let Ok(mut m) = self.shard(fd).lock() {
            m.insert(fd, deadline);
        }
    }

    /// Must be called by the core that took the connection, before anything else.
    pub fn clear(&self, fd: RawFd) {
        if let Ok(mut m) = self.shard(fd).lock() {
            m.remove(&fd);
        }
    }

    /// At most once per `every`: shut down every connection past its
    /// deadline. Returns how many were cut.
    pub fn sweep(&self, now: Instant, every: Duration) -> usize {
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now_ms < last + every.as_millis() as u64
            || self
                .last_sweep_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return 0; // too soon, or another core is sweeping
        }
        let mut cut = 0;
        for shard in &self.shards {
            let Ok(mut m) = shard.lock() else { continue };
            m.retain(|&fd, &mut deadline| {
                if deadline > now {
                    return true;
                }
                // SAFETY: the fd is still open: it is closed only after
                // `clear`, which needs this lock.
                let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                // shutdown(2) wakes the poller for it without closing it.
                let _ = rustix::net::shutdown(socket, rustix::net::Shutdown::Both);
                cut += 1;
                false
            });
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn sweeps_only_expired_and_only_once_per_period() {
        let d = Deadlines::default();
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, _b_peer) = UnixStream::pair().unwrap();
        let now = Instant::now();
        d.set(a.as_raw_fd(), now);
        d.set(b.as_raw_fd(), now + Duration::from_secs(60));
        let later = now + Duration::from_secs(2);
        assert_eq!(d.sweep(later, Duration::from_secs(1)), 1);
        assert_eq!(d.sweep(later, Duration::from_secs(1)), 0, "rate-limited");
        let mut buf = [0u8; 1];
        assert_eq!(
            a_peer.read(&mut buf).unwrap(),
            0,
            "the expired one was shut down"
        );
        d.clear(b.as_raw_fd());
        assert_eq!(
            d.sweep(later + Duration::from_secs(120), Duration::from_secs(1)),
            0
        );
    }
}
