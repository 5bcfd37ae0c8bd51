//! Listening sockets: bind TCP and UNIX listeners in the master, apply the
//! backlog, the TCP socket options (`--reuse-port`, `--so-keepalive`) and
//! socket permissions, and replace stale UNIX socket files.
//!
//! The master binds once; workers inherit the descriptors through `fork`, so
//! a reload never closes a listener and never refuses a connection. Sockets
//! systemd passed (`systemd::take_listen_fds`) are adopted instead of bound:
//! each configured address takes the passed socket bound to it, as uWSGI
//! matches them, and the passed sockets no address names are served too;
//! their files, permissions and socket options stay systemd's (its
//! `ReusePort=`, `KeepAlive=`). This
//! module also owns the one safe way to create a private UNIX socket (used by
//! the tracebacker): it never deletes or follows anything that is not a
//! socket. It must not accept connections or speak any protocol.

use std::io;
use std::net::{TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

use crate::config::{ListenAddr, Protocol};
use crate::systemd::PassedFd;

/// `--listen N` above `net.core.somaxconn`: uWSGI refuses to start
/// (core/socket.c); the kernel would cap every listen queue at somaxconn.
/// uwsgi-rs starts, and the start-up report says so in this line.
pub fn backlog_note(listen: i32) -> Option<String> {
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok()?;
    backlog_over(listen, somaxconn.trim().parse().ok()?)
}

fn backlog_over(listen: i32, somaxconn: i64) -> Option<String> {
    (somaxconn > 0 && i64::from(listen) > somaxconn).then(|| {
        format!(
            "--listen {listen} is above net.core.somaxconn ({somaxconn}): the kernel caps each \
             listen queue at {somaxconn} (uWSGI refuses to start): raise it (sysctl -w \
             net.core.somaxconn={listen}) or lower --listen"
        )
    })
}

/// Socket options of the TCP listeners this server binds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// `--reuse-port`: SO_REUSEPORT, so that another process of the same
    /// user may bind the port too (a second server taking over).
    pub reuse_port: bool,
    /// `--so-keepalive`: SO_KEEPALIVE on the listener, which every accepted
    /// connection inherits (as uWSGI sets it: no call per connection).
    pub keepalive: bool,
    /// `--no-defer-accept`: no TCP_DEFER_ACCEPT, so a connection reaches
    /// accept() before its first bytes (health checks that only connect).
    pub no_defer_accept: bool,
}

pub enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

pub struct Listener {
    pub protocol: Protocol,
    pub socket: Socket,
    /// As the user wrote it, for logs.
    pub name: String,
    /// SERVER_NAME / SERVER_PORT for the environ of requests on it.
    pub server_name: String,
    pub server_port: String,
    /// Passed by systemd, not bound here: its socket file is not ours.
    pub adopted: bool,
}

