//! What the configuration tells the operator: every problem of a failing
//! configuration at once ([`ConfigErrors`]), and for one that starts, the
//! start-up report ([`Report`]): keys nobody used, options accepted without
//! effect, options not honoured yet, and warnings, one short line per group.
//!
//! Rendering only: this module never writes anywhere (the caller logs the
//! block) and decides nothing about the configuration itself.

use std::fmt;

/// One problem with the command line or a config file. Messages are one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown option: {name}{}", did_you_mean(.suggestion))]
    UnknownOption {
        name: String,
        suggestion: Option<&'static str>,
    },
    #[error("unknown option '{key}'{} (--strict)", did_you_mean(.suggestion))]
    UnknownKey {
        key: String,
        suggestion: Option<&'static str>,
    },
    #[error("uWSGI option '{0}' has no equivalent in uwsgi-rs (--strict)")]
    UwsgiOnly(String),
    #[error("option {name} is not supported by uwsgi-rs: {instead}")]
    Unsupported { name: String, instead: &'static str },
    #[error("plugin '{plugin}' given to {option} is not supported by uwsgi-rs")]
    UnsupportedPlugin { option: String, plugin: String },
    #[error("option {0} requires a value")]
    MissingValue(String),
    #[error("option {0} requires a non-empty value")]
    EmptyValue(String),
    #[error("invalid value '{value}' for {option}: expected {expected}")]
    InvalidValue {
        option: String,
        value: String,
        expected: String,
    },
    #[error("unexpected argument: {0}")]
    UnexpectedArgument(String),
    #[error("invalid address '{0}': expected :PORT, HOST:PORT, [IPV6]:PORT (port 0-65535) or a unix socket path")]
    InvalidAddress(String),
    #[error("cannot read ini file {path}: {reason}")]
    IniRead { path: String, reason: String },
    #[error("ini file {path} has no [{section}] section")]
    IniMissingSection { path: String, section: String },
    #[error("ini files nested more than {0} deep at {1}")]
    IniTooDeep(usize, String),
    #[error("environment variable {var} is not set (used in {option})")]
    UnsetEnv { var: String, option: String },
    #[error("cannot read {path} for @({path}) in {option}: {reason}")]
    AtFile {
        path: String,
        option: String,
        reason: String,
    },
    #[error("placeholders in {0} refer to each other without end")]
    PlaceholderLoop(String),
    #[error("{0}")]
    Logic(String),
    #[error("no listener given: use --http, --http-socket or --socket")]
    NoListener,
}

fn did_you_mean(s: &Option<&'static str>) -> String {
    match s {
        Some(s) => format!(" (did you mean --{s}?)"),
        None => String::new(),
    }
}

/// A problem and where it was found: `app.ini:12`, `$UWSGI_SOCKET`, or
/// nothing for the command line (the message names the option).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: Option<String>,
    pub error: ConfigError,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

/// Every problem of a configuration that cannot start, in the order found.
/// One problem displays as one line; several as a count, then one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub problems: Vec<Problem>,
    /// Unknown keys, warned about even when the configuration fails: a typo is
    /// often why.
    pub unknown_line: Option<String>,
    /// Lines of config files that were not read (and other warnings of
    /// reading them), shown with the problems: a line not read is often why.
    pub notes: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] if self.unknown_line.is_none() && self.notes.is_empty() => write!(f, "{one}"),
            all => {
                write!(
                    f,
                    "the configuration has {} problem(s), nothing was started:",
                    all.len()
                )?;
                for p in all {
                    write!(f, "\n  {p}")?;
                }
                if let Some(u) = &self.unknown_line {
                    write!(f, "\n  {u}")?;
                }
                for n in &self.notes {
                    write!(f, "\n  warning: {n}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors {
            problems: vec![Problem { at: None, error }],
            unknown_line: None,
            notes: Vec::new(),
        }
    }
}

/// A key no option used: a typo, or a placeholder nothing refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusedKey {
    pub key: String,
    pub at: String,
    pub suggestion: Option<&'static str>,
    /// An option of uWSGI's that uwsgi-rs has no row for (not a typo).
    pub uwsgi: bool,
}

