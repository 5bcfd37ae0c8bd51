//! Cheaper mode (`--cheaper N`): how many workers run, between N and
//! `--processes`, decided once a second from how busy they are, as uWSGI's
//! cheaper algorithms decide it (core/master_utils.c: spare, spare2,
//! backlog, manual; plugins/cheaper_busyness: busyness), with its defaults
//! and log lines. The memory limits (`--cheaper-rss-limit-soft/hard`) come
//! first, as in `uwsgi_calc_cheaper`.
//!
//! Pure: the master passes what it read of the workers (busy or not, time
//! spent in requests, memory, the listen queue) and acts on the
//! [`Decision`]; this module never touches a process.

use std::time::{Duration, Instant};

use crate::config::{CheaperAlgo, CheaperOptions};

/// One worker that runs (not cheaped), as the master sees it at a check.
#[derive(Debug, Clone, Copy, Default)]
pub struct Active {
    /// Worker id, from 1.
    pub id: usize,
    /// A core is in a request.
    pub busy: bool,
    /// Microseconds spent in requests by this process so far (grows).
    pub running_micros: u64,
    /// Resident memory in bytes.
    pub rss: u64,
}

/// What the master does after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Hold,
    /// Start up to this many cheaped workers.
    Spawn(usize),
    /// Retire one idle worker (the oldest).
    Retire,
}

/// How often the algorithms run (uWSGI's master cycle).
pub const INTERVAL: Duration = Duration::from_secs(1);

pub struct Cheaper {
    min: usize,
    initial: usize,
    max: usize,
    step: usize,
    overload: u64,
    rss_soft: u64,
    rss_hard: u64,
    algo: Algo,
    /// fifo `+` / `-` not acted on yet (uWSGI's cheaper_fifo_delta).
    fifo_delta: i64,
}

enum Algo {
    Spare {
        overload_count: u64,
        idle_count: u64,
    },
    Spare2 {
        idle_count: u64,
        idle_cycles: u64,
    },
    Backlog,
    Busyness(Box<Busyness>),
    Manual,
}

impl Cheaper {
    /// None when cheaper mode is off (`--cheaper 0`).
    pub fn new(opts: &CheaperOptions, processes: usize, now: Instant) -> Option<Cheaper> {
        if opts.min == 0 {
            return None;
        }
        let algo = match opts.algo {
            CheaperAlgo::Spare => Algo::Spare {
                overload_count: 0,
                idle_count: 0,
            },
            CheaperAlgo::Spare2 => Algo::Spare2 {
                idle_count: 0,
                idle_cycles: 10,
            },
            CheaperAlgo::Backlog => Algo::Backlog,
            CheaperAlgo::Busyness => Algo::Busyness(Box::new(Busyness::new(opts, processes, now))),
            CheaperAlgo::Manual => Algo::Manual,
        };
        Some(Cheaper {
            min: opts.min,
            // uWSGI: at least --cheaper, at most --processes.
            initial: opts.initial.unwrap_or(opts.min).clamp(opts.min, processes),
            max: processes,
            step: opts.step.max(1),
            overload: opts.overload,
            rss_soft: opts.rss_limit_soft,
            rss_hard: opts.rss_limit_hard,
            algo,
            fifo_delta: 0,
        })
    }

    /// Workers started at first (`--cheaper-initial`, default `--cheaper`).
    pub fn initial(&self) -> usize {
        self.initial
    }

    /// fifo `+` (1) / `-` (-1): acted on at the next check, before the
    /// algorithm, unless the memory limits forbid it (then dropped), as
    /// uWSGI does.
    pub fn nudge(&mut self, delta: i64) {
        self.fifo_delta += delta;
    }

    /// Lines to log at start (the busyness algorithm's settings).
    pub fn settings(&self) -> Vec<String> {
        match &self.algo {
            Algo::Busyness(b) => b.settings(self.overload),
            _ => Vec::new(),
        }
    }