impl Listener {
    /// The protocol as logs and the stats document name it.
    pub fn proto_name(&self) -> &'static str {
        match self.protocol {
            Protocol::Http => "http",
            Protocol::Uwsgi => "uwsgi",
        }
    }

    pub fn fd(&self) -> RawFd {
        match &self.socket {
            Socket::Tcp(l) => l.as_raw_fd(),
            Socket::Unix(l, _) => l.as_raw_fd(),
        }
    }

    pub fn is_unix(&self) -> bool {
        matches!(self.socket, Socket::Unix(..))
    }

    /// Connections waiting in the accept queue (TCP only; 0 otherwise).
    pub fn queue_len(&self) -> u32 {
        let Socket::Tcp(l) = &self.socket else {
            return 0;
        };
        // SAFETY: tcp_info is plain data; getsockopt fills at most `len`.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: live locals of the right size on our listening fd.
        let rc = unsafe {
            libc::getsockopt(
                l.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            info.tcpi_unacked // for a listener: the current accept queue length
        } else {
            0
        }
    }

    /// The socket file of a UNIX listener this server created.
    pub fn path(&self) -> Option<PathBuf> {
        match &self.socket {
            Socket::Unix(_, path) if !self.adopted => Some(path.clone()),
            _ => None,
        }
    }

    /// Remove the socket file of a UNIX listener (on shutdown); never one
    /// systemd passed (its next activation needs it).
    pub fn remove_file(&self) {
        if let Some(path) = self.path() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Bind every configured listener, or fail naming the address (and remove
/// the socket files of those already bound: a failed start leaves none).
/// An address a `passed` socket is bound to takes that socket instead; the
/// passed sockets no address names follow, with `default_proto` (or the
/// protocol their systemd name says: `http`, `uwsgi`).
pub fn bind_all(
    addrs: &[(Protocol, ListenAddr)],
    backlog: i32,
    chmod: Option<u32>,
    tcp: TcpOptions,
    passed: Vec<PassedFd>,
    default_proto: Protocol,
) -> Result<Vec<Listener>> {
    let mut passed: Vec<(PassedFd, Local)> = passed
        .into_iter()
        .map(|p| {
            let local = local_addr(&p.fd)?;
            Ok((p, local))
        })
        .collect::<Result<_>>()?;
    let mut bound: Vec<Listener> = Vec::with_capacity(addrs.len() + passed.len());
    for (proto, addr) in addrs {
        let taken = passed
            .iter()
            .position(|(_, local)| local.is(addr))
            .map(|i| passed.remove(i));
        let made = match taken {
            Some((p, local)) => adopt(*proto, p, &local, Some(addr.to_string())),
            None => bind_one(*proto, addr, backlog, chmod, tcp),
        };
        match made {
            Ok(l) => bound.push(l),
            Err(e) => {
                bound.iter().for_each(Listener::remove_file);
                return Err(e);
            }
        }
    }
    for (p, local) in passed {
        let proto = match p.name.as_deref() {
            Some("http" | "http-socket" | "http11-socket") => Protocol::Http,
            Some("uwsgi" | "uwsgi-socket") => Protocol::Uwsgi,
            _ => default_proto,
        };
        match adopt(proto, p, &local, None) {
            Ok(l) => bound.push(l),
            Err(e) => {
                bound.iter().for_each(Listener::remove_file);
                return Err(e);
            }
        }
    }
    Ok(bound)
}

/// Where a passed socket is bound.
#[derive(Debug, Clone, PartialEq)]
enum Local {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
    Abstract(Vec<u8>),
}

impl Local {
    /// Whether a configured address names this socket: the same path (or
    /// `@name`), or a host that resolves to its address, with its port.
    fn is(&self, addr: &ListenAddr) -> bool {
        match (self, addr) {
            (Local::Unix(p), ListenAddr::Unix(want)) => p == want,
            (Local::Abstract(n), ListenAddr::Unix(want)) => {
                want.as_os_str().as_encoded_bytes().strip_prefix(b"@") == Some(n.as_slice())
            }
            (Local::Tcp(sa), ListenAddr::Tcp { host, port }) => {
                sa.port() == *port
                    && (host.as_str(), *port)
                        .to_socket_addrs()
                        .is_ok_and(|mut all| all.any(|a| a.ip() == sa.ip()))
            }
            _ => false,
        }
    }

    /// As uWSGI names it: `:PORT` for any IPv4 address, `[::]:PORT`, a path.
    fn name(&self) -> String {
        match self {
            Local::Tcp(sa) if sa.ip().is_unspecified() && sa.is_ipv4() => format!(":{}", sa.port()),
            Local::Tcp(sa) => sa.to_string(),
            Local::Unix(p) => p.display().to_string(),
            Local::Abstract(n) => format!("@{}", String::from_utf8_lossy(n)),
        }
    }
}

fn local_addr(fd: &OwnedFd) -> Result<Local> {
    use rustix::net::{sockopt, SocketAddrUnix, SocketType};
    let raw = fd.as_raw_fd();
    let what = |e: rustix::io::Errno| anyhow!("socket activation: fd {raw}: {e}");
    if sockopt::socket_type(fd).map_err(what)? != SocketType::STREAM
        || !sockopt::socket_acceptconn(fd).map_err(what)?
    {
        return Err(anyhow!(
            "socket activation: fd {raw} is not a listening stream socket \
             (use ListenStream= and Accept=no in the .socket unit)"
        ));
    }
    let any = rustix::net::getsockname(fd).map_err(what)?;
    if let Ok(sa) = std::net::SocketAddr::try_from(any.clone()) {
        return Ok(Local::Tcp(sa));
    }
    let un = SocketAddrUnix::try_from(any)
        .map_err(|_| anyhow!("socket activation: fd {raw} is neither TCP nor UNIX"))?;
    if let Some(name) = un.abstract_name() {
        return Ok(Local::Abstract(name.to_vec()));
    }
    match un.path_bytes() {
        Some(p) => Ok(Local::Unix(PathBuf::from(std::ffi::OsStr::from_bytes(p)))),
        None => Err(anyhow!(
            "socket activation: fd {raw} is an unnamed UNIX socket"
        )),
    }
}

/// A passed socket as a listener (not re-listened: systemd's `Backlog=`
/// stays; made non-blocking, which the workers need).
fn adopt(
    protocol: Protocol,
    p: PassedFd,
    local: &Local,
    configured: Option<String>,
) -> Result<Listener> {
    let raw = p.fd.as_raw_fd();
    set_nonblocking(raw).with_context(|| format!("socket activation: fd {raw}"))?;
    let name = configured.unwrap_or_else(|| local.name());
    let (socket, server_name, server_port) = match local {
        Local::Tcp(sa) => (
            Socket::Tcp(TcpListener::from(p.fd)),
            sa.ip().to_string(),
            sa.port().to_string(),
        ),
        Local::Unix(path) => (
            Socket::Unix(UnixListener::from(p.fd), path.clone()),
            path.display().to_string(),
            String::new(),
        ),
        Local::Abstract(_) => (
            Socket::Unix(UnixListener::from(p.fd), PathBuf::from(local.name())),
            local.name(),
            String::new(),
        ),
    };
    crate::log::line(&format!(
        "uwsgi-rs socket {name} ({}) inherited from systemd (fd {raw}{})",
        match protocol {
            Protocol::Http => "http",
            Protocol::Uwsgi => "uwsgi",
        },
        p.name.map(|n| format!(", name {n}")).unwrap_or_default()
    ));
    Ok(Listener {
        protocol,
        socket,
        name,
        server_name,
        server_port,
        adopted: true,
    })
}

/// `--chown-socket`: give the UNIX sockets to `uid` (and `gid`); on a
/// failure every socket file is removed (a failed start leaves none).
pub fn chown_unix(listeners: &[Listener], uid: u32, gid: Option<u32>) -> Result<()> {
    for path in listeners.iter().filter_map(Listener::path) {
        if let Err(e) = std::os::unix::fs::chown(&path, Some(uid), gid) {
            listeners.iter().for_each(Listener::remove_file);
            return Err(e)
                .with_context(|| format!("--chown-socket: cannot chown {}", path.display()));
        }
    }
    Ok(())
}

fn bind_one(
    protocol: Protocol,
    addr: &ListenAddr,
    backlog: i32,
    chmod: Option<u32>,
    tcp: TcpOptions,
) -> Result<Listener> {
    let name = addr.to_string();
    let (socket, server_name, server_port) = match addr {
        ListenAddr::Tcp { host, port } => {
            let sa = (host.as_str(), *port)
                .to_socket_addrs()
                .with_context(|| format!("cannot resolve {name}"))?
                .next()
                .ok_or_else(|| anyhow!("cannot resolve {name}"))?;
            let l = bind_tcp(sa, tcp).map_err(|e| anyhow!("cannot bind {name}: {e}"))?;
            if !tcp.no_defer_accept {
                // Hand connections to accept() only once their first bytes
                // are in (or after a second): a worker then takes a
                // connection only when it can serve it at once.
                let secs: libc::c_int = 1;
                // SAFETY: setsockopt on our socket with a live int.
                unsafe {
                    libc::setsockopt(
                        l.as_raw_fd(),
                        libc::IPPROTO_TCP,
                        libc::TCP_DEFER_ACCEPT,
                        (&secs as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
            }
            let port = l.local_addr().map(|a| a.port()).unwrap_or(*port);
            (Socket::Tcp(l), host.clone(), port.to_string())
        }
        ListenAddr::Unix(path) => {
            let l = bind_unix(path, None)
                .map_err(|e| anyhow!("cannot bind {}: {e:#}", path.display()))?;
            if let Some(mode) = chmod {
                if let Err(e) =
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                {
                    let _ = std::fs::remove_file(path);
                    return Err(e).with_context(|| format!("cannot chmod {}", path.display()));
                }
            }
            (
                Socket::Unix(l, path.clone()),
                path.display().to_string(),
                String::new(),
            )
        }
    };
    let listener = Listener {
        protocol,
        socket,
        name,
        server_name,
        server_port,
        adopted: false,
    };
    let ready = (|| {
        // SAFETY: a valid listening fd; re-listening only changes the backlog.
        if unsafe { libc::listen(listener.fd(), backlog.max(1)) } != 0 {
            return Err(anyhow!(
                "cannot listen on {}: {}",
                listener.name,
                io::Error::last_os_error()
            ));
        }
        set_nonblocking(listener.fd())?;
        Ok(())
    })();
    if let Err(e) = ready {
        listener.remove_file();
        return Err(e);
    }
    Ok(listener)
}

/// A TCP socket bound to `sa` and listening (its backlog is set again by
/// the caller), with SO_REUSEADDR as std's `TcpListener::bind` sets it (a
/// restart binds while old connections linger in TIME_WAIT) and the
/// options asked for, which must be set before `bind`.
fn bind_tcp(sa: std::net::SocketAddr, tcp: TcpOptions) -> io::Result<TcpListener> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
    let family = if sa.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if tcp.reuse_port {
        sockopt::set_socket_reuseport(&fd, true)?;
    }
    if tcp.keepalive {
        sockopt::set_socket_keepalive(&fd, true)?;
    }
    rustix::net::bind(&fd, &sa)?;
    rustix::net::listen(&fd, 128)?;
    Ok(TcpListener::from(fd))
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a caller-owned fd with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Why a UNIX socket path could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum UnixPathError {
    #[error("{0} exists and is not a socket: refusing to replace it")]
    NotASocket(PathBuf),
    #[error("{0} is in use by a running server")]
    InUse(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Bind a UNIX socket at `path`. A stale socket (nobody accepting) is
/// replaced; a live one or anything that is not a socket is left alone and
/// reported. With `private_mode`, the socket is created with that mode from
/// the start (umask) so there is no window in which others can connect.
pub fn bind_unix(path: &Path, private_mode: Option<u32>) -> Result<UnixListener, UnixPathError> {
    let io_err = |source| UnixPathError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(UnixPathError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io_err)?;
        }
        Ok(_) => return Err(UnixPathError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let listener = match private_mode {
        Some(mode) => {
            // SAFETY: umask is process-wide; callers create private sockets
            // before starting threads that create files, or accept that a
            // concurrent file creation gets a stricter mode for a moment.
            let old = unsafe { libc::umask(!mode & 0o777) };
            let r = UnixListener::bind(path);
            // SAFETY: restores the previous mask.
            unsafe { libc::umask(old) };
            r
        }
        None => UnixListener::bind(path),
    }
    .map_err(io_err)?;
    Ok(listener)
}

/// The uid of the process at the other end of a UNIX stream (SO_PEERCRED).
pub fn peer_uid(socket: impl std::os::fd::AsFd) -> io::Result<u32> {
    Ok(rustix::net::sockopt::socket_peercred(socket)?.uid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "uwsgi-rs-listen-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// money-to-prisoners' `no-defer-accept = 1`: the TCP listener is bound
    /// without TCP_DEFER_ACCEPT; by default it has it.
    #[test]
    fn no_defer_accept_leaves_tcp_defer_accept_unset() {
        let deferred = |no_defer_accept| {
            let addr = ListenAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 0,
            };
            let tcp = TcpOptions {
                no_defer_accept,
                ..TcpOptions::default()
            };
            let l = bind_one(Protocol::Http, &addr, 16, None, tcp).unwrap();
            let mut v: libc::c_int = -1;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt on our listener into a live int.
            let rc = unsafe {
                libc::getsockopt(
                    l.fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_DEFER_ACCEPT,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            assert_eq!(rc, 0);
            v
        };
        assert!(deferred(false) > 0);
        assert_eq!(deferred(true), 0);
    }

    /// CAPEv2's `listen = 2056` on a host whose somaxconn is 1024: named
    /// with what to change; at or under the limit, nothing to say.
    #[test]
    fn backlog_above_somaxconn_is_reported() {
        let note = backlog_over(2056, 1024).unwrap();
        assert!(note.starts_with("--listen 2056 is above net.core.somaxconn (1024)"));
        assert!(note.contains("sysctl -w net.core.somaxconn=2056"));
        assert_eq!(backlog_over(1024, 1024), None);
        assert_eq!(backlog_over(100, 4096), None);
        assert_eq!(backlog_over(5000, 0), None);
    }

    #[test]
    fn tcp_options_are_set_on_the_listener_and_inherited_by_connections() {
        use rustix::net::sockopt;
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        let plain = bind_tcp(any, TcpOptions::default()).unwrap();
        assert!(!sockopt::socket_reuseport(&plain).unwrap());
        assert!(!sockopt::socket_keepalive(&plain).unwrap());
        let both = TcpOptions {
            reuse_port: true,
            keepalive: true,
            no_defer_accept: false,
        };
        let l = bind_tcp(any, both).unwrap();
        assert!(sockopt::socket_reuseaddr(&l).unwrap());
        assert!(sockopt::socket_reuseport(&l).unwrap());
        // A second socket with SO_REUSEPORT binds the same port.
        let twin = bind_tcp(l.local_addr().unwrap(), both).unwrap();
        assert!(bind_tcp(plain.local_addr().unwrap(), both).is_err());
        drop(twin);
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (conn, _) = l.accept().unwrap();
        assert!(sockopt::socket_keepalive(&conn).unwrap());
    }

    #[test]
    fn stale_socket_is_replaced_and_regular_file_kept() {
        let dir = tmp("stale");
        let sock = dir.join("s");
        drop(bind_unix(&sock, Some(0o600)).unwrap()); // leaves a stale file
        let l = bind_unix(&sock, Some(0o600)).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            bind_unix(&sock, None),
            Err(UnixPathError::InUse(_))
        ));
        drop(l);
        let file = dir.join("f");
        std::fs::write(&file, b"keep me").unwrap();
        assert!(matches!(
            bind_unix(&file, None),
            Err(UnixPathError::NotASocket(_))
        ));
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
