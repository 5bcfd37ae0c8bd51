//! A client connection and the socket I/O every request needs: non-blocking
//! reads into the connection buffer, and reads/writes bounded by the
//! socket timeout (so a slow or silent client cannot hold a core longer).
//!
//! Sockets stay non-blocking for their whole life; waiting is done with
//! `poll(2)` here, never by flipping `O_NONBLOCK` per request. Nothing here
//! parses bytes or knows about Python.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::SendFlags;

/// What is left of a request on the socket once its response is out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unread {
    Nothing,
    /// This many body bytes are still to come (Content-Length).
    Bytes(u64),
    /// An unknown amount: a chunked body not read to its end, or a request
    /// refused before its head was parsed.
    Unknown,
}

/// A lingering close in progress: the response is written and the write
/// side shut down (the client sees the end of the response); what the
/// client still sends is read and discarded until it is all in, the client
/// closes, or the bounds run out. Closing with unread bytes would make the
/// kernel send a reset, which can destroy the response before the client
/// (or nginx, still writing the body) reads it.
#[derive(Debug)]
pub struct Linger {
    /// Bytes still to discard before closing is clean (or the byte bound).
    pub left: u64,
    /// Never longer than this.
    pub until: Instant,
}

pub struct Conn {
    socket: OwnedFd,
    /// The worker's count of open connections (on the scoreboard, where the
    /// other workers balance on it): one from `new` until drop, whichever
    /// path closes the connection.
    open: &'static AtomicU64,
    /// Bytes read and not yet consumed: a partial head, body bytes, or the
    /// next pipelined request.
    pub buf: Vec<u8>,
    /// Index of the listener it came from (protocol, server name).
    pub listener: usize,
    pub remote_addr: String,
    pub remote_port: String,
    /// Requests served on this connection (for keep-alive bookkeeping).
    pub served: u64,
    /// Requests taken from it back to back, without the poller handing it
    /// out in between (see `serve`'s keep-alive path).
    pub streak: u32,
    /// Its generation in the poller's `owners` once registered (0: never
    /// parked yet, registered on its first park).
    pub generation: u32,
    /// A read since the poller last handed it out found the socket empty
    /// (a short read or EAGAIN): only then may it be parked without
    /// reading again (registrations are edge-triggered, see `owners`).
    pub drained: bool,
    /// Set once the connection is being closed after its response.
    pub linger: Option<Linger>,
    /// The start of the connection was checked for a PROXY protocol
    /// header (only done with `--enable-proxy-protocol`).
    pub proxy_checked: bool,
    /// While the body of a parsed head is awaited (see
    /// `serve::body_wait`): how many bytes `buf` must hold before the head
    /// is worth parsing again. 0 otherwise.
    pub need: usize,
    /// `100 Continue` was sent for the request whose body is awaited.
    pub continued: bool,
    /// The worker's count of connections awaiting a body, while this one
    /// is (a stopping worker waits for them as for requests in flight).
    awaiting: Option<&'static AtomicU64>,
}

impl Conn {
    pub fn new(
        socket: OwnedFd,
        open: &'static AtomicU64,
        listener: usize,
        remote_addr: String,
        remote_port: String,
    ) -> Conn {
        open.fetch_add(1, Ordering::AcqRel);
        crate::forked::track(socket.as_raw_fd());
        Conn {
            socket,
            open,
            buf: Vec::new(),
            listener,
            remote_addr,
            remote_port,
            served: 0,
            streak: 0,
            generation: 0,
            drained: false,
            linger: None,
            proxy_checked: false,
            need: 0,
            continued: false,
            awaiting: None,
        }
    }

    /// Wait (parked) until `buf` holds `need` bytes: the body of a parsed
    /// head is still on its way. Counted in `count` until [`Conn::body_in`]
    /// or drop.
    pub fn await_body(&mut self, need: usize, count: &'static AtomicU64) {
        self.need = need;
        if self.awaiting.is_none() {
            count.fetch_add(1, Ordering::AcqRel);
            self.awaiting = Some(count);
        }
    }

    /// The awaited body is in and its request taken. Returns whether
    /// `100 Continue` was sent for it (it must not be sent again).
    pub fn body_in(&mut self) -> bool {
        self.need = 0;
        if let Some(count) = self.awaiting.take() {
            count.fetch_sub(1, Ordering::AcqRel);
        }
        std::mem::take(&mut self.continued)
    }

