//! uWSGI's internal routing (core/routing.c, the redirect and static
//! router plugins), for the actions real configs use: `addheader`,
//! `return` / `break-with-status`, `break`, `redirect` / `redirect-302` /
//! `redirect-301` / `redirect-permanent`, `static`, `continue`, `last`,
//! `log`, `donotlog`. Subjects: `route` (PATH_INFO), `route-uri`,
//! `route-host`, `route-qs`, `route-run`, and `route-if` / `route-if-not`
//! with the conditions `equal`/`isequal`/`eq`/`==`, `startswith`,
//! `endswith`, `regexp`/`re`, `exists`, `isfile`, `isdir`.
//!
//! Rules run in order before the app (and before static files, whose
//! headers they may add to); `$1`..`$9` and `${VAR}` are substituted in
//! action arguments as uWSGI does. Routes with any other action are
//! dropped when the worker starts, and the config layer names them at
//! start-up.
//!
//! Pure: a request's variables in, a [`Verdict`] out. No I/O except the
//! file tests of `exists` / `isfile` / `isdir`; no Python.

use std::borrow::Cow;

use regex_lite::{Captures, Regex};

use crate::config::values::{RouteAction, RouteSubject};
use crate::config::Route;

/// The request as routes see it.
pub trait Vars {
    /// A CGI variable (`PATH_INFO`, `HTTP_HOST`, ...).
    fn var(&self, name: &[u8]) -> Option<Cow<'_, [u8]>>;
}

#[derive(Debug)]
enum Subject {
    Var(&'static [u8]),
    Always,
    If { cond: Cond, negate: bool },
}

#[derive(Debug, Clone, Copy)]
enum Cond {
    Equal,
    StartsWith,
    EndsWith,
    Regexp,
    Exists,
    IsFile,
    IsDir,
}

#[derive(Debug)]
enum Action {
    AddHeader(String, String),
    DelHeader(String),
    Return(u16),
    Break,
    Redirect(u16, String),
    Static(String),
    Continue,
    Log(String),
    DoNotLog,
}

#[derive(Debug)]
struct Rule {
    subject: Subject,
    /// The regexp of a subject rule, or the (untranslated) argument of a
    /// condition.
    regex: Option<Regex>,
    arg: String,
    action: Action,
}

/// A worker's routes, compiled.
#[derive(Debug, Default)]
pub struct Routes {
    rules: Vec<Rule>,
}

/// What the routes decided.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Headers to add to whatever response the request gets.
    pub headers: Vec<(String, String)>,
    /// Header names to remove from the app's response (`delheader`).
    pub del_headers: Vec<String>,
    pub answer: Option<Answer>,
    /// `donotlog`: no access-log line.
    pub no_log: bool,
}

/// A response the routes give instead of the app.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Status, extra headers and body.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Serve this file (a route's `static:`).
    File(Vec<u8>),
    /// `break` without a status: close without a response, as uWSGI does.
    Close,
}

impl Routes {
    /// Compile the routes uwsgi-rs honours (the others are named by the
    /// config layer at start). None when there are none.
    pub fn new(routes: &[Route]) -> Result<Option<Routes>, String> {
        let mut rules = Vec::new();
        for r in routes.iter().filter(|r| r.action.honoured()) {
            let subject = match &r.subject {
                RouteSubject::PathInfo => Subject::Var(b"PATH_INFO"),
                RouteSubject::RequestUri => Subject::Var(b"REQUEST_URI"),
                RouteSubject::Host => Subject::Var(b"HTTP_HOST"),
                RouteSubject::QueryString => Subject::Var(b"QUERY_STRING"),
                RouteSubject::Always => Subject::Always,
                RouteSubject::If { negate, condition } => Subject::If {
                    negate: *negate,
                    cond: match condition.as_str() {
                        "equal" | "isequal" | "eq" | "==" => Cond::Equal,
                        "startswith" => Cond::StartsWith,
                        "endswith" => Cond::EndsWith,
                        "regexp" | "re" => Cond::Regexp,
                        "exists" => Cond::Exists,
                        "isfile" => Cond::IsFile,
                        "isdir" => Cond::IsDir,
                        other => return Err(format!("route condition '{other}' is not supported")),
                    },
                },
            };
            let regex = match subject {
                Subject::Var(_) => Some(
                    Regex::new(&r.pattern)
                        .map_err(|e| format!("bad route regexp {:?}: {e}", r.pattern))?,
                ),
                _ => None,
            };
            let action = match &r.action {
                RouteAction::AddHeader(h) => Action::AddHeader(h.name.clone(), h.value.clone()),
                RouteAction::DelHeader(name) => Action::DelHeader(name.clone()),
                RouteAction::Return(s) => Action::Return(*s),
                RouteAction::Break => Action::Break,
                RouteAction::Redirect { status, url } => Action::Redirect(*status, url.clone()),
                RouteAction::Static(p) => Action::Static(p.to_string_lossy().into_owned()),
                RouteAction::Continue | RouteAction::Last => Action::Continue,
                RouteAction::Log(s) => Action::Log(s.clone()),
                _ => Action::DoNotLog,
            };
            rules.push(Rule {
                subject,
                regex,
                arg: r.pattern.clone(),
                action,
            });
        }
        Ok((!rules.is_empty()).then_some(Routes { rules }))
    }

