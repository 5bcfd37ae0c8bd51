//! From the logging options to this server's log: done once by the master
//! before it binds or forks (`start`), then once in each worker right
//! after its fork (`worker_started`). Opens the log files (`--logto` as
//! root, `--logto2` as the `--uid`/`--gid` user), detaches
//! (`--daemonize`), builds the loggers, routes and the request-log style,
//! and creates the relay pipes of `--log-master`.
//!
//! It must not format lines (mod.rs and `access` do) or write them
//! (`output`, `router`, `relay` do).

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

use super::access::{Format, Style, When};
use super::encode::Encoder;
use super::output::{How, LogFile, Output};
use super::relay::Pipes;
use super::router::{Route, Router};
use super::{daemon, fds, shared, AccessConfig, State, Touch};
use crate::config::{Config, LogDate, LoggerSpec};
use crate::privileges::Credentials;
use crate::touch::TouchFiles;

/// What the master decided; returns the warnings for the start-up report.
pub fn start(cfg: &Config) -> Result<(State, Vec<String>)> {
    shared::init();
    let lo = &cfg.logging;
    let creds = crate::privileges::resolve(cfg.uid.as_deref(), cfg.gid.as_deref())?;
    let mut warnings = Vec::new();
    let mut b = Builder::default();

    // The log file: --daemonize[2] names it, else --logto, else --logto2.
    let (file, as_worker_user) = match (&lo.daemonize, &lo.daemonize2, &lo.logto, &lo.logto2) {
        (Some(p), ..) | (None, Some(p), ..) | (None, None, Some(p), _) => (Some(p), false),
        (None, None, None, Some(p)) => (Some(p), true),
        _ => (None, false),
    };
    let uses_stdio = lo
        .loggers
        .iter()
        .chain(&lo.req_loggers)
        .any(|l| l.plugin == "stdio");
    // Stderr as it was given, before a log file takes fds 1 and 2.
    let stderr = if file.is_none() || uses_stdio {
        let (o, why) = Output::adopt(2).context("cannot use stderr for the log")?;
        warnings.extend(why);
        Some(b.push(o))
    } else {
        None
    };
    // The log file also becomes fds 1 and 2 (the app's prints), once any
    // detaching is done: the waiting command keeps the terminal.
    let mut std_fd = None;
    let main = match file {
        Some(p) if is_udp(p) => b.push(udp_output(&p.to_string_lossy())?),
        Some(p) => {
            let mut lf = log_file(p.clone(), cfg, creds);
            lf.std = true;
            lf.maxsize = lo.maxsize;
            lf.backup = lo.backupname.clone();
            let out = if as_worker_user {
                crate::privileges::with_fs_ids(creds, || Output::open_file(lf))
            } else {
                Output::open_file(lf)
            }
            .with_context(|| format!("cannot open the log file {}", p.display()))?;
            std_fd = Some(out.fd);
            b.push(out)
        }
        None => stderr.unwrap_or_default(),
    };

    let mut unsupported = Vec::new();
    for (specs, request) in [(&lo.loggers, false), (&lo.req_loggers, true)] {
        for spec in specs {
            let out = match spec.plugin.as_str() {
                // A named stdio logger is its own output on the same
                // descriptor, so that the encoders for its name apply.
                "stdio" if spec.name.is_some() => {
                    let base = &b.router.outputs[stderr.unwrap_or(main)];
                    let mut o = Output::new(base.fd, base.how);
                    o.name = spec.name.clone();
                    Some(o)
                }
                "stdio" => None,
                _ => match logger_output(spec, cfg, creds)? {
                    Some(o) => Some(o),
                    None => {
                        unsupported.push(spec.plugin.clone());
                        continue;
                    }
                },
            };
            let idx = match out {
                Some(o) => b.push(o),
                None => stderr.unwrap_or(main),
            };
            match &spec.name {
                Some(n) => b.named.push((n.clone(), idx)),
                None if request => b.router.request.push(idx),
                None => b.router.general.push(idx),
            }
        }
    }
    if !unsupported.is_empty() {
        unsupported.dedup();
        warnings.push(format!(
            "loggers not supported by uwsgi-rs (file, fd, stdio, syslog, socket are): {}; \
             their lines go to the main log instead",
            unsupported.join(", ")
        ));
    }
    if b.router.general.is_empty() {
        b.router.general.push(main);
    }
    b.router.routes = b.routes(&lo.routes, "--log-route", &mut warnings)?;
    b.router.req_routes = b.routes(&lo.req_routes, "--log-req-route", &mut warnings)?;
    b.router.drain = lo
        .drain
        .iter()
        .map(|p| regex(p, "--log-drain"))
        .collect::<Result<_>>()?;
    for (specs, chain) in [
        (&lo.encoders, &mut b.router.encoders),
        (&lo.req_encoders, &mut b.router.req_encoders),
    ] {
        for spec in specs {
            chain.push(Encoder::parse(spec).map_err(|e| anyhow!(e))?);
        }
    }

    // One writer, as uWSGI: what needs routing or rotation implies it.
    let master_writes = lo.master
        || lo.maxsize > 0
        || !lo.loggers.is_empty()
        || !lo.req_loggers.is_empty()
        || !lo.routes.is_empty()
        || !lo.req_routes.is_empty()
        || !lo.drain.is_empty()
        || !lo.encoders.is_empty()
        || !lo.req_encoders.is_empty();
    let pipes = if master_writes {
        b.router.rotates = true;
        Some(Pipes::create().context("cannot create the log pipes")?)
    } else {
        None
    };

    let date = lo.date.as_ref().map(|d| match d {
        LogDate::Default => None,
        LogDate::Strftime(f) => Some(f.clone()),
    });
    let format = lo.format.as_deref().map(Format::parse);
    let needs_memory = format.as_ref().is_some_and(Format::needs_memory);
    let access = AccessConfig {
        when: When {
            all: !cfg.disable_logging,
            status_4xx: lo.log_4xx,
            status_5xx: lo.log_5xx,
            slow_ms: lo.slow_ms,
            big: lo.big,
            zero: lo.zero,
            ioerror: lo.ioerror,
        },
        style: Style {
            format,
            micros: lo.micros,
            ftime: date.clone().flatten().filter(|_| lo.format_strftime),
        },
        x_forwarded_for: lo.x_forwarded_for,
        needs_memory,
    };

    if let Some(p) = lo.daemonize.as_ref().or(lo.daemonize2.as_ref()) {
        daemon::detach(lo.daemonize.is_none(), p).context("cannot daemonize")?;
    }
    if let Some(fd) = std_fd {
        super::output::point_std_at(fd);
    }
    let state = State {
        router: b.router,
        pipes,
        date,
        access,
        reopen_on_reload: lo.reopen,
        touch: std::sync::Mutex::new(Touch {
            reopen: TouchFiles::new(&lo.touch_reopen),
            rotate: TouchFiles::new(&lo.touch_rotate),
            looked: None,
        }),
    };
    Ok((state, warnings))
}

