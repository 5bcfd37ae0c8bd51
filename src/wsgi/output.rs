//! What a response puts on the socket next: the server's own bytes (status
//! line, headers, chunk framing, small bodies) and the app's bytes objects,
//! in order, written with one `sendmsg` (writev) straight from where they
//! lie. The server copies no body of its own size: a bytes object of
//! [`COPY_BELOW`] or more is referenced (the object kept alive), not copied.
//!
//! Each core owns one `Output` for its life, so its buffer is reused from
//! request to request. It is filled with the GIL held, written without it
//! ([`Output::write`]), and its references are given back with the GIL
//! ([`Output::release`]). It never parses, frames or decides anything.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Bodies shorter than this are copied next to the head (one buffer, no
/// reference to hold and give back); longer ones are referenced.
pub const COPY_BELOW: usize = 2048;

/// A buffer that grew past this is not kept for the next request.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Written bytes objects of this much are given back as soon as they are
/// written (the core attaches for it), not when the core next serves: a
/// big body must not stay alive while the core waits for a request.
const RELEASE_AT_ONCE: u64 = 1 << 20;

/// After giving back the bytes objects of a response this big, return the
/// freed memory to the kernel: glibc keeps freed heap memory otherwise (a
/// 50 MB list body left the worker 50 MB larger for good).
const TRIM_AFTER: u64 = 16 << 20;

enum Piece {
    /// `own[start..end]`.
    Own { start: usize, end: usize },
    /// The first `len` bytes of a bytes object (kept alive by `obj`).
    Bytes {
        obj: Py<PyBytes>,
        ptr: *const u8,
        len: usize,
    },
}

#[derive(Default)]
pub struct Output {
    own: Vec<u8>,
    pieces: Vec<Piece>,
    /// Bytes queued.
    len: usize,
    /// References already written, to give back under the GIL.
    spent: Vec<Py<PyBytes>>,
    /// Bytes of the referenced objects in `spent`.
    spent_bytes: u64,
}

// SAFETY: the raw pointers point into the immutable buffers of bytes objects
// that this Output keeps alive (`obj` next to each one); CPython never moves
// or changes a bytes object's buffer. They are only read (by `write`), and
// every `Py` is dropped under the GIL by `release`/`clear`.
unsafe impl Send for Output {}
// SAFETY: as above; a shared Output is only read.
unsafe impl Sync for Output {}

impl Output {
    /// An output of the server's own bytes (a response answered without
    /// the app), taking over `bytes` as its buffer.
    pub fn from_own(bytes: Vec<u8>) -> Output {
        let len = bytes.len();
        Output {
            pieces: if len == 0 {
                Vec::new()
            } else {
                vec![Piece::Own { start: 0, end: len }]
            },
            own: bytes,
            len,
            ..Output::default()
        }
    }

    /// Take over what `other` has written and not yet given back (its
    /// references wait here for [`Output::release`]), and its buffer if
    /// larger. `other` must have been written.
    pub fn absorb(&mut self, mut other: Output) {
        other.spend();
        self.spent.append(&mut other.spent);
        self.spent_bytes += other.spent_bytes;
        if other.own.capacity() > self.own.capacity() && self.own.is_empty() {
            self.own = other.own;
        }
    }

    /// Bytes queued and not yet written.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The server's own bytes (copied).
    pub fn extend(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let start = self.own.len();
        self.own.extend_from_slice(data);
        self.len += data.len();
        match self.pieces.last_mut() {
            Some(Piece::Own { end, .. }) if *end == start => *end = self.own.len(),
            _ => self.pieces.push(Piece::Own {
                start,
                end: self.own.len(),
            }),
        }
    }

    /// The buffer the server's own bytes go to: write into it, then call
    /// [`Output::extended`]. For `write!` without an intermediate String.
    pub fn own_buf(&mut self) -> &mut Vec<u8> {
        &mut self.own
    }

    /// Account for bytes appended to [`Output::own_buf`] since `start`.
    pub fn extended(&mut self, start: usize) {
        let end = self.own.len();
        if end == start {
            return;
        }
        self.len += end - start;
        match self.pieces.last_mut() {
            Some(Piece::Own { end: e, .. }) if *e == start => *e = end,
            _ => self.pieces.push(Piece::Own { start, end }),
        }
    }

    /// The first `len` bytes of an app's bytes object: referenced, or copied
    /// when short.
    pub fn push_bytes(&mut self, bytes: &Bound<'_, PyBytes>, len: usize) {
        let data = &bytes.as_bytes()[..len];
        if len < COPY_BELOW {
            self.extend(data);
            return;
        }
        self.len += len;
        self.pieces.push(Piece::Bytes {
            obj: bytes.clone().unbind(),
            ptr: data.as_ptr(),
            len,
        });
    }

    /// Write everything queued (without the GIL), then keep the references
    /// for [`Output::release`]. Returns the bytes written.
    pub fn write(&mut self, fd: RawFd, timeout: Duration) -> io::Result<u64> {
        if self.len == 0 {
            return Ok(0);
        }
        let slice = |p: &Piece| -> &[u8] {
            match p {
                Piece::Own { start, end } => &self.own[*start..*end],
                // SAFETY: see `unsafe impl Send`: `obj` keeps `len` bytes
                // at `ptr` alive and unchanged.
                Piece::Bytes { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            }
        };
        let r = if self.pieces.len() <= 8 {
            // The usual response: a few pieces, no allocation to list them.
            let mut parts: [&[u8]; 8] = [&[]; 8];
            for (slot, p) in parts.iter_mut().zip(&self.pieces) {
                *slot = slice(p);
            }
            crate::conn::write_vectored_timeout(fd, &parts[..self.pieces.len()], timeout)
        } else {
            let parts: Vec<&[u8]> = self.pieces.iter().map(slice).collect();
            crate::conn::write_vectored_timeout(fd, &parts, timeout)
        };
        self.spend();
        r
    }

    /// Whether what was written holds so much that it should be given back
    /// now, at the cost of attaching, rather than at the next request.
    pub fn release_at_once(&self) -> bool {
        self.spent_bytes >= RELEASE_AT_ONCE
    }

    /// Forget what is queued without writing it (the error path); the
    /// references wait for [`Output::release`].
    pub fn discard(&mut self) {
        self.spend();
    }

    fn spend(&mut self) {
        for p in self.pieces.drain(..) {
            if let Piece::Bytes { obj, len, .. } = p {
                self.spent.push(obj);
                self.spent_bytes += len as u64;
            }
        }
        self.own.clear();
        self.len = 0;
    }

    /// Give back the references of what was written (GIL held), and a
    /// buffer that grew large.
    pub fn release(&mut self, _py: Python<'_>) {
        self.spent.clear();
        if self.own.capacity() > KEEP_CAPACITY {
            self.own = Vec::new();
        }
        if std::mem::take(&mut self.spent_bytes) >= TRIM_AFTER {
            // Whatever the app no longer holds of a big body goes back now.
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim only releases free memory of the allocator.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }

    /// Empty, references given back (GIL held): ready for a new response.
    pub fn clear(&mut self, py: Python<'_>) {
        self.spend();
        self.release(py);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_bytes_merge_into_one_piece() {
        let mut o = Output::default();
        o.extend(b"HTTP/1.1 200 OK\r\n");
        let start = o.own_buf().len();
        o.own_buf().extend_from_slice(b"\r\n");
        o.extended(start);
        o.extend(b"");
        assert_eq!(o.len(), 19);
        assert_eq!(o.pieces.len(), 1);
    }
}
