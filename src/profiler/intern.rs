//! Frames and labels to small ids, so a sample is a few integers and a
//! stream defines each frame once.
//!
//! Samples taken with the GIL know a frame by its code object: looked up
//! by address, with a strong reference kept so the address cannot be
//! reused by another code object while the table lives. GIL-free samples
//! know it by names; both meet in one table of (function, filename) and
//! one of (code, line).

use std::collections::HashMap;

use pyo3::prelude::*;

use super::wire::FrameKey;

#[derive(Default)]
pub struct Interner {
    by_code: HashMap<usize, (u32, Py<PyAny>)>,
    by_name: HashMap<(String, String), u32>,
    codes: Vec<(String, String)>,
    frames: HashMap<(u32, u32), u32>,
    frame_list: Vec<(u32, u32)>,
    labels: HashMap<String, u32>,
    label_list: Vec<String>,
}

impl Interner {
    /// The id of a frame seen with the GIL.
    pub fn code_frame(&mut self, code: &Bound<'_, PyAny>, lineno: u32) -> u32 {
        let addr = code.as_ptr() as usize;
        let code_id = match self.by_code.get(&addr) {
            Some((id, _)) => *id,
            None => {
                let (filename, function) = crate::tracebacker::gil_path::code_names(code);
                let id = self.code_id(function, filename);
                self.by_code.insert(addr, (id, code.clone().unbind()));
                id
            }
        };
        self.frame(code_id, lineno)
    }

    /// The id of a frame known by its names (GIL-free samples).
    pub fn named_frame(&mut self, function: &str, filename: &str, lineno: u32) -> u32 {
        let id = match self
            .by_name
            .get(&(function.to_string(), filename.to_string()))
        {
            Some(id) => *id,
            None => self.code_id(function.to_string(), filename.to_string()),
        };
        self.frame(id, lineno)
    }

    fn code_id(&mut self, function: String, filename: String) -> u32 {
        let key = (function, filename);
        if let Some(id) = self.by_name.get(&key) {
            return *id;
        }
        let id = self.codes.len() as u32;
        self.codes.push(key.clone());
        self.by_name.insert(key, id);
        id
    }

    fn frame(&mut self, code: u32, lineno: u32) -> u32 {
        let next = self.frame_list.len() as u32;
        let id = *self.frames.entry((code, lineno)).or_insert(next);
        if id == next {
            self.frame_list.push((code, lineno));
        }
        id
    }

    pub fn label(&mut self, label: &str) -> u32 {
        if let Some(id) = self.labels.get(label) {
            return *id;
        }
        let id = self.label_list.len() as u32;
        self.label_list.push(label.to_string());
        self.labels.insert(label.to_string(), id);
        id
    }

    pub fn frame_key(&self, id: u32) -> Option<FrameKey> {
        let (code, lineno) = *self.frame_list.get(id as usize)?;
        let (function, filename) = self.codes.get(code as usize)?.clone();
        Some(FrameKey {
            function,
            filename,
            lineno,
        })
    }

    /// (function, filename) of a frame.
    pub fn frame_names(&self, id: u32) -> Option<(&str, &str)> {
        let (code, _) = *self.frame_list.get(id as usize)?;
        let (function, filename) = self.codes.get(code as usize)?;
        Some((function, filename))
    }

    pub fn label_text(&self, id: u32) -> Option<&str> {
        self.label_list.get(id as usize).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lines_share_ids() {
        let mut t = Interner::default();
        let a = t.named_frame("f", "a.py", 1);
        let b = t.named_frame("f", "a.py", 2);
        assert_ne!(a, b);
        assert_eq!(t.named_frame("f", "a.py", 1), a);
        assert_eq!(t.frame_key(b).unwrap().lineno, 2);
        assert_eq!(t.label("GET /"), t.label("GET /"));
        assert_ne!(t.label("GET /"), t.label("idle"));
        assert_eq!(t.label_text(1), Some("idle"));
    }
}
