//! One log output (stderr, a log file, a logger's file or socket) and how
//! a line reaches it without the writer ever waiting (issue 12, item 7).
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
//!   is ours alone), read-write while no reader has it (see `open_log`).
//!   Writes are whole lines of at most
//!   PIPE_BUF bytes (a longer block is cut at line ends), so on a pipe each
//!   either goes in whole or not at all. What does not go in is dropped and
//!   counted in a counter all processes share ([`super::shared`]); the next
//!   write that succeeds, or the master's tick, logs the count first.
//!
//! Where `/proc` cannot reopen the pipe (not mounted, another user's pipe)
//! the output stays blocking and the start-up report says so. The app's own
//! writes to fds 1 and 2 keep their blocking description: with
//! `--log-master` they go to a pipe the master always drains (`relay`).

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

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
        }
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
        }
    }

    /// Our own non-blocking way to an inherited descriptor (see the module
    /// doc). Returns the output and, when it could only be made blocking,
    /// why.
    pub fn adopt(fd: RawFd) -> std::io::Result<(Output, Option<String>)> {
        // SAFETY: stat is plain data; fstat fills it for an open fd.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let kind = st.st_mode & libc::S_IFMT;
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
        while !rest.is_empty() {
            let n = chunk_len(rest);
            if self.write_chunk(&rest[..n]) == Wrote::Short {
                if count {
                    count_dropped(rest);
                }
                return false;
            }
            if let Some(f) = &self.file {
                f.grew(n as u64);
            }
            rest = &rest[n..];
        }
        true
    }

    fn write_chunk(&self, chunk: &[u8]) -> Wrote {
        if self.broken.load(Ordering::Relaxed) {
            if self.raw(b"\n") != 1 {
                return Wrote::Short;
            }
            self.broken.store(false, Ordering::Relaxed);
        }
        let mut off = 0;
        // A pipe takes a chunk whole or not at all; a terminal or a stream
        // socket may take part: a few immediate tries for the rest, then
        // the line is left cut and ended by the next write.
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
        if off > 0 {
            self.broken.store(true, Ordering::Relaxed);
        }
        Wrote::Short
    }

    /// One non-blocking system call; the byte count or -1.
    fn raw(&self, bytes: &[u8]) -> isize {
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
        // SAFETY: our own datagram socket; live slice.
        unsafe {
            libc::send(
                self.fd,
                msg.as_ptr().cast(),
                msg.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
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
            None => {
                let mut p = f.path.clone().into_os_string();
                p.push(format!(".{}", super::clock::unix_secs()));
                PathBuf::from(p)
            }
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
/// stopping every process that logs (a regular file ignores the flag). A
/// FIFO nobody has open for reading yet refuses a non-blocking write-only
/// open (ENXIO) and a blocking one would wait for a reader forever (the
/// server never started); it is opened read-write instead, as uWSGI opens
/// every log file, which never waits: lines wait in the pipe, up to its
/// size, for the reader to come.
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
    let mut fd = open(libc::O_WRONLY);
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
        fd = open(libc::O_RDWR);
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    fds::to_high(fd)
}

/// Point fds 1 and 2 (the app's prints) at the log file open on `fd`. They
/// keep a blocking description, as the inherited ones (see the module doc):
/// on a FIFO or terminal a full buffer would make the app's `print()` raise
/// `BlockingIOError`, so they get a description of their own, reopened
/// through `/proc/self/fd` (without waiting for a reader, as `open_log`),
/// then made blocking. A regular file has no such state and shares `fd`'s.
pub(super) fn point_std_at(fd: RawFd) {
    // SAFETY: stat is plain data; fstat fills it for an open fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let regular =
        unsafe { libc::fstat(fd, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG;
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
    let mut own = -1;
    if !regular {
        own = open(libc::O_WRONLY);
        if own < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
            own = open(libc::O_RDWR);
        }
    }
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

fn file_size(fd: RawFd) -> u64 {
    // SAFETY: stat is plain data; fstat on our fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } == 0 {
        st.st_size as u64
    } else {
        0
    }
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

    fn pipe() -> (RawFd, RawFd) {
        let mut p = [0; 2];
        // SAFETY: pipe2 fills a 2-int array.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        (p[0], p[1])
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
        // SAFETY: closing our test fds.
        unsafe {
            libc::close(r);
            libc::close(w);
            libc::close(out.fd);
        }
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
        // SAFETY: closing our test fds.
        unsafe {
            libc::close(r);
            libc::close(w);
            libc::close(out.fd);
        }
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
