//! `--cron` / `--unique-cron MIN HOUR MDAY MONTH WDAY COMMAND` and `--cron2
//! minute=M,...,unique=1,harakiri=N COMMAND`: commands the master runs at
//! uWSGI cron times (uWSGI's core/cron.c, and
//! `uwsgi_cron_task_needs_execution` in core/master_utils.c):
//!
//! - a field is a number, `-1` for any value, or `-N` for every value
//!   divisible by N (`-15` minutes: 0, 15, 30, 45);
//! - month is 1-12, weekday 0-6 (7 is Sunday too);
//! - when both day of month and weekday are given (not negative), either
//!   may match, as in crontab(5);
//! - a job runs at most once a minute; a `unique-cron` job never runs while
//!   its previous run is still going;
//! - a job still running `harakiri` seconds after it started (cron2's
//!   `harakiri=N`, else `--cron-harakiri`) has its process group killed
//!   (SIGKILL), as uWSGI's `uwsgi_master_check_cron_death`.
//!
//! Times are local. Jobs run through /bin/sh in their own session with the
//! server's `--uid`/`--gid`, stdin from /dev/null, and are not stopped when
//! the server stops (uWSGI does not either). The master reaps them
//! ([`Crons::reaped`]) and never waits for one.

use std::time::Instant;

use crate::config::CronJob;
use crate::log;
use crate::privileges::Credentials;
use crate::spawn;

pub struct Crons {
    jobs: Vec<Job>,
    credentials: Credentials,
    /// `--cron-harakiri`: for jobs without their own (0: no limit).
    harakiri: u64,
    /// The unix second last looked at: jobs are matched once a second.
    last_second: i64,
}

struct Job {
    spec: CronJob,
    /// The running command (0: none).
    pid: i32,
    started: Option<Instant>,
    /// Harakiri killed the running command: never signalled again, and
    /// `started` kept so the reap says how long it really ran (as uWSGI).
    killed: bool,
    /// Unix time of the last run (uWSGI's `last_job`).
    last_run: i64,
}

impl Job {
    /// The reap's log line: how long the command ran, killed or not.
    fn exit_line(&self) -> String {
        format!(
            "[uwsgi-cron] command \"{}\" running with pid {} exited after {} second(s)",
            self.spec.command,
            self.pid,
            self.started.map_or(0, |t| t.elapsed().as_secs())
        )
    }
}

/// The calendar fields a job is matched against.
#[derive(Debug, Clone, Copy)]
pub struct When {
    pub minute: i32,
    pub hour: i32,
    pub mday: i32,
    /// 1-12.
    pub month: i32,
    /// 0-6, Sunday 0.
    pub wday: i32,
}

impl When {
    /// Local time at `unix` seconds.
    pub fn local(unix: i64) -> Option<When> {
        // SAFETY: tm is plain data; localtime_r fills it or fails.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let t = unix as libc::time_t;
        // SAFETY: pointers to live locals.
        if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
            return None;
        }
        Some(When {
            minute: tm.tm_min,
            hour: tm.tm_hour,
            mday: tm.tm_mday,
            month: tm.tm_mon + 1,
            wday: tm.tm_wday,
        })
    }
}

/// uWSGI's matcher, field for field.
pub fn due(fields: [i32; 5], at: When) -> bool {
    let [minute, hour, day, month, week] = fields;
    // A negative field is "every N": it matches a value divisible by N.
    let every = |field: i32, value: i32| -> i32 {
        if field < 0 && value % field.abs() == 0 {
            value
        } else {
            field
        }
    };
    let m = every(minute, at.minute);
    let h = every(hour, at.hour);
    let mon = every(month, at.month);
    let d = every(day, at.mday);
    let w = if week < 0 {
        every(week, at.wday)
    } else if week == 7 {
        0
    } else {
        week
    };
    let time = at.minute == m && at.hour == h && at.month == mon;
    if day >= 0 && week >= 0 {
        time && (at.mday == d || at.wday == w)
    } else {
        time && at.mday == d && at.wday == w
    }
}