    /// Bytes waiting on the socket (one ioctl; 0 if it fails).
    pub fn readable(&self) -> usize {
        rustix::io::ioctl_fionread(&self.socket).map_or(0, |n| n as usize)
    }

    /// Begin a lingering close (see [`Linger`]) after the response is
    /// written: at most `max_bytes` and `max_time` are spent on it.
    pub fn start_linger(&mut self, unread: Unread, max_bytes: u64, max_time: Duration) {
        let left = match unread {
            Unread::Nothing => 0,
            Unread::Bytes(n) => n.min(max_bytes),
            Unread::Unknown => max_bytes,
        };
        // The request bytes already buffered were read: nothing to wait for.
        self.buf = Vec::new();
        let _ = rustix::net::shutdown(&self.socket, rustix::net::Shutdown::Write);
        self.linger = Some(Linger {
            left,
            until: Instant::now() + max_time,
        });
    }

    /// Discard what the client has sent so far, without waiting. True when
    /// the connection may be closed now: everything expected is in, the
    /// client closed (or failed), or a bound ran out.
    pub fn linger_done(&mut self) -> bool {
        let Some(l) = &mut self.linger else {
            return true;
        };
        let mut sink = [0u8; 64 * 1024];
        loop {
            if l.left == 0 || Instant::now() >= l.until || crate::forked::is_child() {
                return true;
            }
            let want = sink
                .len()
                .min(usize::try_from(l.left).unwrap_or(usize::MAX));
            match rustix::io::read(&self.socket, &mut sink[..want]) {
                Ok(0) => return true,
                Ok(n) => l.left -= n as u64,
                Err(rustix::io::Errno::AGAIN) => {
                    self.drained = true;
                    return false;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return true,
            }
        }
    }

    /// The client sent more than the requests served so far: a pipelined
    /// request in the buffer, or bytes waiting on the socket (one ioctl
    /// when the buffer is empty).
    pub fn has_input(&self) -> bool {
        !self.buf.is_empty() || self.readable() > 0
    }

    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Read what is available now into `buf`, at most `max` bytes in total
    /// buffered. Ok(0) means the peer closed; WouldBlock means nothing yet.
    /// A read that finds the socket empty (EAGAIN, or fewer bytes than
    /// asked: a stream socket's queue was empty) marks it `drained`.
    pub fn fill(&mut self, max: usize) -> io::Result<usize> {
        crate::forked::refuse_io()?;
        let room = max.saturating_sub(self.buf.len());
        if room == 0 {
            return Ok(usize::MAX); // full: let the parser judge the head
        }
        let want = room.min(64 * 1024);
        self.buf.reserve(want);
        let len = self.buf.len();
        let read = rustix::io::read(&self.socket, &mut self.buf.spare_capacity_mut()[..want]);
        let n = match read {
            Ok((read, _)) => read.len(),
            Err(e) => {
                self.drained |= e == Errno::AGAIN;
                return Err(e.into());
            }
        };
        self.drained |= n < want;
        // SAFETY: the kernel initialised the first n bytes of the spare capacity.
        unsafe { self.buf.set_len(len + n) };
        Ok(n)
    }
}

#[cfg(test)]
impl Conn {
    /// For unit tests: a connection over one end of a new non-blocking
    /// UNIX socket pair, counted in `open`, and the other end (the peer).
    pub fn unix_pair(
        open: &'static AtomicU64,
        listener: usize,
    ) -> (Box<Conn>, std::os::unix::net::UnixStream) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let conn = Conn::new(ours.into(), open, listener, String::new(), String::new());
        (Box::new(conn), theirs)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        crate::forked::untrack(self.socket.as_raw_fd());
        self.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(count) = self.awaiting {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The socket of a caller that keeps it open for the call.
fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: every caller passes the descriptor of a connection it holds
    // (or a file it has open) and uses the borrow only within the call.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Wait until `fd` is ready for `events`, at most until `deadline`.
fn wait_for(fd: RawFd, events: PollFlags, deadline: Instant) -> io::Result<()> {
    let fd = borrow(fd);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "socket timeout"));
        }
        let timeout = Timespec::try_from(left.max(Duration::from_millis(1)))
            .map_err(|_| io::Error::from(Errno::INVAL))?;
        match rustix::event::poll(&mut [PollFd::new(&fd, events)], Some(&timeout)) {
            Ok(0) | Err(Errno::INTR) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Read at least one byte (or EOF) within `timeout`.
pub fn read_timeout(fd: RawFd, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
    // SAFETY: the kernel only writes initialised bytes into `buf`, so it
    // stays initialised; MaybeUninit<u8> has u8's layout.
    let buf = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    read_uninit_timeout(fd, buf, timeout)
}

/// Read at least one byte (or EOF) within `timeout` into memory that need
/// not be initialised (a buffer's spare capacity, a fresh bytes object):
/// the first `n` bytes of `buf` are initialised when `Ok(n)` returns.
pub fn read_uninit_timeout(
    fd: RawFd,
    buf: &mut [MaybeUninit<u8>],
    timeout: Duration,
) -> io::Result<usize> {
    crate::forked::refuse_io()?;
    let mut deadline = None;
    loop {
        match rustix::io::read(borrow(fd), &mut *buf) {
            Ok((read, _)) => return Ok(read.len()),
            Err(Errno::AGAIN) => {
                // The clock starts only when there is something to wait for.
                let d = *deadline.get_or_insert_with(|| Instant::now() + timeout);
                wait_for(fd, PollFlags::IN, d)?
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Write all of `data` unless the peer stops reading for `timeout`.
pub fn write_all_timeout(fd: RawFd, data: &[u8], timeout: Duration) -> io::Result<()> {
    write_vectored_timeout(fd, &[data], timeout).map(|_| ())
}

/// Buffers handed to one `sendmsg` (Linux takes up to 1024; a response
/// rarely has more than a few, and the kernel copies at most the socket's
/// buffer per call anyway).
const IOV_BATCH: usize = 64;

/// Write all of `parts`, in order, with as few `sendmsg` calls as the
/// socket allows (one when it takes everything: the head and the body go
/// out together, each straight from where it lies), unless the peer stops
/// reading for `timeout`. Returns the bytes written.
pub fn write_vectored_timeout(fd: RawFd, parts: &[&[u8]], timeout: Duration) -> io::Result<u64> {
    crate::forked::refuse_io()?;
    let mut deadline = None;
    // Where the next byte to send is: parts[idx][off..].
    let (mut idx, mut off) = (0usize, 0usize);
    let mut written = 0u64;
    let mut iov = [io::IoSlice::new(&[]); IOV_BATCH];
    loop {
        while idx < parts.len() && off == parts[idx].len() {
            idx += 1;
            off = 0;
        }
        if idx == parts.len() {
            return Ok(written);
        }
        iov[0] = io::IoSlice::new(&parts[idx][off..]);
        let mut n_iov = 1;
        for p in parts[idx + 1..].iter().filter(|p| !p.is_empty()) {
            if n_iov == IOV_BATCH {
                break;
            }
            iov[n_iov] = io::IoSlice::new(p);
            n_iov += 1;
        }
        // NOSIGNAL: a closed peer gives EPIPE instead of killing the worker.
        let sent = rustix::net::sendmsg(
            borrow(fd),
            &iov[..n_iov],
            &mut rustix::net::SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        );
        match sent {
            Ok(mut n) => {
                written += n as u64;
                // Progress restarts the clock: the timeout bounds silence, not size.
                deadline = None;
                while n > 0 {
                    let left = parts[idx].len() - off;
                    if n < left {
                        off += n;
                        n = 0;
                    } else {
                        n -= left;
                        idx += 1;
                        off = 0;
                    }
                }
            }
            Err(Errno::AGAIN) => {
                let d = *deadline.get_or_insert_with(|| Instant::now() + timeout);
                wait_for(fd, PollFlags::OUT, d)?
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Send `count` bytes of file `in_fd` from `offset` with sendfile(2).
pub fn sendfile_all(
    out_fd: RawFd,
    in_fd: RawFd,
    offset: i64,
    mut count: u64,
    timeout: Duration,
) -> io::Result<u64> {
    crate::forked::refuse_io()?;
    let mut sent = 0u64;
    let mut offset = u64::try_from(offset).map_err(|_| io::Error::from(Errno::INVAL))?;
    let mut deadline = None;
    while count > 0 {
        let chunk = count.min(1 << 30) as usize;
        match rustix::fs::sendfile(borrow(out_fd), borrow(in_fd), Some(&mut offset), chunk) {
            Ok(0) => break, // file shorter than announced
            Ok(n) => {
                sent += n as u64;
                count -= n as u64;
                deadline = None;
            }
            Err(Errno::AGAIN) => {
                let d = *deadline.get_or_insert_with(|| Instant::now() + timeout);
                wait_for(out_fd, PollFlags::OUT, d)?
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sent)
}
