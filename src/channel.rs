//! The control channel between the master and one worker process: a
//! `SOCK_SEQPACKET` socket pair the master makes before the process exists
//! (inherited through fork, or handed to the loader that forks it), one
//! byte per message.
//!
//! The master uses it to stop a worker gracefully (retire it for a reload
//! or a recycle, or shut it down), instead of a signal: an app can replace
//! a signal's handler (`signal.signal(SIGTERM, ...)` at import), but not
//! this. The worker's poller watches its end, so a message wakes it
//! whatever its cores are doing. The worker tells the master when it is
//! ready, when it retires by itself (max-requests, a second panic), so
//! that its replacement starts at once, and when it asks for a reload
//! (`--py-autoreload`). EOF on either end means the other process is gone.
//!
//! Plain sockets: no Python, no policy (what a message means is decided by
//! `master` and `serve`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// What the master asks of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToWorker {
    /// Stop taking work and exit once in-flight requests are done: another
    /// process takes (or took) this one's place, so what the kernel queued
    /// on the shared listeners is left to it.
    Retire,
    /// The server stops: also take and serve what is already queued,
    /// since no other worker will.
    Shutdown,
}

/// What a worker tells the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToMaster {
    /// The app is loaded and the worker accepts connections.
    Ready,
    /// The worker stopped taking work by itself (max-requests, a second
    /// panic): start its replacement now, while it finishes.
    Retiring,
    /// Reload every worker (`--py-autoreload` saw a module change).
    Reload,
}

impl ToWorker {
    fn byte(self) -> u8 {
        match self {
            ToWorker::Retire => b'r',
            ToWorker::Shutdown => b's',
        }
    }

    fn from_byte(b: u8) -> Option<ToWorker> {
        match b {
            b'r' => Some(ToWorker::Retire),
            b's' => Some(ToWorker::Shutdown),
            _ => None,
        }
    }
}

impl ToMaster {
    fn byte(self) -> u8 {
        match self {
            ToMaster::Ready => b'R',
            ToMaster::Retiring => b'x',
            ToMaster::Reload => b'L',
        }
    }

    fn from_byte(b: u8) -> Option<ToMaster> {
        match b {
            b'R' => Some(ToMaster::Ready),
            b'x' => Some(ToMaster::Retiring),
            b'L' => Some(ToMaster::Reload),
            _ => None,
        }
    }
}

/// One read from a channel end.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<T> {
    Message(T),
    /// Nothing (more) to read now.
    Empty,
    /// The other end is closed: its process is gone.
    Closed,
}

/// The master's end of one worker's channel.
#[derive(Debug)]
pub struct MasterEnd(OwnedFd);

/// A worker's end of its channel.
#[derive(Debug)]
pub struct WorkerEnd(OwnedFd);

/// A new channel, both ends non-blocking and close-on-exec.
pub fn pair() -> io::Result<(MasterEnd, WorkerEnd)> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    Ok((MasterEnd(a), WorkerEnd(b)))
}

fn send(fd: BorrowedFd<'_>, byte: u8) -> io::Result<()> {
    loop {
        return match rustix::net::send(fd, &[byte], SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
            Ok(1) => Ok(()),
            Ok(_) => Err(io::Error::from(io::ErrorKind::WriteZero)),
            Err(Errno::INTR) => continue,
            Err(e) => Err(e.into()),
        };
    }
}

fn recv<T>(fd: BorrowedFd<'_>, decode: fn(u8) -> Option<T>) -> Received<T> {
    loop {
        let mut b = [0u8; 1];
        match rustix::net::recv(fd, &mut b, RecvFlags::DONTWAIT) {
            Ok((0, _)) => return Received::Closed,
            // An unknown byte is skipped: both ends are this build.
            Ok(_) => match decode(b[0]) {
                Some(m) => return Received::Message(m),
                None => continue,
            },
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Received::Empty,
            Err(_) => return Received::Closed,
        }
    }
}

impl MasterEnd {
    pub fn send(&self, m: ToWorker) -> io::Result<()> {
        send(self.0.as_fd(), m.byte())
    }

    pub fn recv(&self) -> Received<ToMaster> {
        recv(self.0.as_fd(), ToMaster::from_byte)
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl WorkerEnd {
    pub fn send(&self, m: ToMaster) -> io::Result<()> {
        send(self.0.as_fd(), m.byte())
    }

    pub fn recv(&self) -> Received<ToWorker> {
        recv(self.0.as_fd(), ToWorker::from_byte)
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Send `msg` on `sock` (a SEQPACKET socket) with a worker's end of its
/// channel attached (SCM_RIGHTS): how the master hands it to the loader
/// that forks the worker. The caller keeps its copy and closes it.
pub fn send_with_end(sock: BorrowedFd<'_>, msg: &[u8], end: &WorkerEnd) -> io::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage};
    use std::mem::MaybeUninit;
    let fds = [end.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let n = rustix::net::sendmsg(
        sock,
        &[io::IoSlice::new(msg)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    if n != msg.len() {
        return Err(io::Error::from(io::ErrorKind::WriteZero));
    }
    Ok(())
}

/// Receive one message into `buf` (blocking), and the worker end sent with
/// it if any. Returns the message's length (0: the peer closed).
pub fn recv_with_end(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Option<WorkerEnd>)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage};
    use std::mem::MaybeUninit;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [io::IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(Errno::INTR) => continue,
            other => break other?,
        }
    };
    let mut end = None;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            for fd in fds {
                // One is expected; any other is closed as it drops.
                end.get_or_insert(WorkerEnd(fd));
            }
        }
    }
    Ok((got.bytes, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_both_ways_and_close_is_seen() {
        let (m, w) = pair().unwrap();
        assert_eq!(w.recv(), Received::Empty);
        m.send(ToWorker::Retire).unwrap();
        m.send(ToWorker::Shutdown).unwrap();
        assert_eq!(w.recv(), Received::Message(ToWorker::Retire));
        assert_eq!(w.recv(), Received::Message(ToWorker::Shutdown));
        assert_eq!(w.recv(), Received::Empty);
        for msg in [ToMaster::Ready, ToMaster::Retiring, ToMaster::Reload] {
            w.send(msg).unwrap();
            assert_eq!(m.recv(), Received::Message(msg));
        }
        drop(m);
        assert_eq!(w.recv(), Received::Closed);
        assert!(w.send(ToMaster::Ready).is_err(), "no SIGPIPE, an error");
    }

    #[test]
    fn a_worker_end_travels_to_another_socket() {
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let (m, w) = pair().unwrap();
        send_with_end(a.as_fd(), b"spawn", &w).unwrap();
        drop(w);
        let mut buf = [0u8; 16];
        let (n, end) = recv_with_end(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"spawn");
        let end = end.expect("the end came along");
        m.send(ToWorker::Retire).unwrap();
        assert_eq!(end.recv(), Received::Message(ToWorker::Retire));
        drop(a);
        assert_eq!(recv_with_end(b.as_fd(), &mut buf).unwrap().0, 0, "closed");
    }
}