    /// Run the routes for a request.
    pub fn apply(&self, vars: &dyn Vars) -> Verdict {
        let mut verdict = Verdict::default();
        for rule in &self.rules {
            let subject;
            let caps = match &rule.subject {
                Subject::Always => None,
                Subject::Var(name) => {
                    subject = lossy(vars.var(name));
                    let Some(re) = &rule.regex else { continue };
                    match re.captures(&subject) {
                        Some(c) => Some(c),
                        None => continue,
                    }
                }
                Subject::If { cond, negate } => {
                    if condition(*cond, &rule.arg, vars) == *negate {
                        continue;
                    }
                    None
                }
            };
            let tr = |s: &str| translate(s, caps.as_ref(), vars);
            match &rule.action {
                Action::AddHeader(name, value) => verdict.headers.push((name.clone(), tr(value))),
                Action::DelHeader(name) => verdict.del_headers.push(tr(name)),
                Action::Log(text) => crate::log::line(&crate::log::escape(tr(text).as_bytes())),
                Action::DoNotLog => verdict.no_log = true,
                Action::Continue => break,
                Action::Break => {
                    verdict.answer = Some(Answer::Close);
                    break;
                }
                Action::Return(status) => {
                    let reason = crate::http::reason_phrase(*status);
                    verdict.answer = Some(Answer::Respond {
                        status: *status,
                        headers: vec![("Content-Type".into(), "text/plain".into())],
                        body: reason.as_bytes().to_vec(),
                    });
                    break;
                }
                Action::Redirect(status, url) => {
                    let location = tr(url);
                    let clean = location.bytes().all(|b| b >= 0x20 && b != 0x7f);
                    verdict.answer = Some(Answer::Respond {
                        status: *status,
                        headers: if clean {
                            vec![("Location".into(), location)]
                        } else {
                            Vec::new()
                        },
                        body: if *status == 301 {
                            b"Moved Permanently".to_vec()
                        } else {
                            b"Moved".to_vec()
                        },
                    });
                    break;
                }
                Action::Static(path) => {
                    verdict.answer = Some(Answer::File(tr(path).into_bytes()));
                    break;
                }
            }
        }
        verdict
    }
}

