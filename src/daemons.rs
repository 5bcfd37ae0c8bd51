//! Attached daemons (`attach-daemon`, `attach-control-daemon`,
//! `smart-attach-daemon[2]`, `attach-daemon2`): commands the master starts
//! beside the workers and keeps running, as uWSGI's core/daemons.c does.
//!
//! - A plain daemon is the master's child: restarted when it exits (with
//!   uWSGI's throttle when it keeps dying within 3 s, as a delay here, not
//!   a sleep in the child), stopped on a reload (and started again) and at
//!   shutdown (its stop signal to its process group, SIGKILL after the
//!   reload mercy), and killed by the kernel if the master dies. A control
//!   daemon's death stops the server.
//! - A smart daemon is governed by its pidfile: adopted at start when the
//!   pidfile names a live process, restarted when it no longer does, and
//!   left running across reloads and after the master exits (`notifypid=1`
//!   signals it on both). With `smart-attach-daemon2` (`daemonize=1`) the
//!   master writes the pidfile for a command that cannot.
//!
//! Commands are forked and exec'd through /bin/sh (`spawn`), never through
//! Python, with the server's `--uid`/`--gid`. Nothing here blocks: the
//! master reaps the children in its loop and calls [`Daemons::reaped`], and
//! [`Daemons::check`] on every tick.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::Daemon;
use crate::log;
use crate::privileges::Credentials;
use crate::spawn;
use crate::touch::TouchFiles;

/// Respawns closer than this to the previous spawn are throttled (uWSGI's).
const QUICK_RESPAWN: Duration = Duration::from_secs(3);
/// Pidfiles and touch files are looked at once a second.
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub struct Daemons {
    list: Vec<Attached>,
    credentials: Credentials,
    /// How long a stopping daemon gets before SIGKILL.
    mercy: Duration,
    last_check: Option<Instant>,
}

struct Attached {
    spec: Daemon,
    /// The process the master started (0: none running).
    child: i32,
    /// Smart daemons: the pid the pidfile names, once seen alive.
    pid: i32,
    /// Smart daemons: the pidfile named a live process once since the spawn.
    monitored: bool,
    /// Smart daemons: the started process exited (it daemonized).
    daemonized: bool,
    pidfile_checks: u32,
    respawns: u32,
    last_spawn: Option<Instant>,
    respawn_at: Option<Instant>,
    /// Being stopped: SIGKILL at this time; start again once gone.
    stopping: Option<(Instant, bool)>,
    /// A stopped daemon whose command has exited but whose process group
    /// still has members (the script /bin/sh forked, still running its
    /// TERM trap): it counts as stopped, and is started again, only once
    /// the group is empty, so an old and a new instance never overlap.
    lingering: Option<Lingering>,
    /// False once the server stops: never started again.
    registered: bool,
    touched: TouchFiles,
}

struct Lingering {
    group: i32,
    /// SIGKILL the group at this time; after `killed`, stop waiting.
    deadline: Instant,
    killed: bool,
}

/// After SIGKILL, how long a group may take to go before it is given up
/// on (a member in uninterruptible sleep must not block the master).
const AFTER_KILL: Duration = Duration::from_secs(1);

/// What the death of a child meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Reaped {
    /// Not a daemon's process.
    NotOurs,
    Handled,
    /// A control daemon died: the server stops.
    ControlDied,
}

impl Daemons {
    pub fn new(specs: &[Daemon], credentials: Credentials, mercy: Duration) -> Daemons {
        Daemons {
            list: specs
                .iter()
                .map(|spec| Attached {
                    touched: TouchFiles::new(&spec.touch),
                    spec: spec.clone(),
                    child: 0,
                    pid: 0,
                    monitored: false,
                    daemonized: false,
                    pidfile_checks: 0,
                    respawns: 0,
                    last_spawn: None,
                    respawn_at: None,
                    stopping: None,
                    lingering: None,
                    registered: true,
                })
                .collect(),
            credentials,
            mercy,
            last_check: None,
        }
    }

