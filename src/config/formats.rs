//! uWSGI's YAML and XML config files (`--yaml`/`--yml FILE[:SECTION]`,
//! `--xml FILE[:ID]`, or `uwsgi-rs app.yaml` / `app.xml`): the lines of the
//! section they hold, as uWSGI's own readers find them (core/yaml.c built
//! with libyaml, as Debian's and Ubuntu's uWSGI is; core/xmlconf.c with
//! libxml2), and the lines they could not read. The file is read, and its
//! magic variables substituted, as an ini file's are (collect.rs); this only
//! turns text into [`IniLine`]s. Pure.

use super::ini::IniLine;

/// The config file formats uWSGI reads besides ini.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ini,
    Yaml,
    Xml,
}

impl Format {
    /// The option that reads a file of this format.
    pub fn option(self) -> &'static str {
        match self {
            Format::Ini => "ini",
            Format::Yaml => "yaml",
            Format::Xml => "xml",
        }
    }

    /// The format a bare `FILE` argument names by its extension, as uWSGI's
    /// command line tells them apart.
    pub fn of_argument(arg: &str) -> Option<Format> {
        let file = super::ini::split_spec(arg).0;
        let ext = file.rsplit_once('.').map(|(_, e)| e)?;
        match ext {
            "ini" => Some(Format::Ini),
            "yaml" | "yml" => Some(Format::Yaml),
            "xml" => Some(Format::Xml),
            _ => None,
        }
    }
}

/// A line of a config file its reader could not turn into options. uWSGI
/// reads it differently or drops it, so the start-up report names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    pub line: usize,
    /// What it is, and its text.
    pub why: String,
}

/// What [`yaml_section`] found in a YAML file.
#[derive(Debug, Default)]
pub struct YamlSection {
    pub lines: Vec<IniLine>,
    /// Whether the `section:` mapping was there.
    pub found: bool,
    pub unread: Vec<Unread>,
    /// Mappings nested under a key, whose keys were read as options of
    /// their own (libyaml's reading): the start-up report names each.
    pub flattened: Vec<Unread>,
}

/// The `key: value` lines of the top-level `section:` mapping (default
/// `uwsgi`), read as uWSGI built with libyaml reads them (Debian's and
/// Ubuntu's uwsgi-core; its built-in reader agrees on plain `key: value`
/// lines): `#` after a space starts a comment, single- and double-quoted
/// keys and values lose their quotes (`''` and `\` escapes decoded), a list
/// (`env: [A=1, B=2]`, or `env:` followed by `- A=1` lines) gives the key
/// once per item, and the keys of a mapping nested under a key are options
/// of their own (`logging:` then `  logto: x` is `--logto x`; the outer key
/// gets no value), as uWSGI's libyaml reader flattens them (core/yaml.c);
/// each such mapping is [`YamlSection::flattened`]. Lines it cannot read
/// (values on several lines, anchors, a key without a value...) are
/// [`Unread`], one per construct; the lines after them are still read.
pub fn yaml_section(text: &str, section: &str) -> YamlSection {
    let mut out = YamlSection::default();
    let mut lines = text.split('\n').enumerate().filter_map(|(i, raw)| {
        let body = strip_yaml_comment(raw).trim_end_matches([' ', '\t', '\r']);
        let content = body.trim_start_matches([' ', '\t', '\r']);
        let indent: usize = body[..body.len() - content.len()]
            .chars()
            .map(|c| if c == '\t' { 8 } else { 1 })
            .sum();
        (!content.is_empty()).then_some(YamlLine {
            number: i + 1,
            indent,
            text: content,
        })
    });
    // The top-level `section:` line.
    let mut top: Option<usize> = None;
    let top = loop {
        let Some(l) = lines.next() else {
            return out;
        };
        if l.text.starts_with("---") || l.text.starts_with('%') {
            continue;
        }
        let level = *top.get_or_insert(l.indent);
        if l.indent > level {
            continue;
        }
        top = Some(l.indent);
        if key_value(l.text).is_some_and(|(key, rest)| key == section && rest.is_empty()) {
            out.found = true;
            break l.indent;
        }
    };
    let mut body = YamlBody::default();
    for l in lines.take_while(|l| l.indent > top) {
        body.line(&l, &mut out);
        if out
            .unread
            .last()
            .is_some_and(|u| u.line == l.number && u.why.starts_with(STOPS_LIBYAML))
        {
            return out;
        }
    }
    body.close_key(&mut out);
    out
}