    /// One check. `active` are the running workers, `cheaped` how many
    /// slots have none, `backlog` the listen queue. Log lines the
    /// algorithm produces are returned with the decision.
    pub fn decide(
        &mut self,
        now: Instant,
        active: &[Active],
        cheaped: usize,
        backlog: u32,
    ) -> (Decision, Vec<String>) {
        let mut log = Vec::new();
        let mut can_spawn = true;
        if self.rss_soft > 0 {
            let total: u64 = active.iter().map(|w| w.rss).sum();
            if self.rss_hard > 0 && active.len() > 1 && total >= self.rss_hard {
                log.push(format!(
                    "cheaper hard rss memory limit exceeded, cheap one of {} workers",
                    active.len()
                ));
                return (Decision::Retire, log);
            }
            if total >= self.rss_soft {
                can_spawn = false;
            }
        }
        let asked = std::mem::take(&mut self.fifo_delta);
        if asked != 0 {
            let decision = match asked {
                _ if !can_spawn => Decision::Hold,
                n if n > 0 && cheaped > 0 => Decision::Spawn((n as usize).min(cheaped)),
                n if n < 0 && active.len() > 1 => Decision::Retire,
                _ => Decision::Hold,
            };
            return (decision, log);
        }
        let n = match &mut self.algo {
            Algo::Spare {
                overload_count,
                idle_count,
            } => spare(
                active,
                cheaped,
                can_spawn,
                self.min,
                self.step,
                self.overload,
                overload_count,
                idle_count,
            ),
            Algo::Spare2 {
                idle_count,
                idle_cycles,
            } => spare2(
                active,
                cheaped,
                can_spawn,
                self.min,
                self.step,
                *idle_cycles,
                idle_count,
            ),
            Algo::Backlog => {
                let overload = self.overload.min(u32::MAX as u64) as u32;
                if can_spawn && backlog > overload {
                    cheaped.min(self.step) as i64
                } else if backlog < overload && active.len() > self.min {
                    -1
                } else {
                    0
                }
            }
            Algo::Busyness(b) => b.decide(
                now,
                active,
                cheaped,
                backlog,
                can_spawn,
                self.min,
                self.max,
                self.step,
                self.overload,
                &mut log,
            ),
            Algo::Manual => 0,
        };
        let decision = match n {
            n if n > 0 => Decision::Spawn(n as usize),
            n if n < 0 => Decision::Retire,
            _ => Decision::Hold,
        };
        (decision, log)
    }
}

/// uWSGI's spare algorithm: when every worker is busy for more than
/// `overload` checks in a row, start `step` more; once some are idle again,
/// retire one every `overload` checks down to `min` (one spare idle worker
/// is the stable state).
#[allow(clippy::too_many_arguments)]
fn spare(
    active: &[Active],
    cheaped: usize,
    can_spawn: bool,
    min: usize,
    step: usize,
    overload: u64,
    overload_count: &mut u64,
    idle_count: &mut u64,
) -> i64 {
    if active.iter().any(|w| !w.busy) {
        *overload_count = overload_count.saturating_sub(1);
    } else {
        *overload_count += 1;
        *idle_count = 0;
    }
    if can_spawn && *overload_count > overload {
        *overload_count = 0;
        return cheaped.min(step) as i64;
    }
    if *overload_count == 0 {
        let busy = active.iter().filter(|w| w.busy).count();
        if active.len() > busy && active.len() - busy == 1 {
            return 0; // stable: one spare worker
        }
        *idle_count += 1;
        if active.len() > min && *idle_count % overload.max(1) == 0 {
            return -1;
        }
    }
    0
}

/// uWSGI's spare2: keep `min` idle workers, starting them before the
/// others are all busy; retire one after `idle_cycles` checks with more.
fn spare2(
    active: &[Active],
    cheaped: usize,
    can_spawn: bool,
    min: usize,
    step: usize,
    idle_cycles: u64,
    idle_count: &mut u64,
) -> i64 {
    let idle = active.iter().filter(|w| !w.busy).count();
    if idle < min {
        *idle_count = 0;
        if !can_spawn {
            return 0;
        }
        return (min - idle).min(cheaped).min(step) as i64;
    }
    if idle == min {
        *idle_count = 0;
        return 0;
    }
    *idle_count += 1;
    if *idle_count < idle_cycles {
        return 0;
    }
    *idle_count = 0;
    -1
}

