//! One log output (stderr, a log file, a logger's file or socket) and how
//! the server's own lines (request lines, the master's and the workers'
//! messages) reach it without the writer ever waiting (issue 12, item 7).
//! The app's own writes to fds 1 and 2 are not among them: those stay
//! blocking on purpose (see the end of this comment).
//!
//! # Why no writer thread
//!
//! A reader that stops reading (`uwsgi-rs ... | slow-consumer`) fills the
//! pipe; a blocking `write(2)` then stops whoever logs: request threads,
//! and the master in the middle of harakiri or shutdown. The fix must keep
//! three properties of one `write(2)` per line: lines from the master and
//! the workers never interleave mid-line (a pipe write of up to PIPE_BUF
//! bytes is atomic), lines appear in the order they happened, and the
//! last line before a crash is not lost. Options weighed:
//!
//! - A writer thread per process with a bounded queue: the hot path only
//!   queues, but every process gains a thread (which `fork` does not copy:
//!   the master forks workers, and under the Python package a Python
//!   process does), a lock or queue and a wake-up per line, and what sits
//!   in the queue dies with the process (a worker killed by harakiri or a
//!   segfault loses exactly the lines that explain it).
//! - `O_NONBLOCK` on fd 2: the flag belongs to the open file description,
//!   which the shell, the consumer's other writers and the app's own
//!   subprocesses share; they would start getting EAGAIN, and the app's
//!   `print()` would raise `BlockingIOError`.
//! - What is done here: every output gets a **private** description or a
//!   per-call flag, and each line is still one system call. A pipe, FIFO
//!   or terminal is reopened through `/proc/self/fd/N` with `O_NONBLOCK`
//!   (a new description of the same pipe: the flag is ours alone); a
//!   socket (systemd's journal stream, for one) is written with
//!   `send(MSG_DONTWAIT)`, a flag of that call only; a regular file never
//!   says EAGAIN and is written as it is. A log file opened by path
//!   (`--logto`) may be a FIFO: it is opened `O_NONBLOCK` (the description
//!   is ours alone) and always read-write, as uWSGI opens every log file,
//!   so the server holds a reader end itself (see `open_log`). Writes are
//!   whole lines of at most PIPE_BUF bytes (a longer block is cut at line
//!   ends; a single longer line is cut, and a cut line whose rest does not
//!   go in is ended by a line end before anything else this output
//!   writes), so on a pipe each either goes in whole or not at all. What
//!   does not go in is dropped and counted in a counter all processes
//!   share ([`super::shared`]); the next write that succeeds, or the
//!   master's tick, logs the count first.
//!
//! Where `/proc` cannot reopen the pipe (not mounted, another user's pipe)
//! the output stays blocking and the start-up report says so.
//!
//! # fds 1 and 2 stay blocking, on purpose
//!
//! The app's own writes to fds 1 and 2 (`print()`, a subprocess's output)
//! keep a blocking description: a non-blocking one would make `print()`
//! raise `BlockingIOError` when the reader is slow, and dropping the app's
//! output is not the server's call. So with a plain pipe, `--logto` or a
//! FIFO, an app that prints still waits when the reader stalls, as under
//! uWSGI; only the server's own lines never wait. With `--log-master` fds 1
//! and 2 go to a pipe the master always drains (`relay`), and then the
//! app's prints never wait either (they are dropped and counted instead).

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use rustix::net::SocketAddrUnix;

use super::fds;
use super::shared;

/// Linux's PIPE_BUF: writes up to this size to a pipe are atomic.
pub const PIPE_BUF: usize = 4096;

/// How bytes reach the descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// `write(2)`: a regular file, `/dev/null`, or our own non-blocking
    /// description of a pipe or terminal.
    Write,
    /// `send(2)` with `MSG_DONTWAIT`: a socket.
    Send,
    /// One datagram per line to the syslog socket: `<PRI>TAG[PID]: line`.
    Syslog { priority: u8 },
}

