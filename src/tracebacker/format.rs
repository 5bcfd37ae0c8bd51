//! uWSGI's tracebacker text format, byte for byte:
//!
//! ```text
//! *** uWSGI Python tracebacker output ***
//!
//! thread_id = NAME filename = F lineno = N function = FN line = SOURCE
//! ...one line per frame, outermost call first...
//!
//! ```
//! Renders to any `impl Write`, so sockets, logs and tests share it. Pure:
//! no Python, no I/O of its own.

use std::io::{self, Write};

pub const HEADER: &str = "*** uWSGI Python tracebacker output ***";

/// One Python frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub filename: String,
    pub lineno: u32,
    pub function: String,
    /// The stripped source line; empty when unavailable.
    pub line: String,
    /// `(name, truncated repr)` of the frame's locals, when asked for.
    pub locals: Vec<(String, String)>,
}

/// One thread's stack, outermost call first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadStack {
    pub ident: u64,
    pub name: String,
    pub frames: Vec<Frame>,
    /// Whether this thread held the GIL at the snapshot (None: unknown).
    pub holds_gil: Option<bool>,
}

/// The name uWSGI prints for a thread it cannot name.
pub const UNNAMED: &str = "<UnnamedPythonThread>";

pub fn write_dump(out: &mut impl Write, threads: &[ThreadStack]) -> io::Result<()> {
    write!(out, "{HEADER}\n\n")?;
    for t in threads.iter().filter(|t| !t.frames.is_empty()) {
        for f in &t.frames {
            write!(
                out,
                "thread_id = {} filename = {} lineno = {} function = {}",
                t.name, f.filename, f.lineno, f.function
            )?;
            if !f.line.is_empty() {
                write!(out, " line = {}", f.line)?;
            }
            out.write_all(b"\n")?;
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_uwsgi_byte_for_byte() {
        let frame = |lineno, function: &str, line: &str| Frame {
            filename: "/tmp/ref/slow.py".into(),
            lineno,
            function: function.into(),
            line: line.into(),
            locals: vec![],
        };
        let threads = vec![
            ThreadStack {
                ident: 1,
                name: "uWSGIWorker1Core3".into(),
                frames: vec![
                    frame(20, "application", "dormi5()"),
                    frame(4, "dormi", "time.sleep(60)"),
                ],
                holds_gil: None,
            },
            ThreadStack {
                ident: 2,
                name: "uWSGIWorker1Core2".into(),
                frames: vec![],
                holds_gil: None,
            },
            ThreadStack {
                ident: 3,
                name: "uWSGIWorker1Core0".into(),
                frames: vec![frame(7, "dormi2", "")],
                holds_gil: None,
            },
        ];
        let mut out = Vec::new();
        write_dump(&mut out, &threads).unwrap();
        let expected = "*** uWSGI Python tracebacker output ***\n\n\
thread_id = uWSGIWorker1Core3 filename = /tmp/ref/slow.py lineno = 20 function = application line = dormi5()\n\
thread_id = uWSGIWorker1Core3 filename = /tmp/ref/slow.py lineno = 4 function = dormi line = time.sleep(60)\n\
\n\
thread_id = uWSGIWorker1Core0 filename = /tmp/ref/slow.py lineno = 7 function = dormi2\n\
\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn empty_dump_is_header_only() {
        let mut out = Vec::new();
        write_dump(&mut out, &[]).unwrap();
        assert_eq!(out, b"*** uWSGI Python tracebacker output ***\n\n");
    }
}
