//! uWSGI's hooks (`hook-PHASE = ACTION:ARGS`, `exec-PHASE = COMMAND`): the
//! actions of uWSGI's core/hooks.c, run at the phase they name.
//!
//! Where each phase runs: `asap` and `as-root` in the master before it binds
//! or forks anything, `master-start` in the master once its loop starts;
//! `pre-app` and `post-app` around the app's import (in the loader, or in
//! each worker with `--lazy-apps`); `as-user` where privileges are dropped
//! (the loader, or each worker; in the master when there is no `--uid` or
//! `--gid`); `post-fork` and the `accepting` family in each worker. As in
//! uWSGI, a failing hook is fatal to the process that runs it (`safeexec:`
//! only logs), so a failing `pre-app` stops the server at first start.
//!
//! Phases other than `master-start` may block (nothing is served yet by the
//! process that runs them): [`run`]. The master's loop must never block, so
//! `master-start` is a [`Sequence`] that starts a command and carries on
//! when the master reaps it, one hook after the other, in order.
//!
//! Control code: no Python here. A `putenv:` in a process that runs Python
//! is mirrored into `os.environ` by the caller ([`putenv_pairs`]).

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::actions::SignalActions;
use crate::config::{Config, Hook, HookAction, HookPhase};
use crate::log;
use crate::privileges::Credentials;
use crate::spawn;

/// How long the `wait_for_*` actions wait (uWSGI's `--wait-for-fs-timeout`
/// default).
const WAIT_FOR_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a phase stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// A hook failed: the process that ran it must not go on.
    #[error("hook \"{hook}\" ({phase}) failed: {why}")]
    Failed {
        hook: String,
        phase: &'static str,
        why: String,
    },
    /// `exit:[CODE]`.
    #[error("hook exit:{0} ({1})")]
    Exit(i32, &'static str),
}

/// What a hook needs from the process running it.
pub struct Ctx<'a> {
    /// Commands (`exec:`) run with these (the master's children drop to
    /// `--uid`/`--gid` as uWSGI's master would have).
    pub credentials: Credentials,
    /// The master's signal table, for `unix_signal:` (None elsewhere).
    pub signals: Option<&'a mut SignalActions>,
}

/// The hooks of `phase`, in the order given.
pub fn of(cfg: &Config, phase: HookPhase) -> impl Iterator<Item = &Hook> {
    cfg.lifecycle
        .hooks
        .iter()
        .filter(move |(p, _)| *p == phase)
        .map(|(_, h)| h)
}

