//! The three expansion passes uWSGI runs over every value once the whole
//! configuration is read (core/uwsgi.c: `$`, then `@`, then `%`):
//!
//! - `$(VAR)` the environment variable VAR (`$(VAR:-default)` when unset or
//!   empty, `$(VAR-default)` when unset);
//! - `@(FILE)` the contents of FILE, without its last newline;
//! - `%(NAME)` the value of the first option or placeholder called NAME, and
//!   uWSGI's pipeline math `%(a + b * 2)`, `%(n ++)`.
//!
//! Where uWSGI keeps an unresolvable `$(VAR)` verbatim (and then, say, binds a
//! socket literally named `$(BIND)`), uwsgi-rs reports an error naming the
//! variable, except in commands run by a shell (`attach-daemon`, `exec-*`,
//! `hook-*`, `cron`), where `$(...)` is the shell's. An unresolved `%(NAME)`
//! stays verbatim, as in uWSGI: log formats use `%(status)` the same way.

use std::collections::{HashMap, HashSet};

use super::collect::{io_reason, Entry, Env};
use super::report::ConfigError;

/// Substitutions one value may go through before uwsgi-rs calls it a loop.
const MAX_SUBSTITUTIONS: usize = 256;

/// A value that could not be expanded, reported only if its entry is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub entry: usize,
    pub error: ConfigError,
}

pub struct Expansion {
    /// Keys that some `%(NAME)` referred to (placeholders in use).
    pub referenced: HashSet<String>,
    pub pending: Vec<Pending>,
}

/// Whether `$(...)` in this option's value belongs to a shell.
fn shell_command(key: &str) -> bool {
    key.starts_with("attach-")
        || key.starts_with("smart-attach-")
        || key.starts_with("exec-")
        || key.starts_with("hook-")
        || key == "cron"
        || key == "unique-cron"
        || key == "cron2"
}

/// Run the three passes over `entries` in place.
pub fn expand(entries: &mut [Entry], env: &Env) -> Expansion {
    let mut pending = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        let Some(v) = e.value.as_deref() else {
            continue;
        };
        let keep_unset = shell_command(&e.key);
        match substitute(v, '$', |name| env_lookup(name, env)) {
            Ok((out, unresolved)) => {
                if let (Some(var), false) = (unresolved.first(), keep_unset) {
                    pending.push(Pending {
                        entry: i,
                        error: ConfigError::UnsetEnv {
                            var: var.clone(),
                            option: format!("--{}", e.key),
                        },
                    });
                }
                e.value = Some(out);
            }
            Err(()) => pending.push(Pending {
                entry: i,
                error: ConfigError::PlaceholderLoop(format!("--{}", e.key)),
            }),
        }
    }
    for (i, e) in entries.iter_mut().enumerate() {
        let Some(v) = e.value.as_deref() else {
            continue;
        };
        if !v.contains("@(") {
            continue;
        }
        let key = e.key.clone();
        let mut failure = None;
        let result = substitute(v, '@', |path| match read_at_file(path) {
            Ok(s) => Some(s),
            Err(reason) => {
                failure.get_or_insert(ConfigError::AtFile {
                    path: path.to_string(),
                    option: format!("--{key}"),
                    reason,
                });
                None
            }
        });
        if let Ok((out, _)) = result {
            e.value = Some(out);
        }
        if let Some(error) = failure {
            pending.push(Pending { entry: i, error });
        }
    }
    let mut referenced = HashSet::new();
    for i in 0..entries.len() {
        let Some(v) = entries[i].value.clone() else {
            continue;
        };
        if !v.contains("%(") {
            continue;
        }
        // The first value of each key, as uWSGI's lookup sees them now.
        let firsts = first_values(entries);
        let result = substitute(&v, '%', |name| placeholder(name, &firsts, &mut referenced));
        match result {
            Ok((out, _)) => entries[i].value = Some(out),
            Err(()) => pending.push(Pending {
                entry: i,
                error: ConfigError::PlaceholderLoop(format!("--{}", entries[i].key)),
            }),
        }
    }
    Expansion {
        referenced,
        pending,
    }
}

fn first_values(entries: &[Entry]) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for e in entries {
        if let Some(v) = &e.value {
            m.entry(e.key.clone()).or_insert_with(|| v.clone());
        }
    }
    m
}

