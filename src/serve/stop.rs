//! Stopping a worker: the stop flag (set by SIGTERM/SIGHUP, max-requests or
//! a second panic), whether the worker retires (another process takes its
//! place) rather than the server stopping, when the stop began, the mercy
//! bound, the count of requests in flight, which an [`InFlight`] guard holds
//! for as long as a request is being served (so no path can forget to give
//! it back), and the count of requests admitted, for `--max-requests`.
//!
//! Owns no sockets and no Python; `serve` asks it whether to stop
//! listening and whether the worker may exit.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Stop {
    /// Shared with the signal handler, which may set it at any time.
    flag: &'static AtomicBool,
    /// When the first core saw the stop; set once.
    began: OnceLock<Instant>,
    mercy: Duration,
    in_flight: AtomicUsize,
    /// Set before the flag when the worker retires by itself
    /// (`--max-requests`, a second panic): its replacement takes what the
    /// kernel queued on the shared listeners.
    retiring: AtomicBool,
    /// Requests admitted by this process.
    admitted: AtomicU64,
}

/// One request being served, from its parsed head to the last byte of its
/// response. Dropping it gives the request back.
#[must_use]
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long idle keep-alive clients of a stopping worker get to send the
/// request they may be sending.
const IDLE_GRACE: Duration = Duration::from_secs(1);

impl Stop {
    pub fn new(flag: &'static AtomicBool, mercy: Duration) -> Stop {
        Stop {
            flag,
            began: OnceLock::new(),
            mercy,
            in_flight: AtomicUsize::new(0),
            retiring: AtomicBool::new(false),
            admitted: AtomicU64::new(0),
        }
    }

    /// The worker retires by itself; true for the caller that set the stop
    /// first.
    pub fn retire(&self) -> bool {
        self.retiring.store(true, Ordering::Release);
        self.request()
    }

    /// Whether the worker retires (rather than the server stopping): it
    /// leaves what is queued on the listeners to the other workers and its
    /// replacement.
    pub fn retiring(&self) -> bool {
        self.retiring.load(Ordering::Acquire)
    }

    /// Count a request admitted for serving; true for the one that uses up
    /// a quota of `max` (0 = none), decided before it is served so its
    /// response closes the connection and no later one is accepted.
    pub fn admit_is_last(&self, max: u64) -> bool {
        let n = self.admitted.fetch_add(1, Ordering::AcqRel) + 1;
        max > 0 && n == max
    }

    /// Whether the worker was told to stop.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Tell the worker to stop; true for the caller that set it first.
    pub fn request(&self) -> bool {
        !self.flag.swap(true, Ordering::AcqRel)
    }

    /// Note that a core saw the stop; true for the first one only, which
    /// then stops listening.
    pub fn begin(&self) -> bool {
        let mut first = false;
        self.began.get_or_init(|| {
            first = true;
            Instant::now()
        });
        first
    }

    /// A request starts being served.
    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(&self.in_flight)
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether a stopping worker may exit now: nothing in flight, no
    /// response being sent by an offload thread (`offloading`) and no
    /// connection open (idle keep-alive clients get [`IDLE_GRACE`] to send
    /// what they were sending), or the mercy period is over.
    pub fn may_exit(&self, open_conns: u64, offloading: usize) -> bool {
        let since = self.began.get().map(|t| t.elapsed()).unwrap_or_default();
        since >= self.mercy
            || (self.in_flight() == 0
                && offloading == 0
                && (open_conns == 0 || since >= IDLE_GRACE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop(mercy: Duration) -> Stop {
        Stop::new(Box::leak(Box::new(AtomicBool::new(false))), mercy)
    }

    #[test]
    fn in_flight_is_given_back_on_every_path() {
        let s = stop(Duration::from_secs(60));
        let a = s.enter();
        {
            let _b = s.enter();
            assert_eq!(s.in_flight(), 2);
        }
        assert_eq!(s.in_flight(), 1);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _c = s.enter();
            panic!("request failed");
        }));
        assert!(r.is_err());
        assert_eq!(s.in_flight(), 1, "a panic gives it back too");
        drop(a);
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn first_to_request_and_first_to_begin() {
        let s = stop(Duration::from_secs(60));
        assert!(!s.requested());
        assert!(s.request());
        assert!(!s.request());
        assert!(s.requested());
        assert!(s.begin());
        assert!(!s.begin());
        assert!(!s.retiring(), "a signal's stop is not a retirement");
    }

    #[test]
    fn the_quota_is_used_up_by_exactly_one_request() {
        let s = stop(Duration::from_secs(60));
        let lasts: Vec<bool> = (0..7).map(|_| s.admit_is_last(5)).collect();
        assert_eq!(lasts, [false, false, false, false, true, false, false]);
        assert!(!stop(Duration::from_secs(60)).admit_is_last(0), "no quota");
        assert!(s.retire());
        assert!(s.retiring() && s.requested());
    }

    #[test]
    fn may_exit_waits_for_requests_not_past_mercy() {
        let s = stop(Duration::from_secs(60));
        s.begin();
        let r = s.enter();
        assert!(!s.may_exit(0, 0), "a request is in flight");
        drop(r);
        assert!(s.may_exit(0, 0));
        assert!(!s.may_exit(0, 1), "a response is being offloaded");
        assert!(!s.may_exit(3, 0), "idle clients get a moment");
        let impatient = stop(Duration::ZERO);
        impatient.begin();
        let _r = impatient.enter();
        assert!(impatient.may_exit(3, 1), "mercy is over");
    }
}