/// The busyness algorithm (Łukasz Mierzwa's cheaper_busyness plugin): the
/// share of each `overload` seconds the workers spent in requests; above
/// `busyness-max` percent start `step` workers, below `busyness-min` retire
/// one once the workers were idle for `overload * multiplier` seconds (a
/// worker started again soon after one was retired raises the multiplier by
/// `penalty`); a listen queue over `backlog-alert` starts emergency workers.
struct Busyness {
    max_pct: u64,
    min_pct: u64,
    multi: u64,
    min_multi: u64,
    penalty: u64,
    backlog_alert: u32,
    backlog_step: usize,
    backlog_multi: u64,
    backlog_nonzero_alert: Duration,
    verbose: bool,
    /// Running time of each worker id at the last cycle.
    last_values: Vec<u64>,
    /// Checks at which each worker id was seen busy in this cycle.
    was_busy: Vec<u64>,
    tcheck: Instant,
    last_cheaped: Option<Instant>,
    next_cheap: Instant,
    last_action: u8,
    tolerance_counter: u64,
    emergency_workers: usize,
    backlog_nonzero_since: Option<Instant>,
}

impl Busyness {
    fn new(opts: &CheaperOptions, processes: usize, now: Instant) -> Busyness {
        let multi = opts.busyness_multiplier.filter(|&m| m > 0).unwrap_or(10);
        let mut b = Busyness {
            max_pct: opts.busyness_max.filter(|&m| m > 0).unwrap_or(50),
            min_pct: opts.busyness_min.filter(|&m| m > 0).unwrap_or(25),
            multi,
            min_multi: multi,
            penalty: opts.busyness_penalty.filter(|&p| p > 0).unwrap_or(2),
            backlog_alert: opts
                .busyness_backlog_alert
                .filter(|&a| a > 0)
                .unwrap_or(33)
                .min(u32::MAX as u64) as u32,
            backlog_step: opts.busyness_backlog_step.filter(|&s| s > 0).unwrap_or(1) as usize,
            backlog_multi: 3,
            backlog_nonzero_alert: Duration::from_secs(60),
            verbose: opts.verbose,
            last_values: vec![0; processes],
            was_busy: vec![0; processes],
            tcheck: now,
            last_cheaped: None,
            next_cheap: now,
            last_action: 0,
            tolerance_counter: 0,
            emergency_workers: 0,
            backlog_nonzero_since: None,
        };
        b.set_next_cheap_time(now, opts.overload);
        b
    }

    fn settings(&self, overload: u64) -> Vec<String> {
        vec![
            format!(
                "[busyness] settings: min={}%, max={}%, overload={}, multiplier={}, respawn penalty={}",
                self.min_pct, self.max_pct, overload, self.multi, self.penalty
            ),
            format!(
                "[busyness] backlog alert is set to {} request(s), step is {}",
                self.backlog_alert, self.backlog_step
            ),
        ]
    }

    fn set_next_cheap_time(&mut self, now: Instant, overload: u64) {
        let cycles = if self.emergency_workers > 0 {
            self.backlog_multi
        } else {
            self.multi
        };
        self.next_cheap = now + Duration::from_secs(overload.saturating_mul(cycles));
    }

    fn decrease_multi(&mut self, log: &mut Vec<String>) {
        if self.multi > self.min_multi {
            self.multi -= 1;
            log.push(format!(
                "[busyness] decreasing cheaper multiplier to {}",
                self.multi
            ));
        }
    }