#[derive(Default)]
struct Builder {
    router: Router,
    named: Vec<(String, usize)>,
}

impl Builder {
    fn push(&mut self, o: Output) -> usize {
        self.router.outputs.push(o);
        self.router.outputs.len() - 1
    }

    fn routes(
        &self,
        rules: &[crate::config::LogRoute],
        option: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Route>> {
        let mut out = Vec::new();
        for r in rules {
            let re = regex(&r.pattern, option)?;
            match self.named.iter().find(|(n, _)| *n == r.logger) {
                Some((_, to)) => out.push(Route { re, to: *to }),
                None => warnings.push(format!(
                    "{option} {}: no --logger is named '{}'; the rule is ignored",
                    r.pattern, r.logger
                )),
            }
        }
        Ok(out)
    }
}

fn regex(pattern: &str, option: &str) -> Result<super::pattern::LinePattern> {
    super::pattern::LinePattern::new(pattern)
        .map_err(|e| anyhow!("invalid regular expression for {option} '{pattern}': {e}"))
}

fn log_file(path: PathBuf, cfg: &Config, creds: Credentials) -> LogFile {
    let mut lf = LogFile::new(path);
    lf.chmod = cfg.logging.chmod;
    if cfg.logging.chown {
        lf.chown = Some((creds.uid, creds.gid));
    }
    lf
}

/// uWSGI's `logto HOST:PORT` sends the log as UDP datagrams.
fn is_udp(p: &Path) -> bool {
    let s = p.to_string_lossy();
    !s.starts_with('/')
        && !s.starts_with('.')
        && s.rsplit_once(':')
            .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok())
}

