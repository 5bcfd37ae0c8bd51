//! When a busy core hands its CPU to other threads for a moment.
//!
//! Under steady load the leader (see `leader`) always finds a request
//! waiting, so it never blocks and the kernel switches it out only when its
//! time slice runs out at a scheduler tick (4 ms at HZ=250). A thread of
//! another process woken on the same CPU meanwhile (the proxy in front, or
//! the client on a shared host) can wait that long, and the reply it is to
//! carry waits with it: that was most of the p99 under load. Yielding after
//! [`PERIOD`] of work without a sleep bounds the wait; when no other thread
//! is waiting to run, the kernel returns at once, so the cost is one cheap
//! system call per period.
//!
//! This module owns only that timing; it must not sleep, poll or decide who
//! leads.

use std::time::{Duration, Instant};

/// How long a core may run without sleeping before it yields. Measured under
/// wrk (bench/README.md): 25-100 us all cut the p99 to about 1 ms, 200 us
/// and more kept most of the tail; 100 us makes the fewest system calls of
/// the good ones.
pub const PERIOD: Duration = Duration::from_micros(100);

/// One per core: when it is next due to yield.
pub struct CpuShare {
    due: Instant,
}

impl CpuShare {
    pub fn new(now: Instant) -> Self {
        CpuShare { due: now + PERIOD }
    }

    /// Before the core polls again. True if it is due: the caller yields
    /// (see [`yield_cpu`]); the next period starts now.
    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.due {
            return false;
        }
        self.due = now + PERIOD;
        true
    }

    /// After a poll that started at `polled` returned at `now`. A poll that
    /// took a whole period slept, so the core gave its CPU away already.
    pub fn polled(&mut self, polled: Instant, now: Instant) {
        if now.duration_since(polled) >= PERIOD {
            self.due = now + PERIOD;
        }
    }
}

/// Let any other thread waiting for this CPU run first.
pub fn yield_cpu() {
    rustix::thread::sched_yield();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_due_within_a_period() {
        let t0 = Instant::now();
        let mut share = CpuShare::new(t0);
        assert!(!share.due(t0));
        assert!(!share.due(t0 + PERIOD / 2));
    }

    #[test]
    fn due_once_per_period_of_work() {
        let t0 = Instant::now();
        let mut share = CpuShare::new(t0);
        assert!(share.due(t0 + PERIOD));
        assert!(!share.due(t0 + PERIOD + PERIOD / 2), "the period restarted");
        assert!(share.due(t0 + PERIOD * 2));
    }

    #[test]
    fn a_poll_that_slept_restarts_the_period() {
        let t0 = Instant::now();
        let mut share = CpuShare::new(t0);
        let back = t0 + PERIOD * 5;
        share.polled(t0 + PERIOD / 2, back);
        assert!(!share.due(back), "just woke up: nothing to give away");
        assert!(share.due(back + PERIOD));
    }

    #[test]
    fn a_quick_poll_keeps_the_period_running() {
        let t0 = Instant::now();
        let mut share = CpuShare::new(t0);
        let polled = t0 + PERIOD - Duration::from_micros(5);
        share.polled(polled, polled + Duration::from_micros(2));
        assert!(share.due(t0 + PERIOD));
    }
}
