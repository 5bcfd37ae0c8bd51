//! uwsgi-rs: a WSGI application server with uWSGI's command line and a
//! Python tracebacker that always answers.
//!
//! Layout (control on the left, hot path on the right):
//!
//! ```text
//! main -> config                      parse flags/ini into a Command
//!      -> master -> listen            bind sockets, fork, reap, signals, tick
//!                -> harakiri          pure deadline decisions
//!                -> scoreboard        shared memory: worker x core slots
//!         worker -> python            start CPython, uwsgi module
//!                -> serve -> poller   a core's loop: wait, accept, read
//!                         -> leader   which core polls; take-over when stuck
//!                         -> http / uwsgi_proto   bytes -> request head
//!                         -> wsgi     environ, input, call, response
//!                -> tracebacker       per-worker socket, GIL and GIL-free dumps
//! ```
//! `main` turns any error into one line on stderr and a non-zero exit.

mod config;
mod conn;
mod conns;
#[cfg(test)]
mod corpus;
mod cpu_share;
mod deadlines;
mod forked;
mod harakiri;
mod http;
mod leader;
mod listen;
mod log;
mod master;
mod poller;
mod privileges;
mod python;
mod request;
mod scoreboard;
mod serve;
mod stats;
mod tracebacker;
mod uwsgi_module;
mod uwsgi_proto;
mod worker;
mod wsgi;

use config::Command;

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) if is_broken_pipe(&e) => std::process::exit(0), // `| head` closed stdout
        Err(e) => {
            eprintln!("uwsgi-rs: {e:#}");
            std::process::exit(1);
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn run() -> anyhow::Result<i32> {
    match config::parse_args(std::env::args().skip(1))? {
        Command::Help(text) => {
            print!("{text}");
            Ok(0)
        }
        Command::Version(v) => {
            println!("{v}");
            Ok(0)
        }
        Command::Tracebacks {
            base,
            json,
            timeout_secs,
        } => {
            tracebacker::client::tracebacks(&base, json, timeout_secs)?;
            Ok(0)
        }
        Command::ConnectAndRead { addr, timeout_secs } => {
            tracebacker::client::connect_and_read(&addr, timeout_secs)?;
            Ok(0)
        }
        Command::Serve(cfg) => {
            if let Some(dir) = &cfg.chdir {
                std::env::set_current_dir(dir)
                    .map_err(|e| anyhow::anyhow!("cannot chdir to {}: {e}", dir.display()))?;
            }
            // After binding: a socket in use stays a one-line failure.
            let report = cfg.report.render();
            let master = master::Master::new(cfg)?;
            log::block(report.as_bytes());
            master.run()
        }
    }
}