    fn spawn_emergency(
        &mut self,
        now: Instant,
        backlog: u32,
        cheaped: usize,
        processes: usize,
        overload: u64,
        log: &mut Vec<String>,
    ) -> i64 {
        self.multi = self.min_multi;
        self.last_action = 1;
        let n = cheaped.min(self.backlog_step);
        self.set_next_cheap_time(now, overload);
        if n > 0 {
            self.emergency_workers += n;
            log.push(format!(
                "[busyness] {backlog} requests in listen queue, spawning {n} emergency worker(s) ({})!",
                self.emergency_workers
            ));
        } else {
            log.push(format!(
                "[busyness] {backlog} requests in listen queue but we are already started maximum number of workers ({processes})"
            ));
        }
        n as i64
    }

    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        now: Instant,
        active: &[Active],
        cheaped: usize,
        backlog: u32,
        can_spawn: bool,
        min: usize,
        processes: usize,
        step: usize,
        overload: u64,
        log: &mut Vec<String>,
    ) -> i64 {
        let period = Duration::from_secs(overload.max(1));
        for w in active {
            if let Some(b) = self.was_busy.get_mut(w.id - 1) {
                *b += w.busy as u64;
            }
        }
        if now.duration_since(self.tcheck) >= period {
            self.tcheck = now;
            let mut total = 0u64;
            for w in active {
                let i = w.id - 1;
                let (Some(last), Some(was_busy)) = (self.last_values.get(i), self.was_busy.get(i))
                else {
                    continue;
                };
                let delta = w.running_micros.saturating_sub(*last);
                let mut pct = delta * 100 / period.as_micros() as u64;
                if pct > 100 {
                    pct = 100;
                } else if delta == 0 && *was_busy > 0 {
                    // Busy at the checks but nothing finished: requests
                    // longer than the period.
                    if self.verbose {
                        log.push(format!("[busyness] worker {} was busy {} time(s) in last cycle but no request was completed during this time, marking as 100% busy", w.id, was_busy));
                    }
                    pct = 100;
                }
                if self.verbose && active.len() > 1 {
                    log.push(format!(
                        "[busyness] worker nr {} {}s average busyness is at {}%",
                        w.id, overload, pct
                    ));
                }
                total += pct;
            }
            for w in active {
                if let Some(v) = self.last_values.get_mut(w.id - 1) {
                    *v = w.running_micros;
                }
            }
            self.was_busy.iter_mut().for_each(|b| *b = 0);
            let avg = total.checked_div(active.len() as u64).unwrap_or(0);
            if self.verbose {
                log.push(format!(
                    "[busyness] {}s average busyness of {} worker(s) is at {}%",
                    overload,
                    active.len(),
                    avg
                ));
            }
            if avg > self.max_pct {
                self.tolerance_counter = 0;
                let n = if can_spawn { cheaped.min(step) } else { 0 };
                if n > 0 {
                    self.last_action = 1;
                    let since_cheap = self.last_cheaped.map_or(u64::MAX, |t| {
                        now.duration_since(t).as_secs() / overload.max(1)
                    });
                    if since_cheap <= self.multi {
                        self.multi += self.penalty;
                        log.push(format!(
                            "[busyness] worker(s) respawned to fast, increasing cheaper multiplier to {} (+{})",
                            self.multi, self.penalty
                        ));
                    } else {
                        self.decrease_multi(log);
                    }
                    self.set_next_cheap_time(now, overload);
                    log.push(format!(
                        "[busyness] {overload}s average busyness is at {avg}%, will spawn {n} new worker(s)"
                    ));
                } else {
                    log.push(format!(
                        "[busyness] {overload}s average busyness is at {avg}% but we already started maximum number of workers available with current limits ({})",
                        active.len()
                    ));
                }
                return n as i64;
            } else if can_spawn && backlog > self.backlog_alert && active.len() < processes {
                return self.spawn_emergency(now, backlog, cheaped, processes, overload, log);
            } else if avg < self.min_pct {
                if active.len() == 1 {
                    return 0;
                }
                self.tolerance_counter = 0;
                if active.len() > min {
                    if now >= self.next_cheap {
                        if self.last_action == 2 {
                            self.decrease_multi(log);
                        }
                        self.set_next_cheap_time(now, overload);
                        log.push(format!(
                            "[busyness] {overload}s average busyness is at {avg}%, cheap one of {} running workers",
                            active.len()
                        ));
                        self.last_cheaped = Some(now);
                        self.last_action = 2;
                        self.emergency_workers = self.emergency_workers.saturating_sub(1);
                        return -1;
                    } else if self.verbose {
                        log.push(format!(
                            "[busyness] need to wait {} more second(s) to cheap worker",
                            self.next_cheap.duration_since(now).as_secs()
                        ));
                    }
                }
            } else {
                if active.len() == 1 {
                    return 0;
                }
                self.emergency_workers = self.emergency_workers.saturating_sub(1);
                self.tolerance_counter += 1;
                if self.tolerance_counter >= 3 {
                    self.set_next_cheap_time(now, overload);
                } else {
                    self.next_cheap += period;
                }
            }
        } else if can_spawn && backlog > self.backlog_alert && active.len() < processes {
            return self.spawn_emergency(now, backlog, cheaped, processes, overload, log);
        } else if backlog > 0 {
            match self.backlog_nonzero_since {
                Some(t) if can_spawn && now.duration_since(t) >= self.backlog_nonzero_alert => {
                    log.push(format!(
                        "[busyness] backlog was non-zero for {} second(s), spawning new worker(s)",
                        now.duration_since(t).as_secs()
                    ));
                    self.backlog_nonzero_since = Some(now);
                    return self.spawn_emergency(now, backlog, cheaped, processes, overload, log);
                }
                Some(_) => {}
                None => self.backlog_nonzero_since = Some(now),
            }
        } else {
            self.backlog_nonzero_since = None;
        }
        0
    }
}

