//! What the master can be asked to do, and the names uWSGI gives each
//! request: the master fifo's one-byte commands (uWSGI's core/fifo.c), the
//! functions `hook-* = unix_signal:N FUNCTION` binds to a signal (uWSGI's
//! core/hooks.c looks them up with dlsym), and which signal asks for what.
//!
//! Pure data: the master (`master.rs`) carries the actions out. No I/O.

/// One request to the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGHUP, fifo `r`, `grace_them_all`: load the code anew and replace
    /// the workers one at a time (`--exit-on-reload`: stop instead).
    GracefulReload,
    /// fifo `R`, `reap_them_all`: load the code anew, then replace every
    /// worker at once without waiting for their requests.
    BrutalReload,
    /// fifo `c`, `uwsgi_chain_reload`: the workers one at a time.
    ChainReload,
    /// fifo `w`, `uwsgi_reload_workers`: every worker finishes its
    /// requests and is replaced at once, from the code already loaded.
    ReloadWorkers,
    /// fifo `W`, `uwsgi_brutally_reload_workers`: every worker killed and
    /// replaced at once.
    BrutalReloadWorkers,
    /// SIGTERM, SIGINT, fifo `q`, `gracefully_kill_them_all`: stop once
    /// in-flight requests are done (up to --reload-mercy).
    GracefulStop,
    /// SIGQUIT, fifo `Q`, `kill_them_all`: stop now.
    ImmediateStop,
    /// fifo `C`, `uwsgi_go_cheap`: stop every worker until a connection comes.
    GoCheap,
    /// fifo `+` / `-`: one worker more / fewer in cheaper mode.
    CheaperIncrease,
    CheaperDecrease,
    /// fifo `f`, `uwsgi_refork_master`: start a new master beside this one,
    /// on the same listening sockets.
    Refork,
    /// fifo `l`, `uwsgi_log_reopen`: reopen the log files.
    ReopenLogs,
    /// fifo `L`, `uwsgi_log_rotate`.
    RotateLogs,
    /// fifo `P`, `uwsgi_update_pidfiles`: write the pidfile again.
    UpdatePidfile,
    /// fifo `0`..`9`: read commands from the fifo of that slot from now on.
    FifoSlot(u8),
}

impl Action {
    /// How the log names what was asked.
    pub fn describe(self) -> &'static str {
        match self {
            Action::GracefulReload => "graceful reload",
            Action::BrutalReload => "brutal reload",
            Action::ChainReload => "chain reload",
            Action::ReloadWorkers => "reload of the workers",
            Action::BrutalReloadWorkers => "brutal reload of the workers",
            Action::GracefulStop => "graceful shutdown",
            Action::ImmediateStop => "immediate shutdown",
            Action::GoCheap => "cheap mode",
            Action::CheaperIncrease => "one worker more",
            Action::CheaperDecrease => "one worker fewer",
            Action::Refork => "re-fork of the master",
            Action::ReopenLogs => "log reopening",
            Action::RotateLogs => "log rotation",
            Action::UpdatePidfile => "pidfile update",
            Action::FifoSlot(_) => "fifo slot switch",
        }
    }
}

/// A master fifo command byte (uWSGI's `uwsgi_fifo_table`). Whitespace
/// (`echo r > fifo` sends `r\n`) is no command.
pub fn fifo_command(byte: u8) -> Option<Action> {
    Some(match byte {
        b'0'..=b'9' => Action::FifoSlot(byte - b'0'),
        b'r' => Action::GracefulReload,
        b'R' => Action::BrutalReload,
        b'c' => Action::ChainReload,
        b'w' => Action::ReloadWorkers,
        b'W' => Action::BrutalReloadWorkers,
        b'q' => Action::GracefulStop,
        b'Q' => Action::ImmediateStop,
        b'C' => Action::GoCheap,
        b'+' => Action::CheaperIncrease,
        b'-' => Action::CheaperDecrease,
        b'f' => Action::Refork,
        b'l' => Action::ReopenLogs,
        b'L' => Action::RotateLogs,
        b'P' => Action::UpdatePidfile,
        _ => return None,
    })
}

/// uWSGI's fifo commands uwsgi-rs has no use for (emperor, subscriptions,
/// stats to the log, pause): named in the log rather than silently dropped.
pub fn fifo_command_without_effect(byte: u8) -> Option<&'static str> {
    Some(match byte {
        b'B' => "ask the Emperor for reinforcements (there is no Emperor)",
        b'E' => "Emperor rescan (there is no Emperor)",
        b'S' => "block subscriptions (there are no subscriptions)",
        b's' => "print stats to the log (use --stats)",
        b'p' => "pause the instance (not supported)",
        _ => return None,
    })
}

