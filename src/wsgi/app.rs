//! Finding the WSGI callable: `--module pkg.mod[:callable]` or
//! `--wsgi-file FILE` (any name), with `--callable` naming the attribute
//! (a module's `name()` is a factory called for the app, as in uWSGI), or
//! `--paste SPEC` (PasteDeploy's loadapp);
//! and the `--import` modules imported before it.
//!
//! Load failures come back as [`LoadError`] carrying the one line to show and
//! Python's traceback; the worker prints both and exits so the master can
//! report that the app failed to load. Runs once per worker, under the GIL.

use std::path::Path;

use pyo3::prelude::*;
use pyo3::types::PyModule;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
#[error("{line}")]
pub struct LoadError {
    /// One line naming the problem.
    pub line: String,
    /// Python's traceback, when Python raised.
    pub traceback: Option<String>,
}

/// Import the configured app and return its callable. With both `--module`
/// and `--wsgi-file`, uWSGI loads the module and runs the file only when the
/// module cannot be imported; so does this.
pub fn load(py: Python<'_>, cfg: &Config) -> Result<Py<PyAny>, LoadError> {
    let (module, callable) = match (&cfg.module, &cfg.wsgi_file) {
        (Some(spec), file) => match import_module(py, spec, cfg) {
            Ok((module, callable)) => return module_app(&module, &callable),
            Err(e) => match file {
                Some(file) => {
                    crate::log::line(&format!(
                        "{e}; loading --wsgi-file {} instead",
                        file.display()
                    ));
                    (import_file(py, file)?, cfg.callable.clone())
                }
                None => return Err(e),
            },
        },
        (None, Some(file)) => (import_file(py, file)?, cfg.callable.clone()),
        (None, None) => {
            return match &cfg.paste {
                Some(spec) => load_paste(py, spec, cfg.paste_logger),
                None => Err(LoadError {
                    line: "no app given: use --module, --wsgi, --wsgi-file or --paste".into(),
                    traceback: None,
                }),
            }
        }
    };
    callable_of(&module, &callable)
}

/// `--paste SPEC`: PasteDeploy's `loadapp(SPEC)`, as uWSGI's paste loader;
/// with `--paste-logger`, Python logging is configured from the file first
/// (a failure there is logged, as uWSGI does, and loading goes on).
fn load_paste(py: Python<'_>, spec: &str, logger: bool) -> Result<Py<PyAny>, LoadError> {
    crate::log::line(&format!("loading paste environment: {spec}"));
    let file = spec.strip_prefix("config:").unwrap_or(spec);
    if logger {
        let configured = py
            .import("logging.config")
            .and_then(|m| m.call_method1("fileConfig", (file,)));
        if let Err(e) = configured {
            crate::log::line(&format!("--paste-logger {file}: {}", one_line(py, &e)));
        }
    }
    let failed = |e: PyErr| LoadError {
        line: format!("unable to load app: --paste {spec}: {}", one_line(py, &e)),
        traceback: Some(crate::python::format_exception(py, &e)),
    };
    let app = py
        .import("paste.deploy")
        .and_then(|m| m.call_method1("loadapp", (spec,)))
        .map_err(failed)?;
    if !app.is_callable() {
        return Err(LoadError {
            line: format!("unable to load app: --paste {spec} did not give a callable"),
            traceback: None,
        });
    }
    Ok(app.unbind())
}

/// The app `callable` names in `module`, checked to be callable.
fn callable_of(module: &Bound<'_, PyModule>, callable: &str) -> Result<Py<PyAny>, LoadError> {
    let name = module.name().map(|n| n.to_string()).unwrap_or_default();
    let app = module.getattr(callable).map_err(|_| LoadError {
        line: format!("unable to load app: module '{name}' has no callable '{callable}'"),
        traceback: None,
    })?;
    check_app(&app, &format!("{name}.{callable}"))?;
    Ok(app.unbind())
}

