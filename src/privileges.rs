//! Dropping root: `--uid` and `--gid` are resolved by the master at start
//! (so a typo fails before anything is served) and applied in each worker
//! right after `fork`, once the listening sockets are already bound. The
//! master, which keeps its ids, creates the files uWSGI creates after
//! dropping them with the workers' file-system ids ([`with_fs_ids`]).
//!
//! Workers never keep root when these are given: the drop is checked, and
//! a worker that cannot drop exits instead of serving.

use std::ffi::CString;

use anyhow::{anyhow, bail, Result};

#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Resolve names or numbers to ids.
pub fn resolve(uid: Option<&str>, gid: Option<&str>) -> Result<Credentials> {
    let uid = uid
        .map(|u| u.parse::<u32>().or_else(|_| user_id("--uid", u)))
        .transpose()?;
    let gid = gid
        .map(|g| g.parse::<u32>().or_else(|_| group_id("--gid", g)))
        .transpose()?;
    Ok(Credentials { uid, gid })
}

/// `--chown-socket USER[:GROUP]` as ids (names or numbers).
pub fn resolve_owner(user: &str, group: Option<&str>) -> Result<(u32, Option<u32>)> {
    let uid = user
        .parse::<u32>()
        .or_else(|_| user_id("--chown-socket", user))?;
    let gid = group
        .map(|g| g.parse::<u32>().or_else(|_| group_id("--chown-socket", g)))
        .transpose()?;
    Ok((uid, gid))
}

fn user_id(option: &str, name: &str) -> Result<u32> {
    let c = CString::new(name)?;
    // SAFETY: getpwnam returns a pointer to static storage or NULL; the
    // master is single-threaded at this point.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        bail!("{option} {name}: no such user");
    }
    // SAFETY: non-null, points to a valid passwd.
    Ok(unsafe { (*pw).pw_uid })
}

fn group_id(option: &str, name: &str) -> Result<u32> {
    let c = CString::new(name)?;
    // SAFETY: as for getpwnam.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        bail!("{option} {name}: no such group");
    }
    // SAFETY: non-null, points to a valid group.
    Ok(unsafe { (*gr).gr_gid })
}

/// Run `f` with the file-system identity of the workers, for the files
/// uWSGI creates after dropping privileges (`--logto2`, `--pidfile2`): the
/// file is opened as the workers would open it, and is theirs. The master
/// is single-threaded when it does this, and setfsuid only affects the
/// calling thread anyway.
pub fn with_fs_ids<T>(creds: Credentials, f: impl FnOnce() -> T) -> T {
    // SAFETY: setfsuid/setfsgid change only this thread's file-system ids
    // and return the previous ones, which are restored below.
    unsafe {
        let old_gid = creds.gid.map(|g| libc::setfsgid(g as libc::gid_t));
        let old_uid = creds.uid.map(|u| libc::setfsuid(u as libc::uid_t));
        let r = f();
        if let Some(u) = old_uid {
            libc::setfsuid(u as libc::uid_t);
        }
        if let Some(g) = old_gid {
            libc::setfsgid(g as libc::gid_t);
        }
        r
    }
}

/// Apply in the worker: supplementary groups, gid, then uid (in that order,
/// since after setuid we may no longer change groups).
pub fn drop_to(creds: Credentials) -> Result<()> {
    // SAFETY: plain credential syscalls; results checked.
    unsafe {
        if let Some(gid) = creds.gid {
            if libc::setgroups(1, &gid) != 0 || libc::setgid(gid) != 0 {
                return Err(anyhow!(
                    "cannot set gid {gid}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        if let Some(uid) = creds.uid {
            if creds.gid.is_none() && libc::setgroups(0, std::ptr::null()) != 0 {
                return Err(anyhow!(
                    "cannot clear groups: {}",
                    std::io::Error::last_os_error()
                ));
            }
            if libc::setuid(uid) != 0 {
                return Err(anyhow!(
                    "cannot set uid {uid}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            if uid != 0 && (libc::setuid(0) == 0 || libc::geteuid() == 0) {
                bail!("privileges were not dropped");
            }
        }
    }
    Ok(())
}
