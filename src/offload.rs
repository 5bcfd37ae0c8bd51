//! Sending a response the server makes itself (a static file, a route's
//! answer) without holding a request thread for the transfer: uWSGI's
//! `--offload-threads`.
//!
//! A [`Transfer`] is a connection, the response head and an optional file
//! range. A core first pumps it without waiting (head, then sendfile(2) until
//! the socket is full): a small file is done right there. What is left goes
//! to an offload thread, which drives it with epoll as the client reads, and
//! then gives the connection back to the worker (parked for its next
//! keep-alive request, or closed). A client that reads nothing for
//! `--socket-timeout` is cut.
//!
//! No parsing, no Python, no logging of requests (the request was logged
//! when it was handed over, as uWSGI does).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::event::{epoll, eventfd, EventfdFlags};
use rustix::io::Errno;
use rustix::net::SendFlags;

use crate::conn::{Conn, Unread};
use crate::conns::Conns;

/// A response being written: the head, then `left` bytes of `file` from
/// `offset`.
pub struct Transfer {
    pub conn: Box<Conn>,
    head: Vec<u8>,
    head_sent: usize,
    file: Option<File>,
    offset: u64,
    left: u64,
    /// The connection may serve another request afterwards.
    pub keep: bool,
    /// What the client may still be sending of this request.
    pub unread: Unread,
    /// Bytes waiting in the socket's send queue when last looked at: a
    /// client that reads makes it shrink, even while the socket is too
    /// full to take more (epoll says writable only at half empty).
    queued: u64,
}

/// What one [`Transfer::pump`] achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// All sent.
    Done,
    /// The socket is full: wait until it is writable.
    Blocked,
    /// The client went away (or the file shrank): drop the connection.
    Failed,
}

impl Transfer {
    pub fn new(
        conn: Box<Conn>,
        head: Vec<u8>,
        file: Option<(File, u64, u64)>,
        keep: bool,
        unread: Unread,
    ) -> Transfer {
        let (file, offset, left) = match file {
            Some((f, offset, len)) if len > 0 => (Some(f), offset, len),
            _ => (None, 0, 0),
        };
        Transfer {
            conn,
            head,
            head_sent: 0,
            file,
            offset,
            left,
            keep,
            unread,
            queued: u64::MAX,
        }
    }

    /// Whether the client took bytes off the socket since the last call.
    fn client_reads(&mut self) -> bool {
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int; the socket is open.
        let r = unsafe { libc::ioctl(self.conn.fd(), libc::TIOCOUTQ, &mut n) };
        let now = if r == 0 { n.max(0) as u64 } else { 0 };
        let reading = now < self.queued;
        self.queued = now;
        reading
    }

    /// Send what the socket takes now, without waiting.
    pub fn pump(&mut self) -> Progress {
        if crate::forked::is_child() {
            return Progress::Failed;
        }
        let fd = self.conn.fd();
        // SAFETY: the connection owns the socket for as long as `self` lives.
        let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        while self.head_sent < self.head.len() {
            let more = if self.left > 0 {
                SendFlags::MORE
            } else {
                SendFlags::empty()
            };
            match rustix::net::send(
                sock,
                &self.head[self.head_sent..],
                SendFlags::NOSIGNAL | more,
            ) {
                Ok(n) => self.head_sent += n,
                Err(Errno::AGAIN) => return Progress::Blocked,
                Err(Errno::INTR) => {}
                Err(_) => return Progress::Failed,
            }
        }
        while self.left > 0 {
            let Some(file) = &self.file else {
                return Progress::Failed;
            };
            let chunk = self.left.min(1 << 30) as usize;
            let mut offset = self.offset;
            match rustix::fs::sendfile(sock, file.as_fd(), Some(&mut offset), chunk) {
                Ok(0) => return Progress::Failed, // the file shrank under us
                Ok(n) => {
                    self.offset += n as u64;
                    self.left -= n as u64;
                }
                Err(Errno::AGAIN) => return Progress::Blocked,
                Err(Errno::INTR) => {}
                Err(_) => return Progress::Failed,
            }
        }
        Progress::Done
    }
}

