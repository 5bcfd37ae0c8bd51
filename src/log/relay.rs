//! `--log-master`: the master writes the log for everyone, as uWSGI's log
//! master does (`create_logpipe`, `uwsgi_master_log`). Workers hand their
//! lines to the master through pipes; the master routes them (loggers,
//! routes, drain) and writes them to the outputs. Implied, as in uWSGI, by
//! `--logger`, `--req-logger`, `--log-route`, `--log-req-route`,
//! `--log-drain`, `--log-encoder` and `--log-maxsize`: with one writer, routing happens in
//! one place, a log file is rotated by the one process that writes it and
//! reopened without every worker having to reopen it (a worker that
//! dropped root may not be allowed to).
//!
//! Three pipes, created before the first fork and moved to high numbers:
//! - server lines of the workers (`O_NONBLOCK` on the write end: only our
//!   processes hold it; a full pipe drops the line and counts it);
//! - request lines (the same, kept apart for `--req-logger`);
//! - the app's own output: fds 1 and 2 of every worker, blocking as the app
//!   expects of stdout and stderr. The master always drains it and never
//!   waits on an output, so the app's `print()` no longer waits on a
//!   reader that stopped reading: what the log cannot take is dropped and
//!   counted instead.
//!
//! The master reads with a buffer as large as the pipe, so a read returns
//! whole writes (each worker line is one write of at most PIPE_BUF bytes,
//! atomic in a pipe) and lines are never split between two reads.
//!
//! Whether this matters here: without it every process writes its own
//! lines directly (one system call per line, none in the master), which
//! costs less; it exists for what needs one writer. uWSGI's
//! `--threaded-logger` (the master writes from a thread so a slow output
//! does not hold it up) has nothing left to do: no write here ever waits.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use super::fds;
use super::router::{Kind, Router};

/// Pipe capacity asked for (Linux allows up to /proc/sys/fs/pipe-max-size,
/// 1 MiB by default, to anyone).
const CAPACITY: i32 = 1 << 20;

#[derive(Debug, Clone, Copy)]
pub struct Pipes {
    lines_r: RawFd,
    lines_w: RawFd,
    requests_r: RawFd,
    requests_w: RawFd,
    app_r: RawFd,
    app_w: RawFd,
    /// What a read may return at most: the larger pipe capacity.
    capacity: usize,
}

/// In a worker with --log-master: where its lines go (-1: write directly).
static TO_MASTER_LINES: AtomicI32 = AtomicI32::new(-1);
static TO_MASTER_REQUESTS: AtomicI32 = AtomicI32::new(-1);

/// One pipe, both ends close-on-exec and high, the read end non-blocking;
/// the write end non-blocking unless `blocking_writer`.
fn pipe(blocking_writer: bool) -> std::io::Result<(RawFd, RawFd, usize)> {
    let mut p = [0; 2];
    // SAFETY: pipe2 fills a 2-int array.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fcntl on the fds just created; failures leave the defaults.
    let size = unsafe {
        libc::fcntl(p[0], libc::F_SETPIPE_SZ, CAPACITY);
        if blocking_writer {
            libc::fcntl(p[1], libc::F_SETFL, 0);
        }
        libc::fcntl(p[0], libc::F_GETPIPE_SZ)
    };
    Ok((
        fds::to_high(p[0])?,
        fds::to_high(p[1])?,
        size.max(4096) as usize,
    ))
}

impl Pipes {
    /// In the master, before any worker is forked.
    pub fn create() -> std::io::Result<Pipes> {
        let (lines_r, lines_w, a) = pipe(false)?;
        let (requests_r, requests_w, b) = pipe(false)?;
        let (app_r, app_w, c) = pipe(true)?;
        Ok(Pipes {
            lines_r,
            lines_w,
            requests_r,
            requests_w,
            app_r,
            app_w,
            capacity: a.max(b).max(c),
        })
    }

    /// In a process forked from the master (a loader, a worker), right
    /// after the fork: its lines go to the master from now on, and so do
    /// the app's stdout and stderr. Once per process tree: a worker forked
    /// from a loader inherits it done.
    pub fn enter_worker(&self) {
        if TO_MASTER_LINES.load(Ordering::Acquire) >= 0 {
            return;
        }
        TO_MASTER_LINES.store(self.lines_w, Ordering::Release);
        TO_MASTER_REQUESTS.store(self.requests_w, Ordering::Release);
        // SAFETY: dup2 onto fds 1 and 2 (not close-on-exec: the app's
        // subprocesses inherit them, as they would stderr); the read ends
        // are the master's.
        unsafe {
            libc::dup2(self.app_w, 1);
            libc::dup2(self.app_w, 2);
            libc::close(self.lines_r);
            libc::close(self.requests_r);
            libc::close(self.app_r);
        }
    }

    /// The read ends the master polls.
    pub fn readers(&self) -> [RawFd; 3] {
        [self.lines_r, self.requests_r, self.app_r]
    }

    /// In the master: read what the workers wrote and deliver it. Bounded
    /// (a few reads per pipe) so the master's loop stays responsive.
    pub fn drain(&self, router: &Router, buf: &mut Vec<u8>) {
        buf.resize(self.capacity, 0);
        for (fd, kind) in [
            (self.lines_r, Kind::General),
            (self.requests_r, Kind::Request),
            (self.app_r, Kind::General),
        ] {
            for _ in 0..8 {
                // SAFETY: non-blocking read into a live buffer of its length.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                router.deliver(kind, &buf[..n as usize]);
            }
        }
    }
}

/// A worker's line, handed to the master; false when this process writes
/// its lines itself. A full pipe drops the line (counted).
pub fn to_master(kind: Kind, bytes: &[u8]) -> bool {
    let fd = match kind {
        Kind::General => TO_MASTER_LINES.load(Ordering::Acquire),
        Kind::Request => TO_MASTER_REQUESTS.load(Ordering::Acquire),
    };
    if fd < 0 {
        return false;
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = super::output::chunk_len(rest);
        // SAFETY: our own pipe end; live slice.
        let w = unsafe { libc::write(fd, rest.as_ptr().cast(), n) };
        if w != n as isize {
            super::output::count_dropped(rest);
            break;
        }
        rest = &rest[n..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::output::{LogFile, Output};

    #[test]
    fn the_master_reads_whole_lines_and_routes_them() {
        let p = Pipes::create().unwrap();
        let dir = std::env::temp_dir().join(format!("uwsgi-rs-relay-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let router = Router {
            outputs: vec![
                Output::open_file(LogFile::new(dir.join("all.log"))).unwrap(),
                Output::open_file(LogFile::new(dir.join("req.log"))).unwrap(),
            ],
            general: vec![0],
            request: vec![1],
            counters: Some(crate::log::shared::private()),
            ..Router::default()
        };
        for fd in [p.lines_w, p.requests_w, p.app_w] {
            let line = format!("line for {fd}\n");
            // SAFETY: writing to our own pipe.
            unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
        }
        let mut buf = Vec::new();
        p.drain(&router, &mut buf);
        let all = std::fs::read_to_string(dir.join("all.log")).unwrap();
        let req = std::fs::read_to_string(dir.join("req.log")).unwrap();
        assert_eq!(
            all,
            format!("line for {}\nline for {}\n", p.lines_w, p.app_w)
        );
        assert_eq!(req, format!("line for {}\n", p.requests_w));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
