//! The profile stream a worker sends on its tracebacker socket, one line
//! per record, tab-separated, strings escaped (`\\`, `\t`, `\n`):
//!
//! ```text
//! P 1\tWORKER\tPID\tHZ             first line: version, who, rate
//! L ID\tLABEL                      a new label (request route or thread)
//! F ID\tFUNCTION\tFILENAME\tLINE   a new frame
//! S COUNT\tLABEL_ID\tID,ID,...     COUNT samples of this stack, outermost first
//! T UNIX_MS\tGIL\tSIGNAL           end of one interval: samples taken each way
//! E REASON                         the end (`done`, or why it stopped)
//! ```
//! Ids are defined before use and only once per stream. Pure: no I/O.

use std::collections::HashMap;

/// One decoded line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Header {
        worker: usize,
        pid: u32,
        hz: u32,
    },
    Label(u32, String),
    Frame(u32, FrameKey),
    Stack {
        count: u64,
        label: u32,
        frames: Vec<u32>,
    },
    Tick {
        unix_ms: u64,
        gil: u64,
        signal: u64,
    },
    End(String),
    /// A worker refused the request (`error ...`).
    Error(String),
}

/// A frame by what it shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameKey {
    pub function: String,
    pub filename: String,
    pub lineno: u32,
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

pub fn encode(r: &Record, out: &mut String) {
    use std::fmt::Write;
    let _ = match r {
        Record::Header { worker, pid, hz } => writeln!(out, "P 1\t{worker}\t{pid}\t{hz}"),
        Record::Label(id, l) => writeln!(out, "L {id}\t{}", escape(l)),
        Record::Frame(id, f) => writeln!(
            out,
            "F {id}\t{}\t{}\t{}",
            escape(&f.function),
            escape(&f.filename),
            f.lineno
        ),
        Record::Stack {
            count,
            label,
            frames,
        } => {
            let _ = write!(out, "S {count}\t{label}\t");
            for (i, f) in frames.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{f}");
            }
            writeln!(out)
        }
        Record::Tick {
            unix_ms,
            gil,
            signal,
        } => writeln!(out, "T {unix_ms}\t{gil}\t{signal}"),
        Record::End(why) => writeln!(out, "E {}", escape(why)),
        Record::Error(why) => writeln!(out, "error {}", escape(why)),
    };
}

/// Decode one line (without its newline); None for a line this version
/// does not know (a newer worker may add kinds).
pub fn decode(line: &str) -> Option<Record> {
    if let Some(why) = line.strip_prefix("error ") {
        return Some(Record::Error(unescape(why)));
    }
    let (kind, rest) = line.split_once(' ')?;
    let fields: Vec<&str> = rest.split('\t').collect();
    let num = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(match kind {
        "P" => Record::Header {
            worker: num(1)? as usize,
            pid: num(2)? as u32,
            hz: num(3)? as u32,
        },
        "L" => Record::Label(num(0)? as u32, unescape(fields.get(1)?)),
        "F" => Record::Frame(
            num(0)? as u32,
            FrameKey {
                function: unescape(fields.get(1)?),
                filename: unescape(fields.get(2)?),
                lineno: num(3)? as u32,
            },
        ),
        "S" => Record::Stack {
            count: num(0)?,
            label: num(1)? as u32,
            frames: match fields.get(2) {
                Some(s) if !s.is_empty() => s
                    .split(',')
                    .map(|f| f.parse().ok())
                    .collect::<Option<Vec<u32>>>()?,
                _ => Vec::new(),
            },
        },
        "T" => Record::Tick {
            unix_ms: num(0)?,
            gil: num(1)?,
            signal: num(2)?,
        },
        "E" => Record::End(unescape(rest)),
        _ => return None,
    })
}

/// Resolves one stream's ids as its lines arrive.
#[derive(Default)]
pub struct Decoder {
    labels: HashMap<u32, String>,
    frames: HashMap<u32, FrameKey>,
}

/// A stack with its ids resolved.
pub struct Resolved<'a> {
    pub label: &'a str,
    pub frames: Vec<&'a FrameKey>,
}

impl Decoder {
    /// Remember what `r` defines; resolve it if it is a stack (unknown ids
    /// make it None: a broken stream is not guessed at).
    pub fn feed<'a>(&'a mut self, r: &Record) -> Option<Resolved<'a>> {
        match r {
            Record::Label(id, l) => {
                self.labels.insert(*id, l.clone());
                None
            }
            Record::Frame(id, f) => {
                self.frames.insert(*id, f.clone());
                None
            }
            Record::Stack { label, frames, .. } => Some(Resolved {
                label: self.labels.get(label)?,
                frames: frames
                    .iter()
                    .map(|f| self.frames.get(f))
                    .collect::<Option<Vec<_>>>()?,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_round_trips() {
        let records = vec![
            Record::Header {
                worker: 2,
                pid: 77,
                hz: 100,
            },
            Record::Label(0, "GET /a\tb".into()),
            Record::Frame(
                3,
                FrameKey {
                    function: "f\\n".into(),
                    filename: "/x/naïve.py".into(),
                    lineno: 12,
                },
            ),
            Record::Stack {
                count: 5,
                label: 0,
                frames: vec![3, 4],
            },
            Record::Stack {
                count: 1,
                label: 0,
                frames: vec![],
            },
            Record::Tick {
                unix_ms: 1,
                gil: 2,
                signal: 3,
            },
            Record::End("done".into()),
            Record::Error("busy".into()),
        ];
        let mut text = String::new();
        for r in &records {
            encode(r, &mut text);
        }
        assert_eq!(text.lines().count(), records.len(), "{text}");
        let back: Vec<Record> = text.lines().map(|l| decode(l).unwrap()).collect();
        assert_eq!(back, records);
        assert_eq!(decode("Z what"), None);
        assert_eq!(decode("S x\t1\t2"), None);
    }

    #[test]
    fn decoder_resolves_ids_and_refuses_unknown_ones() {
        let mut d = Decoder::default();
        d.feed(&Record::Label(1, "GET /".into()));
        let key = FrameKey {
            function: "f".into(),
            filename: "a.py".into(),
            lineno: 1,
        };
        d.feed(&Record::Frame(9, key.clone()));
        let s = Record::Stack {
            count: 1,
            label: 1,
            frames: vec![9],
        };
        let r = d.feed(&s).unwrap();
        assert_eq!((r.label, r.frames[0]), ("GET /", &key));
        let bad = Record::Stack {
            count: 1,
            label: 1,
            frames: vec![8],
        };
        assert!(d.feed(&bad).is_none());
    }
}