impl Transfer {
    /// Send the rest, waiting for the socket (a client silent for
    /// `timeout` is given up on). True when all was sent.
    pub fn finish_blocking(&mut self, timeout: Duration) -> bool {
        loop {
            match self.pump() {
                Progress::Done => return true,
                Progress::Failed => return false,
                Progress::Blocked => {
                    let mut pfd = libc::pollfd {
                        fd: self.conn.fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one pollfd, a live local.
                    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
                    if n == 0 {
                        return false;
                    }
                }
            }
        }
    }
}

/// One offload thread's queue of new transfers, and its epoll.
struct Lane {
    epoll: OwnedFd,
    wake: OwnedFd,
    queue: Mutex<Vec<Transfer>>,
}

/// A worker's offload threads.
pub struct Offload {
    lanes: Vec<Lane>,
    next: AtomicUsize,
    /// Transfers handed over and not finished (a stopping worker waits).
    active: AtomicUsize,
}

const WAKE: u64 = u64::MAX;

impl Offload {
    /// `threads` lanes (at least one); run each with [`Offload::run`].
    pub fn new(threads: usize) -> io::Result<Offload> {
        let lanes = (0..threads.max(1))
            .map(|_| -> io::Result<Lane> {
                let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
                let wake = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
                epoll::add(
                    &ep,
                    &wake,
                    epoll::EventData::new_u64(WAKE),
                    epoll::EventFlags::IN,
                )?;
                Ok(Lane {
                    epoll: ep,
                    wake,
                    queue: Mutex::new(Vec::new()),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Offload {
            lanes,
            next: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
        })
    }

    pub fn threads(&self) -> usize {
        self.lanes.len()
    }

    /// Transfers in the offload threads now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Hand a transfer (already pumped until it blocked) to a thread.
    pub fn submit(&self, t: Transfer) {
        self.active.fetch_add(1, Ordering::AcqRel);
        let lane = &self.lanes[self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len()];
        lane.queue.lock().unwrap_or_else(|e| e.into_inner()).push(t);
        let _ = rustix::io::write(&lane.wake, &1u64.to_ne_bytes());
    }

    /// The body of offload thread `lane`: drive its transfers until the
    /// process exits; finished connections go back to `conns`.
    pub fn run(&self, lane: usize, conns: &Conns, timeout: Duration) {
        let l = &self.lanes[lane];
        let mut live: HashMap<RawFd, (Transfer, Instant)> = HashMap::new();
        let mut events = Vec::with_capacity(64);
        loop {
            let now = Instant::now();
            let wait = live
                .values()
                .map(|(_, d)| d.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            let ts = rustix::event::Timespec::try_from(wait.max(Duration::from_millis(1)))
                .unwrap_or(rustix::event::Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                });
            events.clear();
            if let Err(e) = epoll::wait(
                &l.epoll,
                rustix::buffer::spare_capacity(&mut events),
                Some(&ts),
            ) {
                if e != Errno::INTR {
                    crate::log::line(&format!("offload thread: epoll: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for ev in &events {
                let token = ev.data.u64();
                if token == WAKE {
                    let mut buf = [0u8; 8];
                    let _ = rustix::io::read(&l.wake, &mut buf);
                    let fresh =
                        std::mem::take(&mut *l.queue.lock().unwrap_or_else(|e| e.into_inner()));
                    for t in fresh {
                        self.adopt(l, &mut live, t, conns, timeout);
                    }
                    continue;
                }
                let fd = token as RawFd;
                let Some((mut t, deadline)) = live.remove(&fd) else {
                    continue;
                };
                match t.pump() {
                    Progress::Blocked => {
                        live.insert(fd, (t, deadline));
                    }
                    progress => self.finish(l, t, progress, conns),
                }
            }
            // Clients that read nothing for a whole timeout are cut.
            let now = Instant::now();
            for (_, (t, deadline)) in live.iter_mut().filter(|(_, (_, d))| *d <= now) {
                if t.client_reads() {
                    *deadline = now + timeout;
                }
            }
            let overdue: Vec<RawFd> = live
                .iter()
                .filter(|(_, (_, d))| *d <= now)
                .map(|(fd, _)| *fd)
                .collect();
            for fd in overdue {
                if let Some((t, _)) = live.remove(&fd) {
                    self.finish(l, t, Progress::Failed, conns);
                }
            }
        }
    }

    /// Watch a new transfer's socket until it is writable.
    fn adopt(
        &self,
        l: &Lane,
        live: &mut HashMap<RawFd, (Transfer, Instant)>,
        mut t: Transfer,
        conns: &Conns,
        timeout: Duration,
    ) {
        let progress = t.pump();
        if progress != Progress::Blocked {
            return self.finish_unwatched(t, progress, conns);
        }
        t.client_reads();
        let fd = t.conn.fd();
        // SAFETY: the socket stays open while the transfer (which owns the
        // connection) is in `live`; it is removed from the epoll first.
        let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        match epoll::add(
            &l.epoll,
            sock,
            epoll::EventData::new_u64(fd as u64),
            epoll::EventFlags::OUT,
        ) {
            Ok(()) => {
                live.insert(fd, (t, Instant::now() + timeout));
            }
            Err(_) => self.finish_unwatched(t, Progress::Failed, conns),
        }
    }

    fn finish(&self, l: &Lane, t: Transfer, progress: Progress, conns: &Conns) {
        // SAFETY: the connection (and so the socket) is alive until `t` drops.
        let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(t.conn.fd()) };
        let _ = epoll::delete(&l.epoll, sock);
        self.finish_unwatched(t, progress, conns);
    }

    fn finish_unwatched(&self, t: Transfer, progress: Progress, conns: &Conns) {
        give_back(t, progress == Progress::Done, conns);
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A finished transfer's connection goes back to the worker: parked for
/// its next request, closed gracefully, or (failed) dropped.
pub fn give_back(t: Transfer, sent: bool, conns: &Conns) {
    if !sent {
        return; // dropped: closed
    }
    if t.keep {
        // An offload thread does not read requests: a core does.
        conns.park_or_report(t.conn);
    } else {
        conns.close_after_response(t.conn, t.unread);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicU64;

    fn pair() -> (Box<Conn>, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let open: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        let conn = Conn::new(server.into(), open, 0, String::new(), String::new());
        (Box::new(conn), client)
    }

    fn file_of(bytes: &[u8]) -> File {
        let path =
            std::env::temp_dir().join(format!("offload-{}-{}", std::process::id(), bytes.len()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        let f = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn small_transfer_is_done_in_one_pump() {
        let (conn, mut client) = pair();
        let body = b"hello world";
        let mut t = Transfer::new(
            conn,
            b"HEAD\r\n".to_vec(),
            Some((file_of(body), 6, 5)),
            true,
            Unread::Nothing,
        );
        assert_eq!(t.pump(), Progress::Done);
        drop(t);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"HEAD\r\nworld");
    }

    #[test]
    fn big_transfer_blocks_until_the_client_reads() {
        let (conn, mut client) = pair();
        let body = vec![7u8; 8 << 20];
        let mut t = Transfer::new(
            conn,
            b"H".to_vec(),
            Some((file_of(&body), 0, body.len() as u64)),
            false,
            Unread::Nothing,
        );
        assert_eq!(t.pump(), Progress::Blocked, "8 MiB does not fit a socket");
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got.len()
        });
        let mut spins = 0;
        while t.pump() == Progress::Blocked {
            std::thread::sleep(Duration::from_millis(1));
            spins += 1;
            assert!(spins < 20_000);
        }
        drop(t);
        assert_eq!(reader.join().unwrap(), 1 + (8 << 20));
    }

    #[test]
    fn a_client_that_left_fails_the_transfer() {
        let (conn, client) = pair();
        drop(client);
        let body = vec![1u8; 4 << 20];
        let mut t = Transfer::new(
            conn,
            b"H".to_vec(),
            Some((file_of(&body), 0, body.len() as u64)),
            true,
            Unread::Nothing,
        );
        let mut last = t.pump();
        for _ in 0..100 {
            if last != Progress::Blocked {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            last = t.pump();
        }
        assert_eq!(last, Progress::Failed);
    }
}