/// One line of YAML without its comment.
struct YamlLine<'a> {
    number: usize,
    /// Spaces count 1, tabs 8 (as uWSGI's built-in reader counts them).
    indent: usize,
    /// Without the indentation.
    text: &'a str,
}

/// The reading state inside the section's mapping.
#[derive(Default)]
struct YamlBody {
    /// The indentation of its keys (its first line's).
    key_indent: Option<usize>,
    /// The key indentations of the mappings a nested one is inside.
    outer: Vec<usize>,
    /// A `key:` without a value on its line, and how many list items it got.
    open: Option<(String, usize, usize)>,
    /// The lines deeper than a key are part of something already reported.
    skipping: bool,
    /// The last line was a plain value (its index in the lines read): a
    /// deeper line after it continues it.
    folding: Option<usize>,
}

impl YamlBody {
    fn line(&mut self, l: &YamlLine, out: &mut YamlSection) {
        let unread = |out: &mut YamlSection, why: String| {
            out.unread.push(Unread {
                line: l.number,
                why,
            })
        };
        let mut key_indent = *self.key_indent.get_or_insert(l.indent);
        let item = (l.text == "-" || l.text.starts_with("- ") || l.text.starts_with("-\t"))
            .then(|| l.text[1..].trim_start_matches([' ', '\t']));
        // A nested mapping ends: back to the keys of the one around it.
        while l.indent < key_indent && item.is_none() {
            let Some(outer) = self.outer.pop() else {
                break;
            };
            self.close_key(out);
            self.skipping = false;
            key_indent = outer;
            self.key_indent = Some(outer);
        }
        // `key:` then deeper `k: v` lines: libyaml reads k as an option.
        if let (Some((key, _, 0)), None, true) = (
            &self.open,
            item,
            l.indent > key_indent && key_value(l.text).is_some(),
        ) {
            out.flattened.push(Unread {
                line: l.number,
                why: format!(
                    "the keys of the mapping nested under '{key}:' are options of their own, \
                     as uWSGI's libyaml reader reads them: {}",
                    l.text
                ),
            });
            self.open = None;
            self.folding = None;
            self.outer.push(key_indent);
            self.key_indent = Some(l.indent);
            return self.line(l, out);
        }
        let folding = self.folding.take();
        let plain = |v: &str| !v.starts_with(['"', '\'', '[']);
        // An item of the open key's list (indented, or at the key's own indentation).
        if let (Some(item), Some((key, _, items))) = (item, self.open.as_mut()) {
            if l.indent >= key_indent {
                *items += 1;
                let value = match key_value(item) {
                    Some(_) => Err("a mapping inside a list"),
                    None => scalar(item),
                };
                match value {
                    Ok(value) => {
                        self.folding = plain(item).then_some(out.lines.len());
                        out.lines.push(IniLine {
                            line: l.number,
                            key: key.clone(),
                            value: Some(value),
                        });
                    }
                    Err(why) => unread(out, format!("{why}: {}", l.text)),
                }
                return;
            }
        }
        if l.indent > key_indent || (item.is_some() && self.skipping) {
            if let (Some(i), None, None) = (folding, item, key_value(l.text)) {
                // A plain value on several lines is one value, its lines
                // joined by spaces (YAML's folding, as libyaml reads it).
                // (`key: value` there is a YAML error: reported below.)
                if let Some(v) = out.lines[i].value.as_mut() {
                    v.push(' ');
                    v.push_str(l.text);
                }
                self.folding = folding;
                return;
            }
            // `key:` with its plain value on the next, deeper line: libyaml
            // reads it as the key's value (folded with the lines after it).
            if let (Some((key, _, 0)), None) = (&self.open, item) {
                if let Ok(value) = scalar(l.text) {
                    let key = key.clone();
                    self.open = None;
                    self.folding = plain(l.text).then_some(out.lines.len());
                    out.lines.push(IniLine {
                        line: l.number,
                        key,
                        value: Some(value),
                    });
                    return;
                }
            }
            if !self.skipping {
                let what = match self.open.take() {
                    Some((key, _, 0)) => format!("a mapping nested under '{key}:'"),
                    _ => "a value continued on the next lines".to_string(),
                };
                unread(out, format!("{what}: {}", l.text));
                self.skipping = true;
            }
            return;
        }
        self.close_key(out);
        self.skipping = true;
        if item.is_some() {
            return unread(
                out,
                format!("a list item without a key before it: {}", l.text),
            );
        }
        if l.indent < key_indent {
            return unread(
                out,
                format!("indented less than the keys before it: {}", l.text),
            );
        }
        let Some((key, rest)) = key_value(l.text) else {
            return unread(out, format!("not a 'key: value' line: {}", l.text));
        };
        if rest.is_empty() {
            self.open = Some((key, l.number, 0));
            self.skipping = false;
            return;
        }
        let values = if rest.starts_with('[') {
            flow_list(rest)
        } else {
            scalar(rest).map(|v| vec![v])
        };
        match values {
            Ok(values) => {
                self.skipping = false;
                self.folding = (plain(rest) && values.len() == 1).then_some(out.lines.len());
                out.lines.extend(values.into_iter().map(|value| IniLine {
                    line: l.number,
                    key: key.clone(),
                    value: Some(value),
                }));
            }
            Err(why) => unread(out, format!("{why}: {}", l.text)),
        }
    }

