//! Owned request heads without an allocation per field: a parsed head (an
//! HTTP head, a uwsgi vars block) keeps one copy of its bytes, [`Arena`],
//! and [`Span`]s into it for the method, the path, each header name and
//! value. A request then costs two allocations (the bytes and the list of
//! spans) instead of two per header; with ~15 uwsgi vars the allocator
//! was a fifth of a request's instructions (bench/README.md).
//!
//! Storage only: no parsing, no protocol knowledge.

/// A range of an [`Arena`]'s bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// `start..end` of the bytes an arena was copied from (a range outside
    /// them reads as empty).
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

/// The bytes a head's spans point into.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Arena {
    bytes: Vec<u8>,
}

impl Arena {
    /// A copy of `src`, the bytes the spans will mostly point into.
    pub fn copy_of(src: &[u8]) -> Arena {
        Arena {
            bytes: src.to_vec(),
        }
    }

    /// The span of `part`: where it lies in `src` (the slice this arena
    /// was copied from) when it is a subslice of it; otherwise (a value
    /// the parser made, a constant) a copy appended to the arena.
    pub fn span(&mut self, src: &[u8], part: &[u8]) -> Span {
        let base = src.as_ptr() as usize;
        let at = part.as_ptr() as usize;
        if at >= base && at + part.len() <= base + src.len() && src.len() <= self.bytes.len() {
            let start = at - base;
            return Span {
                start,
                end: start + part.len(),
            };
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(part);
        Span {
            start,
            end: self.bytes.len(),
        }
    }

    pub fn get(&self, span: Span) -> &[u8] {
        self.bytes.get(span.start..span.end).unwrap_or_default()
    }

    /// A span of ASCII text (a method, a header name: the parser admitted
    /// only token characters); "" if it is not UTF-8 after all.
    pub fn text(&self, span: Span) -> &str {
        let b = self.get(span);
        if b.is_ascii() {
            // SAFETY: ASCII bytes are UTF-8 (the usual case, a method or a
            // header name, checked without the general validation).
            return unsafe { std::str::from_utf8_unchecked(b) };
        }
        std::str::from_utf8(b).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subslices_point_into_the_copy_others_are_appended() {
        let src = b"GET /p HTTP/1.1".to_vec();
        let mut a = Arena::copy_of(&src);
        let method = a.span(&src, &src[..3]);
        let path = a.span(&src, &src[4..6]);
        let made = a.span(&src, b"42");
        let empty = a.span(&src, b"");
        assert_eq!(a.get(method), b"GET");
        assert_eq!(a.text(method), "GET");
        assert_eq!(a.get(path), b"/p");
        assert_eq!(a.get(made), b"42");
        assert_eq!(a.get(empty), b"");
        assert_eq!(
            a.bytes.len(),
            src.len() + 2,
            "only the made value was copied"
        );
        assert_eq!(a.get(Span::new(4, 6)), b"/p");
        assert_eq!(a.get(Span::new(10, 99)), b"", "out of range: empty");
    }
}
