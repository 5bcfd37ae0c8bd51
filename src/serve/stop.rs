//! Stopping a worker: whether it was told to stop and how (retire: another
//! process takes its place; shut down: the server stops), when the stop
//! began, the mercy bound, the count of requests in flight, which an
//! [`InFlight`] guard holds for as long as a request is being served (so no
//! path can forget to give it back), and the `--max-requests` quota, which
//! is counted when a request is admitted so that the last one is known
//! before it is served.
//!
//! Owns no sockets and no Python; `serve` asks it whether to stop
//! listening and whether the worker may exit.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How a worker stops. A shutdown outranks a retirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum StopKind {
    /// Another process takes (or took) this one's place: leave what the
    /// kernel queued on the shared listeners to it.
    Retire = 1,
    /// The server stops: serve what is queued too.
    Shutdown = 2,
}

/// The value of the stop state while the worker runs.
pub const RUNNING: u8 = 0;

/// `--max-requests` for one worker: the quota (`--max-requests-delta`
/// already added) and `--min-worker-lifetime`, measured from `since`.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    /// 0 = no quota.
    pub max: u64,
    pub min_lifetime: Duration,
    pub since: Instant,
}

impl Quota {
    #[cfg(test)]
    pub fn none() -> Quota {
        Quota {
            max: 0,
            min_lifetime: Duration::ZERO,
            since: Instant::now(),
        }
    }
}

pub struct Stop {
    /// RUNNING or a [`StopKind`]; shared with the signal handlers, which
    /// may raise it at any time (`fetch_max`, async-signal-safe).
    state: &'static AtomicU8,
    /// When the first core saw the stop; set once.
    began: OnceLock<Instant>,
    mercy: Duration,
    in_flight: AtomicUsize,
    /// Requests admitted by this process.
    admitted: AtomicU64,
    quota: Quota,
}

/// One request being served, from its parsed head to the last byte of its
/// response. Dropping it gives the request back.
#[must_use]
pub struct InFlight<'a> {
    count: &'a AtomicUsize,
    /// The request that used up the `--max-requests` quota.
    last: bool,
}

impl InFlight<'_> {
    /// Whether this is the last request of the worker's quota: it is
    /// answered with `Connection: close` and the worker retires.
    pub fn is_last(&self) -> bool {
        self.last
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long idle keep-alive clients of a stopping worker get to send the
/// request they may be sending.
const IDLE_GRACE: Duration = Duration::from_secs(1);

impl Stop {
    pub fn new(state: &'static AtomicU8, mercy: Duration, quota: Quota) -> Stop {
        Stop {
            state,
            began: OnceLock::new(),
            mercy,
            in_flight: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            quota,
        }
    }

    /// Whether the worker was told to stop.
    pub fn requested(&self) -> bool {
        self.state.load(Ordering::Relaxed) != RUNNING
    }

    /// How the worker stops, if it was told to.
    pub fn kind(&self) -> Option<StopKind> {
        match self.state.load(Ordering::Acquire) {
            RUNNING => None,
            1 => Some(StopKind::Retire),
            _ => Some(StopKind::Shutdown),
        }
    }

    /// Tell the worker to stop (or to stop as `kind` if that outranks how
    /// it stops already); true for the call that stopped a running worker.
    pub fn request(&self, kind: StopKind) -> bool {
        self.state.fetch_max(kind as u8, Ordering::AcqRel) == RUNNING
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

    /// A request starts being served; it is counted against the quota.
    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let n = self.admitted.fetch_add(1, Ordering::AcqRel) + 1;
        let q = &self.quota;
        // Exactly one request is the last: the first admitted at or over
        // the quota once the worker is old enough (uWSGI's
        // --min-worker-lifetime); the stop it triggers admits no more.
        let last = q.max > 0
            && n >= q.max
            && !self.requested()
            && q.since.elapsed() >= q.min_lifetime
            && self.request(StopKind::Retire);
        InFlight {
            count: &self.in_flight,
            last,
        }
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether a stopping worker may exit now: nothing in flight, no
    /// response being sent by an offload thread (`offloading`), no request
    /// whose head is in and whose body is on its way (`bodies`: waited for
    /// like a request in flight, as they were when a core read them) and
    /// no connection open (idle keep-alive clients get [`IDLE_GRACE`] to
    /// send what they were sending), or the mercy period is over.
    pub fn may_exit(&self, open_conns: u64, offloading: usize, bodies: u64) -> bool {
        let since = self.began.get().map(|t| t.elapsed()).unwrap_or_default();
        since >= self.mercy
            || (self.in_flight() == 0
                && offloading == 0
                && bodies == 0
                && (open_conns == 0 || since >= IDLE_GRACE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> &'static AtomicU8 {
        Box::leak(Box::new(AtomicU8::new(RUNNING)))
    }

    fn stop(mercy: Duration) -> Stop {
        Stop::new(state(), mercy, Quota::none())
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
        assert_eq!(s.kind(), None);
        assert!(s.request(StopKind::Retire));
        assert!(!s.request(StopKind::Retire));
        assert!(s.requested());
        assert!(s.begin());
        assert!(!s.begin());
    }

    #[test]
    fn a_shutdown_outranks_a_retirement_never_the_reverse() {
        let s = stop(Duration::from_secs(60));
        assert!(s.request(StopKind::Retire));
        assert!(!s.request(StopKind::Shutdown), "already stopping");
        assert_eq!(s.kind(), Some(StopKind::Shutdown));
        s.request(StopKind::Retire);
        assert_eq!(s.kind(), Some(StopKind::Shutdown));
    }

    #[test]
    fn may_exit_waits_for_requests_not_past_mercy() {
        let s = stop(Duration::from_secs(60));
        s.begin();
        let r = s.enter();
        assert!(!s.may_exit(0, 0, 0), "a request is in flight");
        drop(r);
        assert!(s.may_exit(0, 0, 0));
        assert!(!s.may_exit(0, 1, 0), "a response is being offloaded");
        assert!(!s.may_exit(3, 0, 0), "idle clients get a moment");
        assert!(!s.may_exit(1, 0, 1), "a body on its way is a request");
        let impatient = stop(Duration::ZERO);
        impatient.begin();
        let _r = impatient.enter();
        assert!(impatient.may_exit(3, 1, 1), "mercy is over");
    }

    #[test]
    fn exactly_the_quota_th_request_is_the_last() {
        let quota = Quota {
            max: 3,
            min_lifetime: Duration::ZERO,
            since: Instant::now(),
        };
        let s = Stop::new(state(), Duration::from_secs(60), quota);
        let lasts: Vec<bool> = (0..5).map(|_| s.enter().is_last()).collect();
        assert_eq!(lasts, [false, false, true, false, false]);
        assert_eq!(s.kind(), Some(StopKind::Retire));
    }

    #[test]
    fn the_quota_waits_for_the_minimum_lifetime() {
        let quota = Quota {
            max: 1,
            min_lifetime: Duration::from_secs(3600),
            since: Instant::now(),
        };
        let s = Stop::new(state(), Duration::from_secs(60), quota);
        assert!(!s.enter().is_last());
        assert!(!s.enter().is_last());
        assert!(!s.requested(), "too young to be recycled");
    }

    #[test]
    fn no_request_is_the_last_of_a_stopping_worker() {
        let quota = Quota {
            max: 1,
            min_lifetime: Duration::ZERO,
            since: Instant::now(),
        };
        let s = Stop::new(state(), Duration::from_secs(60), quota);
        s.request(StopKind::Shutdown);
        assert!(!s.enter().is_last());
    }
}
