//! Starting the embedded CPython interpreter inside a worker process.
//!
//! Owns the interpreter's configuration: which Python home or virtualenv is
//! used (so `sys.prefix` is the user's environment), `sys.path`, and that
//! Python installs no signal handlers of its own (the server owns signals).
//! Runs once per worker, after `fork`: the master never starts Python.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use pyo3::ffi;
use pyo3::prelude::*;

use crate::config::Config;

/// The environment the interpreter should treat as its own: a virtualenv
/// (from `--home`/`--virtualenv`, else `$VIRTUAL_ENV`) or a plain prefix.
fn chosen_home(cfg: &Config) -> Option<PathBuf> {
    cfg.home.clone().or_else(|| {
        std::env::var_os("VIRTUAL_ENV")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// Initialise CPython in this process. Returns with the GIL released.
pub fn init(cfg: &Config) -> Result<()> {
    crate::uwsgi_module::register();
    let home = chosen_home(cfg);
    if let Some(h) = &home {
        if !h.is_dir() {
            bail!("python home {} is not a directory", h.display());
        }
    }
    // SAFETY: PyConfig is plain data initialised by CPython itself below;
    // every string we hand over is copied by PyConfig_SetBytesString; the
    // config is cleared on every path.
    unsafe {
        let mut config: ffi::PyConfig = std::mem::zeroed();
        ffi::PyConfig_InitPythonConfig(&mut config);
        config.install_signal_handlers = 0; // the server owns SIGINT/SIGTERM
        config.parse_argv = 0;
        config.buffered_stdio = 0; // app print()s reach the log promptly
        let status = (|| {
            let program = program_name(home.as_deref())?;
            set_string(&mut config, &mut config.program_name, &program)?;
            if let Some(h) = &home {
                if !h.join("pyvenv.cfg").exists() {
                    // A plain Python installation: its prefix is the home.
                    set_string(&mut config, &mut config.home, &h.to_string_lossy())?;
                }
            }
            let argv0 = CString::new("uwsgi-rs")?;
            let mut argv = [argv0.as_ptr()];
            check(
                ffi::PyConfig_SetBytesArgv(&mut config, 1, argv.as_mut_ptr()),
                "argv",
            )?;
            check(ffi::Py_InitializeFromConfig(&config), "interpreter")
        })();
        ffi::PyConfig_Clear(&mut config);
        status?;
    }
    // GIL: taken briefly, right after start-up, to set sys.path.
    Python::attach(|py| -> PyResult<()> {
        let sys = py.import("sys")?;
        let path = sys.getattr("path")?;
        // uWSGI puts the working directory first, then --pythonpath entries.
        let mut front: Vec<String> = cfg
            .pythonpath
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        front.insert(
            0,
            std::env::current_dir()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        for (i, p) in front.iter().enumerate() {
            path.call_method1("insert", (i, p))?;
        }
        Ok(())
    })
    .map_err(|e| anyhow!("setting sys.path: {e}"))?;
    // GIL: release the GIL taken by Py_InitializeFromConfig so every core
    // thread (the main thread too) attaches through PyGILState.
    // SAFETY: called once, on the thread that initialised the interpreter.
    unsafe { ffi::PyEval_SaveThread() };
    Ok(())
}

/// The name CPython uses to find its prefix: inside a virtualenv it must be
/// the venv's own `bin/python` so `pyvenv.cfg` is found next to it.
fn program_name(home: Option<&Path>) -> Result<String> {
    if let Some(h) = home {
        if h.join("pyvenv.cfg").exists() {
            for name in ["python3", "python"] {
                let p = h.join("bin").join(name);
                if p.exists() {
                    return Ok(p.to_string_lossy().into_owned());
                }
            }
            return Ok(h.join("bin").join("python3").to_string_lossy().into_owned());
        }
    }
    Ok(std::env::current_exe()?.to_string_lossy().into_owned())
}

unsafe fn set_string(
    config: *mut ffi::PyConfig,
    field: *mut *mut libc::wchar_t,
    value: &str,
) -> Result<()> {
    let c = CString::new(value)?;
    check(
        ffi::PyConfig_SetBytesString(config, field, c.as_ptr()),
        value,
    )
}

unsafe fn check(status: ffi::PyStatus, what: &str) -> Result<()> {
    if ffi::PyStatus_Exception(status) != 0 {
        let msg = if status.err_msg.is_null() {
            "unknown error".to_string()
        } else {
            std::ffi::CStr::from_ptr(status.err_msg)
                .to_string_lossy()
                .into_owned()
        };
        bail!("cannot initialise Python ({what}): {msg}");
    }
    Ok(())
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
