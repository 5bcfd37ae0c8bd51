//! Which core of a worker waits on the poller: one at a time, the leader.
//!
//! The leader polls, and serves what it finds itself; the other cores
//! (followers) sleep. While the app answers quickly this keeps one thread
//! doing everything, GIL-warm, with no thread woken per request: several
//! cores each woken for a request end up taking turns on the GIL, and when
//! the scheduler parks the holder the whole worker stalls behind it (that
//! was the tail latency). When the leader stays in one request longer than
//! [`TAKE_OVER`] (the app blocks, or computes), a follower, the watcher,
//! becomes the leader and polls, so a slow request never holds up others
//! for more than that while a core is free. A leader that is still
//! runnable (computing, or waiting for a CPU) is taken over only after
//! [`RUNNABLE_TAKE_OVER`]: on a busy machine the scheduler often parks a
//! leader for over a millisecond, and a second core polling then gains
//! nothing (no CPU is free) and costs a GIL hand-off and sleeps per
//! request for as long as two cores take turns.
//!
//! This module owns only who leads; it must not touch sockets, requests or
//! the GIL (`serve` does).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the leader may stay in one request before a follower takes
/// over polling: the most a request waits for a free core because the
/// leader's app blocked. Shorter wakes the watcher more often under load
/// (once per TAKE_OVER); 0.5 ms and 3 ms measured no better p99 than this.
pub const TAKE_OVER: Duration = Duration::from_millis(1);

/// How long a leader that is runnable (not blocked) may stay in one request
/// before the watcher takes over. Two GIL switch intervals (5 ms each): an
/// app computing in Python longer than that lets other requests in anyway.
/// Under wrk on a loaded 2-CPU machine (hello, 2 x 4, bench/README.md),
/// every take-over at 1 ms was of a runnable leader (19-31 per worker in
/// 7 s), leadership then wandered over all four threads, and the worker
/// served 16-20% fewer requests than with this rule.
pub const RUNNABLE_TAKE_OVER: Duration = Duration::from_millis(10);

/// The latest the watcher first looks at a leader in a request, once
/// looks keep finding it runnable (see [`Leader::lead`]): one GIL switch
/// interval, the most a blocking request then waits to be taken over.
const LATEST_FIRST_LOOK: Duration = Duration::from_millis(5);

/// While the leader started work this recently, the watcher looks at it
/// every [`TAKE_OVER`] on a timer instead of dozing until the leader's
/// next request wakes it: under load that wake-up was a futex call and a
/// thread switch per request (bench/README.md); the timer costs at most
/// one per TAKE_OVER, and a stuck leader is taken over within 2 x
/// TAKE_OVER instead of 1 x. An idle worker's watcher dozes (no timer).
const BUSY_WINDOW: Duration = Duration::from_millis(20);

#[derive(Default)]
struct State {
    leader: Option<usize>,
    /// The leader's thread id, to look at its scheduling state.
    leader_tid: i32,
    /// Since when the leader has had work in hand (an event from the poller,
    /// then the request); None while it waits on the poller.
    working_since: Option<Instant>,
    /// The follower timing the leader's requests.
    watcher: Option<usize>,
    /// The watcher sleeps until woken (the leader was polling, not working).
    watcher_dozing: bool,
    /// When the leader last started work (see [`BUSY_WINDOW`]).
    last_work: Option<Instant>,
    /// How long into a request the watcher first looks at the leader:
    /// [`TAKE_OVER`] while looks find it blocked, up to
    /// [`LATEST_FIRST_LOOK`] while they find it runnable.
    first_look: Duration,
}

impl State {
    fn first_look(&self) -> Duration {
        self.first_look.max(TAKE_OVER)
    }

    /// The watcher found the leader blocked or runnable. Each look wakes a
    /// core the app would use, and a runnable leader gains nothing from a
    /// take-over (another core would only wait for the GIL): while looks
    /// find the leader runnable, the first look moves later by TAKE_OVER,
    /// and a blocked one brings it back. A 3 ms Django request (sqlite,
    /// never blocks) was looked at twice, and a 2 x 4 worker spent 4-12%
    /// more CPU per request than 2 x 1 (bench/README.md).
    fn looked(&mut self, blocked: bool) {
        self.first_look = if blocked {
            TAKE_OVER
        } else {
            (self.first_look() + TAKE_OVER).min(LATEST_FIRST_LOOK)
        };
    }
}