fn lossy(v: Option<Cow<'_, [u8]>>) -> String {
    v.map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// uWSGI's `uwsgi_routing_translate`: `$N` from the regexp's groups, then
/// `${VAR}` from the request (unknown variables are empty).
fn translate(s: &str, caps: Option<&Captures<'_>>, vars: &dyn Vars) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            if let Some(d) = b.get(i + 1).filter(|d| d.is_ascii_digit()) {
                if let Some(c) = caps {
                    out.push_str(c.get((d - b'0') as usize).map_or("", |m| m.as_str()));
                    i += 2;
                    continue;
                }
            }
            if b.get(i + 1) == Some(&b'{') {
                if let Some(end) = s[i + 2..].find('}') {
                    let name = &s[i + 2..i + 2 + end];
                    out.push_str(&lossy(vars.var(name.as_bytes())));
                    i += end + 3;
                    continue;
                }
            }
        }
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// A `route-if` condition; `arg` is translated first. Two-operand
/// conditions split it at the first ';' (`equal:${PATH_INFO};/x`).
fn condition(cond: Cond, arg: &str, vars: &dyn Vars) -> bool {
    let arg = translate(arg, None, vars);
    let (a, b) = arg.split_once(';').unwrap_or((arg.as_str(), ""));
    match cond {
        Cond::Equal => a == b,
        Cond::StartsWith => a.starts_with(b),
        Cond::EndsWith => a.ends_with(b),
        Cond::Regexp => Regex::new(b).is_ok_and(|re| re.is_match(a)),
        Cond::Exists => std::path::Path::new(&arg).exists(),
        Cond::IsFile => std::path::Path::new(&arg).is_file(),
        Cond::IsDir => std::path::Path::new(&arg).is_dir(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::route;
    use std::collections::HashMap;

    struct Req(HashMap<&'static str, &'static str>);

    impl Vars for Req {
        fn var(&self, name: &[u8]) -> Option<Cow<'_, [u8]>> {
            let name = std::str::from_utf8(name).ok()?;
            self.0.get(name).map(|v| Cow::Borrowed(v.as_bytes()))
        }
    }

    fn req(path: &'static str) -> Req {
        Req(HashMap::from([
            ("PATH_INFO", path),
            ("REQUEST_URI", path),
            ("HTTP_HOST", "example.com"),
            ("QUERY_STRING", "a=1"),
        ]))
    }

    fn routes(specs: &[(&str, RouteSubject)]) -> Routes {
        let parsed: Vec<Route> = specs
            .iter()
            .map(|(s, subj)| route("--route", s, subj.clone()).unwrap())
            .collect();
        Routes::new(&parsed).unwrap().unwrap()
    }

    #[test]
    fn addheader_then_app() {
        let r = routes(&[(
            "^/static/ addheader:Content-Security-Policy: sandbox",
            RouteSubject::PathInfo,
        )]);
        let v = r.apply(&req("/static/a.css"));
        assert_eq!(
            v.headers,
            [("Content-Security-Policy".to_string(), "sandbox".to_string())]
        );
        assert!(v.answer.is_none());
        assert!(r.apply(&req("/other")).headers.is_empty());
    }

    #[test]
    fn return_redirect_and_groups() {
        let r = routes(&[
            (
                "^/old/(.*) redirect-301:/new/$1?h=${HTTP_HOST}",
                RouteSubject::PathInfo,
            ),
            ("^/secret return:403", RouteSubject::PathInfo),
            ("^/go redirect:https://x/", RouteSubject::PathInfo),
            ("^/files/(.*) static:/srv/$1", RouteSubject::PathInfo),
        ]);
        assert_eq!(
            r.apply(&req("/old/a/b")).answer,
            Some(Answer::Respond {
                status: 301,
                headers: vec![("Location".into(), "/new/a/b?h=example.com".into())],
                body: b"Moved Permanently".to_vec()
            })
        );
        assert!(matches!(
            r.apply(&req("/secret")).answer,
            Some(Answer::Respond { status: 403, .. })
        ));
        assert!(matches!(
            r.apply(&req("/go")).answer,
            Some(Answer::Respond { status: 302, .. })
        ));
        assert_eq!(
            r.apply(&req("/files/x.txt")).answer,
            Some(Answer::File(b"/srv/x.txt".to_vec()))
        );
    }

    #[test]
    fn continue_stops_and_conditions_hold() {
        let r = routes(&[
            ("^/api continue:", RouteSubject::PathInfo),
            (
                "equal:${QUERY_STRING};a=1 addheader:X-Q: one",
                RouteSubject::If {
                    negate: false,
                    condition: String::new(),
                },
            ),
            (
                "startswith:${PATH_INFO};/adm return:401",
                RouteSubject::If {
                    negate: true,
                    condition: String::new(),
                },
            ),
            ("example\\.com addheader:X-Host: yes", RouteSubject::Host),
        ]);
        let v = r.apply(&req("/api/x"));
        assert!(
            v.headers.is_empty() && v.answer.is_none(),
            "continue: straight to the app"
        );
        let v = r.apply(&req("/admin"));
        assert_eq!(v.headers.len(), 2);
        assert!(v.answer.is_none());
        assert!(matches!(
            r.apply(&req("/x")).answer,
            Some(Answer::Respond { status: 401, .. })
        ));
    }

    #[test]
    fn unhonoured_actions_are_dropped_and_bad_regexps_refused_at_config() {
        let parsed = vec![route("--route", "^/x rewrite:/y", RouteSubject::PathInfo).unwrap()];
        assert!(Routes::new(&parsed).unwrap().is_none());
        assert!(route("--route", "^/(x return:403", RouteSubject::PathInfo).is_err());
    }
}
