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
    /// Where frames were left out, if the dump could not see them all.
    pub cut: Option<Cut>,
}

/// Frames a dump could not show: never dropped silently, always marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The GIL-free dumper stopped at its limit (the innermost 100 frames):
    /// the outermost frames, and how many there are, are not known. The
    /// mark goes before the first frame shown.
    Unknown,
    /// `frames[..at]` come from an exact dump taken `age_ms` earlier, whose
    /// inner frames matched the live ones where they overlap; the rest are
    /// live.
    Spliced { at: usize, age_ms: u64 },
}

impl Cut {
    /// Where the mark goes in the frame list, and what it says.
    pub fn mark(&self) -> (usize, String) {
        match *self {
            Cut::Unknown => (
                0,
                "... more frames (the GIL-free dumper shows only the innermost 100)".into(),
            ),
            Cut::Spliced { at, age_ms } => (
                at,
                format!(
                    "... the {at} frames above are from an exact dump {:.1} s earlier (they match the live ones below)",
                    age_ms as f64 / 1000.0
                ),
            ),
        }
    }
}

/// The name uWSGI prints for a thread it cannot name.
pub const UNNAMED: &str = "<UnnamedPythonThread>";

pub fn write_dump<'a>(
    out: &mut impl Write,
    threads: impl IntoIterator<Item = &'a ThreadStack>,
) -> io::Result<()> {
    write!(out, "{HEADER}\n\n")?;
    for t in threads.into_iter().filter(|t| !t.frames.is_empty()) {
        let mark = t.cut.map(|c| c.mark());
        for (i, f) in t.frames.iter().enumerate() {
            if let Some((at, text)) = &mark {
                if *at == i {
                    writeln!(out, "thread_id = {} {text}", t.name)?;
                }
            }
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
                cut: None,
            },
            ThreadStack {
                ident: 2,
                name: "uWSGIWorker1Core2".into(),
                frames: vec![],
                holds_gil: None,
                cut: None,
            },
            ThreadStack {
                ident: 3,
                name: "uWSGIWorker1Core0".into(),
                frames: vec![frame(7, "dormi2", "")],
                holds_gil: None,
                cut: None,
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
    fn cut_stacks_are_marked_where_cut() {
        let f = |n: u32| Frame {
            filename: "a.py".into(),
            lineno: n,
            function: "f".into(),
            line: String::new(),
            locals: vec![],
        };
        let mut t = ThreadStack {
            ident: 1,
            name: "T".into(),
            frames: vec![f(1), f(2), f(3)],
            holds_gil: None,
            cut: Some(Cut::Unknown),
        };
        let mut out = Vec::new();
        write_dump(&mut out, std::slice::from_ref(&t)).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[2].starts_with("thread_id = T ... more frames"),
            "{text}"
        );
        assert!(lines[3].contains("lineno = 1"), "{text}");
        t.cut = Some(Cut::Spliced {
            at: 2,
            age_ms: 1500,
        });
        let mut out = Vec::new();
        write_dump(&mut out, &[t]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[4].contains("the 2 frames above are from an exact dump 1.5 s earlier"),
            "{text}"
        );
        assert!(lines[5].contains("lineno = 3"), "{text}");
    }

    #[test]
    fn empty_dump_is_header_only() {
        let mut out = Vec::new();
        write_dump(&mut out, &[]).unwrap();
        assert_eq!(out, b"*** uWSGI Python tracebacker output ***\n\n");
    }
}
