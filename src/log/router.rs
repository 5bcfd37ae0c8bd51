//! Where each line goes: the outputs of this server (stderr or the log
//! file; the files, sockets and syslog of `--logger` and `--req-logger`;
//! named loggers), `--log-route` / `--log-req-route` rules and
//! `--log-drain`, as uWSGI's master logger (`uwsgi_master_log`) applies
//! them: a line a route matches goes to that route's logger only; any other
//! goes to every unnamed logger, or to the log file / stderr when none is
//! given. Request lines go to the request loggers (with their own routes
//! and encoders), or are lines like the others when none is given.
//!
//! The process that writes the outputs runs this: every process by default,
//! only the master with `--log-master` (see `relay`). Also reopen
//! (logrotate), rotation at `--log-maxsize` and the report of dropped lines.

use std::sync::atomic::Ordering;

use super::pattern::LinePattern;

use super::encode::{self, Encoder};
use super::output::Output;
use super::shared;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    General,
    Request,
}

#[derive(Debug)]
pub struct Route {
    pub re: LinePattern,
    /// Index into `outputs`.
    pub to: usize,
}

#[derive(Debug, Default)]
pub struct Router {
    pub outputs: Vec<Output>,
    /// Unnamed loggers (at least the log file or stderr).
    pub general: Vec<usize>,
    /// Unnamed request loggers; empty: request lines go with the rest.
    pub request: Vec<usize>,
    pub routes: Vec<Route>,
    pub req_routes: Vec<Route>,
    pub drain: Vec<LinePattern>,
    /// `--log-encoder` and `--log-req-encoder` chains.
    pub encoders: Vec<Encoder>,
    pub req_encoders: Vec<Encoder>,
    /// This process is the only writer (the master with --log-master): it
    /// rotates files at their maximum size.
    pub rotates: bool,
    /// Where dropped lines are counted: the server's shared counters unless
    /// a test gives its own.
    pub counters: Option<&'static shared::Counters>,
}

impl Router {
    /// Write `bytes` (whole lines) where `kind` lines go.
    pub fn deliver(&self, kind: Kind, bytes: &[u8]) {
        self.report_drops();
        // Without request loggers, request lines are lines like the others
        // (uWSGI writes them to the same log pipe): routes, drain, encoders.
        let kind = match kind {
            Kind::Request if self.request.is_empty() && self.req_routes.is_empty() => Kind::General,
            k => k,
        };
        // A request line no route takes goes to the unnamed request
        // loggers; with only named ones, to the main log (uWSGI's raw_log).
        let (routes, defaults, encoders) = match kind {
            Kind::General => (&self.routes, &self.general, &self.encoders),
            Kind::Request if self.request.is_empty() => {
                (&self.req_routes, &self.general, &self.req_encoders)
            }
            Kind::Request => (&self.req_routes, &self.request, &self.req_encoders),
        };
        let drain = kind == Kind::General && !self.drain.is_empty();
        if routes.is_empty() && !drain && encoders.is_empty() {
            for &i in defaults {
                self.outputs[i].write(bytes);
            }
        } else {
            let mut encoded = Vec::new();
            let mut write = |i: usize, line: &[u8]| {
                let out = &self.outputs[i];
                if encoders.is_empty() {
                    out.write(line);
                } else {
                    encode::apply(encoders, out.name.as_deref(), line, &mut encoded);
                    out.write(&encoded);
                }
            };
            for line in bytes.split_inclusive(|&b| b == b'\n') {
                let text = String::from_utf8_lossy(line);
                if drain && self.drain.iter().any(|r| r.is_match(&text)) {
                    continue;
                }
                let mut routed = false;
                for r in routes.iter().filter(|r| r.re.is_match(&text)) {
                    write(r.to, line);
                    routed = true;
                }
                if !routed {
                    for &i in defaults {
                        write(i, line);
                    }
                }
            }
        }
        if self.rotates {
            self.rotate_due();
        }
    }