#[derive(Default)]
pub struct Leader {
    state: Mutex<State>,
    /// The watcher waits here, the other followers on `followers`, so that
    /// waking the watcher never wakes them.
    watcher_cv: Condvar,
    followers: Condvar,
}

impl Leader {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A core that panicked while holding it leaves a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Try to become (or stay) the leader. True: `core` leads and may poll.
    /// False after waiting at most `nap` (or being woken): the caller
    /// re-checks the worker's state and calls again.
    pub fn lead(&self, core: usize, nap: Duration) -> bool {
        let mut s = self.lock();
        let mut stuck = false;
        if s.leader != Some(core) {
            let first_look = s.first_look();
            if let Some(since) = s.working_since.filter(|t| t.elapsed() >= first_look) {
                stuck = since.elapsed() >= RUNNABLE_TAKE_OVER || {
                    // Read outside the lock: the leader takes it per request.
                    let tid = s.leader_tid;
                    drop(s);
                    let blocked = !thread_runnable(tid);
                    s = self.lock();
                    s.looked(blocked);
                    blocked && s.working_since == Some(since)
                };
            }
        }
        if s.leader.is_none() || s.leader == Some(core) || stuck {
            if stuck {
                // The old leader keeps its request; another follower is
                // woken to watch the new leader.
                self.followers.notify_one();
            }
            if s.leader != Some(core) {
                s.leader_tid = current_tid();
            }
            s.leader = Some(core);
            s.working_since = None;
            if s.watcher == Some(core) {
                s.watcher = None;
                s.watcher_dozing = false;
            }
            return true;
        }
        if s.watcher.is_none() {
            s.watcher = Some(core);
        }
        if s.watcher == Some(core) {
            let busy = s.last_work.is_some_and(|t| t.elapsed() < BUSY_WINDOW);
            let first_look = s.first_look();
            let wait = match s.working_since.map(|t| t.elapsed()) {
                Some(took) if took < first_look => first_look - took,
                // A runnable leader: look again (it may block) when it has
                // run twice as long, until RUNNABLE_TAKE_OVER (each look
                // costs a wake-up, see `State::looked`).
                Some(took) => took.min(RUNNABLE_TAKE_OVER.saturating_sub(took)),
                // Between requests: the next one is worth a look no sooner.
                None if busy => first_look,
                None => nap,
            };
            s.watcher_dozing = s.working_since.is_none() && !busy;
            let (mut s, _) = self
                .watcher_cv
                .wait_timeout(s, wait.min(nap).max(Duration::from_micros(50)))
                .unwrap_or_else(|e| e.into_inner());
            s.watcher_dozing = false;
        } else {
            let _ = self
                .followers
                .wait_timeout(s, nap)
                .unwrap_or_else(|e| e.into_inner());
        }
        false
    }

    /// `core` has work in hand (an event to handle, a request to serve): if
    /// it leads, the watcher starts timing it. Timing from the event, not
    /// from the app call, covers a leader the scheduler parks mid-parse.
    pub fn working(&self, core: usize) {
        let mut s = self.lock();
        if s.leader == Some(core) {
            let now = Instant::now();
            s.working_since = Some(now);
            s.last_work = Some(now);
            if s.watcher_dozing {
                s.watcher_dozing = false;
                self.watcher_cv.notify_one();
            }
        }
    }

    /// `core` leaves for good (the worker exits under it).
    pub fn resign(&self, core: usize) {
        let mut s = self.lock();
        if s.leader == Some(core) {
            s.leader = None;
            s.working_since = None;
        }
        if s.watcher == Some(core) {
            s.watcher = None;
        }
        drop(s);
        self.wake_all();
    }

    /// Wake every follower (the worker is stopping).
    pub fn wake_all(&self) {
        self.watcher_cv.notify_all();
        self.followers.notify_all();
    }
}

/// This thread's id (cached: the leader changes rarely, but cheaply).
fn current_tid() -> i32 {
    thread_local! {
        static TID: i32 = rustix::thread::gettid().as_raw_nonzero().get();
    }
    TID.with(|t| *t)
}

