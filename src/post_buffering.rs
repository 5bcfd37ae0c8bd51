//! `--post-buffering N`: read a request body before the app runs, as uWSGI
//! does (core/protocol.c `uwsgi_postbuffer_do_in_mem` / `_in_disk`): a
//! body under N bytes into memory, one of N bytes or more into a temporary
//! file (unlinked at once, so nothing is left behind), read in
//! `--post-buffering-bufsize` pieces. The app then reads `wsgi.input`
//! without waiting on the client, and a slow upload holds no GIL.
//!
//! Only bodies with a Content-Length are buffered (uWSGI's rule); a
//! chunked body streams as without the option. Socket I/O only, no Python.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::RawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use crate::conn::read_timeout;

/// uWSGI's default `--post-buffering-bufsize`.
pub const DEFAULT_BUFSIZE: usize = 8192;

/// Where the body went.
#[derive(Debug)]
pub enum Buffered {
    /// In the connection's buffer (`buf` holds at least the body).
    Memory,
    /// In this file, read position at its start; `buf` holds what came
    /// after the body.
    Disk(File),
}

/// An unlinked temporary file, readable and writable.
fn temp_file() -> io::Result<File> {
    let dir = std::env::temp_dir();
    let tmp = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(&dir);
    match tmp {
        Ok(f) => Ok(f),
        Err(_) => {
            // A file system without O_TMPFILE: create, then unlink.
            let path = dir.join(format!(
                "uwsgi-rs-body-{}-{:x}",
                std::process::id(),
                crate::log::unix_millis() ^ (&dir as *const _ as u64)
            ));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(f)
        }
    }
}

/// Read a body of `len` bytes (some may already be in `buf`) from `fd`:
/// into `buf` when `len < threshold`, else into a temporary file.
pub fn buffer(
    fd: RawFd,
    buf: &mut Vec<u8>,
    len: u64,
    threshold: u64,
    bufsize: usize,
    timeout: Duration,
) -> io::Result<Buffered> {
    let bufsize = bufsize.clamp(512, 1 << 20);
    let eof = || io::Error::new(io::ErrorKind::UnexpectedEof, "client closed mid-body");
    if len < threshold {
        let len = len as usize;
        while buf.len() < len {
            let at = buf.len();
            buf.resize(at + bufsize.min(len - at).max(1), 0);
            let n = read_timeout(fd, &mut buf[at..], timeout);
            buf.truncate(at + *n.as_ref().unwrap_or(&0));
            if n? == 0 {
                return Err(eof());
            }
        }
        return Ok(Buffered::Memory);
    }
    // An app that closed stderr must not find the next body under fd 2.
    let mut file = File::from(crate::log::fds::off_std(temp_file()?.into()));
    let have = buf.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    file.write_all(&buf[..have])?;
    buf.drain(..have);
    let mut left = len - have as u64;
    let mut chunk = vec![0u8; bufsize];
    while left > 0 {
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = read_timeout(fd, &mut chunk[..want], timeout)?;
        if n == 0 {
            return Err(eof());
        }
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.rewind()?;
    Ok(Buffered::Disk(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        (s, c)
    }

    #[test]
    fn small_bodies_stay_in_memory_big_ones_go_to_disk() {
        let (server, mut client) = pair();
        client.write_all(b"lo wor").unwrap();
        let mut buf = b"hel".to_vec();
        let r = buffer(
            server.as_raw_fd(),
            &mut buf,
            6,
            100,
            4,
            Duration::from_secs(2),
        )
        .unwrap();
        assert!(matches!(r, Buffered::Memory));
        assert!(buf.starts_with(b"hello "));

        let body = vec![b'x'; 100_000];
        let (server, mut client) = pair();
        let writer = std::thread::spawn(move || {
            client.write_all(&body[10..]).unwrap();
            client.write_all(b"NEXT").unwrap();
            client
        });
        let mut buf = vec![b'x'; 10];
        let r = buffer(
            server.as_raw_fd(),
            &mut buf,
            100_000,
            1000,
            8192,
            Duration::from_secs(5),
        )
        .unwrap();
        let Buffered::Disk(mut f) = r else {
            panic!("not on disk")
        };
        let mut all = Vec::new();
        f.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 100_000);
        assert!(buf.is_empty() || b"NEXT".starts_with(&buf));
        drop(writer.join().unwrap());
    }

    #[test]
    fn a_client_that_stops_early_is_an_error() {
        let (server, mut client) = pair();
        client.write_all(b"abc").unwrap();
        drop(client);
        let mut buf = Vec::new();
        let e = buffer(
            server.as_raw_fd(),
            &mut buf,
            10,
            100,
            8192,
            Duration::from_secs(2),
        );
        assert!(e.is_err());
        let (server, client) = pair();
        let mut buf = Vec::new();
        let e = buffer(
            server.as_raw_fd(),
            &mut buf,
            10,
            5,
            8192,
            Duration::from_millis(200),
        );
        assert!(e.is_err(), "silent client: the socket timeout");
        drop(client);
    }
}
