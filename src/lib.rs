//! uwsgi-rs: a WSGI application server with uWSGI's command line and a
//! Python tracebacker that always answers.
//!
//! Layout (control on the left, hot path on the right):
//!
//! ```text
//! run  -> config                      parse flags/ini into a Command
//!      -> master -> listen            bind sockets, fork, reap, signals, tick
//!                -> loader            preload: import the app once, fork workers from it
//!                -> harakiri          pure deadline decisions
//!                -> scoreboard        shared memory: worker x core slots
//!                -> python            the running interpreter: sys.path, fork
//!         worker -> wsgi::app         load the app (or take the preloaded one)
//!                -> serve -> poller   a core's loop: wait, accept, read
//!                         -> leader   which core polls; take-over when stuck
//!                         -> http / uwsgi_proto   bytes -> request head
//!                         -> wsgi     environ, input, call, response
//!                -> tracebacker       per-worker socket, GIL and GIL-free dumps
//! ```
//! `run` turns any error into one line on stderr and a non-zero exit.
//!
//! This crate is a Python extension module (`uwsgi_rs._native`): the
//! `uwsgi-rs` command is the package's console script, so the server runs
//! in the interpreter that runs the script, the user's own (its venv, its
//! `sys.executable`, shared or static libpython alike), and hands `sys.argv`
//! to [`run`]. The master forks every other process from that interpreter.

mod actions;
mod autoreload;
mod channel;
mod cheaper;
mod config;
mod conn;
mod conns;
mod control_server;
#[cfg(test)]
mod corpus;
mod cpu_share;
mod cron;
mod daemons;
mod dashboard;
mod deadlines;
mod fifo;
mod forked;
mod harakiri;
mod hooks;
pub mod http;
mod httpdate;
mod leader;
mod listen;
mod loader;
mod log;
mod master;
mod mounts;
mod offload;
mod owners;
mod poller;
mod post_buffering;
mod privileges;
mod profiler;
mod proxy_protocol;
mod python;
mod refork;
pub mod request;
mod request_ring;
mod routing;
mod scoreboard;
mod serve;
mod span;
mod spawn;
mod static_files;
mod stats;
mod stats_process;
mod systemd;
mod touch;
mod tracebacker;
mod uwsgi_module;
pub mod uwsgi_proto;
mod worker;
mod wsgi;

use config::Command;
/// Which parser a listener uses. Public, like `http`, `uwsgi_proto` and
/// `request`, for the fuzz targets (fuzz/) and the benchmarks (benches/):
/// the parsers do no I/O and touch no Python.
pub use config::Protocol;
use pyo3::prelude::*;

/// The extension module, `uwsgi_rs._native`. The package's `main()` (the
/// `uwsgi-rs` console script and `python -m uwsgi_rs`) calls `run`.
#[pymodule]
mod _native {
    use pyo3::prelude::*;

    /// Run uwsgi-rs with this command line (`sys.argv`, program name first);
    /// returns the exit status. Serving returns only when the master stops.
    #[pyfunction]
    fn run(py: Python<'_>, argv: Vec<String>) -> i32 {
        crate::run_to_status(py, argv)
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}

fn run_to_status(py: Python<'_>, argv: Vec<String>) -> i32 {
    // Before anything opens a file or socket: a closed 0-2 (started with
    // `2>&-`) would make the first one stdout or stderr.
    log::fds::ensure_std_open();
    match run(py, argv) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => 0, // `| head` closed stdout
        // A hook's `exit:N` (its line is logged already).
        Err(e) if matches!(e.downcast_ref(), Some(hooks::Failure::Exit(..))) => {
            match e.downcast_ref() {
                Some(hooks::Failure::Exit(code, _)) => *code,
                _ => 1,
            }
        }
        Err(e) => {
            eprintln!("uwsgi-rs: {e:#}");
            1
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn run(py: Python<'_>, argv: Vec<String>) -> anyhow::Result<i32> {
    use std::io::Write;
    match config::parse_args(argv.iter().skip(1).cloned())? {
        Command::Help(text) => {
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(0)
        }
        Command::Version(v) => {
            writeln!(std::io::stdout(), "{v}")?;
            Ok(0)
        }
        Command::Tracebacks {
            base,
            json,
            timeout_secs,
        } => {
            // GIL: not needed by the client; released while it waits on sockets.
            py.detach(|| tracebacker::client::tracebacks(&base, json, timeout_secs))?;
            Ok(0)
        }
        Command::Profile {
            base,
            rate,
            duration,
            idle,
            format,
            output,
            timeout_secs,
        } => {
            let spec = profiler::Spec {
                hz: rate,
                seconds: duration,
                idle,
            };
            // GIL: as above.
            py.detach(|| profiler::client::run(&base, spec, format, output, timeout_secs))?;
            Ok(0)
        }
        Command::Top {
            base,
            rate,
            idle,
            timeout_secs,
        } => {
            // GIL: as above.
            py.detach(|| profiler::top::run(&base, rate, idle, timeout_secs))?;
            Ok(0)
        }
        Command::ConnectAndRead { addr, timeout_secs } => {
            // GIL: as above.
            py.detach(|| tracebacker::client::connect_and_read(&addr, timeout_secs))?;
            Ok(0)
        }
        Command::Serve(mut cfg) => {
            // Where the master was started from, for starting it again (fifo f).
            let reexec = python::reexec_argv(py, &argv)?;
            let cwd = std::env::current_dir().unwrap_or_default();
            if let Some(dir) = &cfg.chdir {
                std::env::set_current_dir(dir)
                    .map_err(|e| anyhow::anyhow!("cannot chdir to {}: {e}", dir.display()))?;
            }
            // Log files first (a bad path fails before anything starts);
            // with --daemonize, the command waits here for the daemon.
            let warnings = log::start(&cfg)?;
            cfg.report.warnings.extend(warnings);
            cfg.report.warnings.extend(listen::backlog_note(cfg.listen));
            // After binding: a socket in use stays a one-line failure.
            let report = cfg.report.render();
            let mut master =
                master::Master::new(cfg).inspect_err(|e| log::daemon::failed(&format!("{e:#}")))?;
            master.set_reexec(master::Reexec { argv: reexec, cwd });
            log::block(report.as_bytes());
            python::prepare(py, master.config())
                .inspect_err(|e| log::daemon::failed(&format!("{e:#}")))?;
            log::daemon::started();
            // GIL: released for the master's whole life; it takes it back
            // only to fork (python::fork), so the master never runs Python
            // code while it supervises.
            py.detach(|| master.run())
        }
    }
}
