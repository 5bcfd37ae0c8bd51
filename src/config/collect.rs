//! Reading the configuration sources into one ordered list of entries, the
//! way uWSGI builds its option list: `UWSGI_*` environment variables first,
//! then the command line, with every `--ini` (and `ini =` inside a file)
//! read at its position ("top-bottom, expand asap").
//!
//! The config language that works on that list as it grows lives here too:
//! `if-env` / `if-exists` / `if-file` / `if-dir` / `if-opt` ... `endif`,
//! `for` / `for-glob` / `for-times` / `for-readline` ... `endfor`, `else`,
//! `set` / `set-placeholder`, and the `%(_)` they define. Values are not
//! expanded here (`$(VAR)`, `@(file)`, `%(name)` come after, in expand.rs),
//! except the magic variables of ini files, which uWSGI substitutes in the
//! file's text before reading it.
//!
//! I/O: reading ini files, and the file tests and globs of the language.

use std::collections::HashMap;
use std::path::Path;

use super::formats::{self, Format};
use super::ini::{self, FileMagic, Host};
use super::report::{suggest, ConfigError, Problem};
use super::table::{self, find_long, find_short, Arg};

/// uWSGI reads nested ini files without a limit (and loops forever on a
/// file that includes itself); uwsgi-rs stops here.
pub const MAX_INI_DEPTH: usize = 16;

/// Where an entry was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// On the command line.
    Arg,
    /// From an `UWSGI_*` environment variable.
    Env(String),
    /// At a line of an ini file.
    Ini { file: String, line: usize },
}

impl Origin {
    /// `app.ini:12`, `$UWSGI_SOCKET`, or `None` for the command line.
    pub fn at(&self) -> Option<String> {
        match self {
            Origin::Arg => None,
            Origin::Env(var) => Some(format!("${var}")),
            Origin::Ini { file, line } => Some(format!("{file}:{line}")),
        }
    }

    /// [`Origin::at`], with "command line" for the command line.
    pub fn describe(&self) -> String {
        self.at().unwrap_or_else(|| "command line".into())
    }
}

/// One `key = value` of the configuration, in the order uWSGI would apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// `None`: a bare switch.
    pub value: Option<String>,
    pub origin: Origin,
    /// Given with `set-placeholder`: never an option, never "unknown".
    pub placeholder: bool,
}

/// `--help`, `--help-migrating` and `--version` end the parsing when seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Early {
    Help,
    HelpMigrating,
    Version,
}

/// An open `if` / `for` block.
#[derive(Debug, Clone)]
enum Block {
    /// `if-*`: whether the options apply, and `%(_)`.
    If { pass: bool, ctx: Option<String> },
    /// `else` after an `if`.
    Else { pass: bool },
    /// `for*`: each option is repeated for every item as `%(_)`.
    For { items: Vec<String> },
}

pub struct Collected {
    pub entries: Vec<Entry>,
    pub problems: Vec<Problem>,
    /// Start-up report lines: what was read differently from uWSGI, or not
    /// read, without stopping the start.
    pub warnings: Vec<String>,
    pub early: Option<Early>,
}

/// The process environment, as given to [`collect`].
pub type Env = HashMap<String, String>;

/// Build the entry list from the environment and the arguments.
pub fn collect(args: &[String], env: &Env, host: &Host) -> Collected {
    let mut c = Collector {
        env,
        host,
        entries: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
        block: None,
        last_ini: None,
        first_magic: None,
        depth: 0,
        early: None,
    };
    c.env_options();
    c.args(args);
    if c.block.is_some() && c.early.is_none() {
        // uWSGI silently applies the block to the end; say so.
        c.problems.push(Problem {
            at: None,
            error: ConfigError::Logic(
                "an if/for block is not closed (add endif = / endfor =)".into(),
            ),
        });
    }
    Collected {
        entries: c.entries,
        problems: c.problems,
        warnings: c.warnings,
        early: c.early,
    }
}

