//! `--log-encoder` / `--log-req-encoder`: uWSGI's encoder chain, applied
//! by the writer to each line before it reaches a logger (`prefix ARG`,
//! `suffix ARG`, `nl`, `format ...${var}...`, `json ...${var}...`, with
//! `NAME:LOGGER` to apply only to the logger named LOGGER). Variables of
//! `format` and `json`: `msg` (the line without its newline), `msgnl`,
//! `unix`, `micros`, `millis`, `strftime:FORMAT`. As in uWSGI's
//! `uwsgi_log_encoder_*`, nothing adds a newline that the format does not
//! write (`${msgnl}`, or the `nl` encoder).
//!
//! Pure apart from reading the clock; nothing here writes.

use super::clock;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Msg,
    MsgNl,
    Unix,
    Micros,
    Millis,
    Strftime(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Prefix(String),
    Suffix(String),
    Nl,
    Format(Vec<Part>),
    Json(Vec<Part>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoder {
    kind: Kind,
    /// `NAME:LOGGER`: only for the logger with this name.
    only_for: Option<String>,
}

impl Encoder {
    /// `NAME[:LOGGER] [ARGS]`, as `--log-encoder` takes it.
    pub fn parse(spec: &str) -> Result<Encoder, String> {
        let (head, args) = spec.split_once(' ').unwrap_or((spec, ""));
        let (name, only_for) = match head.split_once(':') {
            Some((n, l)) => (n, Some(l.to_string())),
            None => (head, None),
        };
        let kind = match name {
            "prefix" => Kind::Prefix(args.to_string()),
            "suffix" => Kind::Suffix(args.to_string()),
            "nl" => Kind::Nl,
            "format" => Kind::Format(parts(args)),
            "json" => Kind::Json(parts(args)),
            _ => {
                return Err(format!(
                    "log encoder '{name}' is not supported by uwsgi-rs \
                     (prefix, suffix, nl, format and json are)"
                ))
            }
        };
        Ok(Encoder { kind, only_for })
    }

    /// Whether this encoder applies to the logger named `logger` (None: the
    /// main log, which uWSGI encodes with the encoders for no logger only).
    fn applies_to(&self, logger: Option<&str>) -> bool {
        match &self.only_for {
            None => true,
            Some(l) => logger == Some(l.as_str()),
        }
    }

    fn encode(&self, msg: &[u8], out: &mut Vec<u8>) {
        match &self.kind {
            Kind::Prefix(p) => {
                out.extend_from_slice(p.as_bytes());
                out.extend_from_slice(msg);
            }
            Kind::Suffix(s) => {
                out.extend_from_slice(msg);
                out.extend_from_slice(s.as_bytes());
            }
            Kind::Nl => {
                out.extend_from_slice(msg);
                out.push(b'\n');
            }
            Kind::Format(parts) => render(parts, msg, false, out),
            Kind::Json(parts) => render(parts, msg, true, out),
        }
    }
}

/// Apply `chain` to `msg` for `logger`, into `out` (cleared first).
pub fn apply(chain: &[Encoder], logger: Option<&str>, msg: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(msg);
    let mut next = Vec::new();
    for e in chain.iter().filter(|e| e.applies_to(logger)) {
        next.clear();
        e.encode(out, &mut next);
        std::mem::swap(out, &mut next);
    }
}

/// Split `text ${var} text` as uWSGI's `uwsgi_log_encoder_parse_vars`.
fn parts(args: &str) -> Vec<Part> {
    let mut out = Vec::new();
    let mut rest = args;
    while let Some(i) = rest.find("${") {
        let Some(end) = rest[i + 2..].find('}') else {
            break;
        };
        if i > 0 {
            out.push(Part::Text(rest[..i].to_string()));
        }
        let var = &rest[i + 2..i + 2 + end];
        out.push(match var {
            "msg" => Part::Msg,
            "msgnl" => Part::MsgNl,
            "unix" => Part::Unix,
            "micros" => Part::Micros,
            "millis" => Part::Millis,
            v => match v.strip_prefix("strftime:") {
                Some(f) => Part::Strftime(f.to_string()),
                None => Part::Text(String::new()), // unknown: nothing, as uWSGI
            },
        });
        rest = &rest[i + 2 + end + 1..];
    }
    if !rest.is_empty() {
        out.push(Part::Text(rest.to_string()));
    }
    out
}

fn render(parts: &[Part], msg: &[u8], json: bool, out: &mut Vec<u8>) {
    let put = |out: &mut Vec<u8>, b: &[u8]| {
        if json {
            json_escape(b, out)
        } else {
            out.extend_from_slice(b)
        }
    };
    for p in parts {
        match p {
            Part::Text(t) => out.extend_from_slice(t.as_bytes()),
            Part::Msg => put(out, msg.strip_suffix(b"\n").unwrap_or(msg)),
            Part::MsgNl => put(out, msg),
            Part::Unix => out.extend_from_slice(clock::unix_secs().to_string().as_bytes()),
            Part::Micros => out.extend_from_slice(clock::unix_micros().to_string().as_bytes()),
            Part::Millis => out.extend_from_slice(clock::unix_millis().to_string().as_bytes()),
            Part::Strftime(f) => {
                let s = clock::strftime(f, clock::unix_secs() as i64);
                put(out, s.as_bytes())
            }
        }
    }
}

/// A JSON string's content: `"` `\` and control characters escaped.
fn json_escape(s: &[u8], out: &mut Vec<u8>) {
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c if c < 0x20 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(specs: &[&str], logger: Option<&str>, msg: &str) -> String {
        let chain: Vec<Encoder> = specs.iter().map(|s| Encoder::parse(s).unwrap()).collect();
        let mut out = Vec::new();
        apply(&chain, logger, msg.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn uwsgis_encoders() {
        assert_eq!(run(&["prefix [app]"], None, "x\n"), "[app]x\n");
        assert_eq!(run(&["suffix !", "nl"], None, "x"), "x!\n");
        assert_eq!(run(&["format <${msg}>"], None, "x\n"), "<x>");
        assert_eq!(run(&["format <${msgnl}>"], None, "x\n"), "<x\n>");
        assert_eq!(
            run(&["json {\"m\":\"${msg}\"}", "nl"], None, "say \"hi\"\\\t\n"),
            "{\"m\":\"say \\\"hi\\\"\\\\\\t\"}\n"
        );
        let s = run(
            &["format ${strftime:%Y} ${unix} ${millis} ${nope}|${msgnl}"],
            None,
            "l\n",
        );
        let f: Vec<&str> = s.split(' ').collect();
        assert_eq!(f[0].len(), 4);
        assert!(f[1].parse::<u64>().unwrap() > 1_600_000_000);
        assert!(f[2].parse::<u64>().unwrap() > 1_600_000_000_000);
        assert_eq!(f[3], "|l\n");
    }

    #[test]
    fn an_encoder_for_a_logger_applies_to_that_logger_only() {
        let specs = ["prefix:cron [cron] ", "prefix * "];
        assert_eq!(run(&specs, Some("cron"), "x\n"), "* [cron] x\n");
        assert_eq!(run(&specs, None, "x\n"), "* x\n");
        assert_eq!(run(&specs, Some("other"), "x\n"), "* x\n");
    }

    #[test]
    fn unknown_encoders_are_named() {
        assert!(Encoder::parse("gzip").unwrap_err().contains("'gzip'"));
    }
}