impl Crons {
    pub fn new(jobs: &[CronJob], credentials: Credentials, harakiri: u64) -> Crons {
        Crons {
            jobs: jobs
                .iter()
                .map(|spec| Job {
                    spec: spec.clone(),
                    pid: 0,
                    started: None,
                    killed: false,
                    last_run: i64::MIN / 2,
                })
                .collect(),
            credentials,
            harakiri,
            last_second: 0,
        }
    }

    /// Kill (SIGKILL, the whole process group: jobs run in their own
    /// session) each job still running past its harakiri.
    fn harakiri(&mut self) {
        for job in &mut self.jobs {
            let limit = job.spec.harakiri.unwrap_or(self.harakiri);
            let Some(started) = job.started else {
                continue;
            };
            if job.killed || job.pid <= 0 || limit == 0 || started.elapsed().as_secs() < limit {
                continue;
            }
            log::stamped(&format!(
                "*** HARAKIRI ON CRON \"{}\" (pid: {}) ***",
                job.spec.command, job.pid
            ));
            // SAFETY: kill(2) on the job's own process group (it called
            // setsid, so its pgid is its pid); no memory is involved.
            unsafe { libc::kill(-job.pid, libc::SIGKILL) };
            // Killed once: the reap clears pid and the flag.
            job.killed = true;
        }
    }

    /// On every tick: run the jobs due now.
    pub fn check(&mut self, unix_now: i64) {
        if self.jobs.is_empty() || unix_now == self.last_second {
            return;
        }
        self.last_second = unix_now;
        self.harakiri();
        let Some(at) = When::local(unix_now) else {
            return;
        };
        for job in &mut self.jobs {
            if job.spec.unique && job.pid > 0 {
                continue;
            }
            if !due(job.spec.fields, at) || unix_now - job.last_run < 60 {
                continue;
            }
            job.last_run = unix_now;
            let Some(mut cmd) = spawn::Command::shell(&job.spec.command) else {
                continue;
            };
            cmd.credentials = self.credentials;
            match cmd.spawn() {
                Ok(pid) => {
                    job.pid = pid;
                    job.started = Some(Instant::now());
                    log::stamped(&format!(
                        "[uwsgi-cron] running \"{}\" (pid {pid})",
                        job.spec.command
                    ));
                }
                Err(e) => log::stamped(&format!(
                    "[uwsgi-cron] cannot run \"{}\": {e}",
                    job.spec.command
                )),
            }
        }
    }

    /// A child the master reaped: true if it was a job's.
    pub fn reaped(&mut self, pid: i32) -> bool {
        let Some(job) = self.jobs.iter_mut().find(|j| j.pid == pid && pid > 0) else {
            return false;
        };
        log::line(&job.exit_line());
        job.pid = 0;
        job.started = None;
        job.killed = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i32, hour: i32, mday: i32, month: i32, wday: i32) -> When {
        When {
            minute,
            hour,
            mday,
            month,
            wday,
        }
    }

    #[test]
    fn uwsgi_fields() {
        // docker-mailman's jobs.
        let hourly = [0, -1, -1, -1, -1];
        assert!(due(hourly, at(0, 13, 5, 6, 2)));
        assert!(!due(hourly, at(1, 13, 5, 6, 2)));
        let quarter = [-15, -1, -1, -1, -1];
        for m in [0, 15, 30, 45] {
            assert!(due(quarter, at(m, 9, 1, 1, 0)));
        }
        assert!(!due(quarter, at(20, 9, 1, 1, 0)));
        let daily = [0, 0, -1, -1, -1];
        assert!(due(daily, at(0, 0, 17, 3, 4)));
        assert!(!due(daily, at(0, 1, 17, 3, 4)));
        let monthly = [0, 0, 1, -1, -1];
        assert!(due(monthly, at(0, 0, 1, 7, 3)));
        assert!(!due(monthly, at(0, 0, 2, 7, 3)));
        let weekly = [0, 0, -1, -1, 0];
        assert!(due(weekly, at(0, 0, 12, 5, 0)));
        assert!(!due(weekly, at(0, 0, 12, 5, 1)));
        let yearly = [0, 0, 1, 1, -1];
        assert!(due(yearly, at(0, 0, 1, 1, 5)));
        assert!(!due(yearly, at(0, 0, 1, 2, 5)));
        // Day of month OR weekday when both are given; 7 is Sunday.
        let either = [30, 4, 1, -1, 7];
        assert!(due(either, at(30, 4, 1, 3, 2)));
        assert!(due(either, at(30, 4, 9, 3, 0)));
        assert!(!due(either, at(30, 4, 9, 3, 1)));
        // Every minute.
        assert!(due([-1; 5], at(37, 23, 31, 12, 6)));
    }

