//! systemd's two protocols, spoken without libsystemd:
//!
//! - readiness (`sd_notify`, systemd.service `Type=notify`): when
//!   `NOTIFY_SOCKET` is set, the master sends `READY=1` (with `MAINPID` and
//!   a `STATUS=` line) once its workers accept, `RELOADING=1` (with
//!   `MONOTONIC_USEC`, as `Type=notify-reload` wants) when a reload starts
//!   and `READY=1` again when it is done, `STOPPING=1` when it stops, and
//!   `WATCHDOG=1` every half `WATCHDOG_USEC` when systemd asks for it. The
//!   address may be a path or an abstract name (`@...`). One datagram per
//!   message, never blocking: a systemd that does not read costs nothing.
//! - socket activation (`sd_listen_fds`, systemd.socket): the listening
//!   sockets passed as fds 3.. (`LISTEN_FDS`, for `LISTEN_PID`, named by
//!   `LISTEN_FDNAMES`) are taken here; `listen` matches them to the
//!   configured addresses.
//!
//! The variables are removed from the environment once read, so nothing
//! the server starts (workers, daemons, the app's subprocesses) takes them
//! for its own. This module does no policy: the master decides when to say
//! what.

use std::ffi::OsString;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketType};

use crate::log;

/// The environment variables this module consumes.
pub const ENV_VARS: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// The sd_notify channel to the service manager.
pub struct Notifier {
    fd: OwnedFd,
    addr: SocketAddrUnix,
    /// Where it goes, for log lines.
    name: String,
    /// `WATCHDOG_USEC / 2`, when systemd wants keep-alives from us.
    watchdog_every: Option<Duration>,
    watchdog_last: Option<Instant>,
    /// One failure line per run of failures, not one per message.
    failing: bool,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (then removed from the environment); None when
    /// it is unset or unusable (said once in the log).
    pub fn from_env() -> Option<Notifier> {
        let value = take_env("NOTIFY_SOCKET")?;
        let watchdog_every = watchdog_interval(
            take_env("WATCHDOG_USEC"),
            take_env("WATCHDOG_PID"),
            std::process::id(),
        );
        let bytes = value.as_encoded_bytes();
        let addr = match bytes.first() {
            Some(b'/') => SocketAddrUnix::new(bytes),
            Some(b'@') => SocketAddrUnix::new_abstract_name(&bytes[1..]),
            _ => {
                log::line(&format!(
                    "NOTIFY_SOCKET={} is not a UNIX socket path or @name: not notifying systemd",
                    log::escape(bytes)
                ));
                return None;
            }
        };
        let made = addr.and_then(|addr| {
            let fd = rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::DGRAM,
                rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
                None,
            )?;
            Ok((fd, addr))
        });
        match made {
            Ok((fd, addr)) => Some(Notifier {
                fd,
                addr,
                name: String::from_utf8_lossy(bytes).into_owned(),
                watchdog_every,
                watchdog_last: None,
                failing: false,
            }),
            Err(e) => {
                log::line(&format!(
                    "NOTIFY_SOCKET={}: {e}: not notifying systemd",
                    log::escape(bytes)
                ));
                None
            }
        }
    }

    /// Send one message (`KEY=value` lines).
    pub fn send(&mut self, message: &str) {
        let sent = rustix::net::sendto(
            self.fd.as_fd(),
            message.as_bytes(),
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            &self.addr,
        );
        match sent {
            Ok(_) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                log::line(&format!(
                    "cannot notify systemd at {}: {e}",
                    log::escape(self.name.as_bytes())
                ));
            }
            Err(_) => {}
        }
    }

    /// The service is up (again).
    pub fn ready(&mut self, status: &str) {
        self.send(&format!(
            "READY=1\nSTATUS={}\nMAINPID={}\n",
            one_line(status),
            std::process::id()
        ));
    }

    /// A reload started; `ready` says when it is over.
    pub fn reloading(&mut self, status: &str) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS={}\n",
            monotonic_usec(),
            one_line(status)
        ));
    }

    pub fn stopping(&mut self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}\n", one_line(status)));
    }

    /// Call on every tick: keeps systemd's watchdog fed when it has one.
    pub fn tick(&mut self, now: Instant) {
        let Some(every) = self.watchdog_every else {
            return;
        };
        let due = match self.watchdog_last {
            Some(t) => now.duration_since(t) >= every,
            None => true,
        };
        if due {
            self.watchdog_last = Some(now);
            self.send("WATCHDOG=1\n");
        }
    }
}