/// The `NAME=VALUE` pairs of the `putenv:` hooks of these phases.
pub fn putenv_pairs(cfg: &Config, phases: &[HookPhase]) -> Vec<(String, String)> {
    cfg.lifecycle
        .hooks
        .iter()
        .filter(|(p, h)| phases.contains(p) && h.action == HookAction::Putenv)
        .filter_map(|(_, h)| h.arg.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Run every hook of `phase` in this process, in order, waiting for each.
/// Stops at the first failure. Blocks: not for the master's loop.
pub fn run(cfg: &Config, phase: HookPhase, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
    for hook in of(cfg, phase) {
        announce(hook, phase);
        let outcome = match start(hook, phase, ctx) {
            Started::Done(r) => r,
            Started::Child(pid) => {
                let status = wait_child(pid);
                finish_exec(hook, phase, status)
            }
            Started::Wait(mut w) => loop {
                if let Some(r) = w.poll(hook, phase) {
                    break r;
                }
                std::thread::sleep(Duration::from_millis(100));
            },
        };
        outcome?;
    }
    Ok(())
}

/// Run the hooks of `phase` as `--uid`/`--gid` (uWSGI's `as-user`, which
/// its master runs once after dropping root): in this process when there
/// are none to drop to, else in a child that drops them first. Blocks.
pub fn run_as_user(cfg: &Config, phase: HookPhase, creds: Credentials) -> Result<(), Failure> {
    if of(cfg, phase).next().is_none() {
        return Ok(());
    }
    let mut ctx = Ctx {
        credentials: Credentials::default(),
        signals: None,
    };
    if creds.uid.is_none() && creds.gid.is_none() {
        return run(cfg, phase, &mut ctx);
    }
    // SAFETY: the master is single-threaded when this runs (before it forks
    // anything): the child may run Rust code; it never touches Python and
    // fork_child leaves it with _exit.
    let forked = unsafe {
        spawn::fork_child(|| match crate::privileges::drop_to(creds) {
            Err(e) => {
                log::line(&format!("hooks ({}): {e:#}", phase.label()));
                1
            }
            Ok(()) => match run(cfg, phase, &mut ctx) {
                Ok(()) => 0,
                Err(Failure::Exit(code, _)) => code,
                Err(f) => {
                    log::line(&f.to_string());
                    1
                }
            },
        })
    };
    let pid = forked.map_err(|e| Failure::Failed {
        hook: "(all)".into(),
        phase: phase.label(),
        why: format!("cannot fork: {e}"),
    })?;
    match spawn::exit_code(wait_child(pid)) {
        0 => Ok(()),
        code => Err(Failure::Exit(code, phase.label())),
    }
}

/// The master's `master-start` hooks, run without blocking its loop: a
/// command is started and the next hook runs once the master has reaped it
/// ([`Sequence::reaped`]); a `wait_for_*` is looked at on every tick.
pub struct Sequence {
    phase: HookPhase,
    left: VecDeque<Hook>,
    waiting: Option<(Hook, Waiting)>,
}

enum Waiting {
    Child(i32),
    Condition(Wait),
}

/// Where a sequence is.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// A hook is still running; call again on the next tick or reap.
    Running,
    Done,
    Stopped(Failure),
}

impl Sequence {
    pub fn new(cfg: &Config, phase: HookPhase) -> Sequence {
        Sequence {
            phase,
            left: of(cfg, phase).cloned().collect(),
            waiting: None,
        }
    }

    /// Run what can run now.
    pub fn advance(&mut self, ctx: &mut Ctx<'_>) -> Progress {
        if let Some((hook, Waiting::Condition(w))) = &mut self.waiting {
            match w.poll(hook, self.phase) {
                None => return Progress::Running,
                Some(Err(f)) => return Progress::Stopped(f),
                Some(Ok(())) => self.waiting = None,
            }
        }
        if self.waiting.is_some() {
            return Progress::Running;
        }
        while let Some(hook) = self.left.pop_front() {
            announce(&hook, self.phase);
            match start(&hook, self.phase, ctx) {
                Started::Done(Ok(())) => {}
                Started::Done(Err(f)) => return Progress::Stopped(f),
                Started::Child(pid) => {
                    self.waiting = Some((hook, Waiting::Child(pid)));
                    return Progress::Running;
                }
                Started::Wait(w) => {
                    self.waiting = Some((hook, Waiting::Condition(w)));
                    return self.advance(ctx);
                }
            }
        }
        Progress::Done
    }

    /// A child the master reaped: true if it was this sequence's command
    /// (then call [`Sequence::advance`]); a failed command stops it.
    pub fn reaped(&mut self, pid: i32, status: i32) -> Option<Result<(), Failure>> {
        match &self.waiting {
            Some((hook, Waiting::Child(p))) if *p == pid => {
                let r = finish_exec(hook, self.phase, status);
                self.waiting = None;
                Some(r)
            }
            _ => None,
        }
    }
}

fn announce(hook: &Hook, phase: HookPhase) {
    if hook.private {
        log::line(&format!(
            "running --- PRIVATE HOOK --- ({})...",
            phase.label()
        ));
    } else {
        log::line(&format!(
            "running \"{}:{}\" ({})...",
            hook.action.name(),
            hook.arg,
            phase.label()
        ));
    }
}

enum Started {
    Done(Result<(), Failure>),
    /// An `exec:`/`safeexec:` command running as this pid.
    Child(i32),
    Wait(Wait),
}

/// A `wait_for_*` or `spinningfifo` condition.
struct Wait {
    until: Instant,
    check: fn(&str) -> io::Result<bool>,
    arg: String,
}

impl Wait {
    /// None while the condition is false and time is left.
    fn poll(&mut self, hook: &Hook, phase: HookPhase) -> Option<Result<(), Failure>> {
        match (self.check)(&self.arg) {
            Ok(true) => Some(Ok(())),
            Err(e) => Some(Err(failed(hook, phase, e.to_string()))),
            Ok(false) if Instant::now() >= self.until => Some(Err(failed(
                hook,
                phase,
                format!("not there after {} s", WAIT_FOR_TIMEOUT.as_secs()),
            ))),
            Ok(false) => None,
        }
    }
}

fn failed(hook: &Hook, phase: HookPhase, why: impl Into<String>) -> Failure {
    Failure::Failed {
        hook: if hook.private {
            format!("{}:...", hook.action.name())
        } else {
            format!("{}:{}", hook.action.name(), hook.arg)
        },
        phase: phase.label(),
        why: why.into(),
    }
}

fn finish_exec(hook: &Hook, phase: HookPhase, status: i32) -> Result<(), Failure> {
    let code = spawn::exit_code(status);
    if code == 0 {
        return Ok(());
    }
    log::line(&format!(
        "command \"{}\" exited with non-zero code: {code}",
        if hook.private {
            "..."
        } else {
            hook.arg.as_str()
        }
    ));
    if hook.action == HookAction::SafeExec {
        return Ok(());
    }
    Err(failed(hook, phase, format!("exit code {code}")))
}

fn wait_child(pid: i32) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: waiting for a child this process started.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return status;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return 127 << 8;
        }
    }
}

