//! `--help` and `--help-migrating` (the option tables of docs/MIGRATING.md),
//! both generated from the option table so they cannot disagree with it.

use super::table::{Arg, OptSpec, Status, OPTIONS};

pub fn version_text() -> String {
    format!("uwsgi-rs {}", env!("CARGO_PKG_VERSION"))
}

fn left_column(o: &OptSpec) -> String {
    let mut s = match o.short {
        Some(c) => format!("-{c}, "),
        None => "    ".to_string(),
    };
    let longs: Vec<String> = o.names.iter().map(|n| format!("--{n}")).collect();
    s.push_str(&longs.join(", "));
    match o.arg {
        Arg::Switch => {}
        Arg::Value(m) => {
            s.push(' ');
            s.push_str(m);
        }
        Arg::Optional(m) => {
            s.push_str("[=");
            s.push_str(m);
            s.push(']');
        }
    }
    s
}

/// The `--help` groups, in order: title and the statuses listed under it.
pub const HELP_GROUPS: &[(&str, &[Status])] = &[
    ("Options", &[Status::Same, Status::Own]),
    (
        "Config language (ini files and the command line)",
        &[Status::Language],
    ),
    ("Different from uWSGI", &[Status::Different]),
    (
        "Accepted for uWSGI compatibility, without effect",
        &[Status::NoEffect],
    ),
    (
        "Not honoured yet (the server starts and its start-up report names them)",
        &[Status::NotYet],
    ),
    ("uWSGI options rejected by uwsgi-rs", &[Status::Rejected]),
];

/// The full `--help` text: one line per option, grouped by status.
pub fn help_text() -> String {
    let mut out = format!(
        "{}: a WSGI application server with uWSGI's command line\n\n\
         Usage: uwsgi-rs [OPTIONS] [FILE.ini]\n\
         Switches also accept =true/false/1/0/yes/no/on/off. Ini keys are long option names;\n\
         values may use $(ENV), %(option) and, in ini files, uWSGI's magic variables (%d, %n, %k...).\n",
        version_text()
    );
    for (title, statuses) in HELP_GROUPS {
        let rows: Vec<&OptSpec> = OPTIONS
            .iter()
            .filter(|o| statuses.contains(&o.status))
            .collect();
        let width = rows
            .iter()
            .map(|o| left_column(o).chars().count())
            .max()
            .unwrap_or(0);
        out.push('\n');
        out.push_str(title);
        out.push_str(":\n");
        for o in rows {
            let text = match o.status {
                Status::Different | Status::NoEffect => format!("{} ({})", o.help, o.note),
                Status::NotYet => format!("{} [{}]", o.help, o.family.label()),
                Status::Rejected => format!("{}: instead, {}", o.help, o.note),
                _ => o.help.to_string(),
            };
            out.push_str(&format!("  {:<width$}   {}\n", left_column(o), text));
        }
    }
    out
}

fn names_cell(o: &OptSpec) -> String {
    let mut names: Vec<String> = o.names.iter().map(|n| format!("`--{n}`")).collect();
    if let Some(c) = o.short {
        names.push(format!("`-{c}`"));
    }
    names.join(", ")
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The option tables of docs/MIGRATING.md, one per status, in markdown.
/// docs/MIGRATING.md contains exactly this text (tests/test_config.py).
pub fn migrating_markdown() -> String {
    let mut out = String::new();
    let count = |s: Status| OPTIONS.iter().filter(|o| o.status == s).count();
    let names: usize = OPTIONS.iter().map(|o| o.names.len()).sum();
    out.push_str(&format!(
        "{} rows ({names} option names): {} same as uWSGI, {} uwsgi-rs only, {} different, \
         {} accepted without effect, {} not honoured yet, {} rejected, {} of the config language.\n",
        OPTIONS.len(),
        count(Status::Same),
        count(Status::Own),
        count(Status::Different),
        count(Status::NoEffect),
        count(Status::NotYet),
        count(Status::Rejected),
        count(Status::Language),
    ));
    let section = |out: &mut String, title: &str, intro: &str, status: Status, col: &str| {
        out.push_str(&format!(
            "\n### {title}\n\n{intro}\n\n| option | {col} |\n|---|---|\n"
        ));
        let mut rows: Vec<&OptSpec> = OPTIONS.iter().filter(|o| o.status == status).collect();
        if status == Status::NotYet {
            rows.sort_by_key(|o| o.family);
        }
        for o in rows {
            let text = match status {
                Status::NotYet => format!("{}: {}", o.family.label(), o.help),
                Status::Same | Status::Own | Status::Language if !o.note.is_empty() => {
                    format!("{}; {}", o.help, o.note)
                }
                Status::Same | Status::Own | Status::Language => o.help.to_string(),
                _ => o.note.to_string(),
            };
            out.push_str(&format!("| {} | {} |\n", names_cell(o), cell(&text)));
        }
    };
    section(
        &mut out,
        "Accepted, same meaning",
        "Implemented as in uWSGI.",
        Status::Same,
        "notes",
    );
    section(
        &mut out,
        "Config language",
        "Read while the configuration is assembled, as uWSGI does (see above).",
        Status::Language,
        "what it does",
    );
    section(
        &mut out,
        "Accepted, different meaning",
        "These start, and do what the note says; the start-up report lists them.",
        Status::Different,
        "in uwsgi-rs",
    );
    section(
        &mut out,
        "Accepted without effect",
        "uwsgi-rs always behaves the way the option asks for, or the option has \
         nothing to act on; the start-up report lists them.",
        Status::NoEffect,
        "why",
    );
    section(
        &mut out,
        "Not honoured yet",
        "Parsed and validated, so a typo in the value is still an error, but the \
         behaviour is not built yet: the server starts without it and the start-up \
         report names every one given (`NOT HONOURED YET: ...`).",
        Status::NotYet,
        "family: what it does in uWSGI",
    );
    section(
        &mut out,
        "Rejected",
        "uwsgi-rs exits with status 1, listing every rejected option of the \
         configuration at once, each with what to do instead.",
        Status::Rejected,
        "instead",
    );
    section(
        &mut out,
        "uwsgi-rs only",
        "Not in uWSGI.",
        Status::Own,
        "notes",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_option_once() {
        let h = help_text();
        assert!(h.contains("\n  -w, --module, --wsgi MODULE[:CALLABLE]"));
        for o in OPTIONS {
            let left = left_column(o);
            let hits = h
                .lines()
                .filter(|l| l.starts_with(&format!("  {left} ")))
                .count();
            assert_eq!(hits, 1, "--{}", o.names[0]);
        }
        assert_eq!(
            h.lines()
                .filter(|l| l.trim_start().starts_with('-'))
                .count(),
            OPTIONS.len()
        );
    }

    #[test]
    fn markdown_has_a_row_per_option() {
        let md = migrating_markdown();
        let rows = md.lines().filter(|l| l.starts_with("| `-")).count();
        assert_eq!(rows, OPTIONS.len());
        for o in OPTIONS {
            assert!(
                md.contains(&format!("| `--{}`", o.names[0])),
                "--{}",
                o.names[0]
            );
        }
        // Families of rows not honoured yet are named for the engineer who builds them.
        assert!(md.contains("| `--https`, `--https-socket` | sockets and requests: "));
    }
}