    #[test]
    fn a_job_runs_once_a_minute_and_unique_never_twice_at_once() {
        let dir = std::env::temp_dir().join(format!("uwsgi-rs-cron-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("runs");
        let job = CronJob {
            fields: [-1; 5],
            command: format!("echo x >> {}; sleep 0.3", out.display()),
            unique: true,
            harakiri: None,
        };
        let mut c = Crons::new(&[job], Credentials::default(), 0);
        let t0 = 1_700_000_000;
        c.check(t0);
        let pid = c.jobs[0].pid;
        assert!(pid > 0);
        c.check(t0 + 1); // within the minute
        c.check(t0 + 61); // unique: still running
        assert_eq!(c.jobs[0].pid, pid);
        let mut status = 0;
        // SAFETY: waiting for the job we started.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(c.reaped(pid));
        assert!(!c.reaped(pid));
        c.check(t0 + 62);
        let second = c.jobs[0].pid;
        assert!(second > 0 && second != pid);
        // SAFETY: as above.
        unsafe { libc::waitpid(second, &mut status, 0) };
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "x\nx\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Processes of process group `pgid` that are not zombies (from /proc).
    fn live_in_group(pgid: i32) -> usize {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return 0;
        };
        dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
            .filter(|stat| {
                // After "(comm)": state, ppid, pgrp.
                let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
                let f: Vec<&str> = rest.split_whitespace().collect();
                f.len() > 2 && f[0] != "Z" && f[2] == pgid.to_string()
            })
            .count()
    }

    /// cron2's `harakiri=N` (and `--cron-harakiri` for jobs without one):
    /// a job still running N seconds on is killed, its children with it;
    /// `harakiri=0` exempts a job from `--cron-harakiri`.
    #[test]
    fn harakiri_kills_a_job_and_its_process_group() {
        let job = |harakiri| CronJob {
            fields: [-1; 5],
            command: "sleep 30 & sleep 30; wait".into(),
            unique: true,
            harakiri,
        };
        let mut c = Crons::new(
            &[job(Some(1)), job(None), job(Some(0))],
            Credentials::default(),
            1,
        );
        let t0 = 1_700_000_000;
        c.check(t0);
        let pids: Vec<i32> = c.jobs.iter().map(|j| j.pid).collect();
        assert!(pids.iter().all(|&p| p > 0));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        c.check(t0 + 1);
        // Killed, and its running time kept for the reap's line (it was
        // "0 second(s)" when harakiri forgot the start); never killed twice.
        for job in &c.jobs[..2] {
            assert!(job.killed);
            assert!(job.started.is_some_and(|t| t.elapsed().as_secs() >= 1));
            assert!(
                !job.exit_line().ends_with(" 0 second(s)"),
                "{}",
                job.exit_line()
            );
        }
        assert!(!c.jobs[2].killed);
        for (i, &pid) in pids.iter().enumerate().take(2) {
            let mut status = 0;
            // SAFETY: waiting for the job we started.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(
                libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
                "job {i}"
            );
            // The background sleep died with it (a zombie until whoever
            // inherits it reaps it, so kill(-pid, 0) cannot tell).
            let gone = (0..200).any(|_| {
                let alive = live_in_group(pid);
                std::thread::sleep(std::time::Duration::from_millis(10));
                alive == 0
            });
            assert!(gone, "job {i}'s group outlived it");
            assert!(c.reaped(pid));
            assert!(!c.jobs[i].killed && c.jobs[i].started.is_none());
        }
        let mut status = 0;
        // SAFETY: the exempt job is still running: WNOHANG sees nothing.
        assert_eq!(
            unsafe { libc::waitpid(pids[2], &mut status, libc::WNOHANG) },
            0
        );
        // SAFETY: stop it and its group, then reap it.
        unsafe {
            libc::kill(-pids[2], libc::SIGKILL);
            libc::waitpid(pids[2], &mut status, 0);
        }
    }
}
