//! The Python tracebacker: a UNIX socket per worker that answers every
//! connection with the live traceback of every Python thread in the worker,
//! in uWSGI's format, then closes.
//!
//! It always answers within a bound: first through the interpreter (the GIL
//! path, exact and complete) if the GIL comes within [`GIL_WAIT`], else
//! through CPython's signal-safe dumper (the signal path), which needs no
//! GIL at all. The socket thread never attaches to Python itself, so a
//! wedged interpreter cannot wedge it. Peers with another uid (except root)
//! are refused.

pub mod client;
pub mod format;
pub mod gil_path;
pub mod names;
pub mod signal_path;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::listen::{bind_unix, peer_uid, UnixPathError};

/// How long a dump waits for the GIL before switching to the GIL-free path.
pub const GIL_WAIT: Duration = Duration::from_millis(60);

/// Produce the dump text (header included).
pub fn dump() -> Vec<u8> {
    let stacks = gil_path::collect(GIL_WAIT)
        .or_else(|| signal_path::collect().ok())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(4096);
    let _ = format::write_dump(&mut out, &stacks);
    out
}

/// Bind the worker's tracebacker socket and serve it on its own thread.
/// Owner-only (0600) unless `chmod` says otherwise.
pub fn start(path: &Path, chmod: Option<u32>, timeout: Duration) -> Result<(), UnixPathError> {
    let listener = bind_unix(path, Some(0o600))?;
    if let Some(mode) = chmod {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
            |source| UnixPathError::Io {
                path: path.to_path_buf(),
                source,
            },
        )?;
    }
    let shown: PathBuf = path.to_path_buf();
    std::thread::Builder::new()
        .name("uwsgi-rs-tracebacker".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => serve(s, timeout),
                    Err(e) => {
                        crate::log::line(&format!("tracebacker {}: accept: {e}", shown.display()));
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(|source| UnixPathError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(())
}

/// Answer one client. Bounded by `timeout` for a client that never reads.
fn serve(mut stream: UnixStream, timeout: Duration) {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    match peer_uid(stream.as_raw_fd()) {
        Ok(uid) if uid == me || uid == 0 => {}
        Ok(uid) => {
            crate::log::line(&format!("tracebacker: refused a connection from uid {uid}"));
            return;
        }
        Err(e) => {
            crate::log::line(&format!("tracebacker: cannot check the peer: {e}"));
            return;
        }
    }
    let _ = stream.set_write_timeout(Some(timeout));
    let _ = stream.write_all(&dump());
}