    /// The open `key:` ends: without list items it had no value (uWSGI
    /// built with libyaml drops it without a word).
    fn close_key(&mut self, out: &mut YamlSection) {
        if let Some((key, line, 0)) = self.open.take() {
            out.unread.push(Unread {
                line,
                why: format!("a key without a value: {key}:"),
            });
        }
    }
}

/// The line without its comment: `#` at its start or after a space or tab,
/// outside quotes, as YAML has it.
fn strip_yaml_comment(line: &str) -> &str {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' if i == 0 || matches!(b[i - 1], b' ' | b'\t') => return &line[..i],
            b'"' | b'\'' if starts_scalar(&line[..i]) => match quoted_end(&line[i..]) {
                Some(end) => i += end,
                None => return line,
            },
            _ => i += 1,
        }
    }
    line
}

/// Whether a quote after `before` opens a quoted scalar (rather than being
/// part of a plain one, as in `it's`).
fn starts_scalar(before: &str) -> bool {
    let trimmed = before.trim_end_matches([' ', '\t']);
    trimmed.is_empty()
        || trimmed.ends_with(['[', ',', '{'])
        || (trimmed.len() < before.len() && trimmed.ends_with([':', '-', '?']))
}

/// The byte just past the closing quote of the quoted scalar `s` starts with.
fn quoted_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let quote = *b.first()?;
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && b.get(i + 1) == Some(&b'\'') => i += 2,
            c if c == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// `key: rest` or `key:` (a quoted key too): the key and what follows.
fn key_value(text: &str) -> Option<(String, &str)> {
    let (key, after) = if text.starts_with(['"', '\'']) {
        let end = quoted_end(text)?;
        let key = scalar(&text[..end]).ok()?;
        (
            key,
            text[end..]
                .trim_start_matches([' ', '\t'])
                .strip_prefix(':')?,
        )
    } else {
        let b = text.as_bytes();
        let at = (0..b.len())
            .find(|&i| b[i] == b':' && matches!(b.get(i + 1), None | Some(b' ' | b'\t')))?;
        let key = text[..at].trim_end_matches([' ', '\t']);
        if key.is_empty() || key.starts_with(['-', '[', '{', '?', '&', '*', '!']) {
            return None;
        }
        (key.to_string(), &text[at + 1..])
    };
    if !(after.is_empty() || after.starts_with([' ', '\t'])) {
        return None;
    }
    Some((key, after.trim_matches([' ', '\t'])))
}

/// One value: a quoted scalar decoded, a plain one as it is.
/// A value with an anchor (`&a x`) or a tag (`!!str x`): uWSGI's libyaml
/// reader logs "unsupported YAML token" there and reads no further.
const STOPS_LIBYAML: &str = "a YAML anchor or tag, where uWSGI stops reading the file \
                             ('unsupported YAML token'), and so does uwsgi-rs: the lines after it \
                             are not read either";

