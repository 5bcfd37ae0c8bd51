//! Request bodies are awaited in the poller, not in a core: once a head is
//! parsed, the app is called only when its Content-Length body (up to
//! [`bound`] bytes) is all there. Until then the connection is parked like
//! one with half a head, under the same `--socket-timeout` of silence, so
//! clients that trickle their bodies hold no thread (without `--harakiri`,
//! a few of them used to hold every core).
//!
//! A longer body streams to the app as before, which may refuse it unread
//! (a 403 or 413 to a 100 MB upload at once; waiting for its first part
//! would not stop a client that trickles the rest from holding a core).
//!
//! "There" means buffered or already on the socket (one ioctl when the
//! buffer does not hold it all): a body that came with its head costs no
//! copy and no extra read. A parked connection's head is parsed again only
//! once its buffer holds what is awaited (`Conn::need`).
//!
//! A client that sent `Expect: 100-continue` holds its body back until
//! told: it is told (`100 Continue`) before its body is awaited (bodies
//! over the bound are not, so the app may still refuse those unread).
//!
//! Chunked bodies are not awaited (their end is known only by decoding
//! them): a client that trickles one holds a core, as before. Browsers and
//! nginx (which sends CONTENT_LENGTH over uwsgi) do not send them.
//!
//! No Python; the only I/O is the `100 Continue` a client that asked for it
//! gets before its body is awaited (and a log line for a body that never
//! came).

use crate::config::Protocol;
use crate::conn::{write_all_timeout, Conn};
use crate::http::{self, BodyKind};
use crate::request::{self, Parse};

/// The bound without `--post-buffering`: a body of 64 KiB (a form, a JSON
/// document) costs a parked connection no more memory than its socket
/// buffers already may.
const AT_LEAST: usize = 64 * 1024;

/// The most the poller waits for, whatever `--post-buffering` says: a
/// parked connection's buffer may reach about twice the body, and a core
/// holds one body at a time while thousands of connections can be parked
/// (with N = 10 MB, a thousand slow clients would hold ~20 GB).
const AT_MOST: usize = 1024 * 1024;

/// The longest body the poller waits for: 64 KiB, or with
/// `--post-buffering N` above that, N up to [`AT_MOST`] (bodies under N
/// are read into memory before the app runs anyway; awaiting them here
/// holds no core while they come). Longer ones stream as without this.
pub fn bound(post_buffering: u64) -> usize {
    usize::try_from(post_buffering)
        .unwrap_or(usize::MAX)
        .clamp(AT_LEAST, AT_MOST)
}

/// How many bytes `conn.buf` must hold before the request whose head took
/// its first `consumed` bytes may be served; None when it may be now: no
/// Content-Length body, one over `bound`, or one that is all buffered or
/// waiting on the socket.
pub fn awaited(conn: &Conn, body: &BodyKind, consumed: usize, bound: usize) -> Option<usize> {
    let BodyKind::Length(len) = *body else {
        return None;
    };
    let len = usize::try_from(len).ok().filter(|&n| n <= bound)?;
    let have = conn.buf.len() - consumed;
    if have >= len {
        return None;
    }
    // The socket was not found empty since the head came: the rest may be
    // there already (a 64 KB POST), to be read by the app as it is.
    if !conn.drained && conn.readable() >= len - have {
        return None;
    }
    Some(consumed + len)
}

/// Before a body is awaited: a client that sent `Expect: 100-continue`
/// holds its body back until told to send it, so it is told now, once
/// (`Conn::continued`). False when the client cannot be told (gone).
pub fn invite(conn: &mut Conn, expect_continue: bool, timeout: std::time::Duration) -> bool {
    if !expect_continue || conn.continued {
        return true;
    }
    conn.continued = true;
    write_all_timeout(conn.fd(), http::CONTINUE, timeout).is_ok()
}

