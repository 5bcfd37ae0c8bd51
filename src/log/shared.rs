//! The few log counters every process of one server shares, in one
//! anonymous `MAP_SHARED` page the master maps before it forks: lines
//! dropped (by anyone, reported once by whoever writes next), the log
//! generation (bumped when the master reopens the log files, so workers
//! follow), and the requests logged by all workers (uWSGI's `req: N/TOTAL`).
//!
//! Before [`init`] (unit tests, client commands) a process-local copy is
//! used. Nothing here formats or writes lines.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

#[repr(C)]
#[derive(Debug)]
pub struct Counters {
    /// Lines that could not be written (full pipe, stalled terminal).
    pub dropped: AtomicU64,
    /// Bumped after the master reopened the log files.
    pub generation: AtomicU64,
    /// Requests served by every worker so far.
    pub requests: AtomicU64,
}

static LOCAL: Counters = Counters {
    dropped: AtomicU64::new(0),
    generation: AtomicU64::new(0),
    requests: AtomicU64::new(0),
};

static PAGE: AtomicPtr<Counters> = AtomicPtr::new(std::ptr::null_mut());

/// Map the shared page (once, in the master before any fork). On failure
/// the counters stay per process: drops are still counted and reported,
/// only by the process that dropped them.
pub fn init() {
    if !PAGE.load(Ordering::Acquire).is_null() {
        return;
    }
    // SAFETY: a fresh anonymous shared mapping of one page; zero-filled by
    // the kernel, which is a valid `Counters` (atomics of 0).
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p != libc::MAP_FAILED {
        PAGE.store(p.cast(), Ordering::Release);
    }
}

pub fn get() -> &'static Counters {
    let p = PAGE.load(Ordering::Acquire);
    if p.is_null() {
        &LOCAL
    } else {
        // SAFETY: mapped once and never unmapped; 4096 bytes hold Counters.
        unsafe { &*p }
    }
}

/// Counters of a test's own (tests run in parallel in one process).
#[cfg(test)]
pub fn private() -> &'static Counters {
    Box::leak(Box::new(Counters {
        dropped: AtomicU64::new(0),
        generation: AtomicU64::new(0),
        requests: AtomicU64::new(0),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_shared_with_a_child() {
        init();
        let c = get();
        let before = c.requests.load(Ordering::Relaxed);
        // SAFETY: the child only touches the shared atomic and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            c.requests.fetch_add(5, Ordering::Relaxed);
            // SAFETY: leave without running the test harness in the child.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child we forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(c.requests.load(Ordering::Relaxed) >= before + 5);
    }
}