/// Half of `WATCHDOG_USEC` (what sd_watchdog_enabled advises), when it is
/// meant for this process.
fn watchdog_interval(usec: Option<OsString>, pid: Option<OsString>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.to_str()?.parse::<u32>().ok()? != me {
            return None;
        }
    }
    let usec: u64 = usec?.to_str()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn monotonic_usec() -> u128 {
    // SAFETY: timespec is plain data; clock_gettime fills it.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u128 * 1_000_000 + t.tv_nsec as u128 / 1000
}

fn take_env(name: &str) -> Option<OsString> {
    let v = std::env::var_os(name)?;
    std::env::remove_var(name);
    Some(v)
}

/// A listening socket systemd passed.
#[derive(Debug)]
pub struct PassedFd {
    pub fd: OwnedFd,
    /// Its `FileDescriptorName=` (LISTEN_FDNAMES), if systemd gave names.
    pub name: Option<String>,
}

/// Why passed sockets cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("LISTEN_FDS={0:?} is not a number")]
    BadCount(String),
    #[error("socket activation: fd {fd} (LISTEN_FDS) is not open: {source}")]
    NotOpen { fd: RawFd, source: std::io::Error },
}

/// The first passed fd (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// Take the sockets systemd passed to this process (none when `LISTEN_PID`
/// names another process, as `sd_listen_fds` does). They are made
/// close-on-exec; the variables are removed from the environment.
pub fn take_listen_fds() -> Result<Vec<PassedFd>, ActivationError> {
    let Some(pid) = std::env::var_os("LISTEN_PID") else {
        return Ok(Vec::new());
    };
    if pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        return Ok(Vec::new());
    }
    let count = take_env("LISTEN_FDS").unwrap_or_default();
    let names = take_env("LISTEN_FDNAMES");
    std::env::remove_var("LISTEN_PID");
    let count_str = count.to_string_lossy().into_owned();
    let n: RawFd = count_str
        .trim()
        .parse()
        .map_err(|_| ActivationError::BadCount(count_str.clone()))?;
    let names: Vec<String> = names
        .map(|n| n.to_string_lossy().split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, fd) in (FIRST_FD..FIRST_FD.saturating_add(n.max(0))).enumerate() {
        // SAFETY: fcntl on a descriptor number; fails cleanly if not open.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(ActivationError::NotOpen {
                fd,
                source: std::io::Error::last_os_error(),
            });
        }
        out.push(PassedFd {
            // SAFETY: systemd handed this open descriptor to this process
            // (LISTEN_PID is ours) and nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            name: names.get(i).filter(|n| !n.is_empty()).cloned(),
        });
    }
    Ok(out)
}

/// Whether `LISTEN_FDS` passes sockets to this very process (the config
/// then needs no listener of its own).
pub fn activation_pending(env_pid: Option<&str>, env_fds: Option<&str>) -> bool {
    env_pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(std::process::id())
        && env_fds
            .and_then(|n| n.trim().parse::<u32>().ok())
            .is_some_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_and_only_for_us() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            watchdog_interval(s("2000000"), None, 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_interval(s("2000000"), s("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_interval(s("2000000"), s("8"), 7), None);
        assert_eq!(watchdog_interval(s("0"), None, 7), None);
        assert_eq!(watchdog_interval(s("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn activation_only_for_this_pid() {
        let me = std::process::id().to_string();
        assert!(activation_pending(Some(&me), Some("2")));
        assert!(!activation_pending(Some(&me), Some("0")));
        assert!(!activation_pending(Some("1"), Some("2")));
        assert!(!activation_pending(None, Some("2")));
    }

    #[test]
    fn one_datagram_per_message_to_an_abstract_address() {
        let name = format!("uwsgi-rs-notify-test-{}", std::process::id());
        let addr = SocketAddrUnix::new_abstract_name(name.as_bytes()).unwrap();
        let rx = rustix::net::socket(AddressFamily::UNIX, SocketType::DGRAM, None).unwrap();
        rustix::net::bind(&rx, &addr).unwrap();
        std::env::set_var("NOTIFY_SOCKET", format!("@{name}"));
        let mut n = Notifier::from_env().unwrap();
        assert!(std::env::var_os("NOTIFY_SOCKET").is_none());
        n.ready("up\nnow");
        let mut buf = [0u8; 512];
        let (got, _) =
            rustix::net::recv(&rx, &mut buf[..], rustix::net::RecvFlags::empty()).unwrap();
        let msg = std::str::from_utf8(&buf[..got]).unwrap();
        assert!(msg.starts_with("READY=1\nSTATUS=up now\nMAINPID="), "{msg}");
    }
}
