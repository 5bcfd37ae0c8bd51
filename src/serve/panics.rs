//! Panics on the request path: a request that panics is answered 500 and
//! logged in one line (not the default multi-line report), and the core
//! goes on serving; `serve` makes the worker exit after a second one, for
//! a clean respawn. Outside a request, a panic is one log line too.
//!
//! Knows nothing of sockets or Python. A panic that PyO3 resumes after the
//! app raised its `PanicException` bypasses the hook; its message comes
//! from the payload.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// Inside [`catch`]: the hook keeps the report for the caller.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static REPORT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replace the default hook (several lines on stderr) with one log line,
/// or, inside [`catch`], a report kept for its caller.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let report = match info.location() {
            Some(at) => format!("{} at {}:{}", message(info.payload()), at.file(), at.line()),
            None => message(info.payload()).to_string(),
        };
        if CATCHING.with(Cell::get) {
            REPORT.with(|r| *r.borrow_mut() = Some(report));
        } else {
            let thread = std::thread::current();
            crate::log::line(&format!(
                "panic in thread {}: {report}",
                thread.name().unwrap_or("?")
            ));
        }
    }));
}

/// Run `f`; a panic becomes `Err(what happened and where)`.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    REPORT.with(|r| r.borrow_mut().take());
    CATCHING.with(|c| c.set(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(false));
    result.map_err(|payload| {
        REPORT
            .with(|r| r.borrow_mut().take())
            .unwrap_or_else(|| message(&*payload).to_string())
    })
}

fn message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_the_thread_goes_on() {
        assert_eq!(catch(|| 7), Ok(7));
        let e = catch(|| -> u8 { std::panic::resume_unwind(Box::new(String::from("resumed"))) });
        assert_eq!(e, Err("resumed".to_string()));
        let e = catch(|| -> u8 { std::panic::resume_unwind(Box::new("static")) });
        assert_eq!(e, Err("static".to_string()));
        assert_eq!(catch(|| 8), Ok(8), "the thread still works");
    }
}