/// An option that was given and is not honoured as uWSGI would: name, how
/// often, and the one-line reason from the option table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noted {
    /// As given (an alias stays an alias: the operator finds their own word).
    pub name: String,
    pub count: usize,
    pub why: &'static str,
}

/// The start-up report of a configuration that starts. Empty when everything
/// given is honoured as in uWSGI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// `print = ...` lines, in order.
    pub prints: Vec<String>,
    pub unused: Vec<UnusedKey>,
    pub not_yet: Vec<Noted>,
    pub no_effect: Vec<Noted>,
    pub different: Vec<Noted>,
    pub warnings: Vec<String>,
    /// `--show-config`: the expanded configuration as ini lines.
    pub show_config: Vec<String>,
}

impl Report {
    pub(super) fn note(list: &mut Vec<Noted>, name: &str, why: &'static str) {
        match list.iter_mut().find(|n| n.name == name) {
            Some(n) => n.count += 1,
            None => list.push(Noted {
                name: name.to_string(),
                count: 1,
                why,
            }),
        }
    }

    /// The unknown-keys line, if any key was not used (typos, placeholders).
    pub fn unused_line(&self) -> Option<String> {
        let items: Vec<String> = self
            .unused
            .iter()
            .filter(|u| !u.uwsgi)
            .map(|u| match u.suggestion {
                Some(s) => format!("{} ({}, did you mean {s}?)", u.key, u.at),
                None => format!("{} ({})", u.key, u.at),
            })
            .collect();
        (!items.is_empty()).then(|| {
            format!(
                "unknown keys, ignored as uWSGI does (--strict makes them errors): {}",
                items.join(", ")
            )
        })
    }

    /// The line of uWSGI options uwsgi-rs has no row for, if any was given.
    pub fn uwsgi_only_line(&self) -> Option<String> {
        let items: Vec<String> = self
            .unused
            .iter()
            .filter(|u| u.uwsgi)
            .map(|u| format!("--{} ({})", u.key, u.at))
            .collect();
        (!items.is_empty()).then(|| {
            format!(
                "uWSGI options uwsgi-rs does not have, ignored: {}",
                items.join(", ")
            )
        })
    }

    /// The report as lines, most urgent first; empty when there is nothing to say.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.prints.clone();
        if !self.show_config.is_empty() {
            out.push(";uwsgi-rs configuration (--show-config)".into());
            out.extend(self.show_config.iter().cloned());
            out.push(";end of configuration".into());
        }
        let mut body = Vec::new();
        body.extend(self.unused_line());
        body.extend(self.uwsgi_only_line());
        let group = |title: &str, list: &[Noted], with_why: bool| -> Option<String> {
            if list.is_empty() {
                return None;
            }
            let items: Vec<String> = list
                .iter()
                .map(|n| {
                    let times = if n.count > 1 {
                        format!(" x{}", n.count)
                    } else {
                        String::new()
                    };
                    if with_why {
                        format!("--{}{times} ({})", n.name, n.why)
                    } else {
                        format!("--{}{times}", n.name)
                    }
                })
                .collect();
            Some(format!(
                "{title}: {}",
                items.join(if with_why { "; " } else { ", " })
            ))
        };
        body.extend(group(
            "NOT HONOURED YET (the server runs without them)",
            &self.not_yet,
            false,
        ));
        body.extend(group("different in uwsgi-rs", &self.different, true));
        body.extend(group(
            "accepted, no effect (uwsgi-rs --help says why)",
            &self.no_effect,
            false,
        ));
        body.extend(self.warnings.iter().map(|w| format!("warning: {w}")));
        if !body.is_empty() {
            out.push(format!(
                "uwsgi-rs start-up report ({} note(s)):",
                body.len()
            ));
            out.extend(body.into_iter().map(|l| format!("  {l}")));
        }
        out
    }

    /// [`Report::lines`] as one block, ready for one write.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for l in self.lines() {
            s.push_str(&l);
            s.push('\n');
        }
        s
    }
}