    /// Lines were dropped (by any process): say how many, once, before the
    /// next line, if the log takes it now.
    pub fn report_drops(&self) {
        let dropped = &self.counters.unwrap_or_else(shared::get).dropped;
        if dropped.load(Ordering::Relaxed) == 0 {
            return;
        }
        let n = dropped.swap(0, Ordering::AcqRel);
        if n == 0 {
            return;
        }
        let line = format!(
            "{} - *** {n} log line(s) dropped: the log output was not taking them \
             (a reader that stopped reading, or a stalled terminal) ***\n",
            super::clock::ctime_now()
        );
        let mut ok = !self.general.is_empty();
        for &i in &self.general {
            ok &= self.outputs[i].try_write(line.as_bytes());
        }
        if !ok {
            dropped.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// Reopen every log file (logrotate renamed it), then tell the other
    /// processes; returns a line for each file that could not be reopened.
    pub fn reopen(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut any = false;
        for o in &self.outputs {
            match o.reopen() {
                Ok(done) => any |= done,
                Err(e) => problems.push(format!(
                    "cannot reopen the log {}: {e}",
                    o.file
                        .as_ref()
                        .map_or(String::new(), |f| f.path.display().to_string())
                )),
            }
        }
        if any {
            let g = shared::get().generation.fetch_add(1, Ordering::AcqRel) + 1;
            for f in self.outputs.iter().filter_map(|o| o.file.as_ref()) {
                f.mark_seen(g);
            }
        }
        problems
    }

    /// Rotate every log file now (`--touch-logrotate`), then tell the other
    /// processes as a reopen does; returns a line for each problem.
    pub fn rotate(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.outputs.iter().filter_map(|o| o.rotate()).collect();
        problems.extend(self.reopen());
        problems
    }

    /// The log files that are due for rotation, rotated.
    fn rotate_due(&self) {
        for o in &self.outputs {
            if let Some(problem) = o.rotate_if_due() {
                let line = format!("{} - {problem}\n", super::clock::ctime_now());
                for &i in &self.general {
                    self.outputs[i].write(line.as_bytes());
                }
            }
        }
    }

    /// The files this router writes (for the start-up line).
    pub fn files(&self) -> impl Iterator<Item = &std::path::Path> {
        self.outputs
            .iter()
            .filter_map(|o| o.file.as_ref().map(|f| f.path.as_path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::output::LogFile;

    fn file_output(dir: &std::path::Path, name: &str, logger: Option<&str>) -> Output {
        let mut o = Output::open_file(LogFile::new(dir.join(name))).unwrap();
        o.name = logger.map(str::to_string);
        o
    }

    #[test]
    fn routes_drain_and_request_loggers() {
        let dir = std::env::temp_dir().join(format!("uwsgi-rs-router-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let r = Router {
            outputs: vec![
                file_output(&dir, "main.log", None),
                file_output(&dir, "cron.log", Some("cron")),
                file_output(&dir, "req.log", None),
            ],
            general: vec![0],
            request: vec![2],
            routes: vec![Route {
                re: LinePattern::new("uwsgi-cron").unwrap(),
                to: 1,
            }],
            req_routes: vec![],
            drain: vec![LinePattern::new("^noise").unwrap()],
            counters: Some(shared::private()),
            ..Router::default()
        };
        r.deliver(Kind::General, b"hello\n[uwsgi-cron] job ran\nnoise here\n");
        r.deliver(Kind::Request, b"[pid: 1|app: 0|req: 1/1] GET /\n");
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
        assert_eq!(read("main.log"), "hello\n");
        assert_eq!(read("cron.log"), "[uwsgi-cron] job ran\n");
        assert_eq!(read("req.log"), "[pid: 1|app: 0|req: 1/1] GET /\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_request_route_to_a_named_logger_alone() {
        let dir = std::env::temp_dir().join(format!("uwsgi-rs-reqroute-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let r = Router {
            outputs: vec![
                file_output(&dir, "main.log", None),
                file_output(&dir, "errors.log", Some("errors")),
            ],
            general: vec![0],
            req_routes: vec![Route {
                re: LinePattern::new(r"\(HTTP/1.1 5\d\d\)").unwrap(),
                to: 1,
            }],
            counters: Some(shared::private()),
            ..Router::default()
        };
        r.deliver(
            Kind::Request,
            b"GET /a (HTTP/1.1 500)\nGET /b (HTTP/1.1 200)\n",
        );
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
        assert_eq!(read("errors.log"), "GET /a (HTTP/1.1 500)\n");
        assert_eq!(read("main.log"), "GET /b (HTTP/1.1 200)\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dropped_lines_are_reported_once_the_output_takes_lines() {
        let dir = std::env::temp_dir().join(format!("uwsgi-rs-drops-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let counters = shared::private();
        counters.dropped.store(5, Ordering::Relaxed);
        let r = Router {
            outputs: vec![file_output(&dir, "main.log", None)],
            general: vec![0],
            counters: Some(counters),
            ..Router::default()
        };
        r.deliver(Kind::General, b"next\n");
        let log = std::fs::read_to_string(dir.join("main.log")).unwrap();
        let (report, rest) = log.split_once('\n').unwrap();
        assert!(report.contains(" - *** 5 log line(s) dropped: "), "{log}");
        assert_eq!(rest, "next\n");
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
