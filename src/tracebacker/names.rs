//! Thread idents -> names, readable without the GIL.
//!
//! The GIL-free dump path learns thread idents from CPython's own dumper but
//! cannot ask `threading` for names while another thread holds the GIL, so
//! names are recorded here as threads start (cores, and app threads through
//! a hook on `threading.Thread`) and refreshed by every GIL-path dump.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

fn table() -> &'static Mutex<HashMap<u64, String>> {
    static T: OnceLock<Mutex<HashMap<u64, String>>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(HashMap::new()))
}

pub fn record(ident: u64, name: &str) {
    if let Ok(mut t) = table().lock() {
        if t.len() > 100_000 {
            t.clear(); // a thread-churning app must not grow this forever
        }
        t.insert(ident, name.to_owned());
    }
}

pub fn lookup(ident: u64) -> Option<String> {
    table().lock().ok()?.get(&ident).cloned()
}

/// The calling thread's ident as CPython reports it (`pthread_self`).
pub fn current_ident() -> u64 {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as u64 }
}

fn cores() -> &'static Mutex<HashMap<usize, u64>> {
    static T: OnceLock<Mutex<HashMap<usize, u64>>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Record a core (request thread): its name and which core it is.
/// Called on the core's own thread.
pub fn record_core(ident: u64, name: &str, core: usize) {
    record(ident, name);
    // SAFETY: gettid has no preconditions.
    record_tid(ident, unsafe { libc::gettid() });
    if let Ok(mut c) = cores().lock() {
        c.insert(core, ident);
    }
}

/// The thread ident serving `core`, if that core has started.
pub fn core_ident(core: usize) -> Option<u64> {
    cores().lock().ok()?.get(&core).copied()
}

fn tids() -> &'static Mutex<HashMap<u64, i32>> {
    static T: OnceLock<Mutex<HashMap<u64, i32>>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Remember the kernel thread id behind a Python thread ident.
pub fn record_tid(ident: u64, tid: i32) {
    if tid <= 0 {
        return;
    }
    if let Ok(mut t) = tids().lock() {
        if t.len() > 100_000 {
            t.clear();
        }
        t.insert(ident, tid);
    }
}

/// Which of `idents` the kernel reports as running (state R), sampled in
/// a few rounds over about a millisecond (a thread spinning in C code may
/// be preempted at any one instant). Unknown idents are left out.
pub fn running(idents: &[u64]) -> std::collections::HashSet<u64> {
    let known: Vec<(u64, i32)> = match tids().lock() {
        Ok(t) => idents
            .iter()
            .filter_map(|i| Some((*i, *t.get(i)?)))
            .collect(),
        Err(_) => return Default::default(),
    };
    let mut found = std::collections::HashSet::new();
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

/// Whether a thread's ident has a known kernel thread id.
pub fn has_tid(ident: u64) -> bool {
    tids()
        .lock()
        .map(|t| t.contains_key(&ident))
        .unwrap_or(false)
}