/// The worker to retire when the algorithm says so: the oldest idle one
/// (`spawned` gives each worker's start), as uWSGI picks it.
pub fn pick_retiree(candidates: &[(usize, bool, Instant)]) -> Option<usize> {
    candidates
        .iter()
        .filter(|(_, busy, _)| !busy)
        .min_by_key(|(_, _, spawned)| *spawned)
        .map(|(id, _, _)| *id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(algo: CheaperAlgo) -> CheaperOptions {
        CheaperOptions {
            min: 1,
            overload: 2,
            algo,
            ..CheaperOptions::default()
        }
    }

    fn workers(busy: &[bool]) -> Vec<Active> {
        busy.iter()
            .enumerate()
            .map(|(i, &b)| Active {
                id: i + 1,
                busy: b,
                ..Active::default()
            })
            .collect()
    }

    #[test]
    fn off_without_a_minimum() {
        assert!(Cheaper::new(&CheaperOptions::default(), 4, Instant::now()).is_none());
    }

    #[test]
    fn spare_adds_after_overload_checks_and_retires_when_idle() {
        let now = Instant::now();
        let mut c = Cheaper::new(&opts(CheaperAlgo::Spare), 4, now).unwrap();
        let busy = workers(&[true]);
        // overload 2: the third busy check in a row spawns.
        assert_eq!(c.decide(now, &busy, 3, 0).0, Decision::Hold);
        assert_eq!(c.decide(now, &busy, 3, 0).0, Decision::Hold);
        assert_eq!(c.decide(now, &busy, 3, 0).0, Decision::Spawn(1));
        // Two workers, both idle: one is retired every `overload` checks.
        let idle = workers(&[false, false]);
        let mut decisions = Vec::new();
        for _ in 0..4 {
            decisions.push(c.decide(now, &idle, 2, 0).0);
        }
        assert!(decisions.contains(&Decision::Retire), "{decisions:?}");
        // One busy, one idle: stable.
        assert_eq!(
            c.decide(now, &workers(&[true, false]), 2, 0).0,
            Decision::Hold
        );
        // At the minimum: nothing retired.
        for _ in 0..6 {
            assert_eq!(c.decide(now, &workers(&[false]), 3, 0).0, Decision::Hold);
        }
    }

    #[test]
    fn fifo_nudges_come_first_once_even_in_manual_mode() {
        let now = Instant::now();
        let mut c = Cheaper::new(&opts(CheaperAlgo::Manual), 4, now).unwrap();
        c.nudge(1);
        c.nudge(1);
        assert_eq!(
            c.decide(now, &workers(&[false]), 3, 0).0,
            Decision::Spawn(2)
        );
        assert_eq!(c.decide(now, &workers(&[false]), 1, 0).0, Decision::Hold);
        c.nudge(-1);
        assert_eq!(
            c.decide(now, &workers(&[false, false, false]), 1, 0).0,
            Decision::Retire
        );
        // Never the last worker; nothing to start when none is cheaped.
        c.nudge(-1);
        assert_eq!(c.decide(now, &workers(&[false]), 3, 0).0, Decision::Hold);
        c.nudge(1);
        assert_eq!(c.decide(now, &workers(&[false]), 0, 0).0, Decision::Hold);
    }

    #[test]
    fn spare_spawns_no_more_than_step_or_cheaped() {
        let now = Instant::now();
        let mut o = opts(CheaperAlgo::Spare);
        o.step = 3;
        o.overload = 0;
        let mut c = Cheaper::new(&o, 4, now).unwrap();
        assert_eq!(c.decide(now, &workers(&[true]), 2, 0).0, Decision::Spawn(2));
    }

    #[test]
    fn the_soft_rss_limit_stops_spawning_and_the_hard_one_retires() {
        let now = Instant::now();
        let mut o = opts(CheaperAlgo::Spare);
        o.overload = 0;
        o.rss_limit_soft = 100;
        o.rss_limit_hard = 200;
        let mut c = Cheaper::new(&o, 4, now).unwrap();
        let mut w = workers(&[true, true]);
        w[0].rss = 60;
        w[1].rss = 60;
        assert_eq!(c.decide(now, &w, 2, 0).0, Decision::Hold, "over soft");
        w[1].rss = 150;
        let (d, log) = c.decide(now, &w, 2, 0);
        assert_eq!(d, Decision::Retire, "over hard");
        assert!(log[0].contains("hard rss memory limit exceeded"));
    }

    #[test]
    fn spare2_keeps_min_idle_workers() {
        let now = Instant::now();
        let mut o = opts(CheaperAlgo::Spare2);
        o.min = 2;
        o.step = 4;
        let mut c = Cheaper::new(&o, 6, now).unwrap();
        assert_eq!(
            c.decide(now, &workers(&[true, true]), 4, 0).0,
            Decision::Spawn(2)
        );
        let many_idle = workers(&[false, false, false]);
        let mut n = 0;
        while c.decide(now, &many_idle, 3, 0).0 == Decision::Hold {
            n += 1;
            assert!(n < 20);
        }
        assert_eq!(n, 9, "retires after 10 idle checks");
    }

    #[test]
    fn backlog_follows_the_listen_queue() {
        let now = Instant::now();
        let mut c = Cheaper::new(&opts(CheaperAlgo::Backlog), 4, now).unwrap();
        assert_eq!(c.decide(now, &workers(&[true]), 3, 5).0, Decision::Spawn(1));
        assert_eq!(
            c.decide(now, &workers(&[true, true]), 2, 0).0,
            Decision::Retire
        );
        assert_eq!(
            c.decide(now, &workers(&[true]), 3, 0).0,
            Decision::Hold,
            "at min"
        );
    }

    #[test]
    fn busyness_spawns_when_busy_and_retires_after_idle_period() {
        let t0 = Instant::now();
        let mut o = opts(CheaperAlgo::Busyness);
        o.overload = 1;
        o.busyness_multiplier = Some(2);
        let mut c = Cheaper::new(&o, 4, t0).unwrap();
        assert!(c.settings()[0].contains("min=25%, max=50%"));
        // 1 s later, worker 1 spent 0.9 s in requests: 90% busy.
        let mut w = workers(&[true]);
        w[0].running_micros = 900_000;
        let (d, log) = c.decide(t0 + Duration::from_secs(1), &w, 3, 0);
        assert_eq!(d, Decision::Spawn(1), "{log:?}");
        // Then both idle: retired once overload * multiplier seconds passed.
        let mut w = workers(&[false, false]);
        w[0].running_micros = 900_000;
        let mut retired_at = None;
        for s in 2..10 {
            if c.decide(t0 + Duration::from_secs(s), &w, 2, 0).0 == Decision::Retire {
                retired_at = Some(s);
                break;
            }
        }
        assert_eq!(retired_at, Some(3), "2 s after the spawn");
    }

    #[test]
    fn busyness_counts_a_request_longer_than_the_period_as_busy() {
        let t0 = Instant::now();
        let mut o = opts(CheaperAlgo::Busyness);
        o.overload = 1;
        let mut c = Cheaper::new(&o, 2, t0).unwrap();
        let w = workers(&[true]);
        assert_eq!(
            c.decide(t0 + Duration::from_millis(500), &w, 1, 0).0,
            Decision::Hold
        );
        assert_eq!(
            c.decide(t0 + Duration::from_secs(1), &w, 1, 0).0,
            Decision::Spawn(1)
        );
    }

    #[test]
    fn busyness_spawns_an_emergency_worker_on_a_full_backlog() {
        let t0 = Instant::now();
        let mut c = Cheaper::new(&opts(CheaperAlgo::Busyness), 3, t0).unwrap();
        let (d, log) = c.decide(t0, &workers(&[true]), 2, 40);
        assert_eq!(d, Decision::Spawn(1));
        assert!(log[0].contains("emergency"), "{log:?}");
    }

    #[test]
    fn the_oldest_idle_worker_is_retired() {
        let t = Instant::now();
        let later = t + Duration::from_secs(1);
        assert_eq!(
            pick_retiree(&[(1, true, t), (2, false, later), (3, false, t)]),
            Some(3)
        );
        assert_eq!(pick_retiree(&[(1, true, t)]), None);
    }
}