/// A log file opened by path: it can be reopened (logrotate) and rotated.
#[derive(Debug)]
pub struct LogFile {
    pub path: PathBuf,
    /// Rotate when the file grows past this many bytes (0 = never).
    pub maxsize: u64,
    /// Name of the rotated file (default: PATH.UNIXTIME).
    pub backup: Option<PathBuf>,
    /// Also fds 1 and 2 (`--logto`, `--daemonize`): the app's output
    /// follows the file when it is reopened.
    pub std: bool,
    pub chmod: Option<u32>,
    pub chown: Option<(Option<u32>, Option<u32>)>,
    /// Bytes in the file (kept by the process that rotates: the master).
    size: AtomicU64,
    /// The generation of [`shared::Counters`] this process's fd is from.
    seen: AtomicU64,
    reopening: Mutex<()>,
    /// A worker could not reopen the file: said once.
    reopen_failed: AtomicBool,
}

#[derive(Debug)]
pub struct Output {
    /// Our own descriptor (high, close-on-exec); its number never changes,
    /// a reopen replaces what it points to.
    pub fd: RawFd,
    pub how: How,
    /// A named logger receives only the lines a route sends it.
    pub name: Option<String>,
    pub file: Option<LogFile>,
    /// The syslog tag (`uwsgi` unless the logger names one).
    pub tag: String,
    /// A line was cut by a partial write: the next write ends it first.
    broken: AtomicBool,
    /// A unix datagram target (syslog's /dev/log, `--logger socket:PATH`)
    /// is addressed on every send rather than connected once, as uWSGI's
    /// loggers do: a connected socket stays bound to the receiver it found,
    /// and after the log daemon restarts (a new socket at the same path)
    /// every line would be refused for ever.
    peer: Option<SocketAddrUnix>,
}

/// What an output did with a write.
#[derive(Debug, PartialEq, Eq)]
enum Wrote {
    All,
    /// Nothing or only part went in; the rest is dropped.
    Short,
}

impl Output {
    pub fn new(fd: RawFd, how: How) -> Output {
        Output {
            fd,
            how,
            name: None,
            file: None,
            tag: String::new(),
            broken: AtomicBool::new(false),
            peer: None,
        }
    }

    /// A datagram socket that sends to the unix socket `path` (`@name`:
    /// abstract), `how` (Send or Syslog). Made whether or not anything
    /// listens there now; the second value says why nothing does.
    pub fn unix_datagram(path: &str, how: How) -> std::io::Result<(Output, Option<String>)> {
        let peer = match path.strip_prefix('@') {
            Some(name) => SocketAddrUnix::new_abstract_name(name.as_bytes()),
            None => SocketAddrUnix::new(path),
        }?;
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        let fd = fds::to_high(std::os::fd::IntoRawFd::into_raw_fd(sock))?;
        // Only to tell at start: a probe, so the output itself stays
        // unconnected.
        let absent = std::os::unix::net::UnixDatagram::unbound()
            .and_then(|probe| Ok(rustix::net::connect(&probe, &peer)?))
            .err()
            .map(|e| format!("{path} is not reachable now ({e}): lines are dropped until it is"));
        Ok((
            Output {
                peer: Some(peer),
                ..Output::new(fd, how)
            },
            absent,
        ))
    }

    /// The process's stderr as it was before any setup: for commands that
    /// never set up logging, and for unit tests.
    pub const fn stderr_plain() -> Output {
        Output {
            fd: 2,
            how: How::Write,
            name: None,
            file: None,
            tag: String::new(),
            broken: AtomicBool::new(false),
            peer: None,
        }
    }

