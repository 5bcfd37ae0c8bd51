//! Getting the outermost frames back when the GIL-free dumper cuts a deep
//! stack. faulthandler prints only the innermost 100 frames of a thread,
//! and nothing can walk further without the GIL (the frame chain's other
//! end is not reachable from signal-safe code). So the exact path
//! remembers every stack deeper than that limit, and a cut stack is
//! completed from the one remembered for the same thread when their frames
//! line up: the remembered stack's inner part must equal the live outer
//! part where they overlap, at exactly one offset (a recursion that lines
//! up at several offsets is left cut: how deep it is cannot be known).
//! Whatever is not recovered this way is marked, never dropped silently
//! (`format::Cut`). Pure except for the one remembered table.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::format::{Cut, Frame, ThreadStack};
use super::signal_path::MAX_FRAMES;

struct Remembered {
    frames: Vec<Frame>,
    at: Instant,
}

/// Older stacks are not trusted to describe a live one.
const MAX_AGE: Duration = Duration::from_secs(600);
const MAX_THREADS: usize = 1024;

fn table() -> std::sync::MutexGuard<'static, HashMap<u64, Remembered>> {
    static T: OnceLock<Mutex<HashMap<u64, Remembered>>> = OnceLock::new();
    T.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Remember the deep stacks of an exact dump.
pub fn remember(stacks: &[ThreadStack]) {
    let deep: Vec<&ThreadStack> = stacks
        .iter()
        .filter(|t| t.frames.len() > MAX_FRAMES && t.cut.is_none())
        .collect();
    if deep.is_empty() {
        return;
    }
    let mut t = table();
    if t.len() >= MAX_THREADS {
        t.retain(|_, r| r.at.elapsed() < MAX_AGE);
        if t.len() >= MAX_THREADS {
            t.clear();
        }
    }
    for s in deep {
        t.insert(
            s.ident,
            Remembered {
                frames: s.frames.clone(),
                at: Instant::now(),
            },
        );
    }
}

/// Complete the cut stacks of a GIL-free dump where a remembered exact
/// stack lines up; the others keep their `Cut::Unknown` mark.
pub fn complete(stacks: &mut [ThreadStack]) {
    let t = table();
    for s in stacks.iter_mut().filter(|s| s.cut == Some(Cut::Unknown)) {
        let Some(r) = t.get(&s.ident).filter(|r| r.at.elapsed() < MAX_AGE) else {
            continue;
        };
        if let Some(at) = offset(&r.frames, &s.frames) {
            let mut frames = r.frames[..at].to_vec();
            frames.append(&mut s.frames);
            s.frames = frames;
            s.cut = Some(Cut::Spliced {
                at,
                age_ms: r.at.elapsed().as_millis() as u64,
            });
        }
    }
}

/// The one offset `o` at which `live` (the innermost frames, outermost
/// first) continues `old`: `old[o..]` equals the start of `live`, with at
/// least one frame of overlap. Exact matches (every line the same: the
/// thread is where it was, or deeper) are tried first; then the innermost
/// frame of `old` may have moved to another line of the same function.
fn offset(old: &[Frame], live: &[Frame]) -> Option<usize> {
    let same_place = |a: &Frame, b: &Frame| a.filename == b.filename && a.function == b.function;
    let fits = |o: usize, exact: bool| {
        let overlap = (old.len() - o).min(live.len());
        (0..overlap).all(|i| {
            let (a, b) = (&old[o + i], &live[i]);
            // The line first: it is what differs in a recursion.
            (a.lineno == b.lineno || (!exact && o + i == old.len() - 1)) && same_place(a, b)
        })
    };
    for exact in [true, false] {
        let mut found = (1..old.len()).filter(|&o| fits(o, exact));
        if let Some(first) = found.next() {
            return found.next().is_none().then_some(first);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(func: &str, lineno: u32) -> Frame {
        Frame {
            filename: "app.py".into(),
            lineno,
            function: func.into(),
            line: String::new(),
            locals: vec![],
        }
    }

    /// application -> level0 -> ... -> level{n-1}, each at its own line.
    fn chain(n: usize) -> Vec<Frame> {
        let mut v = vec![f("application", 1)];
        v.extend((0..n).map(|i| f(&format!("level{i}"), 10 + i as u32)));
        v
    }

    #[test]
    fn a_deeper_live_stack_is_completed_from_the_remembered_one() {
        let old = chain(140); // 141 frames
        let mut live_full = chain(150); // it went 10 deeper since
        live_full[140].lineno = 999; // and the old innermost moved on
        let live: Vec<Frame> = live_full[live_full.len() - MAX_FRAMES..].to_vec();
        let o = offset(&old, &live).expect("lines up");
        assert_eq!(o, live_full.len() - MAX_FRAMES);
        let mut stacks = vec![ThreadStack {
            ident: 77,
            name: "t".into(),
            frames: live,
            holds_gil: None,
            cut: Some(Cut::Unknown),
        }];
        remember(&[ThreadStack {
            ident: 77,
            name: "t".into(),
            frames: old,
            holds_gil: None,
            cut: None,
        }]);
        complete(&mut stacks);
        assert_eq!(stacks[0].frames.len(), 151);
        assert_eq!(stacks[0].frames[0].function, "application");
        assert!(matches!(stacks[0].cut, Some(Cut::Spliced { at: 51, .. })));
    }

    #[test]
    fn a_recursion_or_another_stack_is_left_cut() {
        let rec = |n: usize| -> Vec<Frame> {
            let mut v = vec![f("application", 1)];
            v.extend((0..n).map(|_| f("r", 5)));
            v
        };
        let live: Vec<Frame> = rec(150)[51..].to_vec();
        assert_eq!(offset(&rec(140), &live), None, "ambiguous");
        // A recursion asleep at its bottom lines up exactly at one offset.
        let asleep = |n: usize| -> Vec<Frame> {
            let mut v = rec(n);
            v.last_mut().unwrap().lineno = 9;
            v
        };
        let live: Vec<Frame> = asleep(120)[21..].to_vec();
        assert_eq!(offset(&asleep(120), &live), Some(21));
        let other: Vec<Frame> = (0..MAX_FRAMES).map(|i| f("x", i as u32)).collect();
        assert_eq!(offset(&chain(140), &other), None, "no overlap");
    }
}
