//! uWSGI's log regexps (`--log-route`, `--log-req-route`, `--log-drain`) are
//! PCRE; this is what uwsgi-rs compiles them into with regex-lite, so that
//! the patterns real configs use mean what they mean in uWSGI:
//! a `{` that starts no `{N}`/`{N,}`/`{N,M}` repetition is a literal brace,
//! `$` also matches before the line's final newline, and the idiom
//! `^((?!X).)*$` ("the line does not contain X", which needs a lookahead
//! regex-lite does not have) is matched as "X does not match the line".
//!
//! It only compiles and matches; the router decides where a line goes.

use regex_lite::Regex;

#[derive(Debug)]
pub enum LinePattern {
    /// A line matches when the regexp does.
    Matches(Regex),
    /// `^((?!X).)*$`: a line matches when X matches nowhere in it.
    Lacks(Regex),
}

impl LinePattern {
    pub fn new(pattern: &str) -> Result<LinePattern, regex_lite::Error> {
        let pattern = literal_braces(pattern);
        match negated_inner(&pattern) {
            Some(inner) => Regex::new(inner).map(LinePattern::Lacks),
            None => Regex::new(&pattern).map(LinePattern::Matches),
        }
    }

    /// Whether `line` (with or without its final newline) matches.
    pub fn is_match(&self, line: &str) -> bool {
        let line = line.strip_suffix('\n').unwrap_or(line);
        match self {
            LinePattern::Matches(re) => re.is_match(line),
            LinePattern::Lacks(re) => !re.is_match(line),
        }
    }
}

/// X of `^((?!X).)*$` or `^(?:(?!X).)*$`, when the whole pattern is that.
fn negated_inner(pattern: &str) -> Option<&str> {
    let body = pattern
        .strip_prefix("^((?!")
        .or_else(|| pattern.strip_prefix("^(?:(?!"))?
        .strip_suffix(").)*$")?;
    // The X must be one group: its parentheses balance (escapes aside).
    let mut depth = 0i32;
    let mut escaped = false;
    for c in body.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            _ => {}
        }
    }
    (depth == 0 && !escaped && !body.is_empty()).then_some(body)
}

/// PCRE reads `{` as a literal unless it starts a repetition (`{2}`,
/// `{2,}`, `{2,5}`); regex-lite rejects it. Escape those braces (and a
/// `}` that closes none) outside character classes.
fn literal_braces(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 4);
    let (mut i, mut in_class, mut open_rep) = (0, false, false);
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            out.push(c);
            if let Some(&n) = chars.get(i + 1) {
                out.push(n);
            }
            i += 2;
            continue;
        }
        match c {
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '{' if !in_class => {
                if is_repetition(&chars[i + 1..]) {
                    open_rep = true;
                } else {
                    out.push('\\');
                }
            }
            '}' if !in_class => {
                if open_rep {
                    open_rep = false;
                } else {
                    out.push('\\');
                }
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Whether `rest` (after a `{`) is `N}`, `N,}` or `N,M}`.
fn is_repetition(rest: &[char]) -> bool {
    let digits = |s: &[char]| s.iter().take_while(|c| c.is_ascii_digit()).count();
    let n = digits(rest);
    if n == 0 {
        return false;
    }
    match rest.get(n) {
        Some('}') => true,
        Some(',') => {
            let m = digits(&rest[n + 1..]);
            rest.get(n + 1 + m) == Some(&'}')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_studio_routes_split_json_lines_from_the_rest() {
        // deploy/uwsgi.ini of label-studio: JSON lines to one logger, the rest to another.
        let json = LinePattern::new("{").unwrap();
        let rest = LinePattern::new(r"^((?!\{).)*$").unwrap();
        assert!(json.is_match("{\"a\": 1}\n") && !rest.is_match("{\"a\": 1}\n"));
        assert!(
            !json.is_match("spawned uWSGI worker 1\n") && rest.is_match("spawned uWSGI worker 1\n")
        );
    }

    #[test]
    fn repetitions_stay_repetitions() {
        assert!(LinePattern::new(r"^a{2}$").unwrap().is_match("aa\n"));
        assert!(!LinePattern::new(r"^a{2}$").unwrap().is_match("a{2}"));
        assert!(LinePattern::new(r"x{2,}").unwrap().is_match("xxx"));
        assert!(LinePattern::new(r"[{]").unwrap().is_match("{"));
        assert!(LinePattern::new(r"a{b}").unwrap().is_match("a{b}"));
        assert!(LinePattern::new(r"\{x\}").unwrap().is_match("{x}"));
    }

    #[test]
    fn dollar_matches_before_the_final_newline_as_in_pcre() {
        assert!(LinePattern::new("worker 1$")
            .unwrap()
            .is_match("spawned worker 1\n"));
    }

    #[test]
    fn a_lookahead_elsewhere_is_still_an_error() {
        assert!(LinePattern::new("a(?!b)c").is_err());
        assert!(negated_inner(r"^((?!a)|(b).)*$").is_none());
    }
}