fn scalar(s: &str) -> Result<String, &'static str> {
    let s = s.trim_matches([' ', '\t', '\r']);
    match s.as_bytes().first() {
        Some(b'"' | b'\'') => {
            let end = quoted_end(s).ok_or("a quoted value that does not end on its line")?;
            if end != s.len() {
                return Err("text after a quoted value");
            }
            let inner = &s[1..end - 1];
            if s.starts_with('\'') {
                Ok(inner.replace("''", "'"))
            } else {
                unescape_double_quoted(inner)
            }
        }
        Some(b'&' | b'!') => Err(STOPS_LIBYAML),
        Some(b'*') => Err("a YAML alias (uWSGI gives its key no value)"),
        Some(b'|' | b'>') => Err("a | or > block value"),
        Some(b'{') => Err("an inline {...} mapping"),
        Some(b'[') => Err("a list inside a list"),
        _ => Ok(s.to_string()),
    }
}

/// `[a, "b", 'c']`: its items (an empty list has none).
fn flow_list(s: &str) -> Result<Vec<String>, &'static str> {
    let inner = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or("a [...] list that does not end on its line")?;
    let mut items = Vec::new();
    let mut push = |item: &str| -> Result<(), &'static str> {
        if !item.trim().is_empty() {
            items.push(scalar(item)?);
        }
        Ok(())
    };
    let (b, mut start, mut i) = (inner.as_bytes(), 0, 0);
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' if inner[start..i].trim().is_empty() => {
                i += quoted_end(&inner[i..]).ok_or("a quoted value that does not end")?;
            }
            b',' => {
                push(&inner[start..i])?;
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push(&inner[start..])?;
    Ok(items)
}

/// The text of a double-quoted YAML scalar with its `\` escapes decoded.
fn unescape_double_quoted(s: &str) -> Result<String, &'static str> {
    const BAD: &str = "an unknown \\ escape in a double-quoted value";
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next().ok_or(BAD)?;
        out.push(match e {
            'n' => '\n',
            't' | '\t' => '\t',
            'r' => '\r',
            '0' => '\0',
            'a' => '\x07',
            'b' => '\x08',
            'e' => '\x1b',
            'f' => '\x0c',
            'v' => '\x0b',
            '\\' | '"' | '/' | ' ' => e,
            'x' | 'u' | 'U' => {
                let digits = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = chars.by_ref().take(digits).collect();
                u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == digits)
                    .and_then(char::from_u32)
                    .ok_or(BAD)?
            }
            _ => return Err(BAD),
        });
    }
    Ok(out)
}

/// The children of the `<uwsgi>` element (the root whatever its `id`, or
/// the first child `<uwsgi>` of the root whose `id` is `id` when given), as
/// uWSGI's XML reader: `<key>value</key>` is `key = value`, `<key/>` and
/// `<key></key>` are `key = 1`, `<app mountpoint="/x">APP</app>` is
/// `mount = /x=APP`. Comments are skipped; `&lt;`-style entities are
/// decoded. Returns the lines and whether a `<uwsgi>` element was there, or
/// what is wrong with the file.
pub fn xml_section_lines(text: &str, id: Option<&str>) -> Result<(Vec<IniLine>, bool), String> {
    let line_of = |pos: usize| text[..pos].matches('\n').count() + 1;
    let mut tags = Tags { text, pos: 0 };
    let Some(root) = tags.next()? else {
        return Ok((Vec::new(), false));
    };
    // The root when it is <uwsgi> (whatever its id, as in uWSGI), else the
    // first <uwsgi> child of the root with the id.
    let element = if root.name == "uwsgi" {
        root
    } else {
        loop {
            match tags.next()? {
                Some(tag) if !tag.closing && !root.empty => {
                    if tag.name == "uwsgi"
                        && !matches!((id, tag.attr("id")), (Some(w), Some(h)) if w != h)
                    {
                        break tag;
                    }
                    if !tag.empty {
                        tags.skip_to_close(&tag.name)?;
                    }
                }
                _ => return Ok((Vec::new(), false)),
            }
        }
    };
    if element.empty {
        return Ok((Vec::new(), true));
    }
    let mut out = Vec::new();
    loop {
        let Some(tag) = tags.next()? else {
            return Err("the <uwsgi> element is not closed".into());
        };
        if tag.closing {
            if tag.name == "uwsgi" {
                return Ok((out, true));
            }
            return Err(format!(
                "unexpected </{}> (line {})",
                tag.name,
                line_of(tag.at)
            ));
        }
        if let (Some(want), Some(have)) = (id, tag.attr("id")) {
            if want != have {
                if !tag.empty {
                    tags.skip_to_close(&tag.name)?;
                }
                continue;
            }
        }
        let line = line_of(tag.at);
        let content = if tag.empty {
            ""
        } else {
            tags.skip_to_close(&tag.name)?
        };
        // `<master/>` and `<master></master>` alike: no content is "1".
        let value = match content {
            "" => "1".to_string(),
            _ => decode_entities(content.trim()),
        };
        let (key, value) = if tag.name == "app" {
            match (tag.attr("mountpoint"), tag.attr("domain")) {
                (Some(m), _) => ("mount".to_string(), format!("{m}={value}")),
                (None, Some(d)) => ("mount".to_string(), format!("{d}|={value}")),
                (None, None) => ("mount".to_string(), format!("={value}")),
            }
        } else {
            (tag.name.clone(), value)
        };
        out.push(IniLine {
            line,
            key,
            value: Some(value),
        });
    }
}