/// Whether thread `tid` of this process is running or waiting for a CPU
/// (state R in /proc), as opposed to blocked. When that cannot be read
/// (no /proc, say after a chroot), false: a leader is then taken over
/// after [`TAKE_OVER`] whatever it does, as before this was known.
fn thread_runnable(tid: i32) -> bool {
    use std::os::unix::fs::FileExt;
    thread_local! {
        // The last thread looked at and its stat file, kept open: one
        // pread per look instead of open, statx, several reads and close.
        static STAT: std::cell::RefCell<Option<(i32, std::fs::File)>> =
            const { std::cell::RefCell::new(None) };
    }
    STAT.with(|cell| {
        let mut cached = cell.borrow_mut();
        if !matches!(cached.as_ref(), Some((t, _)) if *t == tid) {
            *cached = std::fs::File::open(format!("/proc/self/task/{tid}/stat"))
                .ok()
                .map(|f| (tid, f));
        }
        let Some((_, file)) = cached.as_ref() else {
            return false;
        };
        // The state follows the command name (at most 15 bytes), near the
        // start of the line: its first 512 bytes hold it.
        let mut buf = [0u8; 512];
        match file.read_at(&mut buf, 0) {
            Ok(n) => run_state(&buf[..n]) == Some(b'R'),
            Err(_) => {
                // The thread is gone: forget it.
                *cached = None;
                false
            }
        }
    })
}