struct Collector<'a> {
    env: &'a Env,
    host: &'a Host,
    entries: Vec<Entry>,
    problems: Vec<Problem>,
    warnings: Vec<String>,
    block: Option<Block>,
    /// The last ini file read and its magic, for `ini = :section`.
    last_ini: Option<(String, FileMagic)>,
    /// The first ini file's magic, for `%N`, `%D`...
    first_magic: Option<FileMagic>,
    depth: usize,
    early: Option<Early>,
}

/// uWSGI's own variables that are not options.
const ENV_NOT_OPTIONS: &[&str] = &[
    "UWSGI_RELOADS",
    "UWSGI_VASSALS_DIR",
    "UWSGI_EMPEROR_FD",
    "UWSGI_BROODLORD_NUM",
    "UWSGI_EMPEROR_FD_CONFIG",
    "UWSGI_EMPEROR_PROXY",
    "UWSGI_JAIL_PID",
    "UWSGI_ORIGINAL_PROC_NAME",
];

impl Collector<'_> {
    fn problem(&mut self, origin: &Origin, error: ConfigError) {
        self.problems.push(Problem {
            at: origin.at(),
            error,
        });
    }

    /// `UWSGI_PROCESSES=4` is `--processes 4`, as in uWSGI (which reads them
    /// before the command line). `UWSGI_RS_*` is uwsgi-rs's own namespace.
    fn env_options(&mut self) {
        let mut vars: Vec<(&String, &String)> = self
            .env
            .iter()
            .filter(|(k, _)| {
                k.starts_with("UWSGI_")
                    && !k.starts_with("UWSGI_RS_")
                    && !ENV_NOT_OPTIONS.contains(&k.as_str())
                    && k.len() > "UWSGI_".len()
            })
            .collect();
        vars.sort();
        for (var, value) in vars {
            let key = var["UWSGI_".len()..].to_ascii_lowercase().replace('_', "-");
            self.add(key, Some(value.clone()), Origin::Env(var.clone()));
            if self.early.is_some() {
                return;
            }
        }
    }

    fn args(&mut self, args: &[String]) {
        let mut i = 0;
        while i < args.len() && self.early.is_none() {
            let arg = args[i].as_str();
            i += 1;
            if let Some(body) = arg.strip_prefix("--") {
                if body.is_empty() {
                    self.problem(&Origin::Arg, ConfigError::UnexpectedArgument(arg.into()));
                    continue;
                }
                let (name, inline) = match body.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (body, None),
                };
                if let Some(arity) = table::uwsgi_only(name) {
                    // A uWSGI option without a row: ignored with a warning, as
                    // in an ini file, so a uWSGI command line still starts.
                    let value = match (arity, inline) {
                        (_, Some(v)) => Some(v.to_string()),
                        (table::UwsgiArg::Required, None) => match args.get(i) {
                            Some(next) if takes_as_value(next) => {
                                i += 1;
                                Some(next.clone())
                            }
                            _ => None,
                        },
                        _ => None,
                    };
                    self.add(name.to_string(), value, Origin::Arg);
                    continue;
                }
                let Some(o) = find_long(name) else {
                    let suggestion = suggest(name, table::all_names());
                    self.problem(
                        &Origin::Arg,
                        ConfigError::UnknownOption {
                            name: format!("--{name}"),
                            suggestion,
                        },
                    );
                    // Its value, if it has one, is not another problem.
                    if inline.is_none() && args.get(i).is_some_and(|n| !n.starts_with('-')) {
                        i += 1;
                    }
                    continue;
                };
                let value = match (o.arg, inline) {
                    (Arg::Value(_), None) => match args.get(i) {
                        Some(next) if takes_as_value(next) => {
                            i += 1;
                            Some(next.clone())
                        }
                        // Missing: the apply step reports it, naming the option.
                        _ => None,
                    },
                    (_, v) => v.map(str::to_string),
                };
                self.add(name.to_string(), value, Origin::Arg);
            } else if let Some(body) = arg.strip_prefix('-').filter(|b| !b.is_empty()) {
                let mut chars = body.chars();
                let c = chars.next().unwrap_or('-');
                let rest = chars.as_str();
                let Some(o) = find_short(c) else {
                    self.problem(
                        &Origin::Arg,
                        ConfigError::UnknownOption {
                            name: arg.to_string(),
                            suggestion: None,
                        },
                    );
                    continue;
                };
                let name = o.canonical();
                let value = match (o.arg, rest.is_empty()) {
                    (Arg::Value(_), false) => Some(rest.to_string()),
                    (Arg::Value(_), true) => match args.get(i) {
                        Some(next) if takes_as_value(next) => {
                            i += 1;
                            Some(next.clone())
                        }
                        // Missing: the apply step reports it, naming the option.
                        _ => None,
                    },
                    (_, true) => None,
                    (_, false) => {
                        self.problem(
                            &Origin::Arg,
                            ConfigError::UnknownOption {
                                name: arg.to_string(),
                                suggestion: None,
                            },
                        );
                        continue;
                    }
                };
                self.add(name.to_string(), value, Origin::Arg);
            } else if ini::split_spec(arg).0.ends_with(".json") {
                // uWSGI's `--json FILE`; uwsgi-rs's --json is a --tracebacks switch.
                self.problem(
                    &Origin::Arg,
                    ConfigError::Logic(format!(
                        "{arg}: JSON config files are not read by uwsgi-rs (its --json is a \
                         --tracebacks switch): write the keys of its \"uwsgi\" object as an ini \
                         [uwsgi] section or a YAML uwsgi: mapping"
                    )),
                );
            } else if let Some(format) = Format::of_argument(arg) {
                // `uwsgi-rs app.ini` is `--ini app.ini` (app.yaml, app.xml
                // likewise), as in uWSGI.
                self.add(format.option().into(), Some(arg.to_string()), Origin::Arg);
            } else {
                self.problem(&Origin::Arg, ConfigError::UnexpectedArgument(arg.into()));
            }
        }
    }

    /// Add one entry, through the open block if any (uWSGI's
    /// add_exported_option and its logic_opt).
    fn add(&mut self, key: String, value: Option<String>, origin: Origin) {
        match key.as_str() {
            "end" | "endif" | "end-if" | "endfor" | "end-for" => {
                self.block = None;
                return;
            }
            "else" => {
                self.block = match self.block.take() {
                    Some(Block::If { pass, .. }) => Some(Block::Else { pass: !pass }),
                    _ => {
                        self.problem(
                            &origin,
                            ConfigError::Logic("else without an if block".into()),
                        );
                        None
                    }
                };
                return;
            }
            _ => {}
        }
        match self.block.clone() {
            None => self.immediate(key, value, origin),
            Some(Block::If { pass: false, .. } | Block::Else { pass: false }) => {}
            Some(Block::If { pass: true, ctx }) => {
                if is_opener(&key) {
                    return self.nested(&origin);
                }
                let value = match (&ctx, value) {
                    (Some(ctx), Some(v)) => Some(v.replace("%(_)", ctx)),
                    (_, v) => v,
                };
                self.in_block(key, value, origin);
            }
            Some(Block::Else { pass: true }) => {
                if is_opener(&key) {
                    return self.nested(&origin);
                }
                self.in_block(key, value, origin);
            }
            Some(Block::For { items }) => {
                if is_opener(&key) {
                    return self.nested(&origin);
                }
                for item in items {
                    let v = value.as_ref().map(|v| v.replace("%(_)", &item));
                    self.in_block(key.clone(), v, origin.clone());
                }
            }
        }
    }

    fn nested(&mut self, origin: &Origin) {
        self.problem(
            origin,
            ConfigError::Logic(
                "if/for blocks cannot be nested (uWSGI does not support it either)".into(),
            ),
        );
    }

    /// An entry that passed its block: its own effect happens outside the
    /// block (an `ini` read inside an `if` is read whole, as in uWSGI).
    fn in_block(&mut self, key: String, value: Option<String>, origin: Origin) {
        let block = self.block.take();
        self.immediate(key, value, origin);
        if self.block.is_none() {
            self.block = block;
        }
    }

    /// The entry's own effect: open a block, read an ini, set a placeholder,
    /// stop for --help; otherwise append it.
    fn immediate(&mut self, key: String, value: Option<String>, origin: Origin) {
        if is_opener(&key) {
            self.block = Some(self.open_block(&key, value.as_deref().unwrap_or(""), &origin));
            return;
        }
        match key.as_str() {
            "ini" | "yaml" | "yml" | "xml" => match value.as_deref() {
                Some(spec) if !spec.is_empty() => {
                    let format = match key.as_str() {
                        "ini" => Format::Ini,
                        "xml" => Format::Xml,
                        _ => Format::Yaml,
                    };
                    self.read_file(spec, format, SectionIs::Required, &origin)
                }
                _ => self.problem(&origin, ConfigError::MissingValue(format!("--{key}"))),
            },
            // uWSGI's uwsgi_opt_ini_paste: the file's [uwsgi] section, then
            // `paste = config:/abs/file` (and `paste-logger` for -logged). A
            // paste ini without [uwsgi] (Pyramid's development.ini) is only
            // a warning there: the app loads all the same.
            "ini-paste" | "ini-paste-logged" => match value.as_deref() {
                Some(file) if !file.is_empty() => {
                    self.read_file(file, Format::Ini, SectionIs::Optional, &origin);
                    let abs = self.host.cwd.join(file);
                    let mut derived = vec![("paste", Some(format!("config:{}", abs.display())))];
                    if key == "ini-paste-logged" {
                        derived.push(("paste-logger", None));
                    }
                    for (k, v) in derived {
                        self.entries.push(Entry {
                            key: k.to_string(),
                            value: v,
                            origin: origin.clone(),
                            placeholder: false,
                        });
                    }
                }
                _ => self.problem(&origin, ConfigError::MissingValue(format!("--{key}"))),
            },
            "set" | "set-placeholder" | "set-ph" | "S" => {
                let v = value.unwrap_or_default();
                match v.split_once('=') {
                    Some((k, val)) if !k.trim().is_empty() => {
                        let k = k.trim().to_string();
                        let placeholder = key != "set";
                        if placeholder && find_long(&k).is_some() {
                            self.problem(
                                &origin,
                                ConfigError::Logic(format!(
                                    "{k} is an option, not a placeholder: use set = {k}=VALUE"
                                )),
                            );
                            return;
                        }
                        self.entries.push(Entry {
                            key: k,
                            value: Some(val.to_string()),
                            origin,
                            placeholder,
                        });
                    }
                    _ => self.problem(
                        &origin,
                        ConfigError::InvalidValue {
                            option: format!("--{key}"),
                            value: v,
                            expected: "KEY=VALUE".into(),
                        },
                    ),
                }
            }
            "help" => self.early = Some(Early::Help),
            "help-migrating" => self.early = Some(Early::HelpMigrating),
            "version" => self.early = Some(Early::Version),
            _ => self.entries.push(Entry {
                key,
                value,
                origin,
                placeholder: false,
            }),
        }
    }

    fn open_block(&mut self, key: &str, arg: &str, origin: &Origin) -> Block {
        let negate = key.starts_with("if-not-");
        let kind = key.trim_start_matches("if-not-").trim_start_matches("if-");
        let cond = |pass: bool, ctx: Option<String>| Block::If {
            pass: pass != negate,
            ctx,
        };
        match kind {
            "env" => {
                let (var, want) = match arg.split_once('=') {
                    Some((v, w)) => (v, Some(w)),
                    None => (arg, None),
                };
                let got = self.env.get(var).cloned();
                let pass = match (&got, want) {
                    (Some(g), Some(w)) => g == w,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                cond(pass, got)
            }
            "opt" => {
                let (name, want) = match arg.split_once('=') {
                    Some((v, w)) => (v, Some(w)),
                    None => (arg, None),
                };
                let got = self
                    .entries
                    .iter()
                    .find(|e| e.key == name)
                    .map(|e| e.value.clone().unwrap_or_else(|| "true".into()));
                let pass = match (&got, want) {
                    (Some(g), Some(w)) => g == w,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                cond(pass, got)
            }
            "exists" => cond(Path::new(arg).exists(), Some(arg.into())),
            "file" => cond(Path::new(arg).is_file(), Some(arg.into())),
            "dir" => cond(Path::new(arg).is_dir(), Some(arg.into())),
            // uwsgi-rs never re-reads its configuration: it is never a reload.
            "reload" => cond(false, None),
            "hostname" => cond(self.host.hostname == arg, Some(arg.into())),
            "plugin" => cond(
                super::values::foreign_plugins(arg).is_empty() && !arg.trim().is_empty(),
                Some(arg.into()),
            ),
            _ => Block::For {
                items: self.for_items(key, arg, origin),
            },
        }
    }

    fn for_items(&mut self, key: &str, arg: &str, origin: &Origin) -> Vec<String> {
        match key {
            "for-glob" => glob(arg),
            "for-times" => match arg.trim().parse::<u32>() {
                Ok(n) => (1..=n).map(|i| i.to_string()).collect(),
                Err(_) => {
                    self.problem(
                        origin,
                        ConfigError::InvalidValue {
                            option: "--for-times".into(),
                            value: arg.into(),
                            expected: "a number".into(),
                        },
                    );
                    Vec::new()
                }
            },
            "for-readline" => match std::fs::read_to_string(arg) {
                Ok(text) => text.lines().map(str::to_string).collect(),
                Err(e) => {
                    self.problem(
                        origin,
                        ConfigError::IniRead {
                            path: arg.into(),
                            reason: io_reason(&e),
                        },
                    );
                    Vec::new()
                }
            },
            _ => arg
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// Read a config file's section (`--ini`, `--yaml`, `--xml`) at this position.
    fn read_file(&mut self, spec: &str, format: Format, section_is: SectionIs, origin: &Origin) {
        if self.depth >= MAX_INI_DEPTH {
            self.problem(
                origin,
                ConfigError::IniTooDeep(MAX_INI_DEPTH, spec.to_string()),
            );
            return;
        }
        let (file, section) = ini::split_spec(spec);
        let (file, magic) = if file.is_empty() && format == Format::Ini {
            // `ini = :section`: the last ini file read, as in uWSGI.
            match &self.last_ini {
                Some((f, m)) => {
                    let mut m = m.clone();
                    m.x = section.unwrap_or("").to_string();
                    (f.clone(), m)
                }
                None => {
                    self.problem(
                        origin,
                        ConfigError::Logic(format!("ini = {spec}: no ini file was read before")),
                    );
                    return;
                }
            }
        } else {
            let m = FileMagic::new(spec, Path::new(file), section, self.host);
            (file.to_string(), m)
        };
        let text = match std::fs::read(&file) {
            // A byte-order mark (editors on Windows) is not part of the first line.
            Ok(bytes) => {
                String::from_utf8_lossy(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes))
                    .into_owned()
            }
            Err(e) => {
                self.problem(
                    origin,
                    ConfigError::IniRead {
                        path: file,
                        reason: io_reason(&e),
                    },
                );
                return;
            }
        };
        let first = self
            .first_magic
            .get_or_insert_with(|| magic.clone())
            .clone();
        let text = ini::substitute(&text, &magic, &first, self.host);
        let mut unread = Vec::new();
        let mut flattened = Vec::new();
        let parsed = match format {
            Format::Ini => Ok(ini::section_lines(&text, section.unwrap_or("uwsgi"))),
            Format::Yaml => {
                let y = formats::yaml_section(&text, section.unwrap_or("uwsgi"));
                unread = y.unread;
                flattened = y.flattened;
                Ok((y.lines, y.found))
            }
            Format::Xml => formats::xml_section_lines(&text, section),
        };
        let section = section.unwrap_or("uwsgi");
        let (lines, found) = match parsed {
            Ok(parsed) => parsed,
            Err(why) => {
                self.problem(origin, ConfigError::Logic(format!("{file}: {why}")));
                return;
            }
        };
        self.last_ini = Some((file.clone(), magic));
        self.warnings.extend(
            unread
                .into_iter()
                .map(|u| format!("{file}:{}: not read: {}", u.line, u.why))
                .chain(
                    flattened
                        .into_iter()
                        .map(|u| format!("{file}:{}: {}", u.line, u.why)),
                ),
        );
        if !found && section_is == SectionIs::Optional {
            self.warnings.push(format!(
                "{file} has no [{section}] section: only its paste app is loaded (as uWSGI does)"
            ));
            return;
        }
        if !found {
            let missing = match format {
                Format::Ini => ConfigError::IniMissingSection {
                    path: file,
                    section: section.to_string(),
                },
                Format::Yaml => ConfigError::Logic(format!("{file} has no '{section}:' mapping")),
                Format::Xml => ConfigError::Logic(format!("{file} has no <uwsgi> element")),
            };
            self.problem(origin, missing);
            return;
        }
        self.depth += 1;
        for l in lines {
            let origin = Origin::Ini {
                file: file.clone(),
                line: l.line,
            };
            self.add(l.key, l.value, origin);
            if self.early.is_some() {
                break;
            }
        }
        self.depth -= 1;
    }
}

/// Whether a config file without the section asked for is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SectionIs {
    /// `--ini`, `--yaml`, `--xml`: the section is what was asked for.
    Required,
    /// `--ini-paste`: the file is a paste ini; its [uwsgi] section is extra.
    Optional,
}

/// Whether the argument after an option that needs a value is that value:
/// anything but another option (a negative number is a value).
fn takes_as_value(next: &str) -> bool {
    !(next.starts_with('-') && next.len() > 1) || next[1..].bytes().all(|b| b.is_ascii_digit())
}

fn is_opener(key: &str) -> bool {
    key.starts_with("if-") || key == "for" || key.starts_with("for-")
}

/// An io::Error message without the " (os error N)" suffix.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// glob(3) with uWSGI's flags: directories get a trailing `/`, and a pattern
/// that matches nothing is its own only item.
fn glob(pattern: &str) -> Vec<String> {
    let Ok(c) = std::ffi::CString::new(pattern) else {
        return vec![pattern.to_string()];
    };
    // SAFETY: glob_t is plain data; zeroed is its documented initial state.
    let mut g: libc::glob_t = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated string and `g` a valid glob_t;
    // no error callback.
    let rc = unsafe {
        libc::glob(
            c.as_ptr(),
            libc::GLOB_MARK | libc::GLOB_NOCHECK,
            None,
            &mut g,
        )
    };
    let mut out = Vec::new();
    if rc == 0 {
        for i in 0..g.gl_pathc {
            // SAFETY: glob filled gl_pathv with gl_pathc valid C strings.
            let s = unsafe { std::ffi::CStr::from_ptr(*g.gl_pathv.add(i)) };
            out.push(s.to_string_lossy().into_owned());
        }
    }
    // SAFETY: `g` was filled by glob (or zeroed, which globfree accepts).
    unsafe { libc::globfree(&mut g) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn kv(c: &Collected) -> Vec<(String, Option<String>)> {
        c.entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    }

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn pairs(p: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn command_line_forms() {
        let h = ini::test_host();
        let c = collect(
            &args(&[
                "--http",
                ":1",
                "--master",
                "-p",
                "4",
                "-pi",
                "--threads=2",
                "-M",
                "--chmod-socket",
            ]),
            &Env::new(),
            &h,
        );
        // `-pi`: -p takes "i" as its value (getopt's glued form).
        assert_eq!(
            kv(&c),
            pairs(&[
                ("http", Some(":1")),
                ("master", None),
                ("processes", Some("4")),
                ("processes", Some("i")),
                ("threads", Some("2")),
                ("master", None),
                ("chmod-socket", None),
            ])
        );
        assert!(c.problems.is_empty());
        let c = collect(&args(&["--proceses", "4", "--http"]), &Env::new(), &h);
        let msgs: Vec<String> = c.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            msgs,
            ["unknown option: --proceses (did you mean --processes?)"]
        );
        // A missing value is reported when the option is applied.
        assert_eq!(kv(&c), pairs(&[("http", None)]));
    }

    #[test]
    fn env_options_come_first() {
        let h = ini::test_host();
        let e = env(&[
            ("UWSGI_PROCESSES", "3"),
            ("UWSGI_RS_BIN", "x"),
            ("UWSGI_RELOADS", "1"),
            ("PATH", "/bin"),
        ]);
        let c = collect(&args(&["--processes", "5"]), &e, &h);
        assert_eq!(
            kv(&c),
            pairs(&[("processes", Some("3")), ("processes", Some("5"))])
        );
        assert_eq!(
            c.entries[0].origin.at().as_deref(),
            Some("$UWSGI_PROCESSES")
        );
    }

    #[test]
    fn if_else_for_blocks() {
        let h = ini::test_host();
        let e = env(&[("PORT", "8000"), ("MODE", "prod")]);
        let a = args(&[
            "--if-env",
            "PORT",
            "--http",
            ":%(_)",
            "--endif",
            "--if-not-env",
            "PORT",
            "--http",
            ":80",
            "--else",
            "--threads",
            "2",
            "--endif",
            "--if-env",
            "MODE=dev",
            "--processes",
            "9",
            "--endif",
            "--if-env",
            "MODE=prod",
            "--processes",
            "3",
            "--endif",
            "--for",
            "a b  c",
            "--socket",
            "/tmp/%(_).sock",
            "--endfor",
            "--for-times",
            "2",
            "--env",
            "N%(_)=1",
            "--end",
            "--if-opt",
            "processes=3",
            "--harakiri",
            "%(_)0",
            "--endif",
            "--if-exists",
            "/definitely/not/here",
            "--master",
            "--endif",
            "--if-not-reload",
            "--vacuum",
            "--endif",
        ]);
        let c = collect(&a, &e, &h);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(
            kv(&c),
            pairs(&[
                ("http", Some(":8000")),
                ("threads", Some("2")),
                ("processes", Some("3")),
                ("socket", Some("/tmp/a.sock")),
                ("socket", Some("/tmp/b.sock")),
                ("socket", Some("/tmp/c.sock")),
                ("env", Some("N1=1")),
                ("env", Some("N2=1")),
                ("harakiri", Some("30")),
                ("vacuum", None),
            ])
        );
    }

    #[test]
    fn block_errors() {
        let h = ini::test_host();
        let c = collect(
            &args(&["--if-env", "A", "--if-env", "B", "--endif"]),
            &env(&[("A", "1")]),
            &h,
        );
        assert_eq!(c.problems.len(), 1);
        assert!(c.problems[0].to_string().contains("cannot be nested"));
        let c = collect(&args(&["--else"]), &Env::new(), &h);
        assert!(c.problems[0].to_string().contains("else without an if"));
        let c = collect(&args(&["--for", "a", "--master"]), &Env::new(), &h);
        assert!(c.problems[0].to_string().contains("not closed"));
    }

    #[test]
    fn set_and_placeholders() {
        let h = ini::test_host();
        let c = collect(
            &args(&[
                "--set-ph",
                "base=/srv",
                "--set",
                "processes=2",
                "--set-ph",
                "processes=1",
                "--set",
                "nonsense",
            ]),
            &Env::new(),
            &h,
        );
        assert_eq!(
            kv(&c),
            pairs(&[("base", Some("/srv")), ("processes", Some("2"))])
        );
        assert!(c.entries[0].placeholder && !c.entries[1].placeholder);
        assert_eq!(c.problems.len(), 2);
    }

    #[test]
    fn help_stops() {
        let h = ini::test_host();
        let c = collect(
            &args(&["--http", ":1", "--help", "--bogus"]),
            &Env::new(),
            &h,
        );
        assert_eq!(c.early, Some(Early::Help));
        assert!(c.problems.is_empty());
        let c = collect(&args(&["--version"]), &Env::new(), &h);
        assert_eq!(c.early, Some(Early::Version));
    }

    #[test]
    fn ini_sections_and_nesting() {
        let h = ini::test_host();
        let dir = std::env::temp_dir().join(format!("uwsgi_rs_collect_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let main = dir.join("main.ini");
        let other = dir.join("other.ini");
        std::fs::write(&other, "[uwsgi]\nthreads = 4\n[extra]\nlisten = 64\n").unwrap();
        std::fs::write(
            &main,
            format!(
                "[uwsgi]\nini = :base\nsocket = %d%n.sock\nini = {}\nini = :extra\nmaster\n[base]\nchdir = /seed\n",
                other.display()
            ),
        )
        .unwrap();
        let c = collect(&args(&[main.to_str().unwrap()]), &Env::new(), &h);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let d = format!("{}/", std::fs::canonicalize(&dir).unwrap().display());
        let sock = format!("{d}main.sock");
        assert_eq!(
            kv(&c),
            pairs(&[
                ("chdir", Some("/seed")),
                ("socket", Some(sock.as_str())),
                ("threads", Some("4")),
                // `:extra` is read from the last ini file read: other.ini.
                ("listen", Some("64")),
                ("master", None),
            ])
        );
        assert_eq!(
            c.entries[1].origin,
            Origin::Ini {
                file: main.display().to_string(),
                line: 3
            }
        );
        // A file that includes itself stops at the depth limit, with one problem.
        let selfref = dir.join("loop.ini");
        std::fs::write(&selfref, "[uwsgi]\nini = %p\n").unwrap();
        let c = collect(
            &args(&["--ini", selfref.to_str().unwrap()]),
            &Env::new(),
            &h,
        );
        assert_eq!(c.problems.len(), 1);
        assert!(c.problems[0]
            .to_string()
            .contains("nested more than 16 deep"));
        let c = collect(
            &args(&["--ini", &format!("{}:nope", main.display())]),
            &Env::new(),
            &h,
        );
        assert_eq!(
            c.problems[0].to_string(),
            format!("ini file {} has no [nope] section", main.display())
        );
        let c = collect(
            &args(&["--ini", "/definitely/missing.ini"]),
            &Env::new(),
            &h,
        );
        assert_eq!(
            c.problems[0].to_string(),
            "cannot read ini file /definitely/missing.ini: No such file or directory"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn globbing() {
        let dir = std::env::temp_dir().join(format!("uwsgi_rs_glob_{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.ini"), "").unwrap();
        let got = glob(&format!("{}/*", dir.display()));
        assert_eq!(
            got,
            [
                format!("{}/a.ini", dir.display()),
                format!("{}/sub/", dir.display())
            ]
        );
        assert_eq!(glob("/definitely/not/*.x"), ["/definitely/not/*.x"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