/// What every app must be, whichever way it was found (`label` names it in
/// the error): callable, and WSGI rather than ASGI.
fn check_app(app: &Bound<'_, PyAny>, label: &str) -> Result<(), LoadError> {
    if !app.is_callable() {
        return Err(LoadError {
            line: format!("unable to load app: '{label}' is not callable"),
            traceback: None,
        });
    }
    if is_asgi(app) {
        return Err(LoadError {
            line: format!(
                "unable to load app: '{label}' is an ASGI app (async, called with scope, \
                 receive, send); uwsgi-rs serves WSGI: run it under an ASGI server (uvicorn, \
                 hypercorn, granian --interface asgi) or wrap it in a WSGI adapter (a2wsgi's ASGIMiddleware)"
            ),
            traceback: None,
        });
    }
    Ok(())
}

/// An ASGI app (FastAPI, Starlette, Quart, Django's `get_asgi_application()`)
/// is an `async def` function or an object whose class has an `async def
/// __call__`. Served as WSGI it would answer every request with a 500 (its
/// call returns a coroutine, never a response), so it is refused at load.
fn is_asgi(app: &Bound<'_, PyAny>) -> bool {
    let py = app.py();
    let Ok(inspect) = py.import("inspect") else {
        return false;
    };
    let is_coroutine_fn = |obj: &Bound<'_, PyAny>| {
        inspect
            .call_method1("iscoroutinefunction", (obj,))
            .and_then(|r| r.is_truthy())
            .unwrap_or(false)
    };
    if is_coroutine_fn(app) {
        return true;
    }
    // A class's own `__call__` is the constructor, not the app's entry point.
    if app.is_instance_of::<pyo3::types::PyType>() {
        return false;
    }
    app.get_type()
        .getattr("__call__")
        .map(|call| is_coroutine_fn(&call))
        .unwrap_or(false)
}

/// A `--mount` app: a file (a path, or a name ending in `.py` or
/// `.wsgi`) or `module[:callable]`, as uWSGI tells them apart.
pub fn load_mount(py: Python<'_>, spec: &str, cfg: &Config) -> Result<Py<PyAny>, LoadError> {
    let is_file = spec.contains('/') || spec.ends_with(".py") || spec.ends_with(".wsgi");
    if is_file {
        return callable_of(&import_file(py, Path::new(spec))?, &cfg.callable);
    }
    let (module, callable) = import_module(py, spec, cfg)?;
    module_app(&module, &callable)
}

/// The app of a `module[:callable]` spec: as [`callable_of`], except that a
/// name ending in `()` (`galaxy.webapps.galaxy.buildapp:uwsgi_app()`) is a
/// factory called without arguments for the app, as uWSGI's module loader
/// does (its file loader does not).
fn module_app(module: &Bound<'_, PyModule>, callable: &str) -> Result<Py<PyAny>, LoadError> {
    let Some(factory) = callable
        .strip_suffix("()")
        .filter(|f| module.hasattr(*f).unwrap_or(false))
    else {
        return callable_of(module, callable);
    };
    let py = module.py();
    let name = module.name().map(|n| n.to_string()).unwrap_or_default();
    let made = callable_of(module, factory)?
        .call0(py)
        .map_err(|e| LoadError {
            line: format!(
                "unable to load app: {name}:{callable} raised: {}",
                one_line(py, &e)
            ),
            traceback: Some(crate::python::format_exception(py, &e)),
        })?;
    check_app(made.bind(py), &format!("{name}:{callable}"))?;
    Ok(made)
}

/// `--module pkg.mod[:callable]`: the module and the callable's name.
fn import_module<'py>(
    py: Python<'py>,
    spec: &str,
    cfg: &Config,
) -> Result<(Bound<'py, PyModule>, String), LoadError> {
    let (m, c) = match spec.split_once(':') {
        Some((m, c)) => (m, c.to_string()),
        None => (spec, cfg.callable.clone()),
    };
    let module = py.import(m).map_err(|e| LoadError {
        line: format!(
            "unable to load app: cannot import module '{m}': {}",
            one_line(py, &e)
        ),
        traceback: Some(crate::python::format_exception(py, &e)),
    })?;
    Ok((module, c))
}

