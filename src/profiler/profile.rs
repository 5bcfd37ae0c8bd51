//! A merged profile (stacks with sample counts, from every worker) and its
//! output formats: folded stacks (Brendan Gregg's collapsed format, which
//! flamegraph.pl, inferno and speedscope read), an interactive SVG flame
//! graph (rendered by the `inferno` crate), and speedscope's JSON. Pure:
//! the caller does the I/O.

use std::collections::HashMap;
use std::io::{self, Write};

use serde::Serialize;

use super::wire::FrameKey;

#[derive(Default, Clone)]
pub struct Profile {
    frames: Vec<FrameKey>,
    frame_ids: HashMap<FrameKey, u32>,
    /// Samples per (label, frames outermost first).
    stacks: HashMap<(String, Vec<u32>), u64>,
    /// Samples taken with the GIL, and through the GIL-free dumper.
    pub gil: u64,
    pub signal: u64,
}

impl Profile {
    pub fn add(&mut self, label: &str, frames: &[&FrameKey], count: u64) {
        let ids: Vec<u32> = frames.iter().map(|f| self.frame_id(f)).collect();
        *self.stacks.entry((label.to_string(), ids)).or_insert(0) += count;
    }

    fn frame_id(&mut self, f: &FrameKey) -> u32 {
        if let Some(id) = self.frame_ids.get(f) {
            return *id;
        }
        let id = self.frames.len() as u32;
        self.frames.push(f.clone());
        self.frame_ids.insert(f.clone(), id);
        id
    }

    pub fn merge(&mut self, other: &Profile) {
        for ((label, ids), count) in &other.stacks {
            let frames: Vec<&FrameKey> = ids.iter().map(|i| &other.frames[*i as usize]).collect();
            self.add(label, &frames, *count);
        }
        self.gil += other.gil;
        self.signal += other.signal;
    }

    /// Samples in all stacks.
    pub fn total(&self) -> u64 {
        self.stacks.values().sum()
    }

    /// Every stack: label, frames outermost first, samples.
    pub fn stacks(&self) -> impl Iterator<Item = (&str, Vec<&FrameKey>, u64)> + '_ {
        self.stacks.iter().map(|((label, ids), count)| {
            (
                label.as_str(),
                ids.iter().map(|i| &self.frames[*i as usize]).collect(),
                *count,
            )
        })
    }

    /// Folded lines, `LABEL;FRAME;FRAME COUNT`, sorted (so equal profiles
    /// print equally). A frame is `function (filename:lineno)`.
    pub fn folded_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .stacks()
            .map(|(label, frames, count)| {
                let mut line = sanitize(label);
                for f in frames {
                    line.push(';');
                    line.push_str(&sanitize(&frame_text(f)));
                }
                line.push(' ');
                line.push_str(&count.to_string());
                line
            })
            .collect();
        lines.sort();
        lines
    }

    pub fn write_folded(&self, out: &mut impl Write) -> io::Result<()> {
        for l in self.folded_lines() {
            writeln!(out, "{l}")?;
        }
        Ok(())
    }

    /// An interactive flame graph (click to zoom, search), by inferno.
    pub fn write_svg(&self, out: &mut impl Write, title: &str) -> io::Result<()> {
        let lines = self.folded_lines();
        let mut opts = inferno::flamegraph::Options::default();
        opts.title = title.to_string();
        opts.count_name = "samples".into();
        if lines.is_empty() {
            // inferno refuses an empty profile; say so in a valid SVG.
            return write!(
                out,
                "<?xml version=\"1.0\" standalone=\"no\"?><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"60\"><text x=\"10\" y=\"30\">{}: no samples</text></svg>",
                html_escape(title)
            );
        }
        inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
            .map_err(io::Error::other)
    }

    /// speedscope's file format (one sampled profile; the label is the
    /// outermost frame).
    pub fn write_speedscope(&self, out: &mut impl Write, name: &str) -> io::Result<()> {
        #[derive(Serialize)]
        struct SFrame<'a> {
            name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            file: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            line: Option<u32>,
        }
        let mut frames: Vec<SFrame<'_>> = Vec::new();
        let mut label_ids: HashMap<&str, usize> = HashMap::new();
        let base = {
            // Labels first, then the profile's frames in their order.
            let mut labels: Vec<&str> = self.stacks.keys().map(|(l, _)| l.as_str()).collect();
            labels.sort();
            labels.dedup();
            for l in labels {
                label_ids.insert(l, frames.len());
                frames.push(SFrame {
                    name: l,
                    file: None,
                    line: None,
                });
            }
            frames.len()
        };
        frames.extend(self.frames.iter().map(|f| SFrame {
            name: &f.function,
            file: Some(&f.filename),
            line: Some(f.lineno),
        }));
        let mut keys: Vec<&(String, Vec<u32>)> = self.stacks.keys().collect();
        keys.sort();
        let samples: Vec<Vec<usize>> = keys
            .iter()
            .map(|(label, ids)| {
                std::iter::once(label_ids[label.as_str()])
                    .chain(ids.iter().map(|i| base + *i as usize))
                    .collect()
            })
            .collect();
        let weights: Vec<u64> = keys.iter().map(|k| self.stacks[*k]).collect();
        let doc = serde_json::json!({
            "$schema": "https://www.speedscope.app/file-format-schema.json",
            "exporter": format!("uwsgi-rs {}", env!("CARGO_PKG_VERSION")),
            "name": name,
            "activeProfileIndex": 0,
            "shared": { "frames": frames },
            "profiles": [{
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": self.total(),
                "samples": samples,
                "weights": weights,
            }],
        });
        serde_json::to_writer(&mut *out, &doc)?;
        writeln!(out)
    }
}

