//! The interpreter the server runs in: the user's own CPython, already
//! running when the `uwsgi-rs` console script calls into this extension.
//!
//! Owns what the server changes in that interpreter before any process is
//! forked, so every process inherits it: `--env` into `os.environ`,
//! `--home`/`$VIRTUAL_ENV` naming another environment, `sys.path`,
//! `sys.argv` (`--pyargv`), unbuffered stdio and the `uwsgi` module. And
//! [`fork`], through which every process of the server is made: with the
//! GIL held and CPython's fork hooks run, exactly as `os.fork()` does it.
//! Never imports app code.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::config::Config;

/// Prepare the running interpreter for serving; called once, in the master,
/// before anything is forked.
pub fn prepare(py: Python<'_>, cfg: &Config) -> Result<()> {
    let threads = thread_count();
    if threads > 1 {
        // Python started a thread before us (sitecustomize, a .pth file):
        // forking copies no thread but this one, and locks the others hold
        // stay held in the children. CPython's fork hooks handle its own.
        crate::log::line(&format!(
            "warning: {threads} threads run in the master before it forks (started by site or sitecustomize?)"
        ));
    }
    let os = py.import("os")?;
    let environ = os.getattr("environ")?;
    for (k, v) in &cfg.env {
        // os.environ's setter also calls putenv, so C code sees it too.
        environ
            .set_item(k, v)
            .map_err(|e| anyhow!("--env {k}: {e}"))?;
    }
    // What the master already changed in the C environment (os.environ is
    // a copy made when the interpreter started): the systemd variables it
    // consumed, and `putenv:` hooks of the phases it ran.
    for name in crate::systemd::ENV_VARS {
        if std::env::var_os(name).is_none() {
            environ.call_method1("pop", (*name, py.None()))?;
        }
    }
    let early = crate::hooks::putenv_pairs(
        cfg,
        &[
            crate::config::HookPhase::Asap,
            crate::config::HookPhase::AsRoot,
        ],
    );
    sync_environ(py, &early)?;
    crate::tracebacker::set_launcher_frames(launcher_frames(py)?);
    note_optimize_level(py, cfg)?;
    adopt_home(py, cfg)?;
    set_sys_path(py, cfg).map_err(|e| anyhow!("setting sys.path: {e}"))?;
    py.run(UNBUFFERED_STDIO, None, None)
        .map_err(|e| anyhow!("making stdio unbuffered: {e}"))?;
    crate::uwsgi_module::install(py, cfg).map_err(|e| anyhow!("the uwsgi module: {e}"))?;
    Ok(())
}

/// Set `os.environ` entries (a `putenv:` hook changed the C environment,
/// which os.environ, a copy, does not see).
pub fn sync_environ(py: Python<'_>, pairs: &[(String, String)]) -> PyResult<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    let environ = py.import("os")?.getattr("environ")?;
    for (k, v) in pairs {
        environ.set_item(k, v)?;
    }
    Ok(())
}

/// The command line that starts this server again (the master fifo's `f`):
/// the interpreter's own command line when Python records it
/// (`sys.orig_argv`, 3.10+, keeps interpreter options), else
/// `python -m uwsgi_rs` with the same arguments.
pub fn reexec_argv(py: Python<'_>, argv: &[String]) -> Result<Vec<std::ffi::CString>> {
    let sys = py.import("sys")?;
    // argv[0] may be a bare `python` found on PATH: exec needs the path.
    let exe: String = sys.getattr("executable")?.extract()?;
    let words: Vec<String> = match sys.getattr("orig_argv") {
        Ok(orig) => {
            let mut w: Vec<String> = orig.extract()?;
            if let Some(first) = w.first_mut() {
                *first = exe;
            }
            w
        }
        Err(_) => [exe, "-m".into(), "uwsgi_rs".into()]
            .into_iter()
            .chain(argv.iter().skip(1).cloned())
            .collect(),
    };
    words
        .into_iter()
        .map(|w| std::ffi::CString::new(w).map_err(|_| anyhow!("NUL in the command line")))
        .collect()
}

/// `--optimize N` cannot change a running interpreter's level (it is fixed
/// at start-up, and bytecode is compiled for it): say how to get it.
fn note_optimize_level(py: Python<'_>, cfg: &Config) -> PyResult<()> {
    let level: u8 = py
        .import("sys")?
        .getattr("flags")?
        .getattr("optimize")?
        .extract()?;
    if cfg.app.optimize > 0 && level != cfg.app.optimize {
        crate::log::line(&format!(
            "--optimize {} is not in effect (the interpreter runs at level {level}): \
             set PYTHONOPTIMIZE={} in the server's environment",
            cfg.app.optimize, cfg.app.optimize
        ));
    }
    Ok(())
}