    /// Start them all (a smart daemon whose pidfile names a live process is
    /// adopted instead).
    pub fn start_all(&mut self) {
        let creds = self.credentials;
        for d in &mut self.list {
            if let Some(pid) = d.spec.pidfile.as_ref().and_then(live_pid) {
                d.pid = pid;
                d.monitored = true;
                log::line(&format!(
                    "[uwsgi-daemons] found valid/active pidfile for \"{}\" (pid: {pid})",
                    d.spec.command
                ));
                continue;
            }
            d.spawn(creds);
        }
    }

    /// On every tick: start what is due, look at pidfiles and touch files,
    /// SIGKILL what did not stop in time.
    pub fn check(&mut self, now: Instant) {
        let creds = self.credentials;
        for d in &mut self.list {
            if let Some((kill_at, _)) = d.stopping {
                if now >= kill_at && d.child > 0 {
                    log::line(&format!(
                        "[uwsgi-daemons] daemon did not die in time, killing (pid: {}): {}",
                        d.child, d.spec.command
                    ));
                    signal_group(d.child, libc::SIGKILL);
                    d.stopping = Some((
                        now + Duration::from_secs(3600),
                        d.stopping.is_some_and(|s| s.1),
                    ));
                }
            }
            if let Some(l) = &mut d.lingering {
                if group_is_empty(l.group) {
                    d.lingering = None;
                } else if now >= l.deadline && !l.killed {
                    log::line(&format!(
                        "[uwsgi-daemons] what \"{}\" started did not die in time, killing its group ({})",
                        d.spec.command, l.group
                    ));
                    signal_group(l.group, libc::SIGKILL);
                    l.killed = true;
                    l.deadline = now + AFTER_KILL;
                } else if now >= l.deadline {
                    d.lingering = None;
                }
            }
            if d.registered
                && d.child == 0
                && d.lingering.is_none()
                && d.respawn_at.is_some_and(|t| now >= t)
            {
                d.respawn_at = None;
                d.spawn(creds);
            }
        }
        if self
            .last_check
            .is_some_and(|t| now.duration_since(t) < CHECK_EVERY)
        {
            return;
        }
        self.last_check = Some(now);
        let mercy = self.mercy;
        for d in &mut self.list {
            if !d.registered || d.stopping.is_some() {
                continue;
            }
            if d.touched.touched().is_some() {
                log::line(&format!(
                    "[uwsgi-daemons] \"{}\" touched: restarting it",
                    d.spec.command
                ));
                d.stop(d.spec.stop_signal, mercy, true);
                continue;
            }
            if d.spec.pidfile.is_some() {
                d.check_pidfile();
            }
        }
    }

    /// A child the master reaped.
    pub fn reaped(&mut self, pid: i32, status: i32) -> Reaped {
        let mercy = self.mercy;
        let Some(d) = self.list.iter_mut().find(|d| d.child == pid && pid > 0) else {
            return Reaped::NotOurs;
        };
        d.child = 0;
        let stopping = d.stopping.take();
        let restart = stopping.map(|(_, restart)| restart);
        if let (Some((deadline, _)), None) = (stopping, &d.spec.pidfile) {
            // Stopped by us: the command's own children (a shell's script)
            // may still be finishing; wait for the group (the daemon's own
            // session, so its pgid is its pid).
            if !group_is_empty(pid) {
                d.lingering = Some(Lingering {
                    group: pid,
                    // (re-armed far ahead once the command was SIGKILLed)
                    deadline: deadline.min(Instant::now() + mercy),
                    killed: false,
                });
            }
        }
        if d.spec.pidfile.is_some() {
            // A smart daemon's command exits when it daemonizes; its
            // pidfile tells whether it lives on (check_pidfile).
            d.daemonized = true;
            if restart == Some(true) && d.registered {
                d.monitored = true; // the pidfile check restarts it
            }
            return Reaped::Handled;
        }
        log::line(&format!(
            "[uwsgi-daemons] \"{}\" (pid: {pid}) exited ({})",
            d.spec.command,
            describe(status)
        ));
        match restart {
            Some(true) if d.registered => {
                d.respawn_at = Some(Instant::now());
                Reaped::Handled
            }
            Some(_) => Reaped::Handled,
            None if !d.registered => Reaped::Handled,
            None if d.spec.control => {
                log::line(&format!(
                    "control daemon \"{}\" (pid: {pid}) died: shutting down",
                    d.spec.command
                ));
                Reaped::ControlDied
            }
            None => {
                d.respawn_at = Some(Instant::now() + d.throttle());
                Reaped::Handled
            }
        }
    }