/// `FILE TEXT` -> (FILE, TEXT).
fn file_and_text<'a>(
    hook: &Hook,
    phase: HookPhase,
    arg: &'a str,
) -> Result<(&'a str, &'a str), Failure> {
    arg.split_once(' ').ok_or_else(|| {
        failed(
            hook,
            phase,
            format!("must be: {}:<file> <string>", hook.action.name()),
        )
    })
}

fn start(hook: &Hook, phase: HookPhase, ctx: &mut Ctx<'_>) -> Started {
    let arg = hook.arg.as_str();
    let io = |r: io::Result<()>| Started::Done(r.map_err(|e| failed(hook, phase, e.to_string())));
    let done = |r: Result<(), Failure>| Started::Done(r);
    match hook.action {
        HookAction::Exec | HookAction::SafeExec => {
            let Some(mut cmd) = spawn::Command::shell(arg) else {
                return done(Err(failed(hook, phase, "NUL in the command")));
            };
            // uWSGI's uwsgi_run_command_and_wait: the command dies with us.
            cmd.new_session = false;
            cmd.die_with_parent = true;
            cmd.keep_stdin = true;
            cmd.credentials = ctx.credentials;
            match cmd.spawn() {
                Ok(pid) => Started::Child(pid),
                Err(e) => done(Err(failed(hook, phase, format!("cannot start: {e}")))),
            }
        }
        HookAction::Print => {
            log::line(arg);
            done(Ok(()))
        }
        HookAction::Write | HookAction::Writen | HookAction::Append | HookAction::Appendn => {
            let (file, text) = match (hook.action, arg.split_once(' ')) {
                (_, Some((f, t))) => (f, t),
                // `appendn:FILE` alone appends a newline.
                (HookAction::Appendn, None) => (arg, ""),
                _ => return done(file_and_text(hook, phase, arg).map(|_| ())),
            };
            let append = matches!(hook.action, HookAction::Append | HookAction::Appendn);
            let newline = matches!(hook.action, HookAction::Writen | HookAction::Appendn);
            io(write_file(file, text, append, newline))
        }
        HookAction::WriteFifo => match file_and_text(hook, phase, arg) {
            Ok((fifo, text)) => match write_fifo(fifo, text) {
                Ok(true) => done(Ok(())),
                Ok(false) => {
                    log::line(&format!("writefifo: nobody reads {fifo}: nothing written"));
                    done(Ok(()))
                }
                Err(e) => io(Err(e)),
            },
            Err(f) => done(Err(f)),
        },
        HookAction::SpinningFifo => match file_and_text(hook, phase, arg) {
            Ok(_) => {
                log::line(&format!(
                    "waiting for {} ...",
                    arg.split(' ').next().unwrap_or("")
                ));
                Started::Wait(Wait {
                    until: Instant::now() + WAIT_FOR_TIMEOUT,
                    check: |arg| {
                        let (fifo, text) = arg.split_once(' ').unwrap_or((arg, ""));
                        write_fifo(fifo, text)
                    },
                    arg: arg.to_string(),
                })
            }
            Err(f) => done(Err(f)),
        },
        HookAction::Create => io(write_file(arg, "", false, false)),
        HookAction::Unlink => io(std::fs::remove_file(arg)),
        HookAction::Mkdir => io(std::fs::create_dir(arg)),
        HookAction::Chdir => io(std::env::set_current_dir(arg)),
        HookAction::Putenv => match arg.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                std::env::set_var(k, v);
                done(Ok(()))
            }
            _ => done(Err(failed(hook, phase, "must be: putenv:NAME=VALUE"))),
        },
        HookAction::Chmod => match file_and_text(hook, phase, arg) {
            Ok((file, mode)) => match u32::from_str_radix(mode.trim(), 8) {
                Ok(m) if m <= 0o7777 => {
                    use std::os::unix::fs::PermissionsExt;
                    io(std::fs::set_permissions(
                        file,
                        std::fs::Permissions::from_mode(m),
                    ))
                }
                _ => done(Err(failed(hook, phase, format!("invalid mode {mode}")))),
            },
            Err(f) => done(Err(f)),
        },
        HookAction::Sticky => {
            use std::os::unix::fs::PermissionsExt;
            io(std::fs::metadata(arg).and_then(|m| {
                std::fs::set_permissions(
                    arg,
                    std::fs::Permissions::from_mode(m.permissions().mode() | 0o1000),
                )
            }))
        }
        HookAction::Chown | HookAction::Chown2 => {
            let parts: Vec<&str> = arg.split(' ').collect();
            let [file, user, group] = parts[..] else {
                return done(Err(failed(
                    hook,
                    phase,
                    format!("must be: {}:<file> <uid> <gid>", hook.action.name()),
                )));
            };
            let ids = if hook.action == HookAction::Chown2 {
                match (user.parse::<u32>(), group.parse::<u32>()) {
                    (Ok(u), Ok(g)) => Ok((u, Some(g))),
                    _ => Err("uid and gid must be numbers".to_string()),
                }
            } else {
                crate::privileges::resolve_owner(user, Some(group)).map_err(|e| e.to_string())
            };
            match ids {
                Ok((u, g)) => io(std::os::unix::fs::chown(file, Some(u), g)),
                Err(e) => done(Err(failed(hook, phase, e))),
            }
        }
        HookAction::Exit => done(Err(Failure::Exit(
            arg.trim().parse().unwrap_or(0),
            phase.label(),
        ))),
        HookAction::UnixSignal => {
            // Validated with the config: "N FUNCTION", a function we know.
            let bound = arg
                .trim()
                .split_once(char::is_whitespace)
                .and_then(|(n, f)| {
                    Some((
                        n.parse::<i32>().ok()?,
                        crate::actions::signal_function(f.trim())?,
                    ))
                });
            let set = match (bound, ctx.signals.as_deref_mut()) {
                (Some((sig, action)), Some(table)) => table.set(sig, action),
                _ => false,
            };
            if set {
                done(Ok(()))
            } else {
                done(Err(failed(
                    hook,
                    phase,
                    "unix_signal:SIGNAL FUNCTION, in a master hook",
                )))
            }
        }
        HookAction::WaitForFile | HookAction::WaitForDir | HookAction::WaitForFs => {
            let check: fn(&str) -> io::Result<bool> = match hook.action {
                HookAction::WaitForFile => |p| Ok(Path::new(p).is_file()),
                HookAction::WaitForDir => |p| Ok(Path::new(p).is_dir()),
                _ => |p| Ok(Path::new(p).exists()),
            };
            Started::Wait(Wait {
                until: Instant::now() + WAIT_FOR_TIMEOUT,
                check,
                arg: arg.to_string(),
            })
        }
        HookAction::WaitForSocket => Started::Wait(Wait {
            until: Instant::now() + WAIT_FOR_TIMEOUT,
            check: |a| Ok(socket_accepts(a)),
            arg: arg.to_string(),
        }),
    }
}

