//! A sampling profiler with no ptrace: every worker samples its own
//! threads when asked on its tracebacker socket, and `uwsgi-rs --profile`
//! (or `--top`, or the dashboard) merges what the workers stream back.
//!
//! Design, and why:
//! - **Inside the worker, not outside.** py-spy reads a process's memory
//!   from outside, which needs ptrace (`SYS_PTRACE` in a container) and
//!   per-version struct layouts. A worker can walk its own threads through
//!   CPython's C API with the GIL (`sys._current_frames`, `PyFrame_GetBack`,
//!   `PyFrame_GetCode`, `PyFrame_GetLineNumber`: no Python code runs, tens
//!   of microseconds), and when the GIL does not come within a short bound
//!   (a thread holding it in C, like `sum(range(10**10))`), through the
//!   tracebacker's GIL-free dumper, so such a thread is sampled too.
//! - **Driven by a request, streamed back.** `profile HZ SECONDS [idle]` on
//!   a tracebacker socket starts a session; the worker sends what it
//!   sampled once a second (interned frames, so a chunk is small) and ends
//!   with `E`. Closing the socket ends the session early. Sessions share
//!   one sampler thread, which runs only while a session does (at the
//!   fastest rate asked; each session keeps its own rate), so a second
//!   `--profile` is served without touching the first, and a worker nobody
//!   profiles does no profiling work at all (not even a timer).
//! - **Attributed to requests.** Each sample of a request thread is
//!   labelled with the request that core serves at that moment, read from
//!   the worker's own scoreboard slot (`METHOD PATH`, no query string);
//!   other threads by their name. Cores waiting for a request are left out
//!   unless `idle` was asked (then labelled `idle`).
//! - **Wall-clock.** A request thread is sampled whatever it does (running,
//!   waiting on a database, sleeping), since that is where its time goes.
//!
//! Modules: [`wire`] (the stream's lines, pure), [`intern`] (frames to
//! small ids), [`sampler`] (in the worker), [`profile`] (the merged
//! result and its formats: folded, SVG via inferno, speedscope),
//! [`client`] (`--profile`) and [`top`] (`--top`).

pub mod client;
pub mod intern;
pub mod profile;
pub mod sampler;
pub mod top;
pub mod wire;

/// What a client asks a worker for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Samples per second, 1..=1000.
    pub hz: u32,
    /// How long; 0 = until the client closes (at most a day).
    pub seconds: u32,
    /// Sample cores waiting for a request too.
    pub idle: bool,
}

impl Spec {
    pub const MAX_HZ: u32 = 1000;
    /// The longest session, also for `seconds` = 0.
    pub const MAX_SECONDS: u32 = 86_400;

    /// `profile HZ SECONDS [idle]`.
    pub fn parse(line: &str) -> Option<Spec> {
        let mut words = line.split_whitespace();
        if words.next()? != "profile" {
            return None;
        }
        let hz: u32 = words.next()?.parse().ok()?;
        let seconds: u32 = words.next()?.parse().ok()?;
        let idle = match words.next() {
            None => false,
            Some("idle") => true,
            Some(_) => return None,
        };
        if words.next().is_some()
            || !(1..=Self::MAX_HZ).contains(&hz)
            || seconds > Self::MAX_SECONDS
        {
            return None;
        }
        Some(Spec { hz, seconds, idle })
    }

    pub fn request_line(&self) -> String {
        format!(
            "profile {} {}{}\n",
            self.hz,
            self.seconds,
            if self.idle { " idle" } else { "" }
        )
    }
}

/// The label of a sample on an idle core (with `idle`).
pub const IDLE: &str = "idle";

/// A request's label: `METHOD PATH`, the query string left out.
pub fn route_label(method: &str, uri: &str) -> String {
    let path = uri.split(['?', '#']).next().unwrap_or("");
    format!("{method} {path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_and_rejects_nonsense() {
        let s = Spec::parse("profile 100 10").unwrap();
        assert_eq!((s.hz, s.seconds, s.idle), (100, 10, false));
        assert_eq!(Spec::parse(s.request_line().trim()), Some(s));
        let i = Spec::parse("profile 7 0 idle").unwrap();
        assert!(i.idle);
        assert_eq!(Spec::parse(i.request_line().trim()), Some(i));
        for bad in [
            "profile",
            "profile 0 10",
            "profile 1001 10",
            "profile 100 86401",
            "profile x 1",
            "profile 100 10 busy",
            "profile 100 10 idle extra",
            "json",
        ] {
            assert_eq!(Spec::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn routes_have_no_query_string() {
        assert_eq!(route_label("GET", "/a/b?x=1&y=2"), "GET /a/b");
        assert_eq!(route_label("POST", "/c#frag"), "POST /c");
        assert_eq!(route_label("GET", "/"), "GET /");
    }
}