/// (filename, function) of each Python frame under this call, outermost
/// first: the console script (or runpy) and `uwsgi_rs.main`.
fn launcher_frames(py: Python<'_>) -> PyResult<Vec<(String, String)>> {
    // extract_stack() starts at its caller's frame: with no Python frame of
    // our own, that is uwsgi_rs.main's.
    let stack = py.import("traceback")?.call_method0("extract_stack")?;
    stack
        .try_iter()?
        .map(|f| {
            let f = f?;
            Ok((
                f.getattr("filename")?.extract()?,
                f.getattr("name")?.extract()?,
            ))
        })
        .collect()
}

/// App output reaches the log as it is written, and nothing is left in a
/// buffer when a worker leaves with `_exit` (what `python -u` does).
const UNBUFFERED_STDIO: &std::ffi::CStr = cr#"
import io, sys
def _uwsgi_rs_unbuffered(name, fd):
    old = getattr(sys, name)
    try:
        if old is None or old.fileno() != fd:
            return
        old.flush()
        new = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding=old.encoding,
                               errors=old.errors, line_buffering=False, write_through=True)
    except (AttributeError, OSError, ValueError):
        return
    setattr(sys, name, new)
    setattr(sys, "__%s__" % name, new)
_uwsgi_rs_unbuffered("stdout", 1)
_uwsgi_rs_unbuffered("stderr", 2)
del _uwsgi_rs_unbuffered
"#;

/// uWSGI's order: the working directory first, then `--pythonpath` entries,
/// then the interpreter's own path. The app sees `sys.argv` as under the
/// old embedded interpreter: the program name, then `--pyargv`'s words,
/// never uwsgi-rs's flags (an app parsing its argv at import would trip
/// over them).
fn set_sys_path(py: Python<'_>, cfg: &Config) -> PyResult<()> {
    let sys = py.import("sys")?;
    let path = sys.getattr("path")?.cast_into::<PyList>()?;
    let mut front: Vec<String> = vec![std::env::current_dir()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default()];
    front.extend(
        cfg.pythonpath
            .iter()
            .map(|p| p.to_string_lossy().into_owned()),
    );
    for p in &front {
        while path.contains(p)? {
            path.call_method1("remove", (p,))?;
        }
    }
    for (i, p) in front.iter().enumerate() {
        path.insert(i, p)?;
    }
    let argv0 = sys.getattr("argv")?.get_item(0)?;
    let argv = PyList::new(py, [argv0])?;
    for word in pyargv_words(cfg.app.pyargv.as_deref().unwrap_or("")) {
        argv.append(word)?;
    }
    sys.setattr("argv", argv)?;
    Ok(())
}

/// `--pyargv` split as uWSGI splits it: at spaces and tabs, no quoting, no
/// empty words.
fn pyargv_words(value: &str) -> impl Iterator<Item = &str> {
    value.split([' ', '\t']).filter(|w| !w.is_empty())
}