struct Tag {
    name: String,
    attrs: Vec<(String, String)>,
    closing: bool,
    empty: bool,
    /// Byte offset of its `<`.
    at: usize,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The element tags of an XML text, in order (declarations, comments,
/// processing instructions and CDATA skipped).
struct Tags<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Tags<'a> {
    fn next(&mut self) -> Result<Option<Tag>, String> {
        loop {
            let Some(lt) = self.text[self.pos..].find('<').map(|i| self.pos + i) else {
                return Ok(None);
            };
            let rest = &self.text[lt..];
            let skip_to = |end: &str| rest.find(end).map(|i| lt + i + end.len());
            let skipped = if rest.starts_with("<!--") {
                skip_to("-->")
            } else if rest.starts_with("<![CDATA[") {
                skip_to("]]>")
            } else if rest.starts_with("<?") || rest.starts_with("<!") {
                skip_to(">")
            } else {
                None
            };
            if rest.starts_with("<!") || rest.starts_with("<?") {
                self.pos = skipped.ok_or("a comment or declaration is not closed")?;
                continue;
            }
            let gt = rest.find('>').ok_or("a tag is not closed")?;
            let inner = &rest[1..gt];
            self.pos = lt + gt + 1;
            let closing = inner.starts_with('/');
            let empty = inner.ends_with('/');
            let inner = inner.trim_start_matches('/').trim_end_matches('/');
            let (name, attrs) = inner
                .split_once(|c: char| c.is_whitespace())
                .unwrap_or((inner, ""));
            if name.is_empty() {
                return Err(format!("an empty tag name at byte {lt}"));
            }
            return Ok(Some(Tag {
                name: name.to_string(),
                attrs: parse_attrs(attrs),
                closing,
                empty,
                at: lt,
            }));
        }
    }

    /// The text up to `</name>` (nested elements included), moving past it.
    fn skip_to_close(&mut self, name: &str) -> Result<&'a str, String> {
        let start = self.pos;
        let mut depth = 0;
        loop {
            let tag = self
                .next()?
                .ok_or_else(|| format!("<{name}> is not closed"))?;
            if tag.name == name && !tag.empty {
                if tag.closing {
                    if depth == 0 {
                        return Ok(&self.text[start..tag.at]);
                    }
                    depth -= 1;
                } else {
                    depth += 1;
                }
            }
        }
    }
}

fn parse_attrs(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            break;
        };
        let Some(end) = after[1..].find(quote) else {
            break;
        };
        out.push((key, decode_entities(&after[1..1 + end])));
        rest = after[end + 2..].trim_start();
    }
    out
}

