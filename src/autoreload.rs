//! `--py-autoreload N` (development): a thread in each worker looks every N
//! seconds at the files of the Python modules the worker has loaded, and
//! when one was modified, logs it as uWSGI does and asks for a reload
//! (through the master, which reloads once however many workers ask).
//!
//! Off the hot path: the thread holds the GIL only to read `sys.modules`,
//! and only when the number of modules changed since the last look; the
//! files are checked without it. Request threads never see this.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::touch::mtime;

/// Watch every `every` and call `changed` once, for the first modified
/// file; then the thread ends (the worker is about to be replaced).
pub fn start(every: Duration, changed: impl FnOnce(&std::path::Path) + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("uwsgi-rs-autoreload".into())
        .spawn(move || {
            let mut files: HashMap<PathBuf, Option<SystemTime>> = HashMap::new();
            let mut modules = usize::MAX;
            loop {
                // GIL: only to count the modules and, when that changed,
                // list their files.
                let listed = Python::attach(|py| module_files(py, modules)).unwrap_or(None);
                if let Some((count, paths)) = listed {
                    modules = count;
                    for p in paths {
                        files.entry(p.clone()).or_insert_with(|| mtime(&p));
                    }
                }
                if let Some(path) = files
                    .iter()
                    .find(|(p, seen)| mtime(p) != **seen)
                    .map(|(p, _)| p.clone())
                {
                    crate::log::line(&format!(
                        "[uwsgi-python-reloader] module/file {} has been modified",
                        path.display()
                    ));
                    changed(&path);
                    return;
                }
                std::thread::sleep(every);
            }
        });
    if let Err(e) = spawned {
        crate::log::line(&format!("cannot start the --py-autoreload thread: {e}"));
    }
}

/// The source files of the loaded modules, if their number is not
/// `known` (a `.pyc` stands for its `.py`, as uWSGI checks it).
fn module_files(py: Python<'_>, known: usize) -> PyResult<Option<(usize, Vec<PathBuf>)>> {
    let sys_modules = py.import("sys")?.getattr("modules")?;
    let modules = sys_modules.cast::<PyDict>()?;
    if modules.len() == known {
        return Ok(None);
    }
    let mut out = Vec::new();
    for m in modules.values().iter() {
        let Ok(file) = m.getattr("__file__") else {
            continue;
        };
        let Ok(file) = file.extract::<String>() else {
            continue;
        };
        let file = match file.strip_suffix('c') {
            Some(py_file) if file.ends_with(".pyc") => py_file.to_string(),
            _ => file,
        };
        out.push(PathBuf::from(file));
    }
    Ok(Some((modules.len(), out)))
}
