//! `--connect-and-read`: connect to a socket, copy what it says to stdout
//! until EOF. Also used by the master to fetch a worker's dump at harakiri.
//! Never starts a server.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{anyhow, Result};

/// A UNIX path unless it looks like `HOST:PORT`.
fn is_tcp(addr: &str) -> bool {
    !addr.contains('/')
        && addr
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
}

/// Read everything the peer at `addr` sends, bounded by `timeout` of silence.
pub fn fetch(addr: &str, timeout: Duration) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if is_tcp(addr) {
        let sa = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "address does not resolve"))?;
        let mut s = TcpStream::connect_timeout(&sa, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.read_to_end(&mut out)?;
    } else {
        let mut s = UnixStream::connect(addr)?;
        s.set_read_timeout(Some(timeout))?;
        s.read_to_end(&mut out)?;
    }
    Ok(out)
}

/// The `--connect-and-read` command.
pub fn connect_and_read(addr: &str, timeout_secs: u64) -> Result<()> {
    let data =
        fetch(addr, Duration::from_secs(timeout_secs.max(1))).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                anyhow!("timed out after {timeout_secs}s reading from {addr}")
            }
            _ => anyhow!("cannot read from {addr}: {e}"),
        })?;
    let mut stdout = io::stdout().lock();
    stdout.write_all(&data)?;
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tells_tcp_from_unix() {
        assert!(super::is_tcp("127.0.0.1:9000"));
        assert!(super::is_tcp("localhost:9000"));
        assert!(!super::is_tcp("/tmp/tbsocket.1"));
        assert!(!super::is_tcp("tbsocket1"));
    }
}