fn udp_output(addr: &str) -> Result<Output> {
    let sock = std::net::UdpSocket::bind(if addr.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    })
    .and_then(|s| s.connect(addr).map(|()| s))
    .with_context(|| format!("cannot log to udp {addr}"))?;
    let fd = fds::to_high(std::os::fd::IntoRawFd::into_raw_fd(sock))?;
    Ok(Output::new(fd, How::Send))
}

/// A `--logger`/`--req-logger` output; None for a plugin uwsgi-rs lacks.
fn logger_output(spec: &LoggerSpec, cfg: &Config, creds: Credentials) -> Result<Option<Output>> {
    let mut out = match spec.plugin.as_str() {
        "file" => {
            // file:PATH or file:logfile=PATH,maxsize=N,backupname=B
            let mut lf = if spec.arg.contains('=') {
                let mut path = None;
                let mut lf = log_file(PathBuf::new(), cfg, creds);
                for kv in spec.arg.split(',') {
                    match kv.split_once('=') {
                        Some(("logfile", v)) => path = Some(PathBuf::from(v)),
                        Some(("maxsize", v)) => lf.maxsize = v.trim().parse().unwrap_or(0),
                        Some(("backupname", v)) => lf.backup = Some(PathBuf::from(v)),
                        _ => {}
                    }
                }
                lf.path = path.ok_or_else(|| anyhow!("--logger file:{}: no logfile=", spec.arg))?;
                lf
            } else {
                log_file(PathBuf::from(&spec.arg), cfg, creds)
            };
            lf.std = false;
            let path = lf.path.clone();
            Output::open_file(lf)
                .with_context(|| format!("cannot open the log file {}", path.display()))?
        }
        "fd" => {
            let n: RawFd = spec
                .arg
                .trim()
                .parse()
                .map_err(|_| anyhow!("--logger fd:{}: not a descriptor number", spec.arg))?;
            Output::adopt(n)
                .with_context(|| format!("--logger fd:{n}"))?
                .0
        }
        "syslog" => {
            let (tag, facility) = match spec.arg.split_once(',') {
                Some((t, f)) => (t, facility(f)),
                None => (spec.arg.as_str(), 3),
            };
            let how = How::Syslog {
                priority: facility * 8 + 6,
            };
            let (mut o, absent) = Output::unix_datagram("/dev/log", how)
                .context("--logger syslog: cannot make a socket for /dev/log")?;
            not_there("syslog", absent);
            o.tag = if tag.is_empty() { "uwsgi" } else { tag }.to_string();
            o
        }
        "socket" => {
            if spec.arg.starts_with('/') || spec.arg.starts_with('@') {
                let (o, absent) = Output::unix_datagram(&spec.arg, How::Send)
                    .with_context(|| format!("--logger socket:{}", spec.arg))?;
                not_there("socket", absent);
                o
            } else {
                udp_output(&spec.arg)?
            }
        }
        _ => return Ok(None),
    };
    out.name = spec.name.clone();
    Ok(Some(out))
}

/// A logger's socket nobody listens on at start: said on stderr as it was
/// given (the terminal, the service manager's journal), since the log
/// itself goes to that logger, where nobody would read it.
fn not_there(logger: &str, absent: Option<String>) {
    if let Some(why) = absent {
        Output::stderr_plain().write(format!("--logger {logger}: {why}\n").as_bytes());
    }
}

/// syslog(3) facility numbers, as uWSGI's syslog plugin names them.
fn facility(name: &str) -> u8 {
    match name.trim() {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "auth" | "security" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        l if l.starts_with("local") => 16 + l[5..].parse::<u8>().unwrap_or(0).min(7),
        _ => 3, // daemon
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_targets_are_host_and_port() {
        assert!(is_udp(Path::new("127.0.0.1:1717")));
        assert!(is_udp(Path::new("loghost:514")));
        assert!(!is_udp(Path::new("/var/log/a:1.log")));
        assert!(!is_udp(Path::new("./a:1")));
        assert!(!is_udp(Path::new("uwsgi.log")));
        assert!(!is_udp(Path::new("a:b")));
    }

    #[test]
    fn syslog_facilities() {
        assert_eq!(facility("local3"), 19);
        assert_eq!(facility("daemon"), 3);
        assert_eq!(facility("user"), 1);
    }
}