    /// A reload of the server (SIGHUP, fifo r/R): plain daemons are stopped
    /// and started again, as with uWSGI's reload; smart ones are left
    /// running (signalled with `notifypid=1`).
    pub fn reload(&mut self) {
        let mercy = self.mercy;
        for d in &mut self.list {
            let sig = d.spec.reload_signal.unwrap_or(d.spec.stop_signal);
            if d.spec.pidfile.is_none() {
                d.stop(sig, mercy, true);
            } else if d.spec.notifypid && d.pid > 0 {
                signal_group(d.pid, d.spec.reload_signal.unwrap_or(libc::SIGHUP));
            }
        }
    }

    /// The server stops: plain daemons are stopped for good; smart ones
    /// stay (signalled with `notifypid=1`).
    pub fn stop_all(&mut self) {
        let mercy = self.mercy;
        for d in &mut self.list {
            d.registered = false;
            d.respawn_at = None;
            if d.spec.pidfile.is_none() {
                d.stop(d.spec.stop_signal, mercy, false);
            } else if d.spec.notifypid && d.pid > 0 {
                signal_group(d.pid, d.spec.stop_signal);
            }
        }
    }

    /// Whether every plain daemon has exited (after [`Daemons::stop_all`]).
    pub fn all_stopped(&self) -> bool {
        self.list
            .iter()
            .all(|d| (d.child == 0 && d.lingering.is_none()) || d.spec.pidfile.is_some())
    }

    /// Immediate shutdown: SIGKILL what is left of the plain daemons.
    /// Returns their pids, for the caller to reap.
    pub fn kill_all(&mut self) -> Vec<i32> {
        let mut pids = Vec::new();
        for d in &mut self.list {
            d.registered = false;
            if d.child > 0 && d.spec.pidfile.is_none() {
                signal_group(d.child, libc::SIGKILL);
                pids.push(d.child);
            }
            if let Some(l) = d.lingering.take() {
                signal_group(l.group, libc::SIGKILL);
            }
        }
        pids
    }
}