    /// Our own non-blocking way to an inherited descriptor (see the module
    /// doc). Returns the output and, when it could only be made blocking,
    /// why.
    pub fn adopt(fd: RawFd) -> std::io::Result<(Output, Option<String>)> {
        let kind = fstat(fd)?.st_mode & libc::S_IFMT;
        // SAFETY: isatty only inspects the descriptor.
        let tty = kind == libc::S_IFCHR && unsafe { libc::isatty(fd) } == 1;
        if kind == libc::S_IFSOCK {
            return Ok((Output::new(fds::dup_high(fd)?, How::Send), None));
        }
        if kind != libc::S_IFIFO && !tty {
            return Ok((Output::new(fds::dup_high(fd)?, How::Write), None));
        }
        let path = CString::new(format!("/proc/self/fd/{fd}")).map_err(std::io::Error::other)?;
        // SAFETY: open with a NUL-terminated path; the result is checked.
        let own = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        };
        if own >= 0 {
            return Ok((Output::new(fds::to_high(own)?, How::Write), None));
        }
        let why = std::io::Error::last_os_error();
        Ok((
            Output::new(fds::dup_high(fd)?, How::Write),
            Some(format!(
                "the log {} cannot be reopened without blocking ({why}): a reader that stops \
                 reading will stop the server; use --logto or --log-master",
                if tty { "terminal" } else { "pipe" }
            )),
        ))
    }

    /// Open a log file by path (append, 0640, close-on-exec, high fd).
    pub fn open_file(file: LogFile) -> std::io::Result<Output> {
        let fd = open_log(&file.path, false)?;
        let out = Output {
            file: Some(file),
            ..Output::new(fd, How::Write)
        };
        if let Some(f) = &out.file {
            f.apply_owner(out.fd);
            f.size.store(file_size(out.fd), Ordering::Relaxed);
            f.seen.store(
                shared::get().generation.load(Ordering::Acquire),
                Ordering::Relaxed,
            );
        }
        Ok(out)
    }

    /// Write whole lines. What cannot be written now is dropped and counted;
    /// returns whether everything went in.
    pub fn write(&self, bytes: &[u8]) -> bool {
        self.write_counted(bytes, true)
    }

    /// As `write`, without counting what is dropped (the drop report itself).
    pub fn try_write(&self, bytes: &[u8]) -> bool {
        self.write_counted(bytes, false)
    }

    fn write_counted(&self, bytes: &[u8], count: bool) -> bool {
        if let Some(f) = &self.file {
            f.follow_reopen(self);
        }
        if let How::Syslog { priority } = self.how {
            return self.syslog(priority, bytes);
        }
        let mut rest = bytes;
        // The last chunk that went in ended mid-line (`chunk_len` cuts a
        // single line longer than PIPE_BUF).
        let mut mid_line = false;
        while !rest.is_empty() {
            let n = chunk_len(rest);
            if self.write_chunk(&rest[..n], mid_line) == Wrote::Short {
                if count {
                    count_dropped(rest);
                }
                return false;
            }
            mid_line = rest[n - 1] != b'\n';
            if let Some(f) = &self.file {
                f.grew(n as u64);
            }
            rest = &rest[n..];
        }
        true
    }

    /// The head of a line went in and its rest did not: whatever is written
    /// next, by this process or another, would be glued to it. End it now
    /// if one byte fits, else mark the output so its next write ends it
    /// first.
    fn end_cut_line(&self) {
        if self.raw(b"\n") != 1 {
            self.broken.store(true, Ordering::Relaxed);
        }
    }

    /// One chunk; `mid_line`: the chunk before it went in and ended
    /// mid-line, so if this one does not go in, that line is left cut.
    fn write_chunk(&self, chunk: &[u8], mid_line: bool) -> Wrote {
        if self.broken.load(Ordering::Relaxed) {
            if self.raw(b"\n") != 1 {
                return Wrote::Short;
            }
            self.broken.store(false, Ordering::Relaxed);
        }
        let mut off = 0;
        // A pipe takes a chunk whole or not at all; a terminal or a stream
        // socket may take part: a few immediate tries for the rest, then
        // the cut line is ended (see `end_cut_line`) and the rest dropped.
        for _ in 0..4 {
            let n = self.raw(&chunk[off..]);
            if n <= 0 {
                break;
            }
            off += n as usize;
            if off == chunk.len() {
                return Wrote::All;
            }
        }
        let cut = if off > 0 {
            chunk[off - 1] != b'\n'
        } else {
            mid_line
        };
        if cut {
            self.end_cut_line();
        }
        Wrote::Short
    }

    /// One non-blocking system call; the byte count or -1.
    fn raw(&self, bytes: &[u8]) -> isize {
        if self.peer.is_some() {
            return self.raw_send(bytes);
        }
        loop {
            // SAFETY: our own descriptor; the pointer and length come from a
            // live slice.
            let n = unsafe {
                match self.how {
                    How::Send => libc::send(
                        self.fd,
                        bytes.as_ptr().cast(),
                        bytes.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    ),
                    _ => libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()),
                }
            };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return n;
        }
    }

    fn syslog(&self, priority: u8, bytes: &[u8]) -> bool {
        let mut ok = true;
        let pid = std::process::id();
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let mut msg = Vec::with_capacity(line.len() + self.tag.len() + 24);
            msg.extend_from_slice(format!("<{priority}>{}[{pid}]: ", self.tag).as_bytes());
            msg.extend_from_slice(line);
            if self.raw_send(&msg) != msg.len() as isize {
                shared::get().dropped.fetch_add(1, Ordering::Relaxed);
                ok = false;
            }
        }
        ok
    }

    fn raw_send(&self, msg: &[u8]) -> isize {
        let Some(peer) = &self.peer else {
            // SAFETY: our own connected socket; live slice.
            return unsafe {
                libc::send(
                    self.fd,
                    msg.as_ptr().cast(),
                    msg.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
        };
        // SAFETY: our own descriptor, open for this output's life.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
        let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
        loop {
            match rustix::net::sendto(fd, msg, flags, peer) {
                Ok(n) => return n as isize,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return -1,
            }
        }
    }

    /// Reopen the file (the master on SIGUSR1, or SIGHUP with --log-reopen);
    /// false when it is not a file. The caller bumps the generation once for
    /// all files (see `Router::reopen`), so the workers follow.
    pub fn reopen(&self) -> std::io::Result<bool> {
        let Some(f) = &self.file else {
            return Ok(false);
        };
        let _g = f.reopening.lock().unwrap_or_else(|e| e.into_inner());
        f.replace(self.fd, false)?;
        f.size.store(file_size(self.fd), Ordering::Relaxed);
        Ok(true)
    }

    /// `--log-maxsize`: rotate when the file grew past it. Run by the one
    /// process that writes the file (the master, with --log-master).
    pub fn rotate_if_due(&self) -> Option<String> {
        let f = self.file.as_ref()?;
        let size = f.size.load(Ordering::Relaxed);
        if f.maxsize == 0 || size <= f.maxsize {
            return None;
        }
        self.rotate()
    }

    /// Rename the file to its backup name (`--log-backupname`, else
    /// `PATH.UNIXTIME`) and start a new one; a line for what failed. A
    /// worker writing the file follows only when the caller bumps the
    /// generation (see `Router::rotate`).
    pub fn rotate(&self) -> Option<String> {
        let f = self.file.as_ref()?;
        let size = f.size.load(Ordering::Relaxed);
        let _g = f.reopening.lock().unwrap_or_else(|e| e.into_inner());
        let to = match &f.backup {
            Some(b) => b.clone(),
            None => free_backup_name(&f.path, super::clock::unix_secs()),
        };
        // Written raw to the old file, as uWSGI does, so the old file says
        // where the log went.
        let note = format!(
            "{} - logsize: {size}, triggering rotation to {}...\n",
            super::clock::ctime_now(),
            to.display()
        );
        self.raw(note.as_bytes());
        if let Err(e) = std::fs::rename(&f.path, &to) {
            f.size.store(0, Ordering::Relaxed); // do not retry on every line
            return Some(format!(
                "cannot rotate the log {} to {}: {e}",
                f.path.display(),
                to.display()
            ));
        }
        match f.replace(self.fd, true) {
            Ok(()) => {
                f.size.store(0, Ordering::Relaxed);
                None
            }
            Err(e) => Some(format!(
                "cannot open the log {} after rotating it: {e}",
                f.path.display()
            )),
        }
    }
}

/// `PATH.UNIXTIME`, uWSGI's rotated name; `PATH.UNIXTIME.N` when a
/// rotation earlier in the same second took it (uWSGI renames over it, and
/// that file's lines are lost).
fn free_backup_name(path: &Path, secs: u64) -> PathBuf {
    let mut base = path.as_os_str().to_os_string();
    base.push(format!(".{secs}"));
    let mut to = PathBuf::from(&base);
    for n in 1..1000 {
        if std::fs::symlink_metadata(&to).is_err() {
            break;
        }
        let mut next = base.clone();
        next.push(format!(".{n}"));
        to = PathBuf::from(next);
    }
    to
}

impl LogFile {
    pub fn new(path: PathBuf) -> LogFile {
        LogFile {
            path,
            maxsize: 0,
            backup: None,
            std: false,
            chmod: None,
            chown: None,
            size: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            reopening: Mutex::new(()),
            reopen_failed: AtomicBool::new(false),
        }
    }

    fn apply_owner(&self, fd: RawFd) {
        // SAFETY: fchmod/fchown on our own descriptor; failures are the
        // filesystem's answer and leave the file as it was.
        unsafe {
            if let Some(mode) = self.chmod {
                libc::fchmod(fd, mode as libc::mode_t);
            }
            if let Some((uid, gid)) = self.chown {
                libc::fchown(
                    fd,
                    uid.unwrap_or(u32::MAX) as libc::uid_t,
                    gid.unwrap_or(u32::MAX) as libc::gid_t,
                );
            }
        }
    }

    /// Open the path anew onto `fd` (and fds 1-2 for a std log).
    fn replace(&self, fd: RawFd, truncate: bool) -> std::io::Result<()> {
        let new = open_log(&self.path, truncate)?;
        self.apply_owner(new);
        // SAFETY: dup3 atomically points our fd at the new file: a thread
        // writing meanwhile writes to the old file or the new one, whole.
        unsafe {
            libc::dup3(new, fd, libc::O_CLOEXEC);
            if self.std {
                point_std_at(new);
            }
            libc::close(new);
        }
        Ok(())
    }

    /// This process's descriptor is of generation `g` (see `follow_reopen`).
    pub fn mark_seen(&self, g: u64) {
        self.seen.store(g, Ordering::Relaxed);
    }

    /// In a worker: the master reopened the log files since this process
    /// opened its descriptor; reopen too (one atomic load per line when not).
    fn follow_reopen(&self, out: &Output) {
        let now = shared::get().generation.load(Ordering::Acquire);
        if now == self.seen.load(Ordering::Relaxed) {
            return;
        }
        let Ok(_g) = self.reopening.try_lock() else {
            return; // another thread of this process is at it
        };
        self.seen.store(now, Ordering::Relaxed);
        let Ok(new) = open_log(&self.path, false) else {
            if !self.reopen_failed.swap(true, Ordering::Relaxed) {
                let e = std::io::Error::last_os_error();
                let msg = format!(
                    "{} - pid {} cannot reopen the log {} ({e}): its lines stay in the old file; \
                     use --logfile-chown or --log-master\n",
                    super::clock::ctime_now(),
                    std::process::id(),
                    self.path.display()
                );
                out.raw(msg.as_bytes());
            }
            return;
        };
        // SAFETY: as in `replace`, without bumping the generation.
        unsafe {
            libc::dup3(new, out.fd, libc::O_CLOEXEC);
            if self.std {
                point_std_at(new);
            }
            libc::close(new);
        }
    }

    fn grew(&self, n: u64) {
        if self.maxsize > 0 {
            self.size.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Open a log file for appending: created 0640 as uWSGI does, close-on-exec,
/// at a high number, and never waiting. The path may name a FIFO (a log
/// shipper's): `O_NONBLOCK` makes the description ours alone non-blocking,
/// so a reader that stops reading costs dropped, counted lines instead of
/// stopping every process that logs (a regular file ignores the flag).
///
/// A FIFO is always opened read-write, as uWSGI opens every log file. With
/// nobody reading yet a non-blocking write-only open fails (ENXIO) and a
/// blocking one waits for a reader forever (the server never started).
/// With a reader there (the usual case: the shipper started first) a
/// write-only open works, but then the server holds no reader end, and
/// when the shipper restarts every line fails with EPIPE (dropped for the
/// whole gap) and the app's `print()` on fds 1-2 raises `BrokenPipeError`.
/// Read-write, the pipe always has a reader: lines wait in it, up to its
/// size, for the next reader to come. (A FIFO we may not read stays
/// write-only.)
fn open_log(path: &Path, truncate: bool) -> std::io::Result<RawFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let flags = libc::O_CREAT
        | libc::O_APPEND
        | libc::O_CLOEXEC
        | libc::O_NOCTTY
        | libc::O_NONBLOCK
        | if truncate { libc::O_TRUNC } else { 0 };
    let open = |access: libc::c_int| {
        // SAFETY: NUL-terminated path; the mode is an int vararg.
        unsafe { libc::open(c.as_ptr(), access | flags, 0o640 as libc::c_uint) }
    };
    // Write-only first: a regular file we may write but not read opens.
    let mut fd = open(libc::O_WRONLY);
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
        fd = open(libc::O_RDWR);
    } else if fd >= 0 && is_fifo(fd) {
        let rw = open(libc::O_RDWR);
        if rw >= 0 {
            // SAFETY: closing the write-only descriptor we just opened.
            unsafe { libc::close(fd) };
            fd = rw;
        }
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    fds::to_high(fd)
}

/// Point fds 1 and 2 (the app's prints) at the log file open on `fd`. They
/// keep a blocking description on purpose (see the module doc): on a FIFO
/// or terminal a non-blocking one would make the app's `print()` raise
/// `BlockingIOError` when the reader is slow, so they get a description of
/// their own, reopened through `/proc/self/fd`, then made blocking. A FIFO
/// is reopened read-write (as in `open_log`): fds 1-2 must not get EPIPE
/// when the reader goes either, and the open never waits for a reader. A
/// regular file has no such state and shares `fd`'s.
pub(super) fn point_std_at(fd: RawFd) {
    let kind = fstat(fd).map(|st| st.st_mode & libc::S_IFMT).ok();
    let path = format!("/proc/self/fd/{fd}\0");
    let open = |access: libc::c_int| {
        // SAFETY: open with a NUL-terminated path; the result is checked.
        unsafe {
            libc::open(
                path.as_ptr().cast(),
                access | libc::O_APPEND | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        }
    };
    let own = match kind {
        Some(libc::S_IFREG) => -1,
        Some(libc::S_IFIFO) => match open(libc::O_RDWR) {
            -1 => open(libc::O_WRONLY),
            rw => rw,
        },
        _ => open(libc::O_WRONLY),
    };
    // SAFETY: fcntl, dup2 and close on descriptors we own; `own` is ours.
    unsafe {
        if own >= 0 {
            let flags = libc::fcntl(own, libc::F_GETFL);
            libc::fcntl(own, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
        let from = if own >= 0 { own } else { fd };
        libc::dup2(from, 1);
        libc::dup2(from, 2);
        if own >= 0 {
            libc::close(own);
        }
    }
}

fn fstat(fd: RawFd) -> std::io::Result<libc::stat> {
    // SAFETY: stat is plain data; fstat fills it for an open fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

fn is_fifo(fd: RawFd) -> bool {
    fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
}

fn file_size(fd: RawFd) -> u64 {
    fstat(fd).map_or(0, |st| st.st_size as u64)
}

/// How much of `bytes` to write at once: everything up to PIPE_BUF, or up
/// to the last line end within PIPE_BUF (a single longer line is cut).
pub fn chunk_len(bytes: &[u8]) -> usize {
    if bytes.len() <= PIPE_BUF {
        return bytes.len();
    }
    match memchr::memrchr(b'\n', &bytes[..PIPE_BUF]) {
        Some(i) => i + 1,
        None => PIPE_BUF,
    }
}

/// Count the lines of `bytes` (a last line without newline counts) as dropped.
pub fn count_dropped(bytes: &[u8]) {
    let mut n = memchr::memchr_iter(b'\n', bytes).count() as u64;
    if bytes.last().is_some_and(|&b| b != b'\n') {
        n += 1;
    }
    shared::get().dropped.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_name_taken_in_the_same_second_gets_a_number() {
        let dir = std::env::temp_dir().join(format!("uwsgi-rs-rot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("app.log");
        assert_eq!(free_backup_name(&log, 7), dir.join("app.log.7"));
        std::fs::write(dir.join("app.log.7"), "x").unwrap();
        assert_eq!(free_backup_name(&log, 7), dir.join("app.log.7.1"));
        std::fs::write(dir.join("app.log.7.1"), "x").unwrap();
        assert_eq!(free_backup_name(&log, 7), dir.join("app.log.7.2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn pipe() -> (RawFd, RawFd) {
        let mut p = [0; 2];
        // SAFETY: pipe2 fills a 2-int array.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        (p[0], p[1])
    }

    fn close_all(fds: &[RawFd]) {
        for &fd in fds {
            // SAFETY: closing a test's own descriptor.
            unsafe { libc::close(fd) };
        }
    }

    fn read_all(fd: RawFd) -> Vec<u8> {
        // SAFETY: make our read end non-blocking, then read what is there.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            // SAFETY: live buffer.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
    }

    #[test]
    fn chunks_end_at_line_ends_within_pipe_buf() {
        let mut b = vec![b'a'; 3000];
        b.push(b'\n');
        b.extend(vec![b'b'; 3000]);
        b.push(b'\n');
        assert_eq!(chunk_len(&b), 3001);
        assert_eq!(chunk_len(&b[3001..]), 3001);
        assert_eq!(chunk_len(&vec![b'x'; 9000]), PIPE_BUF);
        assert_eq!(chunk_len(b"short\n"), 6);
    }

    #[test]
    fn a_full_pipe_drops_whole_lines_and_never_blocks() {
        let (r, w) = pipe();
        let (out, why) = Output::adopt(w).unwrap();
        assert!(why.is_none(), "{why:?}");
        let line = format!("{}\n", "x".repeat(99));
        let t = std::time::Instant::now();
        let mut written = 0;
        for _ in 0..2000 {
            written += out.write(line.as_bytes()) as u64;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        // (The shared drop counter is not checked: other tests report and
        // reset it concurrently; `router` tests the report.)
        assert!(written > 0 && written < 2000, "{written}");
        let got = read_all(r);
        // Only whole lines went in.
        assert_eq!(got.len() as u64, written * 100);
        assert!(got.chunks(100).all(|c| c == line.as_bytes()));
        close_all(&[r, w, out.fd]);
    }

    #[test]
    fn the_private_description_leaves_the_shared_one_blocking() {
        let (r, w) = pipe();
        let (out, _) = Output::adopt(w).unwrap();
        // SAFETY: reading flags of our own descriptors.
        let (shared_fl, own_fl) = unsafe {
            (
                libc::fcntl(w, libc::F_GETFL),
                libc::fcntl(out.fd, libc::F_GETFL),
            )
        };
        assert_eq!(shared_fl & libc::O_NONBLOCK, 0);
        assert_eq!(own_fl & libc::O_NONBLOCK, libc::O_NONBLOCK);
        assert!(out.write(b"one\n"));
        assert_eq!(read_all(r), b"one\n");
        close_all(&[r, w, out.fd]);
    }

    #[test]
    fn a_line_cut_for_lack_of_room_is_ended_before_the_next_one() {
        let (r, w) = pipe();
        // SAFETY: resizing our own test pipe to its minimum (one page).
        let cap = unsafe { libc::fcntl(w, libc::F_SETPIPE_SZ, PIPE_BUF as libc::c_int) };
        assert!(cap >= PIPE_BUF as libc::c_int, "{cap}");
        let (out, _) = Output::adopt(w).unwrap();
        // Longer than the pipe: its first chunks go in, a later one cannot.
        let long = format!("{}\n", "L".repeat(cap as usize + 1000));
        assert!(!out.write(long.as_bytes()));
        let head = read_all(r);
        assert!(!head.is_empty() && head.iter().all(|&b| b == b'L'));
        // The reader drained the pipe: the next line goes in on a line of
        // its own, not glued to the cut one.
        assert!(out.write(b"short\n"));
        assert_eq!(read_all(r), b"\nshort\n");
        close_all(&[r, w, out.fd]);
    }

    #[test]
    fn a_file_is_reopened_and_rotated() {
        let dir = std::env::temp_dir().join(format!("uwsgi-rs-out-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("a.log");
        let mut lf = LogFile::new(path.clone());
        lf.maxsize = 10;
        lf.backup = Some(dir.join("a.log.old"));
        let out = Output::open_file(lf).unwrap();
        assert!(out.write(b"first line\n"));
        std::fs::rename(&path, dir.join("a.log.1")).unwrap();
        assert!(out.write(b"to the renamed file\n"));
        assert!(out.reopen().unwrap());
        assert!(out.write(b"to the new file\n"));
        assert_eq!(
            std::fs::read_to_string(dir.join("a.log.1")).unwrap(),
            "first line\nto the renamed file\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "to the new file\n");
        assert_eq!(out.rotate_if_due(), None);
        assert!(out.write(b"after rotation\n"));
        let old = std::fs::read_to_string(dir.join("a.log.old")).unwrap();
        assert!(old.starts_with("to the new file\n") && old.contains("triggering rotation to"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after rotation\n");
        let _ = std::fs::remove_dir_all(&dir);
        // SAFETY: closing our test fd.
        unsafe { libc::close(out.fd) };
    }
}