/// `--import` / `--shared-import`: a module imported before the app, in
/// the process that loads it. A path (with a `/`, or ending in `.py`) is
/// run as a module named as uWSGI names it (`lib/setup.py` is
/// `lib_setup`). Unlike uWSGI, which logs the error and goes on, a module
/// that does not import stops the start as an app that does not import.
pub fn import_before_app(py: Python<'_>, spec: &str) -> Result<(), LoadError> {
    let imported = if spec.contains('/') || spec.ends_with(".py") {
        run_file(py, Path::new(spec), &pythonized(spec)).map(drop)
    } else {
        py.import(spec).map(drop).map_err(|e| LoadError {
            line: one_line(py, &e),
            traceback: Some(crate::python::format_exception(py, &e)),
        })
    };
    imported.map_err(|mut e| {
        e.line = format!("unable to load app: --import {spec}: {}", e.line);
        e
    })
}

/// uWSGI's module name for an imported file: dots and slashes become
/// underscores, and a final `.py` goes.
fn pythonized(path: &str) -> String {
    let name = path.replace(['.', '/'], "_");
    match name.strip_suffix("_py") {
        Some(stem) if !stem.is_empty() => stem.to_string(),
        _ => name,
    }
}

/// Execute a file as a fresh module, as uWSGI's `--wsgi-file` does. Any file
/// name works (`app.wsgi`, `keystone-wsgi-public`): the source loader is
/// chosen explicitly, not from the file's suffix.
fn import_file<'py>(py: Python<'py>, file: &Path) -> Result<Bound<'py, PyModule>, LoadError> {
    let stem: String = file
        .file_stem()
        .map(|s| {
            s.to_string_lossy()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        })
        .unwrap_or_else(|| "app".into());
    run_file(py, file, &format!("uwsgi_file_{stem}")).map_err(|mut e| {
        e.line = format!("unable to load app: {}", e.line);
        e
    })
}

/// Run `file` as the module `modname` (registered in `sys.modules`); the
/// error line names the file, for the caller to prefix.
fn run_file<'py>(
    py: Python<'py>,
    file: &Path,
    modname: &str,
) -> Result<Bound<'py, PyModule>, LoadError> {
    let shown = file.display().to_string();
    if let Some(why) = unreadable(file) {
        return Err(LoadError {
            line: format!("{shown}: {why}"),
            traceback: None,
        });
    }
    let run = || -> PyResult<Bound<'py, PyModule>> {
        let util = py.import("importlib.util")?;
        let loader = py
            .import("importlib.machinery")?
            .getattr("SourceFileLoader")?
            .call1((modname, shown.as_str()))?;
        let spec = util.call_method1("spec_from_loader", (modname, &loader))?;
        let module = util.call_method1("module_from_spec", (&spec,))?;
        py.import("sys")?
            .getattr("modules")?
            .set_item(modname, &module)?;
        spec.getattr("loader")?
            .call_method1("exec_module", (&module,))?;
        Ok(module.cast_into::<PyModule>()?)
    };
    run().map_err(|e| LoadError {
        line: format!("error running {shown}: {}", one_line(py, &e)),
        traceback: Some(crate::python::format_exception(py, &e)),
    })
}

/// Why `file` cannot be run, checked as the worker's user (after
/// `--uid`/`--gid`): opened, not just looked up, so a file or directory the
/// user may not read says "permission denied", not "no such file".
fn unreadable(file: &Path) -> Option<String> {
    match std::fs::File::open(file).and_then(|f| f.metadata()) {
        Ok(meta) if meta.is_file() => None,
        Ok(_) => Some("not a regular file".into()),
        Err(e) => Some(match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".into(),
            std::io::ErrorKind::PermissionDenied => {
                let uid = rustix::process::geteuid().as_raw();
                let gid = rustix::process::getegid().as_raw();
                format!("permission denied (uid {uid}, gid {gid})")
            }
            _ => e.to_string(),
        }),
    }
}

fn one_line(py: Python<'_>, e: &PyErr) -> String {
    let s = e.value(py).to_string();
    let ty = e
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    format!("{ty}: {}", s.lines().next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::pythonized;

    #[test]
    fn imported_files_are_named_as_uwsgi_names_them() {
        assert_eq!(pythonized("lib/setup.py"), "lib_setup");
        assert_eq!(pythonized("/srv/app/warm.up.py"), "_srv_app_warm_up");
        assert_eq!(pythonized("scripts/boot"), "scripts_boot");
        assert_eq!(pythonized(".py"), "_py");
    }
}