impl Attached {
    fn spawn(&mut self, master_creds: Credentials) {
        let Some(mut cmd) = spawn::Command::shell(&self.spec.command) else {
            log::line(&format!(
                "[uwsgi-daemons] \"{}\": NUL in the command",
                self.spec.command
            ));
            self.registered = false;
            return;
        };
        // A plain daemon dies with the master; a smart one outlives it.
        cmd.die_with_parent = self.spec.pidfile.is_none();
        cmd.keep_stdin = self.spec.honour_stdin;
        cmd.chdir = self
            .spec
            .chdir
            .as_ref()
            .and_then(|d| std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).ok());
        cmd.credentials = Credentials {
            uid: self.spec.uid.or(master_creds.uid),
            gid: self.spec.gid.or(master_creds.gid),
        };
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        log::line(&format!(
            "[uwsgi-daemons] {}spawning \"{}\" (uid: {} gid: {})",
            if self.respawns > 0 { "re" } else { "" },
            self.spec.command,
            cmd.credentials.uid.unwrap_or(uid),
            cmd.credentials.gid.unwrap_or(gid)
        ));
        match cmd.spawn() {
            Ok(pid) => {
                self.child = pid;
                self.respawns += 1;
                self.last_spawn = Some(Instant::now());
                self.monitored = false;
                self.daemonized = false;
                self.pidfile_checks = 0;
                if let (true, Some(pidfile)) = (self.spec.daemonize, &self.spec.pidfile) {
                    self.pid = pid;
                    if let Err(e) = std::fs::write(pidfile, format!("{pid}\n")) {
                        log::line(&format!(
                            "[uwsgi-daemons] cannot write {}: {e}",
                            pidfile.display()
                        ));
                    }
                }
            }
            Err(e) => {
                log::line(&format!(
                    "[uwsgi-daemons] cannot start \"{}\": {e}",
                    self.spec.command
                ));
                self.respawn_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    /// uWSGI's throttle: a daemon respawned within 3 s of its last start
    /// waits (respawns - seconds since then), at least 1 s, at most
    /// `max_throttle` (default 300 s).
    fn throttle(&self) -> Duration {
        let Some(last) = self.last_spawn else {
            return Duration::ZERO;
        };
        let since = last.elapsed();
        if since > QUICK_RESPAWN {
            return Duration::ZERO;
        }
        let secs = (self.respawns as i64 - since.as_secs() as i64).max(1) as u64;
        let secs = secs.min(self.spec.max_throttle.unwrap_or(300));
        log::line(&format!(
            "[uwsgi-daemons] throttling \"{}\" for {secs} seconds",
            self.spec.command
        ));
        Duration::from_secs(secs)
    }

    fn stop(&mut self, sig: i32, mercy: Duration, restart: bool) {
        if self.child > 0 {
            log::line(&format!(
                "[uwsgi-daemons] stopping daemon (pid: {}): {}",
                self.child, self.spec.command
            ));
            signal_group(self.child, sig);
            self.stopping = Some((Instant::now() + mercy, restart));
        } else if self.spec.pidfile.is_some() && self.pid > 0 {
            // A smart daemon (touched): the pidfile check restarts it.
            signal_group(self.pid, sig);
            self.monitored = true;
        } else if restart {
            self.respawn_at = Some(Instant::now());
        }
    }

    /// uWSGI's smart check: restart when the pidfile no longer names a
    /// live process (at once if it did before; after `freq` checks if the
    /// command has not written it yet).
    fn check_pidfile(&mut self) {
        let Some(pidfile) = &self.spec.pidfile else {
            return;
        };
        match live_pid(pidfile) {
            Some(pid) if pid == self.pid => self.monitored = true,
            Some(pid) => {
                log::line(&format!(
                    "[uwsgi-daemons] found changed pid for \"{}\" (old_pid: {} new_pid: {pid})",
                    self.spec.command, self.pid
                ));
                self.pid = pid;
                self.monitored = true;
            }
            None if self.child > 0 && !self.monitored && !self.daemonized => {
                self.pidfile_checks += 1;
                if self.pidfile_checks >= self.spec.freq.max(1) {
                    log::stamped(&format!(
                        "[uwsgi-daemons] \"{}\" (pid: {}) did not daemonize !!!",
                        self.spec.command, self.child
                    ));
                    self.pidfile_checks = 0;
                }
            }
            None if (self.monitored || self.daemonized)
                && self.child == 0
                && self.respawn_at.is_none() =>
            {
                self.pid = 0;
                self.respawn_at = Some(Instant::now() + self.throttle());
            }
            None => {}
        }
    }
}

/// The pid a pidfile names, if that process exists.
fn live_pid(path: &PathBuf) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: i32 = text.trim().parse().ok().filter(|p| *p > 0)?;
    // SAFETY: kill with signal 0 only checks existence.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    // A zombie (a reaped-later child of ours) is not alive.
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false);
    (alive && !zombie).then_some(pid)
}