fn decode_entities(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(lines: &[IniLine]) -> Vec<(String, String)> {
        lines
            .iter()
            .map(|l| (l.key.clone(), l.value.clone().unwrap_or_default()))
            .collect()
    }

    fn yaml(text: &str) -> YamlSection {
        yaml_section(text, "uwsgi")
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn unread(y: &YamlSection) -> Vec<(usize, &str)> {
        y.unread.iter().map(|u| (u.line, u.why.as_str())).collect()
    }

    #[test]
    fn yaml_reads_the_uwsgi_mapping() {
        let text = "# app\nother:\n  socket: nope\nuwsgi:\n  socket: /tmp/a.sock # the socket\n  \
                    \"master\": \"true\"\n  env: A=1\n  env: B=2\n  route: ^/a#b x\nlater:\n  x: y\n";
        let y = yaml(text);
        assert!(y.found && y.unread.is_empty());
        assert_eq!(
            kv(&y.lines),
            pairs(&[
                ("socket", "/tmp/a.sock"),
                ("master", "true"),
                ("env", "A=1"),
                ("env", "B=2"),
                // `#` inside a word is not a comment (libyaml's reading).
                ("route", "^/a#b x"),
            ])
        );
        assert_eq!(y.lines[0].line, 5);
        assert!(!yaml_section(text, "missing").found);
        assert_eq!(kv(&yaml_section(text, "other").lines)[0].1, "nope");
    }

    #[test]
    fn yaml_quotes_are_dropped_as_libyaml_does() {
        let y = yaml(
            "uwsgi:\n  socket: '/run/app.sock'\n  env: 'IT''S=1' # c\n  'chdir': \"/srv/a b\"\n  \
             env: \"TAB=\\t # not a comment\"\n  env: it's\n  env: ''\n",
        );
        assert!(y.unread.is_empty(), "{:?}", y.unread);
        assert_eq!(
            kv(&y.lines),
            pairs(&[
                ("socket", "/run/app.sock"),
                ("env", "IT'S=1"),
                ("chdir", "/srv/a b"),
                ("env", "TAB=\t # not a comment"),
                ("env", "it's"),
                ("env", ""),
            ])
        );
    }

    #[test]
    fn yaml_lists_repeat_their_key() {
        // Inline, block, and block at the key's own indentation: each item
        // is the key once more, as uWSGI built with libyaml reads them.
        let y = yaml(
            "uwsgi:\n  env: [A=1, 'B=2', \"C=3\"]\n  master: true\n  env:\n    - D=4\n    \
             - 'E=5' # c\n  socket:\n  - /run/a.sock\n  - /run/b.sock\n  processes: 2\n  none: []\n",
        );
        assert!(y.unread.is_empty(), "{:?}", y.unread);
        assert_eq!(
            kv(&y.lines),
            pairs(&[
                ("env", "A=1"),
                ("env", "B=2"),
                ("env", "C=3"),
                ("master", "true"),
                ("env", "D=4"),
                ("env", "E=5"),
                ("socket", "/run/a.sock"),
                ("socket", "/run/b.sock"),
                ("processes", "2"),
            ])
        );
        assert_eq!(y.lines[4].line, 5);
    }

    #[test]
    fn yaml_never_drops_a_line_silently() {
        // What the reader cannot read is named (file:line in the report), and
        // the keys after it are still read.
        let y = yaml(
            "uwsgi:\n  a: 1\n  bare:\n  nested:\n    x: 1\n    y: 2\n  text: |\n    line\n  \
             alias: *a\n  flow: {k: v}\n  half: [a,\n    b]\n  nokey\n  multi: a\n    b\n    c\n  \
             quote: 'open\n  z: 26\n",
        );
        assert_eq!(
            kv(&y.lines),
            pairs(&[
                ("a", "1"),
                ("x", "1"),
                ("y", "2"),
                ("multi", "a b c"),
                ("z", "26")
            ])
        );
        assert_eq!(
            unread(&y),
            [
                (3, "a key without a value: bare:"),
                (7, "a | or > block value: text: |"),
                (9, "a YAML alias (uWSGI gives its key no value): alias: *a"),
                (10, "an inline {...} mapping: flow: {k: v}"),
                (11, "a [...] list that does not end on its line: half: [a,"),
                (13, "not a 'key: value' line: nokey"),
                (
                    17,
                    "a quoted value that does not end on its line: quote: 'open"
                ),
            ]
        );
        // A list item with no key before it, and a list of mappings.
        let y = yaml("uwsgi:\n  - a\n  env:\n    - k: v\n  b: 2\n");
        assert_eq!(kv(&y.lines), pairs(&[("b", "2")]));
        assert_eq!(
            unread(&y),
            [
                (2, "a list item without a key before it: - a"),
                (4, "a mapping inside a list: - k: v")
            ]
        );
    }

    /// core/yaml.c with libyaml: a nested block mapping's keys are added as
    /// options (its BLOCK_MAPPING_START only deepens the section), the outer
    /// key gets nothing; a plain value on the line after its key is the
    /// key's value.
    #[test]
    fn yaml_nested_mappings_are_flattened_as_libyaml_reads_them() {
        let y = yaml(
            "uwsgi:\n  socket: /run/a.sock\n  logging:\n    logto: /var/log/a.log\n    \
             deeper:\n      log-date: true\n    log-maxsize: 1000\n  master: true\n  \
             module:\n    app.wsgi\n  env:\n    - A=1\nother:\n  x: 1\n",
        );
        assert_eq!(
            kv(&y.lines),
            pairs(&[
                ("socket", "/run/a.sock"),
                ("logto", "/var/log/a.log"),
                ("log-date", "true"),
                ("log-maxsize", "1000"),
                ("master", "true"),
                ("module", "app.wsgi"),
                ("env", "A=1"),
            ])
        );
        assert!(y.unread.is_empty(), "{:?}", y.unread);
        let flat: Vec<(usize, &str)> = y
            .flattened
            .iter()
            .map(|u| (u.line, u.why.as_str()))
            .collect();
        assert_eq!(
            flat,
            [
                (4, "the keys of the mapping nested under 'logging:' are options of their own, as uWSGI's libyaml reader reads them: logto: /var/log/a.log"),
                (6, "the keys of the mapping nested under 'deeper:' are options of their own, as uWSGI's libyaml reader reads them: log-date: true"),
            ]
        );
    }

    /// An anchor or a tag on a value: libyaml's reader in core/yaml.c meets
    /// a scalar after a token it resets its state on, logs "unsupported YAML
    /// token" and stops; the options before it apply, none after.
    #[test]
    fn yaml_stops_at_an_anchor_or_a_tag_as_libyaml_reads_it() {
        for value in ["&sock /run/b.sock", "!!str /run/b.sock"] {
            let y = yaml(&format!(
                "uwsgi:\n  socket: /run/a.sock\n  socket: {value}\n  master: true\n"
            ));
            assert_eq!(kv(&y.lines), pairs(&[("socket", "/run/a.sock")]));
            assert_eq!(unread(&y).len(), 1);
            assert_eq!(unread(&y)[0].0, 3);
            assert!(unread(&y)[0].1.starts_with(STOPS_LIBYAML), "{:?}", y.unread);
        }
    }

    #[test]
    fn xml_reads_the_uwsgi_element() {
        let text = "<?xml version=\"1.0\"?>\n<!-- app -->\n<uwsgi>\n  <socket>127.0.0.1:3031</socket>\n  \
                    <master/>\n  <env>A=&lt;1&gt;</env>\n  <app mountpoint=\"/x\">x.py</app>\n</uwsgi>\n";
        let (lines, found) = xml_section_lines(text, None).unwrap();
        assert!(found);
        assert_eq!(
            kv(&lines),
            [
                ("socket", "127.0.0.1:3031"),
                ("master", "1"),
                ("env", "A=<1>"),
                ("mount", "/x=x.py")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(lines[0].line, 4);
    }

    #[test]
    fn xml_picks_the_uwsgi_element_with_the_id() {
        let text = "<all><uwsgi id=\"a\"><socket>:1</socket></uwsgi><uwsgi id=\"b\"><socket>:2</socket></uwsgi></all>";
        assert_eq!(
            kv(&xml_section_lines(text, Some("b")).unwrap().0)[0].1,
            ":2"
        );
        assert_eq!(kv(&xml_section_lines(text, None).unwrap().0)[0].1, ":1");
        assert!(!xml_section_lines("<other/>", None).unwrap().1);
        // The root <uwsgi> is read whatever its id, as uWSGI reads it.
        let root = "<uwsgi id=\"x\"><master></master><socket>:1</socket></uwsgi>";
        for id in [Some("x"), Some("y"), None] {
            let (lines, found) = xml_section_lines(root, id).unwrap();
            assert!(found);
            assert_eq!(kv(&lines), pairs(&[("master", "1"), ("socket", ":1")]));
        }
        assert!(xml_section_lines("<uwsgi><socket>:1</socket>", None).is_err());
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::of_argument("app.yml"), Some(Format::Yaml));
        assert_eq!(Format::of_argument("app.xml:prod"), Some(Format::Xml));
        assert_eq!(Format::of_argument("app.ini"), Some(Format::Ini));
        assert_eq!(Format::of_argument("app.conf"), None);
    }
}