/// The state letter of a /proc stat line: the first field after the
/// command name, which is in parentheses and may itself hold them.
fn run_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat[close + 1..]
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const NAP: Duration = Duration::from_millis(20);

    #[test]
    fn first_core_leads_and_keeps_leading() {
        let l = Leader::default();
        assert!(l.lead(0, NAP));
        assert!(l.lead(0, NAP));
        l.working(0);
        assert!(l.lead(0, NAP), "back from its request, it polls again");
    }

    #[test]
    fn a_follower_waits_while_the_leader_is_quick() {
        let l = Leader::default();
        assert!(l.lead(0, NAP));
        let t = Instant::now();
        assert!(!l.lead(1, NAP), "the leader is polling: follower naps");
        assert!(t.elapsed() >= NAP / 2);
        l.working(0);
        assert!(!l.lead(1, NAP), "request just started: not stuck yet");
        assert!(l.lead(0, NAP), "the leader came back first");
        assert!(!l.lead(1, NAP));
    }

    #[test]
    fn the_watcher_takes_over_from_a_leader_stuck_in_a_request() {
        let l = Arc::new(Leader::default());
        assert!(l.lead(0, NAP));
        l.working(0);
        let t = Instant::now();
        let mut tries = 0;
        while !l.lead(1, Duration::from_secs(5)) {
            tries += 1;
            assert!(tries < 100, "never took over");
        }
        assert!(t.elapsed() >= TAKE_OVER);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "took {:?}",
            t.elapsed()
        );
        assert!(!l.lead(0, NAP), "the old leader is a follower now");
    }

    #[test]
    fn a_dozing_watcher_is_woken_when_the_leader_starts_a_request() {
        let l = Arc::new(Leader::default());
        assert!(l.lead(0, NAP));
        let l2 = l.clone();
        let follower = std::thread::spawn(move || {
            let t = Instant::now();
            while !l2.lead(1, Duration::from_secs(10)) {}
            t.elapsed()
        });
        std::thread::sleep(Duration::from_millis(50)); // the watcher dozes: leader polls
        l.working(0); // and now the leader is stuck in a request
        let took = follower.join().unwrap_or_default();
        assert!(
            took < Duration::from_secs(5),
            "watcher slept through: {took:?}"
        );
    }

    #[test]
    fn the_watcher_of_a_busy_leader_checks_on_a_timer_instead_of_dozing() {
        let l = Leader::default();
        assert!(l.lead(0, NAP));
        let t = Instant::now();
        assert!(!l.lead(1, Duration::from_millis(300)), "idle leader");
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "dozed the whole nap"
        );
        // Busy: the watcher comes back within BUSY_WINDOW of the leader's
        // last request (a thread parked longer than that by a loaded
        // machine dozes, rightly: hence a few tries).
        let ticked = (0..3).any(|_| {
            l.working(0);
            assert!(l.lead(0, NAP), "a quick request, done");
            let t = Instant::now();
            assert!(!l.lead(1, Duration::from_secs(2)), "the leader polls");
            t.elapsed() < Duration::from_secs(1) && !l.lock().watcher_dozing
        });
        assert!(
            ticked,
            "the watcher dozed the nap instead of checking again"
        );
    }

    #[test]
    fn the_state_letter_follows_the_last_parenthesis() {
        assert_eq!(run_state(b"12 (uwsgi-rs) R 1 2 3"), Some(b'R'));
        assert_eq!(run_state(b"12 (a) b) (c) S 1"), Some(b'S'));
        assert_eq!(run_state(b"12 (x"), None);
    }

    #[test]
    fn this_thread_reads_as_runnable_and_a_sleeping_one_as_blocked() {
        assert!(thread_runnable(current_tid()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            tx.send(current_tid()).ok();
            std::thread::sleep(Duration::from_secs(2));
        });
        let tid = rx.recv().unwrap_or_default();
        // (On a loaded machine it may still be runnable for a while.)
        let t = Instant::now();
        while thread_runnable(tid) && t.elapsed() < Duration::from_millis(250) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!thread_runnable(tid), "a sleeping thread is blocked");
        sleeper.join().ok();
        assert!(!thread_runnable(-1), "unknown: not runnable");
    }

    #[test]
    fn a_runnable_leader_is_taken_over_only_after_the_longer_limit() {
        let l = Arc::new(Leader::default());
        let spin = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (l2, spin2) = (l.clone(), spin.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let leader = std::thread::spawn(move || {
            assert!(l2.lead(0, NAP));
            // (Before `working`: a lower bound of when the timing began,
            // however long the scheduler parks either thread.)
            tx.send(Instant::now()).ok();
            l2.working(0);
            // computing: runnable all along
            while spin2.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let t = rx.recv().unwrap_or_else(|_| Instant::now());
        while !l.lead(1, Duration::from_secs(5)) {
            assert!(t.elapsed() < Duration::from_secs(5), "never took over");
        }
        let took = t.elapsed();
        spin.store(false, std::sync::atomic::Ordering::Relaxed);
        leader.join().ok();
        assert!(took >= RUNNABLE_TAKE_OVER, "took over after {took:?}");
    }

    #[test]
    fn looks_that_find_the_leader_runnable_move_the_first_look_later() {
        let mut s = State::default();
        assert_eq!(s.first_look(), TAKE_OVER);
        let mut seen = vec![];
        for _ in 0..10 {
            s.looked(false);
            seen.push(s.first_look());
        }
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert!(seen[0] > TAKE_OVER, "{seen:?}");
        assert_eq!(seen[9], LATEST_FIRST_LOOK);
        s.looked(true);
        assert_eq!(s.first_look(), TAKE_OVER, "a blocked leader: back to soon");
    }

    #[test]
    fn a_blocked_leader_is_taken_over_at_the_first_look_however_late() {
        let l = Arc::new(Leader::default());
        l.lock().first_look = LATEST_FIRST_LOOK;
        let (tx, rx) = std::sync::mpsc::channel();
        let l2 = l.clone();
        let leader = std::thread::spawn(move || {
            assert!(l2.lead(0, NAP));
            tx.send(Instant::now()).ok();
            l2.working(0);
            std::thread::sleep(Duration::from_secs(1)); // blocked
        });
        let t = rx.recv().unwrap_or_else(|_| Instant::now());
        while !l.lead(1, Duration::from_secs(5)) {
            assert!(t.elapsed() < Duration::from_secs(5), "never took over");
        }
        let took = t.elapsed();
        leader.join().ok();
        assert!(took >= LATEST_FIRST_LOOK, "took over after {took:?}");
        assert!(took < Duration::from_secs(1), "waited out the sleep");
        assert_eq!(l.lock().first_look(), TAKE_OVER, "found blocked");
    }

    #[test]
    fn resigning_frees_the_lead() {
        let l = Leader::default();
        assert!(l.lead(0, NAP));
        l.resign(0);
        assert!(l.lead(1, NAP));
    }
}