/// Whether no process is left in a process group. The master is a
/// subreaper, so a member orphaned by the command's exit is reaped by the
/// master (and leaves the group) as soon as it dies.
fn group_is_empty(group: i32) -> bool {
    // SAFETY: kill with signal 0 only checks existence.
    let found = unsafe { libc::kill(-group, 0) } == 0;
    !found && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// To the daemon's process group (it has its own session), or to the
/// process alone if that fails.
fn signal_group(pid: i32, sig: i32) {
    // SAFETY: kill on a process group / pid we started or were told about.
    unsafe {
        if libc::kill(-pid, sig) != 0 {
            libc::kill(pid, sig);
        }
    }
}

fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else {
        format!("killed by signal {}", libc::WTERMSIG(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reap(pid: i32) -> i32 {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        status
    }

    #[test]
    fn plain_daemon_restarts_and_stops() {
        let mut ds = Daemons::new(
            &[Daemon::new("sleep 30")],
            Credentials::default(),
            Duration::from_secs(5),
        );
        ds.start_all();
        let first = ds.list[0].child;
        assert!(first > 0);
        signal_group(first, libc::SIGKILL);
        assert_eq!(ds.reaped(first, reap(first)), Reaped::Handled);
        assert_eq!(ds.reaped(first, 0), Reaped::NotOurs);
        // Died within 3 s of its start: throttled 1 s, then started again.
        assert!(ds.list[0].respawn_at.is_some());
        ds.check(Instant::now());
        assert_eq!(ds.list[0].child, 0);
        ds.check(Instant::now() + Duration::from_millis(1100));
        let second = ds.list[0].child;
        assert!(second > 0 && second != first);
        ds.stop_all();
        assert!(!ds.all_stopped());
        assert_eq!(ds.reaped(second, reap(second)), Reaped::Handled);
        assert!(ds.all_stopped());
        ds.check(Instant::now() + Duration::from_secs(10));
        assert_eq!(ds.list[0].child, 0);
    }

    #[test]
    fn a_stopped_daemon_is_started_again_only_once_its_group_is_gone() {
        // "; true" keeps /bin/sh from exec'ing the inner shell: the command
        // exits at once on TERM while the inner shell runs its slow trap.
        let cmd = "sh -c 'trap \"sleep 0.4; exit 0\" TERM; while :; do sleep 0.05; done'; true";
        let mut ds = Daemons::new(
            &[Daemon::new(cmd)],
            Credentials::default(),
            Duration::from_secs(5),
        );
        ds.start_all();
        let first = ds.list[0].child;
        // As the master is: the inner shell, orphaned, becomes our child.
        // SAFETY: prctl on this process only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
        std::thread::sleep(Duration::from_millis(300)); // the trap is set
        ds.reload();
        assert_eq!(ds.reaped(first, reap(first)), Reaped::Handled);
        assert!(
            ds.list[0].lingering.is_some(),
            "the inner shell is still there"
        );
        ds.check(Instant::now());
        assert_eq!(ds.list[0].child, 0, "not started while the old group lives");
        // Reap what the group leaves, as the master's loop does.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !group_is_empty(first) && Instant::now() < deadline {
            let mut status = 0;
            // SAFETY: reaping members of the daemon's group (or nothing).
            unsafe { libc::waitpid(-first, &mut status, libc::WNOHANG) };
            std::thread::sleep(Duration::from_millis(20));
        }
        ds.check(Instant::now());
        let second = ds.list[0].child;
        assert!(second > 0 && second != first, "started again once gone");
        assert!(ds.kill_all().contains(&second));
        reap(second);
    }

    #[test]
    fn control_daemon_death_stops_the_server() {
        let mut d = Daemon::new("exit 0");
        d.control = true;
        let mut ds = Daemons::new(&[d], Credentials::default(), Duration::from_secs(5));
        ds.start_all();
        let pid = ds.list[0].child;
        assert_eq!(ds.reaped(pid, reap(pid)), Reaped::ControlDied);
    }

    #[test]
    fn smart_daemon_is_adopted_from_a_live_pidfile() {
        let dir = std::env::temp_dir().join(format!("uwsgi-rs-daemons-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("p");
        std::fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
        let mut d = Daemon::new("exit 1");
        d.pidfile = Some(pidfile.clone());
        let mut ds = Daemons::new(&[d], Credentials::default(), Duration::from_secs(5));
        ds.start_all();
        assert_eq!(ds.list[0].child, 0);
        assert_eq!(ds.list[0].pid, std::process::id() as i32);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