/// The uWSGI functions `unix_signal:N FUNCTION` can name, and what each
/// does here.
pub const SIGNAL_FUNCTIONS: &[(&str, Action)] = &[
    ("gracefully_kill_them_all", Action::GracefulStop),
    ("kill_them_all", Action::ImmediateStop),
    ("grace_them_all", Action::GracefulReload),
    ("reap_them_all", Action::BrutalReload),
    ("uwsgi_chain_reload", Action::ChainReload),
    ("uwsgi_reload_workers", Action::ReloadWorkers),
    ("uwsgi_brutally_reload_workers", Action::BrutalReloadWorkers),
    ("uwsgi_go_cheap", Action::GoCheap),
    ("uwsgi_refork_master", Action::Refork),
    ("uwsgi_log_reopen", Action::ReopenLogs),
    ("uwsgi_log_rotate", Action::RotateLogs),
    ("uwsgi_update_pidfiles", Action::UpdatePidfile),
];

pub fn signal_function(name: &str) -> Option<Action> {
    SIGNAL_FUNCTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
}

/// Signals the master cannot give away: uncatchable, or its own (it reaps
/// children on SIGCHLD).
pub fn signal_reserved(sig: i32) -> bool {
    matches!(sig, libc::SIGKILL | libc::SIGSTOP | libc::SIGCHLD) || !(1..=64).contains(&sig)
}

/// Which signal asks for what: uwsgi-rs's defaults (README, "Signals"),
/// changed by `unix_signal` hooks.
#[derive(Debug, Clone)]
pub struct SignalActions {
    table: [Option<Action>; 65],
}

impl Default for SignalActions {
    fn default() -> Self {
        let mut table = [None; 65];
        table[libc::SIGHUP as usize] = Some(Action::GracefulReload);
        table[libc::SIGTERM as usize] = Some(Action::GracefulStop);
        table[libc::SIGINT as usize] = Some(Action::GracefulStop);
        table[libc::SIGQUIT as usize] = Some(Action::ImmediateStop);
        table[libc::SIGUSR1 as usize] = Some(Action::ReopenLogs);
        SignalActions { table }
    }
}

impl SignalActions {
    pub fn get(&self, sig: i32) -> Option<Action> {
        self.table.get(sig as usize).copied().flatten()
    }

    /// Bind `sig` to `action`; false for a signal the master cannot give.
    pub fn set(&mut self, sig: i32, action: Action) -> bool {
        if signal_reserved(sig) {
            return false;
        }
        self.table[sig as usize] = Some(action);
        true
    }

    /// Every signal with an action (the master installs its handler).
    pub fn signals(&self) -> impl Iterator<Item = i32> + '_ {
        (1..self.table.len())
            .filter(|&s| self.table[s].is_some())
            .map(|s| s as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_commands_are_uwsgis() {
        assert_eq!(fifo_command(b'r'), Some(Action::GracefulReload));
        assert_eq!(fifo_command(b'R'), Some(Action::BrutalReload));
        assert_eq!(fifo_command(b'q'), Some(Action::GracefulStop));
        assert_eq!(fifo_command(b'Q'), Some(Action::ImmediateStop));
        assert_eq!(fifo_command(b'c'), Some(Action::ChainReload));
        assert_eq!(fifo_command(b'C'), Some(Action::GoCheap));
        assert_eq!(fifo_command(b'w'), Some(Action::ReloadWorkers));
        assert_eq!(fifo_command(b'f'), Some(Action::Refork));
        assert_eq!(fifo_command(b'l'), Some(Action::ReopenLogs));
        assert_eq!(fifo_command(b'0'), Some(Action::FifoSlot(0)));
        assert_eq!(fifo_command(b'9'), Some(Action::FifoSlot(9)));
        assert_eq!(fifo_command(b'\n'), None);
        assert!(fifo_command_without_effect(b's').is_some());
        assert!(fifo_command_without_effect(b'x').is_none());
    }

    #[test]
    fn signal_table_defaults_and_overrides() {
        let mut t = SignalActions::default();
        assert_eq!(t.get(libc::SIGHUP), Some(Action::GracefulReload));
        assert_eq!(t.get(libc::SIGTERM), Some(Action::GracefulStop));
        assert_eq!(t.get(libc::SIGUSR1), Some(Action::ReopenLogs));
        assert_eq!(t.get(libc::SIGUSR2), None);
        assert_eq!(t.get(200), None);
        assert!(t.set(libc::SIGUSR1, Action::ChainReload));
        assert_eq!(t.get(libc::SIGUSR1), Some(Action::ChainReload));
        assert!(!t.set(libc::SIGKILL, Action::GracefulStop));
        assert!(!t.set(libc::SIGCHLD, Action::GracefulStop));
        assert!(!t.set(0, Action::GracefulStop));
        assert!(t.signals().any(|s| s == libc::SIGUSR1));
        assert_eq!(
            signal_function("gracefully_kill_them_all"),
            Some(Action::GracefulStop)
        );
        assert_eq!(signal_function("nope"), None);
    }
}
