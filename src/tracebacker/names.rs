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
