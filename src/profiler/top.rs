//! `uwsgi-rs --top BASE`: a live view, like `py-spy top`, of the functions
//! and the routes using the most time across every worker, redrawn every
//! second. Plain ANSI (home, clear), sized to the terminal: it works in any
//! terminal and in tmux, and needs no terminal library. Ctrl-C quits.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::client::{self, Event};
use super::wire::FrameKey;
use super::Spec;

/// Samples of one refresh: (label, frames, count).
type Batch = Vec<(String, Vec<FrameKey>, u64)>;

/// Percentages are over the samples of this last stretch of time.
const WINDOW: Duration = Duration::from_secs(5);
const REFRESH: Duration = Duration::from_secs(1);

/// What the view knows so far.
#[derive(Default)]
pub struct Totals {
    /// Samples per (function, filename): own (innermost) and total.
    own: HashMap<(String, String), u64>,
    total: HashMap<(String, String), u64>,
    routes: HashMap<String, u64>,
    samples: u64,
}

impl Totals {
    fn add(&mut self, label: &str, frames: &[FrameKey], count: u64) {
        self.samples += count;
        *self.routes.entry(label.to_string()).or_insert(0) += count;
        if let Some(inner) = frames.last() {
            *self
                .own
                .entry((inner.function.clone(), inner.filename.clone()))
                .or_insert(0) += count;
        }
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for f in frames {
            let k = (f.function.as_str(), f.filename.as_str());
            if !seen.contains(&k) {
                seen.push(k);
                *self
                    .total
                    .entry((f.function.clone(), f.filename.clone()))
                    .or_insert(0) += count;
            }
        }
    }
}

/// The screen, as lines (pure, for tests): `recent` gives the percentages,
/// `all` the cumulative times.
pub fn render(
    head: &str,
    recent: &Totals,
    all: &Totals,
    hz: u32,
    width: usize,
    height: usize,
) -> Vec<String> {
    let pct = |n: u64, of: u64| {
        if of == 0 {
            0.0
        } else {
            100.0 * n as f64 / of as f64
        }
    };
    let secs = |n: u64| n as f64 / hz.max(1) as f64;
    let mut lines = vec![head.to_string(), String::new()];
    let mut funcs: Vec<(&(String, String), u64)> = all.total.iter().map(|(k, v)| (k, *v)).collect();
    // Ordered by recent own time, then recent total, then all time.
    let key = |k: &(String, String)| {
        (
            recent.own.get(k).copied().unwrap_or(0),
            recent.total.get(k).copied().unwrap_or(0),
            all.own.get(k).copied().unwrap_or(0),
        )
    };
    funcs.sort_by(|a, b| key(b.0).cmp(&key(a.0)).then(a.0.cmp(b.0)));
    let routes_shown = all.routes.len().min(8);
    let room = height
        .saturating_sub(lines.len() + 4 + routes_shown + 2)
        .max(3);
    lines.push(format!(
        "{:>6} {:>7} {:>9} {:>10}  Function (filename)",
        "%Own", "%Total", "OwnTime", "TotalTime"
    ));
    for (k, total) in funcs.into_iter().take(room) {
        lines.push(format!(
            "{:>5.1}% {:>6.1}% {:>8.2}s {:>9.2}s  {} ({})",
            pct(recent.own.get(k).copied().unwrap_or(0), recent.samples),
            pct(recent.total.get(k).copied().unwrap_or(0), recent.samples),
            secs(all.own.get(k).copied().unwrap_or(0)),
            secs(total),
            k.0,
            k.1
        ));
    }
    lines.push(String::new());
    lines.push(format!(
        "{:>6} {:>7} {:>9}  Route (request) or thread",
        "%Time", "Busy", "Time"
    ));
    let window_secs = WINDOW.as_secs_f64();
    let mut routes: Vec<(&String, u64)> = all.routes.iter().map(|(k, v)| (k, *v)).collect();
    let rkey = |r: &String| recent.routes.get(r).copied().unwrap_or(0);
    routes.sort_by(|a, b| rkey(b.0).cmp(&rkey(a.0)).then(b.1.cmp(&a.1)));
    for (route, n) in routes.into_iter().take(routes_shown) {
        let r = rkey(route);
        lines.push(format!(
            "{:>5.1}% {:>7.2} {:>8.2}s  {route}",
            pct(r, recent.samples),
            // Threads busy with it on average: samples per second / rate.
            r as f64 / hz.max(1) as f64 / window_secs,
            secs(n),
        ));
    }
    lines
        .into_iter()
        .take(height.max(1))
        .map(|l| l.chars().take(width.max(10)).collect())
        .collect()
}

/// The terminal's size, or 80x24.
fn terminal_size() -> (usize, usize) {
    // SAFETY: winsize is plain data; TIOCGWINSZ fills it or fails.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: a live winsize for the ioctl to fill, on stdout.
    let ok = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 && ws.ws_row > 0 {
        (ws.ws_col as usize, ws.ws_row as usize)
    } else {
        (80, 24)
    }
}