/// `VAR`, `VAR:-default` (unset or empty), `VAR-default` (unset).
fn env_lookup(name: &str, env: &Env) -> Option<String> {
    if let Some((var, default)) = name.split_once(":-") {
        return match env.get(var) {
            Some(v) if !v.is_empty() => Some(v.clone()),
            _ => Some(default.to_string()),
        };
    }
    if let Some((var, default)) = name.split_once('-') {
        return Some(env.get(var).cloned().unwrap_or_else(|| default.to_string()));
    }
    env.get(name).cloned()
}

fn read_at_file(path: &str) -> Result<String, String> {
    if path.contains("://") {
        return Err("only plain files are supported in @(...)".into());
    }
    let bytes = std::fs::read(path).map_err(|e| io_reason(&e))?;
    let mut s = String::from_utf8_lossy(&bytes).into_owned();
    if s.ends_with('\n') || s.ends_with('\r') {
        s.pop();
    }
    Ok(s)
}

/// uWSGI's placeholder: a plain name is the first value of that key; a name
/// with spaces is a pipeline of items (numbers or names) and operators
/// `+ - * /` (left to right), `++`/`--`, concatenation between two items.
fn placeholder(
    name: &str,
    firsts: &HashMap<String, String>,
    referenced: &mut HashSet<String>,
) -> Option<String> {
    if !name.contains(' ') {
        let v = firsts.get(name).cloned();
        if v.is_some() {
            referenced.insert(name.to_string());
        }
        return v;
    }
    #[derive(Clone, Copy)]
    enum Op {
        Concat,
        Add,
        Sub,
        Mul,
        Div,
    }
    let num = |s: &str| -> i64 {
        let t = s.trim_start();
        let end = t
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
            .map_or(t.len(), |(i, _)| i);
        t[..end].parse().unwrap_or(0)
    };
    let mut current: Option<String> = None;
    let mut op = Op::Concat;
    for tok in name.split(' ').filter(|t| !t.is_empty()) {
        match tok {
            "+" => op = Op::Add,
            "-" => op = Op::Sub,
            "*" => op = Op::Mul,
            "/" => op = Op::Div,
            "++" | "--" => {
                if let Some(c) = &current {
                    let n = num(c);
                    current = Some(
                        if tok == "++" {
                            n.wrapping_add(1)
                        } else {
                            n.wrapping_sub(1)
                        }
                        .to_string(),
                    );
                }
                op = Op::Concat;
            }
            item => {
                let value = if item.bytes().all(|b| b.is_ascii_digit()) {
                    item.to_string()
                } else {
                    match firsts.get(item) {
                        Some(v) => {
                            referenced.insert(item.to_string());
                            v.clone()
                        }
                        None => String::new(),
                    }
                };
                let a = current.as_deref().unwrap_or("");
                let (x, y) = (num(a), num(&value));
                current = Some(match op {
                    Op::Concat => format!("{a}{value}"),
                    Op::Add => x.wrapping_add(y).to_string(),
                    Op::Sub => x.wrapping_sub(y).to_string(),
                    Op::Mul => x.wrapping_mul(y).to_string(),
                    Op::Div if y == 0 => "0".to_string(),
                    Op::Div => (x / y).to_string(),
                });
                op = Op::Concat;
            }
        }
    }
    current
}