/// `--home`/`--virtualenv` (or `$VIRTUAL_ENV`) naming an environment other
/// than the one running: the interpreter cannot be swapped any more, so an
/// environment of the same Python X.Y lends its site-packages (ahead of the
/// interpreter's own) and becomes `sys.prefix`, as uWSGI's home does; one
/// of another X.Y is refused with what to do instead. `$VIRTUAL_ENV` left
/// over from another shell only warns.
fn adopt_home(py: Python<'_>, cfg: &Config) -> Result<()> {
    let (home, explicit) = match (&cfg.home, std::env::var_os("VIRTUAL_ENV")) {
        (Some(h), _) => (h.clone(), true),
        (None, Some(v)) if !v.is_empty() => (PathBuf::from(v), false),
        _ => return Ok(()),
    };
    let refuse = |msg: String| -> Result<()> {
        if explicit {
            bail!("{msg}")
        }
        crate::log::line(&format!("ignoring VIRTUAL_ENV: {msg}"));
        Ok(())
    };
    if !home.is_dir() {
        return refuse(format!("python home {} is not a directory", home.display()));
    }
    let sys = py.import("sys")?;
    let here = |attr: &str| -> Result<PathBuf> {
        Ok(PathBuf::from(sys.getattr(attr)?.extract::<String>()?))
    };
    let (prefix, base) = (here("prefix")?, here("base_prefix")?);
    if same_dir(&home, &prefix) || same_dir(&home, &base) {
        return Ok(()); // the running interpreter's own environment
    }
    let (major, minor): (u32, u32) = sys
        .getattr("version_info")?
        .extract::<(u32, u32, u32, String, u32)>()
        .map(|v| (v.0, v.1))?;
    let mine = format!("{major}.{minor}");
    let site = home
        .join("lib")
        .join(format!("python{mine}"))
        .join("site-packages");
    if !site.is_dir() {
        let theirs = python_versions_in(&home);
        if !theirs.is_empty() && !theirs.contains(&mine) {
            let exe = here("executable")?;
            return refuse(format!(
                "{} is a Python {} environment but uwsgi-rs runs on Python {mine} ({}): install uwsgi-rs into it ({}/bin/pip install uwsgi-rs) and run its bin/uwsgi-rs",
                home.display(),
                theirs.join("/"),
                exe.display(),
                home.display()
            ));
        }
        if !home.join("lib").join(format!("python{mine}")).is_dir() {
            return refuse(format!(
                "python home {} has no lib/python{mine}",
                home.display()
            ));
        }
        return Ok(()); // a Python installation without site-packages (Debian's /usr)
    }
    let site_s = site.to_string_lossy().into_owned();
    let path = sys
        .getattr("path")?
        .cast_into::<PyList>()
        .map_err(PyErr::from)?;
    let before: Vec<String> = path.extract()?;
    py.import("site")?
        .call_method1("addsitedir", (&site_s,))
        .with_context(|| format!("adding {site_s}"))?;
    // addsitedir appends: move what it added (the directory and its .pth
    // entries) ahead of the first site-packages already there.
    let after: Vec<String> = path.extract()?;
    let added: Vec<&String> = after.iter().filter(|p| !before.contains(p)).collect();
    let at = before
        .iter()
        .position(|p| p.ends_with("site-packages") || p.ends_with("dist-packages"))
        .unwrap_or(before.len());
    let mut reordered: Vec<&String> = before.iter().take(at).collect();
    reordered.extend(added.iter().copied());
    reordered.extend(before.iter().skip(at));
    path.call_method1("__setitem__", (pyo3::types::PySlice::full(py), reordered))?;
    let home_s = home.to_string_lossy().into_owned();
    sys.setattr("prefix", &home_s)?;
    sys.setattr("exec_prefix", &home_s)?;
    crate::log::line(&format!(
        "python home {home_s}: its site-packages come first"
    ));
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// "3.12" for every lib/python3.12 under a home, sorted.
fn python_versions_in(home: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(home.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("python")
                .filter(|v| v.split('.').count() == 2)
                .map(str::to_string)
        })
        .collect();
    found.sort();
    found
}

/// Threads in this process, from the kernel (Python's count misses threads
/// it did not start).
fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// Which side of a [`fork`] the caller is on.
pub enum Forked {
    Child,
    Parent(libc::pid_t),
}

/// fork(2) as `os.fork()` does it: with the GIL held, so no other thread is
/// inside the interpreter, and with CPython's hooks around it
/// (`PyOS_BeforeFork` takes the import and runtime locks, the child
/// re-creates them and runs `os.register_at_fork` callbacks: threading,
/// random). The GIL is released again on both sides when this returns.
/// Call only from a process with no other thread that holds locks the
/// child needs (the master is single-threaded; see [`prepare`]).
pub fn fork() -> std::io::Result<Forked> {
    // GIL: held across the fork itself, released on return in both processes.
    Python::attach(|_py| {
        // SAFETY: the three hooks are called with the GIL held, on the
        // thread that forks, in the order CPython's own os.fork uses.
        unsafe {
            ffi::PyOS_BeforeFork();
            let pid = libc::fork();
            if pid == 0 {
                ffi::PyOS_AfterFork_Child();
                return Ok(Forked::Child);
            }
            let err = std::io::Error::last_os_error();
            ffi::PyOS_AfterFork_Parent();
            if pid < 0 {
                Err(err)
            } else {
                Ok(Forked::Parent(pid))
            }
        }
    })
}

