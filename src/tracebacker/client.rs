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

/// Send `request` to a tracebacker socket and read the answer.
pub fn ask(path: &str, request: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(request)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
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

/// The tracebacker sockets under `base`, by worker id: `base` + digits.
pub fn worker_sockets(base: &str) -> Vec<(usize, String)> {
    let path = std::path::Path::new(base);
    let (dir, prefix) = match (path.parent(), path.file_name()) {
        (Some(d), Some(f)) if !base.ends_with('/') => (
            if d.as_os_str().is_empty() {
                std::path::PathBuf::from(".")
            } else {
                d.to_path_buf()
            },
            f.to_string_lossy().into_owned(),
        ),
        _ => (path.to_path_buf(), String::new()),
    };
    let mut found: Vec<(usize, String)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id: usize = name.strip_prefix(prefix.as_str())?.parse().ok()?;
            use std::os::unix::fs::FileTypeExt;
            e.file_type()
                .ok()?
                .is_socket()
                .then(|| (id, format!("{base}{id}")))
        })
        .collect();
    found.sort();
    found
}

/// Ask one worker for its rich dump.
pub fn fetch_json(addr: &str, timeout: Duration) -> Result<super::rich::WorkerDump, String> {
    // The server gives the JSON form only if our request line arrives within
    // a few milliseconds of the connection (uWSGI's clients send nothing and
    // get the plain dump). A client descheduled in between gets the plain
    // dump or a closed socket: ask again, a few times.
    let mut last = String::new();
    for _ in 0..5 {
        match ask(addr, b"json\n", timeout) {
            Ok(out) if out.is_empty() => return Err("closed without answering (refused?)".into()),
            Ok(out) => match serde_json::from_slice(&out) {
                Ok(dump) => return Ok(dump),
                Err(e) if out.starts_with(super::format::HEADER.as_bytes()) => last = e.to_string(),
                Err(e) => return Err(format!("unreadable answer: {e}")),
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("no answer within {}s", timeout.as_secs()))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                last = e.to_string()
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("no JSON answer after 5 tries ({last})"))
}

/// The `--tracebacks BASE [--json]` command: every worker, in order.
pub fn tracebacks(base: &str, json: bool, timeout_secs: u64) -> Result<()> {
    let sockets = worker_sockets(base);
    if sockets.is_empty() {
        return Err(anyhow!(
            "no tracebacker sockets found under {base} (expected {base}1, {base}2, ...)"
        ));
    }
    let timeout = Duration::from_secs(timeout_secs.max(1));
    let results: Vec<super::rich::WorkerResult> = sockets
        .iter()
        .map(|(id, path)| (*id, fetch_json(path, timeout)))
        .collect();
    let mut stdout = io::stdout().lock();
    if json {
        let workers: Vec<serde_json::Value> = results
            .iter()
            .map(|(id, r)| match r {
                Ok(d) => serde_json::to_value(d).unwrap_or_default(),
                Err(e) => serde_json::json!({ "worker": id, "error": e }),
            })
            .collect();
        let doc = serde_json::json!({ "base": base, "workers": workers });
        let mut text = serde_json::to_vec_pretty(&doc)?;
        text.push(b'\n');
        stdout.write_all(&text)?;
    } else {
        super::rich::write_text(&mut stdout, base, &results)?;
    }
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