/// Replace every `SYMBOL(NAME)` (nested parentheses allowed in NAME) by
/// `resolve(NAME)`, rescanning after each substitution as uWSGI does. Returns
/// the result and the names `resolve` could not resolve (kept verbatim), or
/// `Err` after [`MAX_SUBSTITUTIONS`].
fn substitute(
    value: &str,
    symbol: char,
    mut resolve: impl FnMut(&str) -> Option<String>,
) -> Result<(String, Vec<String>), ()> {
    let mut s = value.to_string();
    let mut unresolved = Vec::new();
    let mut from = 0;
    let mut count = 0;
    let open: String = [symbol, '('].iter().collect();
    while let Some(rel) = s[from..].find(&open) {
        let start = from + rel;
        let body = start + 2;
        let mut depth = 0usize;
        let mut end = None;
        for (i, c) in s[body..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = Some(body + i);
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let Some(end) = end else { break };
        let name = s[body..end].to_string();
        if name.is_empty() {
            from = end + 1;
            continue;
        }
        match resolve(&name) {
            Some(v) => {
                count += 1;
                if count > MAX_SUBSTITUTIONS {
                    return Err(());
                }
                s.replace_range(start..=end, &v);
                from = 0;
            }
            None => {
                if !unresolved.contains(&name) {
                    unresolved.push(name);
                }
                from = end + 1;
            }
        }
    }
    Ok((s, unresolved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::collect::Origin;

    fn entries(kv: &[(&str, &str)]) -> Vec<Entry> {
        kv.iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: Some(v.to_string()),
                origin: Origin::Arg,
                placeholder: false,
            })
            .collect()
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn values(e: &[Entry]) -> Vec<&str> {
        e.iter().map(|e| e.value.as_deref().unwrap()).collect()
    }

    #[test]
    fn environment() {
        let mut e = entries(&[
            ("http-socket", "$(BIND)"),
            ("workers", "$(W:-4)"),
            ("threads", "$(T-2)"),
            ("chdir", "$(EMPTY:-/srv)"),
            ("env", "X=$(EMPTY-kept)"),
            ("socket", "$(NOPE)"),
            ("attach-daemon", "sh -c 'echo $(date)'"),
        ]);
        let x = expand(&mut e, &env(&[("BIND", "[::]:8080"), ("EMPTY", "")]));
        assert_eq!(
            values(&e),
            [
                "[::]:8080",
                "4",
                "2",
                "/srv",
                "X=",
                "$(NOPE)",
                "sh -c 'echo $(date)'"
            ]
        );
        assert_eq!(
            x.pending,
            [Pending {
                entry: 5,
                error: ConfigError::UnsetEnv {
                    var: "NOPE".into(),
                    option: "--socket".into()
                }
            }]
        );
        assert_eq!(
            x.pending[0].error.to_string(),
            "environment variable NOPE is not set (used in --socket)"
        );
    }

    #[test]
    fn placeholders_and_math() {
        let mut e = entries(&[
            ("base", "/srv/app"),
            ("chdir", "%(base)/src"),
            ("socket", "%(sockdir)/app.sock"),
            ("sockdir", "%(base)/run"),
            ("rss", "%(2 * 1024 * 1024 * 1024)"),
            ("total", "%(foo + bar + 3 * 2)"),
            ("foo", "17"),
            ("bar", "30"),
            ("inc", "%(foo ++)"),
            ("cat", "%(foo bar ++)"),
            ("div0", "%(foo / 0)"),
            ("log-format", "%(addr) %(status) %(_)"),
            ("base", "/ignored/second"),
        ]);
        let x = expand(&mut e, &Env::new());
        assert_eq!(
            values(&e),
            [
                "/srv/app",
                "/srv/app/src",
                "/srv/app/run/app.sock",
                "/srv/app/run",
                "2147483648",
                "100",
                "17",
                "30",
                "18",
                "1731",
                "0",
                "%(addr) %(status) %(_)",
                "/ignored/second",
            ]
        );
        let mut r: Vec<&str> = x.referenced.iter().map(String::as_str).collect();
        r.sort();
        assert_eq!(r, ["bar", "base", "foo", "sockdir"]);
        assert!(x.pending.is_empty());
    }

    #[test]
    fn loops_are_errors() {
        let mut e = entries(&[("a", "%(a)x")]);
        let x = expand(&mut e, &Env::new());
        assert_eq!(
            x.pending[0].error,
            ConfigError::PlaceholderLoop("--a".into())
        );
    }

    #[test]
    fn at_files() {
        let path = std::env::temp_dir().join(format!("uwsgi_rs_at_{}", std::process::id()));
        std::fs::write(&path, "4096\n").unwrap();
        let mut e = entries(&[
            ("listen", &format!("@({})", path.display())),
            ("x", "@(/definitely/missing)"),
        ]);
        let x = expand(&mut e, &Env::new());
        assert_eq!(e[0].value.as_deref(), Some("4096"));
        assert_eq!(x.pending.len(), 1);
        assert_eq!(
            x.pending[0].error.to_string(),
            "cannot read /definitely/missing for @(/definitely/missing) in --x: No such file or directory"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn substitution_edges() {
        let r = |v: &str| substitute(v, '%', |n| (n == "a").then(|| "A".to_string())).unwrap();
        assert_eq!(r("%(a)%(a)").0, "AA");
        assert_eq!(r("%(a").0, "%(a");
        assert_eq!(r("%()").0, "%()");
        assert_eq!(
            r("%(b) %(a)"),
            ("%(b) A".to_string(), vec!["b".to_string()])
        );
        assert_eq!(r("%(f(x)) %(a)").0, "%(f(x)) A");
    }
}
