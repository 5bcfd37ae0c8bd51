//! Harakiri decisions and the lines they log: pure functions of a
//! scoreboard snapshot and the time, so they are tested with a fake clock.
//!
//! Each core's deadline is its own: a request on one core finishing never
//! clears another core's deadline (uWSGI 2.0.31 clears the pending harakiri
//! of the whole worker then). No I/O, no signals, no Python here: the master
//! acts on what these return.

use crate::scoreboard::{CoreSnapshot, CoreState};

/// The first core whose request overran its deadline, if any.
pub fn overdue_core(cores: &[CoreSnapshot], now_ms: u64) -> Option<usize> {
    cores
        .iter()
        .find(|c| {
            c.state
                .request()
                .and_then(|r| r.deadline_ms)
                .is_some_and(|d| now_ms >= d)
        })
        .map(|c| c.core)
}

/// The log lines after the dump: the status of every busy core.
#[cfg(test)]
pub fn status_lines(
    worker: usize,
    cores: &[CoreSnapshot],
    now_ms: u64,
    verbose: bool,
) -> Vec<String> {
    status_lines_as("HARAKIRI", worker, cores, now_ms, verbose)
}

/// The status of every busy core, each line starting with `label`
/// (`HARAKIRI`, or `MERCY` when a stopping worker is killed).
pub fn status_lines_as(
    label: &str,
    worker: usize,
    cores: &[CoreSnapshot],
    now_ms: u64,
    verbose: bool,
) -> Vec<String> {
    let mut lines = vec![format!("{label} !!! worker {worker} status !!!")];
    let esc = |s: &str| crate::log::escape(s.as_bytes());
    for c in cores {
        let r = match &c.state {
            CoreState::Idle => continue,
            CoreState::Busy(r) => r,
            CoreState::BusyUnread => {
                lines.push(format!("{label} [core {}] - (switching requests)", c.core));
                continue;
            }
        };
        let remote = if r.remote.is_empty() {
            "-".to_string()
        } else {
            esc(&r.remote)
        };
        lines.push(format!(
            "{label} [core {}] {} - {} {} since {}",
            c.core,
            remote,
            esc(&r.method),
            esc(&r.uri),
            r.started_ms / 1000
        ));
        if verbose {
            for h in &r.headers {
                lines.push(format!("{label} [core {}]   {}", c.core, esc(h)));
            }
            lines.push(format!(
                "{label} [core {}]   running for {:.1} s",
                c.core,
                r.running_ms(now_ms) as f64 / 1000.0
            ));
        }
    }
    lines.push(format!("{label} !!! end of worker {worker} status !!!"));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoreboard::RequestSnapshot;

    fn core(core: usize, busy: bool, deadline_ms: Option<u64>) -> CoreSnapshot {
        CoreSnapshot {
            core,
            requests: 0,
            state: if busy {
                CoreState::Busy(RequestSnapshot {
                    started_ms: 1_000,
                    deadline_ms,
                    ..Default::default()
                })
            } else {
                CoreState::Idle
            },
        }
    }

    #[test]
    fn fires_only_past_the_deadline() {
        let cores = [core(0, true, Some(5_000))];
        assert_eq!(overdue_core(&cores, 4_999), None);
        assert_eq!(overdue_core(&cores, 5_000), Some(0));
    }

    #[test]
    fn each_core_keeps_its_own_deadline() {
        // Core 1 finished (no request, no deadline): core 0 still fires.
        let cores = [core(0, true, Some(3_000)), core(1, false, None)];
        assert_eq!(overdue_core(&cores, 3_500), Some(0));
    }

    #[test]
    fn disabled_deadline_never_fires() {
        let cores = [core(0, true, None)];
        assert_eq!(overdue_core(&cores, u64::MAX), None);
    }

    #[test]
    fn status_lines_name_busy_cores_only_and_escape() {
        let busy = CoreSnapshot {
            core: 3,
            requests: 0,
            state: CoreState::Busy(RequestSnapshot {
                started_ms: 1_000,
                deadline_ms: Some(1),
                remote: "127.0.0.1".into(),
                method: "GET".into(),
                uri: "/x\r\ninjected".into(),
                headers: vec!["Host: a".into()],
            }),
        };
        let lines = status_lines(1, &[core(0, false, None), busy], 4_500, true);
        assert_eq!(lines[0], "HARAKIRI !!! worker 1 status !!!");
        assert_eq!(
            lines[1],
            "HARAKIRI [core 3] 127.0.0.1 - GET /x\\x0d\\x0ainjected since 1"
        );
        assert_eq!(lines[2], "HARAKIRI [core 3]   Host: a");
        assert_eq!(lines[3], "HARAKIRI [core 3]   running for 3.5 s");
        assert_eq!(
            lines.last().unwrap(),
            "HARAKIRI !!! end of worker 1 status !!!"
        );
    }
}