fn write_file(path: &str, text: &str, append: bool, newline: bool) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .open(path)?;
    let mut data = text.as_bytes().to_vec();
    if newline {
        data.push(b'\n');
    }
    f.write_all(&data)
}

/// Write to a fifo without waiting for a reader: Ok(false) when there is
/// none (ENXIO), as uWSGI's writefifo treats it.
fn write_fifo(path: &str, text: &str) -> io::Result<bool> {
    let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: open on a NUL-terminated path; the fd is closed below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENXIO) | Some(libc::ENODEV) | Some(libc::ENOENT) => Ok(false),
            _ => Err(e),
        };
    }
    // SAFETY: write of a live buffer to our fd, then close it.
    let n = unsafe {
        let n = libc::write(fd, text.as_ptr().cast(), text.len());
        libc::close(fd);
        n
    };
    if n != text.len() as isize {
        return Err(io::Error::other("short write"));
    }
    Ok(true)
}

/// Whether something accepts connections at a UNIX path or `host:port`.
fn socket_accepts(addr: &str) -> bool {
    if addr.contains('/') || !addr.contains(':') {
        return std::os::unix::net::UnixStream::connect(addr).is_ok();
    }
    let addr = addr.strip_prefix(':').map(|p| format!("127.0.0.1:{p}"));
    let addr = addr.as_deref().unwrap_or_default();
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs().is_ok_and(|mut all| {
        all.any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Command;

    fn cfg(args: &[&str]) -> Config {
        let mut all = vec!["--http-socket", ":0"];
        all.extend_from_slice(args);
        let args: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        match crate::config::parse_with(&args, &Default::default(), &crate::config::Host::current())
        {
            Ok(Command::Serve(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("uwsgi-rs-hooks-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn ctx() -> Ctx<'static> {
        Ctx {
            credentials: Credentials::default(),
            signals: None,
        }
    }

    #[test]
    fn blocking_phase_runs_in_order_and_stops_at_a_failure() {
        let d = tmp("order");
        let f = d.join("f");
        let f = f.display();
        let c = cfg(&[
            "--hook-pre-app",
            &format!("write:{f} a"),
            "--hook-pre-app",
            &format!("appendn:{f} b"),
            "--exec-pre-app",
            &format!("echo c >> {f}"),
            "--hook-pre-app",
            "safeexec:exit 3",
            "--hook-pre-app",
            "exec:exit 4",
            "--hook-pre-app",
            &format!("append:{f} never"),
        ]);
        let r = run(&c, HookPhase::PreApp, &mut ctx());
        assert!(
            matches!(r, Err(Failure::Failed { ref why, .. }) if why == "exit code 4"),
            "{r:?}"
        );
        assert_eq!(std::fs::read_to_string(d.join("f")).unwrap(), "ab\nc\n");
        assert_eq!(run(&c, HookPhase::PostApp, &mut ctx()), Ok(()));
        let c = cfg(&["--hook-post-fork", "exit:7"]);
        assert_eq!(
            run(&c, HookPhase::PostFork, &mut ctx()),
            Err(Failure::Exit(7, "post-fork"))
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn sequence_waits_for_commands_without_blocking() {
        let d = tmp("seq");
        let f = d.join("f");
        let c = cfg(&[
            "--hook-master-start",
            "exec:sleep 0.2",
            "--hook-master-start",
            &format!("write:{} done", f.display()),
            "--hook-master-start",
            "unix_signal:10 grace_them_all",
        ]);
        let mut signals = SignalActions::default();
        let mut s = Sequence::new(&c, HookPhase::MasterStart);
        let mut cx = Ctx {
            credentials: Credentials::default(),
            signals: Some(&mut signals),
        };
        assert_eq!(s.advance(&mut cx), Progress::Running);
        assert!(!f.exists());
        assert_eq!(s.advance(&mut cx), Progress::Running);
        let pid = match &s.waiting {
            Some((_, Waiting::Child(p))) => *p,
            _ => panic!("no child"),
        };
        let status = wait_child(pid);
        assert_eq!(s.reaped(pid + 100000, status), None);
        assert_eq!(s.reaped(pid, status), Some(Ok(())));
        assert_eq!(s.advance(&mut cx), Progress::Done);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "done");
        assert_eq!(
            signals.get(10),
            Some(crate::actions::Action::GracefulReload)
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn writefifo_without_reader_is_not_an_error() {
        let d = tmp("fifo");
        let p = d.join("nobody");
        let c = CString::new(p.display().to_string()).unwrap();
        // SAFETY: mkfifo on a live path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            write_fifo(&p.display().to_string(), "q"),
            Ok(false)
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn putenv_pairs_of_phases() {
        let c = cfg(&[
            "--hook-asap",
            "putenv:A=1=2",
            "--hook-pre-app",
            "putenv:B=3",
        ]);
        assert_eq!(
            putenv_pairs(&c, &[HookPhase::Asap]),
            [("A".to_string(), "1=2".to_string())]
        );
    }
}
