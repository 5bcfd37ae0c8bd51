//! `--master-fifo PATH` (repeatable): a named pipe the master reads
//! one-byte commands from (`echo r > PATH`), as uWSGI's core/fifo.c. The
//! first path is slot 0; `0`..`9` switch to another slot's path, which is
//! then created and read instead (the old file is left for whoever uses it
//! next, as in uWSGI's zerg dance).
//!
//! The fifo is opened read-write and non-blocking: the master holds a
//! writer itself, so it never sees end-of-file between clients (uWSGI
//! re-creates its fifo at every EOF, a window in which a client's open
//! blocks) and a read never waits. This module reads and decodes; the
//! master carries the commands out (`actions`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::actions::{self, Action};
use crate::log;

pub struct MasterFifo {
    paths: Vec<PathBuf>,
    slot: usize,
    fd: OwnedFd,
    /// Owner to give the fifos (`--uid`/`--gid`: the app's user writes them).
    owner: (Option<u32>, Option<u32>),
    /// Every fifo this master created, with its identity: removed at
    /// exit unless another process has replaced it since.
    created: Vec<(PathBuf, Identity)>,
}

impl MasterFifo {
    /// Create the fifo of slot 0. None when no `--master-fifo` is given.
    pub fn open(paths: &[PathBuf], owner: (Option<u32>, Option<u32>)) -> Result<Option<Self>> {
        let Some(first) = paths.first() else {
            return Ok(None);
        };
        let mut created = Vec::new();
        let fd = create(first, owner, &mut created)?;
        Ok(Some(MasterFifo {
            paths: paths.to_vec(),
            slot: 0,
            fd,
            owner,
            created,
        }))
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Every descriptor this holds (the one read, and those that keep the
    /// fifos it made allocated): a child of the master closes them all.
    pub fn all_fds(&self) -> Vec<RawFd> {
        std::iter::once(self.fd())
            .chain(self.created.iter().map(|(_, id)| id.2.as_raw_fd()))
            .collect()
    }

    /// The path commands are read from now.
    pub fn path(&self) -> &Path {
        &self.paths[self.slot]
    }

    /// Read every command waiting; slot switches are done here, the other
    /// commands returned in order.
    pub fn read(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: non-blocking read into a live buffer.
            let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            for &b in &buf[..n as usize] {
                match actions::fifo_command(b) {
                    Some(Action::FifoSlot(s)) => self.switch(s as usize),
                    Some(a) => out.push(a),
                    None if b.is_ascii_whitespace() => {}
                    None => match actions::fifo_command_without_effect(b) {
                        Some(what) => {
                            log::line(&format!("master fifo: '{}' ({what}): ignored", b as char))
                        }
                        None => log::line(&format!(
                            "master fifo: unknown command {}: ignored",
                            log::escape(&[b])
                        )),
                    },
                }
            }
        }
        out
    }

    fn switch(&mut self, slot: usize) {
        if slot >= self.paths.len() {
            log::line(&format!(
                "master fifo: there is no fifo slot {slot} ({} --master-fifo given): staying on {}",
                self.paths.len(),
                self.path().display()
            ));
            return;
        }
        if slot == self.slot {
            return;
        }
        match create(&self.paths[slot], self.owner, &mut self.created) {
            Ok(fd) => {
                self.fd = fd;
                self.slot = slot;
                log::stamped(&format!(
                    "active master fifo is now {}",
                    self.path().display()
                ));
            }
            Err(e) => log::line(&format!(
                "master fifo: {e:#}; staying on slot {}",
                self.slot
            )),
        }
    }

    /// At exit: remove the fifos this master made that are still its own.
    pub fn remove(&self) {
        for (path, id) in &self.created {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == id.0 && m.ino() == id.1) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Device and inode of a fifo this master made, and a descriptor that
/// keeps that inode allocated: a fifo another master makes at the same path
/// later (a new master of the fifo's `f` does exactly that) can then never
/// get the same inode number, so [`MasterFifo::remove`] never takes it.
type Identity = (u64, u64, OwnedFd);
/// Make a fifo at `path` (replacing a fifo there, never anything else) and
/// open it read-write, non-blocking.
fn create(
    path: &Path,
    owner: (Option<u32>, Option<u32>),
    created: &mut Vec<(PathBuf, Identity)>,
) -> Result<OwnedFd> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => std::fs::remove_file(path)
            .with_context(|| format!("cannot replace {}", path.display()))?,
        Ok(_) => bail!(
            "--master-fifo {}: exists and is not a fifo: refusing to replace it",
            path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("--master-fifo {}", path.display())),
    }
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .with_context(|| format!("--master-fifo {}: NUL in path", path.display()))?;
    // SAFETY: mkfifo/open on a NUL-terminated path we own.
    let fd = unsafe {
        if libc::mkfifo(c.as_ptr(), 0o600) != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("--master-fifo {}: cannot create", path.display()));
        }
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("--master-fifo {}: cannot open", path.display()));
    }
    // SAFETY: a new fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if owner.0.is_some() || owner.1.is_some() {
        std::os::unix::fs::chown(path, owner.0, owner.1)
            .with_context(|| format!("--master-fifo {}: cannot chown", path.display()))?;
    }
    let meta = std::fs::File::from(fd.try_clone()?).metadata()?;
    created.push((
        path.to_path_buf(),
        (meta.dev(), meta.ino(), fd.try_clone()?),
    ));
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("uwsgi-rs-fifo-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn send(path: &Path, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn commands_in_order_and_slots_switch() {
        let d = dir("slots");
        let (a, b) = (d.join("a"), d.join("b"));
        let mut f = MasterFifo::open(&[a.clone(), b.clone()], (None, None))
            .unwrap()
            .unwrap();
        assert!(f.read().is_empty());
        send(&a, b"r\nq");
        assert_eq!(f.read(), vec![Action::GracefulReload, Action::GracefulStop]);
        // A writer that has gone leaves no end-of-file behind.
        assert!(f.read().is_empty());
        send(&a, b"1w"); // the rest of a read still counts
        assert_eq!(f.read(), vec![Action::ReloadWorkers]);
        assert_eq!(f.path(), b.as_path());
        send(&b, b"Q");
        assert_eq!(f.read(), vec![Action::ImmediateStop]);
        send(&b, b"7"); // no such slot
        assert!(f.read().is_empty());
        assert_eq!(f.path(), b.as_path());
        f.remove();
        assert!(!a.exists() && !b.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn never_replaces_a_regular_file_nor_removes_a_successors_fifo() {
        let d = dir("safe");
        let file = d.join("file");
        std::fs::write(&file, b"keep").unwrap();
        assert!(MasterFifo::open(std::slice::from_ref(&file), (None, None)).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
        let p = d.join("fifo");
        let first = MasterFifo::open(std::slice::from_ref(&p), (None, None))
            .unwrap()
            .unwrap();
        let second = MasterFifo::open(std::slice::from_ref(&p), (None, None))
            .unwrap()
            .unwrap();
        first.remove(); // the path is the second one's now
        assert!(p.exists());
        second.remove();
        assert!(!p.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