/// Levenshtein distance, for "did you mean".
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest of `candidates` to `name`, if close enough to be a typo: at most
/// one edit for names of four letters, two for longer ones; none for shorter.
pub fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = match name.chars().count() {
        0..=3 => return None,
        4 => 1,
        _ => 2,
    };
    candidates
        .filter(|c| *c != name)
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("vaccum", "vacuum"), 1);
        assert_eq!(edit_distance("proceses", "processes"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        let c = ["vacuum", "master", "processes", "threads"];
        assert_eq!(suggest("vaccum", c.iter().copied()), Some("vacuum"));
        assert_eq!(suggest("procesess", c.iter().copied()), Some("processes"));
        assert_eq!(suggest("base", c.iter().copied()), None);
        assert_eq!(suggest("master", c.iter().copied()), None);
    }

    #[test]
    fn one_problem_is_one_line() {
        let e: ConfigErrors = ConfigError::NoListener.into();
        assert_eq!(
            e.to_string(),
            "no listener given: use --http, --http-socket or --socket"
        );
        let e = ConfigErrors {
            problems: vec![
                Problem {
                    at: Some("a.ini:3".into()),
                    error: ConfigError::MissingValue("--http".into()),
                },
                Problem {
                    at: None,
                    error: ConfigError::UnknownOption {
                        name: "--proceses".into(),
                        suggestion: Some("processes"),
                    },
                },
            ],
            unknown_line: None,
            notes: Vec::new(),
        };
        assert_eq!(
            e.to_string(),
            "the configuration has 2 problem(s), nothing was started:\n  \
             a.ini:3: option --http requires a value\n  \
             unknown option: --proceses (did you mean --processes?)"
        );
        // A line not read is shown with the one problem it may explain.
        let e = ConfigErrors {
            notes: vec!["a.yaml:2: not read: a key without a value: http:".into()],
            ..ConfigErrors::from(ConfigError::NoListener)
        };
        assert_eq!(
            e.to_string(),
            "the configuration has 1 problem(s), nothing was started:\n  \
             no listener given: use --http, --http-socket or --socket\n  \
             warning: a.yaml:2: not read: a key without a value: http:"
        );
    }

    #[test]
    fn report_groups() {
        let mut r = Report::default();
        assert!(r.lines().is_empty());
        r.unused.push(UnusedKey {
            key: "vaccum".into(),
            at: "a.ini:4".into(),
            suggestion: Some("vacuum"),
            uwsgi: false,
        });
        r.unused.push(UnusedKey {
            key: "base".into(),
            at: "a.ini:2".into(),
            suggestion: None,
            uwsgi: false,
        });
        r.unused.push(UnusedKey {
            key: "harakiri-no-arh".into(),
            at: "a.ini:9".into(),
            suggestion: None,
            uwsgi: true,
        });
        Report::note(&mut r.not_yet, "static-map", "");
        Report::note(&mut r.not_yet, "static-map", "");
        Report::note(&mut r.not_yet, "logto", "");
        Report::note(&mut r.no_effect, "vacuum", "always on");
        r.warnings.push("w".into());
        let lines = r.lines();
        assert_eq!(lines[0], "uwsgi-rs start-up report (5 note(s)):");
        assert_eq!(
            lines[1],
            "  unknown keys, ignored as uWSGI does (--strict makes them errors): \
             vaccum (a.ini:4, did you mean vacuum?), base (a.ini:2)"
        );
        assert_eq!(
            lines[2],
            "  uWSGI options uwsgi-rs does not have, ignored: --harakiri-no-arh (a.ini:9)"
        );
        assert_eq!(
            lines[3],
            "  NOT HONOURED YET (the server runs without them): --static-map x2, --logto"
        );
        assert_eq!(
            lines[4],
            "  accepted, no effect (uwsgi-rs --help says why): --vacuum"
        );
        assert_eq!(lines[5], "  warning: w");
        assert_eq!(r.render().lines().count(), 6);
    }
}