/// The `--top` command: runs until Ctrl-C or until no worker answers.
pub fn run(base: &str, hz: u32, idle: bool, timeout_secs: u64) -> Result<()> {
    let sockets = crate::tracebacker::client::worker_sockets(base);
    if sockets.is_empty() {
        return Err(anyhow!(
            "no tracebacker sockets found under {base} (expected {base}1, {base}2, ...)"
        ));
    }
    // Ctrl-C ends the process at once, also inside a Python host that
    // would otherwise only set a flag nobody checks here.
    // SAFETY: restoring the default action of SIGINT has no preconditions.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    let spec = Spec {
        hz,
        seconds: 0,
        idle,
    };
    let timeout = Duration::from_secs(timeout_secs.max(1));
    let (tx, rx) = mpsc::channel::<Event>();
    let n = sockets.len();
    for (id, path) in sockets {
        let tx = tx.clone();
        std::thread::spawn(move || match client::open(&path, spec, timeout) {
            Ok(reader) => {
                client::read_stream(id, reader, |e| tx.send(e).is_ok());
                let _ = tx.send(Event::End {
                    worker: id,
                    why: "closed".into(),
                });
            }
            Err(e) => {
                let _ = tx.send(Event::End {
                    worker: id,
                    why: format!("cannot connect: {e}"),
                });
            }
        });
    }
    drop(tx);
    let start = Instant::now();
    let mut all = Totals::default();
    let mut window: VecDeque<(Instant, Batch)> = VecDeque::new();
    let mut current: Batch = Vec::new();
    let mut ended: HashMap<usize, String> = HashMap::new();
    let (mut gil, mut signal) = (0u64, 0u64);
    let mut next = Instant::now() + REFRESH;
    let mut stdout = io::stdout();
    loop {
        match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(Event::Stack {
                label,
                frames,
                count,
                ..
            }) => {
                all.add(&label, &frames, count);
                current.push((label, frames, count));
                continue;
            }
            Ok(Event::Tick {
                gil: g, signal: s, ..
            }) => {
                gil += g;
                signal += s;
                continue;
            }
            Ok(Event::End { worker, why }) => {
                ended.entry(worker).or_insert(why);
                if ended.len() < n {
                    continue;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        let now = Instant::now();
        window.push_back((now, std::mem::take(&mut current)));
        while window
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            window.pop_front();
        }
        let mut recent = Totals::default();
        for (_, stacks) in &window {
            for (l, f, c) in stacks {
                recent.add(l, f, *c);
            }
        }
        let (w, h) = terminal_size();
        let mut head = format!(
            "uwsgi-rs top (Ctrl-C quits): {base}  {n} worker(s), {hz} Hz, {:.0} s  samples: {} ({} with the GIL, {} GIL-free)",
            start.elapsed().as_secs_f64(),
            all.samples,
            gil,
            signal
        );
        if !ended.is_empty() {
            let mut gone: Vec<String> = ended
                .iter()
                .map(|(w, why)| format!("worker {w}: {why}"))
                .collect();
            gone.sort();
            head.push_str(&format!("  [{}]", gone.join("; ")));
        }
        let lines = render(&head, &recent, &all, hz, w, h);
        let mut frame = String::from("\x1b[H\x1b[2J");
        frame.push_str(&lines.join("\r\n"));
        stdout.write_all(frame.as_bytes())?;
        stdout.flush()?;
        if ended.len() >= n {
            writeln!(stdout)?;
            return Err(anyhow!("every worker stopped answering"));
        }
        next = now + REFRESH;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(function: &str) -> FrameKey {
        FrameKey {
            function: function.into(),
            filename: "x.py".into(),
            lineno: 1,
        }
    }

    #[test]
    fn ranks_functions_by_recent_own_time_and_fits_the_screen() {
        let mut t = Totals::default();
        t.add("GET /a", &[k("application"), k("hot_a")], 75);
        t.add("GET /b", &[k("application"), k("hot_b")], 25);
        let lines = render("head", &t, &t, 100, 60, 24);
        assert!(lines.len() <= 24);
        assert!(lines.iter().all(|l| l.chars().count() <= 60));
        let hot_a = lines
            .iter()
            .position(|l| l.contains("hot_a (x.py)"))
            .unwrap();
        let hot_b = lines
            .iter()
            .position(|l| l.contains("hot_b (x.py)"))
            .unwrap();
        assert!(hot_a < hot_b, "{lines:#?}");
        assert!(lines[hot_a].starts_with(" 75.0%"), "{lines:#?}");
        let app = lines.iter().find(|l| l.contains("application")).unwrap();
        assert!(app.contains("  0.0%  100.0%"), "{app}");
        let route = lines.iter().find(|l| l.ends_with("GET /a")).unwrap();
        assert!(route.starts_with(" 75.0%"), "{route}");
    }
}