/// `function (filename:lineno)`.
pub fn frame_text(f: &FrameKey) -> String {
    format!("{} ({}:{})", f.function, f.filename, f.lineno)
}

/// `;` separates frames and a newline ends a line in the folded format.
fn sanitize(s: &str) -> String {
    s.replace(';', ",").replace(['\n', '\r'], " ")
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(function: &str, lineno: u32) -> FrameKey {
        FrameKey {
            function: function.into(),
            filename: "/app/x.py".into(),
            lineno,
        }
    }

    fn sample() -> Profile {
        let (app, a, b) = (key("application", 10), key("hot_a", 3), key("hot_b", 6));
        let mut p = Profile::default();
        p.add("GET /a", &[&app, &a], 30);
        p.add("GET /b", &[&app, &b], 10);
        let mut other = Profile::default();
        other.add("GET /a", &[&app, &a], 45);
        other.add("poller;thread", &[&key("poll", 1)], 2);
        p.merge(&other);
        p
    }

    #[test]
    fn folded_is_sorted_and_merged() {
        let lines = sample().folded_lines();
        assert_eq!(
            lines,
            vec![
                "GET /a;application (/app/x.py:10);hot_a (/app/x.py:3) 75",
                "GET /b;application (/app/x.py:10);hot_b (/app/x.py:6) 10",
                "poller,thread;poll (/app/x.py:1) 2",
            ]
        );
        assert_eq!(sample().total(), 87);
    }

    #[test]
    fn svg_is_inferno_s_and_speedscope_is_valid() {
        let mut svg = Vec::new();
        sample().write_svg(&mut svg, "t").unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("<svg") && svg.contains("hot_a"), "{svg}");
        let mut empty = Vec::new();
        Profile::default().write_svg(&mut empty, "t<").unwrap();
        assert!(String::from_utf8(empty)
            .unwrap()
            .contains("t&lt;: no samples"));

        let mut js = Vec::new();
        sample().write_speedscope(&mut js, "p").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&js).unwrap();
        let frames = v["shared"]["frames"].as_array().unwrap();
        let prof = &v["profiles"][0];
        assert_eq!(prof["endValue"], 87);
        let weights: u64 = prof["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_u64().unwrap())
            .sum();
        assert_eq!(weights, 87);
        // Each sample starts with its label and names real frames.
        for s in prof["samples"].as_array().unwrap() {
            let ids: Vec<usize> = s
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as usize)
                .collect();
            assert!(frames[ids[0]].get("file").is_none());
            assert!(ids[1..].iter().all(|i| frames[*i].get("file").is_some()));
        }
    }
}
