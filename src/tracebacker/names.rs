//! Thread naming: what the worker's threads are called (cores get uWSGI's
//! `uWSGIWorker<W>Core<C>`), and one registry of thread ident -> name and
//! kernel thread id, plus which ident serves which core, readable without
//! the GIL.
//!
//! The GIL-free dump path learns thread idents from CPython's own dumper but
//! cannot ask `threading` for names while another thread holds the GIL, so
//! names are recorded here as threads start (cores, and app threads through
//! the hook in `hook`) and refreshed by every GIL-path dump. No Python here.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// `uWSGIWorker<W>Core<C>`, as uWSGI names its request threads.
pub fn core_name(worker: usize, core: usize) -> String {
    format!("uWSGIWorker{worker}Core{core}")
}

/// What is known of one thread.
#[derive(Default)]
struct Thread {
    name: String,
    /// Kernel thread id; 0 while unknown.
    tid: i32,
}

#[derive(Default)]
struct Registry {
    /// By Python thread ident (`pthread_self`).
    threads: HashMap<u64, Thread>,
    /// The ident serving each core, by core index.
    cores: HashMap<usize, u64>,
}

/// A thread-churning app must not grow the registry forever.
const MAX_THREADS: usize = 100_000;

fn registry() -> MutexGuard<'static, Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Default::default)
        .lock()
        // A panic while holding it leaves the maps usable.
        .unwrap_or_else(|e| e.into_inner())
}

/// Remember a thread's name and, when `tid` > 0, its kernel thread id (an
/// unknown tid keeps the one already known).
pub fn record(ident: u64, name: &str, tid: i32) {
    let mut r = registry();
    if r.threads.len() >= MAX_THREADS && !r.threads.contains_key(&ident) {
        r.threads.clear();
    }
    let t = r.threads.entry(ident).or_default();
    if t.name != name {
        t.name = name.to_owned();
    }
    if tid > 0 {
        t.tid = tid;
    }
}

/// Record the calling thread as core `core` of worker `worker`; returns
/// its name. Called on the core's own thread.
pub fn record_core(worker: usize, core: usize) -> String {
    let name = core_name(worker, core);
    let ident = current_ident();
    record(
        ident,
        &name,
        rustix::thread::gettid().as_raw_nonzero().get(),
    );
    registry().cores.insert(core, ident);
    name
}

pub fn lookup(ident: u64) -> Option<String> {
    registry().threads.get(&ident).map(|t| t.name.clone())
}

/// The thread ident serving `core`, if that core has started.
pub fn core_ident(core: usize) -> Option<u64> {
    registry().cores.get(&core).copied()
}

/// Whether a thread's ident has a known kernel thread id.
pub fn has_tid(ident: u64) -> bool {
    registry().threads.get(&ident).is_some_and(|t| t.tid > 0)
}

/// The calling thread's ident as CPython reports it (`pthread_self`).
pub fn current_ident() -> u64 {
    // SAFETY: pthread_self has no preconditions. (libc: rustix has no
    // pthread_self, and CPython's idents are exactly its value.)
    unsafe { libc::pthread_self() as u64 }
}

/// Which of `idents` the kernel reports as running (state R), sampled in
/// a few rounds over about a millisecond (a thread spinning in C code may
/// be preempted at any one instant). Unknown idents are left out.
pub fn running(idents: &[u64]) -> HashSet<u64> {
    let known: Vec<(u64, i32)> = {
        let r = registry();
        idents
            .iter()
            .filter_map(|i| Some((*i, r.threads.get(i).filter(|t| t.tid > 0)?.tid)))
            .collect()
    };
    let mut found = HashSet::new();
    for round in 0..4 {
        for (ident, tid) in &known {
            if found.contains(ident) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
                continue;
            };
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            if state == Some("R") {
                found.insert(*ident);
            }
        }
        if round < 3 {
            std::thread::sleep(std::time::Duration::from_micros(300));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_registry_for_names_tids_and_cores() {
        let ident = 0x5eed_0000_0001;
        record(ident, "app-thread", 0);
        assert_eq!(lookup(ident).as_deref(), Some("app-thread"));
        assert!(!has_tid(ident));
        record(ident, "renamed", 4242);
        record(ident, "renamed", 0); // a later name-only refresh keeps the tid
        assert_eq!(lookup(ident).as_deref(), Some("renamed"));
        assert!(has_tid(ident));
        let name = std::thread::spawn(|| (record_core(3, 7), current_ident()))
            .join()
            .unwrap();
        assert_eq!(name.0, "uWSGIWorker3Core7");
        assert_eq!(core_ident(7), Some(name.1));
        assert_eq!(lookup(name.1).as_deref(), Some("uWSGIWorker3Core7"));
        assert!(has_tid(name.1));
    }
}