/// Like [`fork`], but the child is a grandchild that this process's parent
/// adopts: an intermediate process forks it and exits at once, and the
/// orphan is re-parented to the nearest child subreaper (the master, see
/// `crate::loader`). Returns the grandchild's pid to the caller. The
/// intermediate runs no Python: it only forks, reports and leaves.
pub fn fork_orphan() -> std::io::Result<Forked> {
    let mut pipe = [0; 2];
    // SAFETY: pipe2 fills a 2-int array.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let [rd, wr] = pipe;
    // GIL: held across both forks, released on return in both processes.
    let forked = Python::attach(|_py| {
        // SAFETY: as in fork(); the intermediate process calls only fork,
        // write and _exit, all async-signal-safe, so the grandchild starts
        // from the very state PyOS_BeforeFork prepared and runs the
        // child-side hook itself.
        unsafe {
            ffi::PyOS_BeforeFork();
            let mid = libc::fork();
            if mid == 0 {
                let pid = libc::fork();
                if pid == 0 {
                    libc::close(rd);
                    libc::close(wr);
                    ffi::PyOS_AfterFork_Child();
                    return Ok(Forked::Child);
                }
                let report = if pid < 0 {
                    -std::io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EIO)
                } else {
                    pid
                };
                libc::write(wr, (&report as *const i32).cast(), 4);
                libc::_exit(0);
            }
            let err = std::io::Error::last_os_error();
            ffi::PyOS_AfterFork_Parent();
            if mid < 0 {
                return Err(err);
            }
            let mut status = 0;
            libc::waitpid(mid, &mut status, 0);
            Ok(Forked::Parent(mid))
        }
    });
    let result = match forked {
        Ok(Forked::Parent(_)) => {
            let mut report = 0i32;
            // SAFETY: reading 4 bytes into a live i32 from our pipe; the
            // intermediate wrote them before it exited (and was reaped).
            let n = unsafe { libc::read(rd, (&mut report as *mut i32).cast(), 4) };
            if n != 4 {
                Err(std::io::Error::other(
                    "the intermediate process reported nothing",
                ))
            } else if report < 0 {
                Err(std::io::Error::from_raw_os_error(-report))
            } else {
                Ok(Forked::Parent(report))
            }
        }
        other => other,
    };
    if !matches!(result, Ok(Forked::Child)) {
        // SAFETY: our pipe's fds (the child closed its copies already).
        unsafe {
            libc::close(rd);
            libc::close(wr);
        }
    }
    result
}

/// Give the calling thread its uWSGI name in Python's `threading` module, so
/// tracebacks and `threading.current_thread().name` show it.
pub fn name_current_thread(py: Python<'_>, name: &str, is_main: bool) -> PyResult<()> {
    let threading = py.import("threading")?;
    let thread = if is_main {
        threading.call_method0("main_thread")?
    } else {
        threading.call_method0("current_thread")?
    };
    thread.setattr("name", name)?;
    Ok(())
}

/// Keep a traceback piece from forging log lines: exception messages often
/// carry request data. Control characters become `\xNN`; line breaks stay
/// only where Python's own structure puts them (frames, chain separators,
/// the final newline), so an app's message stays on its line.
fn sanitize_traceback_piece(piece: &str) -> String {
    let structural = piece.starts_with("  File ")
        || piece.starts_with("Traceback (most recent call last)")
        || piece.starts_with("\nDuring handling")
        || piece.starts_with("\nThe above exception");
    let last = piece.len().saturating_sub(1);
    let mut out = String::with_capacity(piece.len());
    for (i, ch) in piece.char_indices() {
        match ch {
            '\n' if structural || i == last => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\t' => out.push('\t'),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The formatted traceback of a Python error, as Python prints it (with
/// control characters in messages escaped).
pub fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    let formatted = (|| -> PyResult<String> {
        let tb = py.import("traceback")?;
        let lines = tb.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?;
        let joined: String = lines
            .try_iter()?
            .filter_map(|l| l.ok()?.extract::<String>().ok())
            .map(|piece| sanitize_traceback_piece(&piece))
            .collect();
        Ok(joined)
    })();
    formatted.unwrap_or_else(|_| format!("{err}\n"))
}

#[cfg(test)]
mod tests {
    use super::sanitize_traceback_piece as clean;

    #[test]
    fn pyargv_splits_at_blanks_without_quoting() {
        let words: Vec<&str> = super::pyargv_words("  --db\tprod \"a b\"  -v ").collect();
        assert_eq!(words, ["--db", "prod", "\"a", "b\"", "-v"]);
        assert_eq!(super::pyargv_words("").count(), 0);
    }

    #[test]
    fn exception_messages_cannot_forge_log_lines() {
        assert_eq!(
            clean("KeyError: '/x\r\nFAKE LINE\x1b'\n"),
            "KeyError: '/x\\x0d\\nFAKE LINE\\x1b'\n"
        );
        assert_eq!(
            clean("  File \"a.py\", line 1, in f\n    g()\n"),
            "  File \"a.py\", line 1, in f\n    g()\n"
        );
        assert_eq!(
            clean("Traceback (most recent call last):\n"),
            "Traceback (most recent call last):\n"
        );
    }
}
