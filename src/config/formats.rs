//! uWSGI's YAML and XML config files (`--yaml`/`--yml FILE[:SECTION]`,
//! `--xml FILE[:ID]`, or `uwsgi-rs app.yaml` / `app.xml`): the lines of the
//! section they hold, as uWSGI's own readers find them (core/yaml.c's
//! built-in parser; core/xmlconf.c). The file is read, and its magic
//! variables substituted, as an ini file's are (collect.rs); this only turns
//! text into [`IniLine`]s. Pure.

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

/// `key: value` lines under `section:` (default `uwsgi`), as uWSGI's
/// built-in YAML reader takes them: `#` starts a comment anywhere, quotes
/// around keys and values are dropped, the section ends at the first line
/// indented no deeper than it, a list or inline mapping, or a line without
/// `: `. Returns the lines and whether the section was there.
pub fn yaml_section_lines(text: &str, section: &str) -> (Vec<IniLine>, bool) {
    let mut out = Vec::new();
    let (mut in_section, mut found, mut current_depth) = (false, false, 0usize);
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        if line.is_empty() {
            continue;
        }
        let depth: usize = line
            .chars()
            .take_while(|c| matches!(c, ' ' | '\t' | '\r'))
            .map(|c| if c == ' ' { 1 } else { 8 })
            .sum();
        if depth <= current_depth {
            current_depth = depth;
            if in_section {
                break;
            }
        } else if !in_section {
            continue;
        }
        let key = line.trim_start_matches([' ', '\t', '\r', '"']);
        if key.is_empty() {
            continue;
        }
        if key.starts_with(['-', '[', '{']) {
            if in_section {
                break;
            }
            continue;
        }
        if !in_section {
            if let Some((name, _)) = key.split_once(':') {
                in_section = name == section;
                found |= in_section;
            }
            continue;
        }
        let Some(at) = key.find(": ").or_else(|| key.find(":\t")) else {
            break;
        };
        let strip = |s: &str| s.trim_matches([' ', '\t', '\r', '"']).to_string();
        out.push(IniLine {
            line: i + 1,
            key: strip(&key[..at]),
            value: Some(strip(&key[at + 2..])),
        });
    }
    (out, found)
}

/// The children of the `<uwsgi>` element (the root, or the first child
/// `<uwsgi>` of the root whose `id` is `id` when given), as uWSGI's XML
/// reader: `<key>value</key>` is `key = value`, `<key/>` is `key = 1`,
/// `<app mountpoint="/x">APP</app>` is `mount = /x=APP`. Comments are
/// skipped; `&lt;`-style entities are decoded. Returns the lines and
/// whether a `<uwsgi>` element was there, or what is wrong with the file.
pub fn xml_section_lines(text: &str, id: Option<&str>) -> Result<(Vec<IniLine>, bool), String> {
    let line_of = |pos: usize| text[..pos].matches('\n').count() + 1;
    let mut tags = Tags { text, pos: 0 };
    // Find the <uwsgi> element to read.
    loop {
        let Some(tag) = tags.next()? else {
            return Ok((Vec::new(), false));
        };
        if tag.closing || tag.name != "uwsgi" {
            continue;
        }
        if let (Some(want), Some(have)) = (id, tag.attr("id")) {
            if want != have {
                continue;
            }
        }
        if tag.empty {
            return Ok((Vec::new(), true));
        }
        break;
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
        let value = if tag.empty {
            "1".to_string()
        } else {
            let content = tags.skip_to_close(&tag.name)?;
            decode_entities(content.trim())
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

    #[test]
    fn yaml_reads_the_uwsgi_mapping_as_uwsgi_does() {
        let text = "# app\nother:\n  socket: nope\nuwsgi:\n  socket: /tmp/a.sock # the socket\n  \
                    \"master\": \"true\"\n  env: A=1\n  env: B=2\nlater:\n  x: y\n";
        let (lines, found) = yaml_section_lines(text, "uwsgi");
        assert!(found);
        assert_eq!(
            kv(&lines),
            [
                ("socket", "/tmp/a.sock"),
                ("master", "true"),
                ("env", "A=1"),
                ("env", "B=2")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(lines[0].line, 5);
        assert!(!yaml_section_lines(text, "missing").1);
        assert_eq!(kv(&yaml_section_lines(text, "other").0)[0].1, "nope");
    }

    #[test]
    fn yaml_stops_where_uwsgi_does() {
        // A list ends the section, as a line without ": " does.
        let (lines, _) = yaml_section_lines("uwsgi:\n  a: 1\n  - b\n  c: 3\n", "uwsgi");
        assert_eq!(lines.len(), 1);
        let (lines, _) = yaml_section_lines("uwsgi:\n  a: 1\n  b:\n  c: 3\n", "uwsgi");
        assert_eq!(lines.len(), 1);
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