/// A connection whose body was awaited is closed before it came (the
/// client closed, failed, or was silent for `--socket-timeout`): one log
/// line, as for a body `--post-buffering` did not receive. Nothing for
/// other connections (a head cut short is not logged).
pub fn lost(conn: &Conn, protocol: Protocol, limits: &http::Limits, worker: usize, why: &str) {
    if conn.need == 0 {
        return;
    }
    // The head was parsed once already: the failure path parses it again
    // rather than every awaited connection keeping it.
    let Parse::Complete { request, consumed } = request::parse(protocol, &conn.buf, limits) else {
        return;
    };
    crate::log::line(&format!(
        "[pid: {}|worker: {worker}] {} {} {}: request body not received ({} of {} bytes; {why}); connection dropped",
        std::process::id(),
        crate::log::escape(request.remote(&conn.remote_addr)),
        crate::log::escape(request.method()),
        crate::log::escape(request.uri()),
        conn.buf.len() - consumed,
        conn.need - consumed,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn counter() -> &'static AtomicU64 {
        Box::leak(Box::new(AtomicU64::new(0)))
    }

    #[test]
    fn a_body_is_awaited_until_buffered_or_on_the_socket() {
        let (mut conn, mut client) = Conn::unix_pair(counter(), 0);
        conn.buf = b"HEAD:ab".to_vec();
        let b = AT_LEAST;
        assert_eq!(awaited(&conn, &BodyKind::None, 5, b), None);
        assert_eq!(awaited(&conn, &BodyKind::Chunked, 5, b), None);
        assert_eq!(awaited(&conn, &BodyKind::Length(2), 5, b), None, "in");
        conn.drained = true;
        assert_eq!(awaited(&conn, &BodyKind::Length(5), 5, b), Some(10));
        client.write_all(b"cde").unwrap();
        assert_eq!(
            awaited(&conn, &BodyKind::Length(5), 5, b),
            Some(10),
            "found empty since: not asked (the poller reports what came)"
        );
        conn.drained = false;
        assert_eq!(awaited(&conn, &BodyKind::Length(5), 5, b), None, "there");
        assert_eq!(awaited(&conn, &BodyKind::Length(6), 5, b), Some(11));
    }

    #[test]
    fn a_body_over_the_bound_is_not_awaited() {
        let (mut conn, _client) = Conn::unix_pair(counter(), 0);
        conn.buf = vec![b'x'; 10];
        conn.drained = true;
        assert_eq!(awaited(&conn, &BodyKind::Length(200), 10, 200), Some(210));
        assert_eq!(awaited(&conn, &BodyKind::Length(201), 10, 200), None);
        assert_eq!(awaited(&conn, &BodyKind::Length(u64::MAX), 10, 200), None);
        assert_eq!(bound(0), AT_LEAST);
        assert_eq!(bound(1 << 19), 1 << 19);
        assert_eq!(
            bound(10 << 20),
            AT_MOST,
            "capped whatever --post-buffering says"
        );
    }

    #[test]
    fn an_awaited_body_is_counted_until_in_or_dropped() {
        let awaiting = counter();
        let (mut conn, _client) = Conn::unix_pair(counter(), 0);
        conn.await_body(10, awaiting);
        conn.await_body(12, awaiting);
        assert_eq!(awaiting.load(Ordering::Acquire), 1, "once per connection");
        conn.continued = true;
        assert!(conn.body_in(), "100 Continue was sent");
        assert_eq!((conn.need, conn.continued), (0, false));
        assert_eq!(awaiting.load(Ordering::Acquire), 0);
        conn.await_body(10, awaiting);
        drop(conn);
        assert_eq!(awaiting.load(Ordering::Acquire), 0, "dropped: closed");
    }

    #[test]
    fn continue_is_sent_once_and_only_when_asked() {
        let (mut conn, mut client) = Conn::unix_pair(counter(), 0);
        let t = std::time::Duration::from_secs(1);
        assert!(invite(&mut conn, false, t));
        assert!(invite(&mut conn, true, t));
        assert!(invite(&mut conn, true, t));
        drop(conn);
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut client, &mut got).unwrap();
        assert_eq!(got, http::CONTINUE);
    }
}
