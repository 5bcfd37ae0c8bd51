//! The uwsgi binary protocol, request side: turning the bytes of a uwsgi
//! packet (what nginx's `uwsgi_pass` sends) into its header and list of vars,
//! and the reverse (`encode_vars`) for tests and a future client.
//!
//! This module owns only the byte format: the 4-byte header
//! (modifier1 u8, datasize u16 LE, modifier2 u8) and the vars block of
//! `[key_size u16 LE][key][val_size u16 LE][val]` entries. It must not do
//! I/O, touch sockets, know about Python/WSGI environ building, or read the
//! request body (which follows the vars block on the stream; the caller
//! handles it from `consumed` on). It must never panic on input bytes: every
//! malformed packet is a `ProtoError`, and a short buffer is `Incomplete`.

/// Size of the uwsgi packet header: modifier1, datasize (u16 LE), modifier2.
pub const HEADER_LEN: usize = 4;

use crate::span::{Arena, Span};

/// A parsed uwsgi request packet: one copy of its vars block and the
/// spans of each key and value in it (see `span`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub modifier1: u8,
    pub modifier2: u8,
    block: Arena,
    vars: Vec<(Span, Span)>,
}

impl Packet {
    /// The vars, in the order sent (duplicates kept).
    pub fn vars(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.vars
            .iter()
            .map(|&(k, v)| (self.block.get(k), self.block.get(v)))
    }

    /// First value of a var, e.g. `get(b"REQUEST_METHOD")`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.vars().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// Outcome of parsing a possibly partial buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// A whole packet was parsed; it took the first `consumed` bytes of the
    /// buffer (header + vars block; the request body starts right after).
    Complete { value: T, consumed: usize },
    /// More bytes are needed; call again with a longer buffer.
    Incomplete,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("uwsgi packet of {size} bytes exceeds the buffer size {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("unsupported uwsgi modifier1 {0}")]
    UnsupportedModifier(u8),
    /// A key or value length runs past the end of the vars block, or the
    /// block ends in the middle of a length field.
    #[error("invalid uwsgi vars block: a key or value length runs past its end")]
    VarOverrun,
    #[error("invalid uwsgi vars block: empty var name")]
    EmptyKey,
}

/// Parse one uwsgi request packet from the start of `buf`.
///
/// `max_size`: the `--buffer-size` limit for the vars block (uWSGI default
/// 4096); a header announcing more is `TooLarge` immediately, before the rest
/// arrives. An unsupported modifier1 (anything but 0) is likewise rejected as
/// soon as the header is in. Bytes past `consumed` (the body) are not looked at.
pub fn parse_packet(buf: &[u8], max_size: usize) -> Result<Parsed<Packet>, ProtoError> {
    let (modifier1, datasize, modifier2) = match buf {
        [m1, lo, hi, m2, ..] => (*m1, usize::from(u16::from_le_bytes([*lo, *hi])), *m2),
        _ => return Ok(Parsed::Incomplete),
    };
    if modifier1 != 0 {
        return Err(ProtoError::UnsupportedModifier(modifier1));
    }
    if datasize > max_size {
        return Err(ProtoError::TooLarge {
            size: datasize,
            limit: max_size,
        });
    }
    let consumed = HEADER_LEN + datasize;
    let block = match buf.get(HEADER_LEN..consumed) {
        Some(block) => block,
        None => return Ok(Parsed::Incomplete),
    };
    let vars = parse_vars(block)?;
    Ok(Parsed::Complete {
        value: Packet {
            modifier1,
            modifier2,
            block: Arena::copy_of(block),
            vars,
        },
        consumed,
    })
}

/// Split `n` bytes off the front of `*rest`, or fail with `VarOverrun`.
#[inline]
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], ProtoError> {
    if rest.len() < n {
        return Err(ProtoError::VarOverrun);
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

/// Read a little-endian u16 length field off the front of `*rest`.
#[inline]
fn take_len(rest: &mut &[u8]) -> Result<usize, ProtoError> {
    match *take(rest, 2)? {
        [lo, hi] => Ok(usize::from(u16::from_le_bytes([lo, hi]))),
        _ => Err(ProtoError::VarOverrun), // unreachable: take gave 2 bytes
    }
}

/// (key, value) spans of the block, in the order sent.
type Vars = Vec<(Span, Span)>;

/// Parse a whole vars block (exactly `datasize` bytes), in one pass.
fn parse_vars(block: &[u8]) -> Result<Vars, ProtoError> {
    // nginx's default uwsgi_params is ~15 vars plus HTTP_* headers; each var
    // takes at least 4 bytes, so this never over-allocates much.
    let mut vars = Vec::with_capacity((block.len() / 16).min(64));
    let mut rest = block;
    while !rest.is_empty() {
        let key_len = take_len(&mut rest)?;
        if key_len == 0 {
            return Err(ProtoError::EmptyKey);
        }
        let key_at = block.len() - rest.len();
        take(&mut rest, key_len)?;
        let val_len = take_len(&mut rest)?;
        let val_at = block.len() - rest.len();
        take(&mut rest, val_len)?;
        vars.push((
            Span::new(key_at, key_at + key_len),
            Span::new(val_at, val_at + val_len),
        ));
    }
    Ok(vars)
}

/// Encode a uwsgi packet (header + vars block, no body) with modifier2 = 0.
///
/// # Panics
/// If a key or value is longer than 65535 bytes, or the vars block as a whole
/// is: such a packet cannot be expressed in the protocol. This is a caller
/// bug, never triggered by parsed input (which always fits).
#[cfg(test)]
pub fn encode_vars(modifier1: u8, vars: &[(&[u8], &[u8])]) -> Vec<u8> {
    let datasize: usize = vars.iter().map(|(k, v)| 4 + k.len() + v.len()).sum();
    let datasize16 = u16::try_from(datasize)
        .unwrap_or_else(|_| panic!("uwsgi vars block of {datasize} bytes exceeds 65535"));
    let mut out = Vec::with_capacity(HEADER_LEN + datasize);
    out.push(modifier1);
    out.extend_from_slice(&datasize16.to_le_bytes());
    out.push(0);
    for (k, v) in vars {
        for part in [k, v] {
            // Each part is <= datasize <= 65535, so this cannot fail.
            let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 4096;

    fn sample_vars() -> Vec<(&'static [u8], &'static [u8])> {
        vec![
            (b"REQUEST_METHOD", b"GET"),
            (b"QUERY_STRING", b""),
            (b"PATH_INFO", b"/hello"),
            (b"CONTENT_TYPE", b""),
            (b"CONTENT_LENGTH", b""),
            (b"HTTP_HOST", b"example.com"),
            (b"REQUEST_METHOD", b"POST"), // duplicate: get() returns the first
        ]
    }

    fn complete(buf: &[u8]) -> (Packet, usize) {
        match parse_packet(buf, LIMIT) {
            Ok(Parsed::Complete { value, consumed }) => (value, consumed),
            other => panic!("expected Complete, got {other:?}"),
        }
    }

    /// Header with a given datasize followed by `block` verbatim.
    fn raw(modifier1: u8, datasize: u16, block: &[u8]) -> Vec<u8> {
        let mut buf = vec![modifier1];
        buf.extend_from_slice(&datasize.to_le_bytes());
        buf.push(0);
        buf.extend_from_slice(block);
        buf
    }

    #[test]
    fn valid_packet_several_vars_and_empty_values() {
        let vars = sample_vars();
        let mut buf = encode_vars(0, &vars);
        let packet_len = buf.len();
        buf.extend_from_slice(b"body bytes that follow"); // must be left alone
        let (p, consumed) = complete(&buf);
        assert_eq!(consumed, packet_len);
        assert_eq!((p.modifier1, p.modifier2), (0, 0));
        assert_eq!(p.vars().len(), vars.len());
        for ((k, v), (ek, ev)) in p.vars().zip(&vars) {
            assert_eq!((k, v), (*ek, *ev));
        }
        assert_eq!(p.get(b"REQUEST_METHOD"), Some(&b"GET"[..]));
        assert_eq!(p.get(b"QUERY_STRING"), Some(&b""[..]));
        assert_eq!(p.get(b"HTTP_HOST"), Some(&b"example.com"[..]));
        assert_eq!(p.get(b"MISSING"), None);
    }

    #[test]
    fn hand_built_bytes_match_spec() {
        // modifier1 0, datasize 12, modifier2 0; "A"="bc", "D"=""
        let buf = [0, 12, 0, 0, 1, 0, b'A', 2, 0, b'b', b'c', 1, 0, b'D', 0, 0];
        let (p, consumed) = complete(&buf);
        assert_eq!(consumed, 16);
        assert_eq!(
            p.vars().collect::<Vec<_>>(),
            vec![(&b"A"[..], &b"bc"[..]), (&b"D"[..], &b""[..])]
        );
        assert_eq!(encode_vars(0, &[(b"A", b"bc"), (b"D", b"")]), buf);
    }

    #[test]
    fn empty_vars_block_is_valid() {
        let (p, consumed) = complete(&[0, 0, 0, 0]);
        assert_eq!(consumed, 4);
        assert_eq!(p.vars().len(), 0);
    }

    #[test]
    fn modifier2_is_reported() {
        let mut buf = encode_vars(0, &[(b"K", b"v")]);
        buf[3] = 7;
        assert_eq!(complete(&buf).0.modifier2, 7);
    }

    #[test]
    fn incomplete_at_every_split_point() {
        let buf = encode_vars(0, &sample_vars());
        for n in 0..buf.len() {
            assert_eq!(
                parse_packet(&buf[..n], LIMIT),
                Ok(Parsed::Incomplete),
                "prefix of {n} bytes"
            );
        }
        assert_eq!(complete(&buf).1, buf.len());
    }

    #[test]
    fn key_size_past_block_is_overrun() {
        // key_size 5 but only 2 key bytes left in the block
        let buf = raw(0, 4, &[5, 0, b'A', b'B']);
        assert_eq!(parse_packet(&buf, LIMIT), Err(ProtoError::VarOverrun));
    }

    #[test]
    fn val_size_past_block_is_overrun() {
        // "A" then val_size 9 with only 1 byte of value in the block; the
        // bytes after the block (body) must not be used to satisfy it.
        let mut buf = raw(0, 6, &[1, 0, b'A', 9, 0, b'x']);
        buf.extend_from_slice(b"12345678");
        assert_eq!(parse_packet(&buf, LIMIT), Err(ProtoError::VarOverrun));
    }

    #[test]
    fn block_ending_after_key_is_overrun() {
        let buf = raw(0, 3, &[1, 0, b'A']);
        assert_eq!(parse_packet(&buf, LIMIT), Err(ProtoError::VarOverrun));
    }

    #[test]
    fn one_stray_byte_in_block_is_error() {
        let good = encode_vars(0, &[(b"REQUEST_METHOD", b"GET")]);
        let mut block = good[HEADER_LEN..].to_vec();
        block.push(b'Z');
        let buf = raw(0, u16::try_from(block.len()).unwrap(), &block);
        assert_eq!(parse_packet(&buf, LIMIT), Err(ProtoError::VarOverrun));
    }

    #[test]
    fn empty_key_is_error() {
        let buf = raw(0, 5, &[0, 0, 1, 0, b'v']);
        assert_eq!(parse_packet(&buf, LIMIT), Err(ProtoError::EmptyKey));
    }

    #[test]
    fn unsupported_modifier1_is_error() {
        for m1 in [1u8, 5, 72, 255] {
            let buf = encode_vars(m1, &[(b"K", b"v")]);
            assert_eq!(
                parse_packet(&buf, LIMIT),
                Err(ProtoError::UnsupportedModifier(m1))
            );
            // rejected as soon as the header is in
            assert_eq!(
                parse_packet(&buf[..HEADER_LEN], LIMIT),
                Err(ProtoError::UnsupportedModifier(m1))
            );
        }
    }

    #[test]
    fn datasize_over_limit_is_too_large_immediately() {
        let header = [0u8, 0x01, 0x10, 0]; // datasize 4097
        let err = Err(ProtoError::TooLarge {
            size: 4097,
            limit: 4096,
        });
        assert_eq!(parse_packet(&header, 4096), err);
        // exactly at the limit is fine (still waiting for the block)
        assert_eq!(parse_packet(&[0, 0, 0x10, 0], 4096), Ok(Parsed::Incomplete));
        let big = encode_vars(0, &[(b"K", &[b'x'; 100])]);
        assert_eq!(
            parse_packet(&big, 50),
            Err(ProtoError::TooLarge {
                size: big.len() - HEADER_LEN,
                limit: 50
            })
        );
        assert_eq!(
            ProtoError::TooLarge {
                size: 4097,
                limit: 4096
            }
            .to_string(),
            "uwsgi packet of 4097 bytes exceeds the buffer size 4096"
        );
    }

    #[test]
    fn round_trip() {
        let long_val = vec![b'v'; 3000];
        let vars: Vec<(&[u8], &[u8])> = vec![
            (b"SERVER_PROTOCOL", b"HTTP/1.1"),
            (b"HTTP_X_BIN", &[0, 255, 10, 13]),
            (b"HTTP_COOKIE", &long_val),
            (b"E", b""),
        ];
        let buf = encode_vars(0, &vars);
        let (p, consumed) = complete(&buf);
        assert_eq!(consumed, buf.len());
        let back: Vec<(&[u8], &[u8])> = p.vars().collect();
        assert_eq!(back, vars);
    }

    #[test]
    #[should_panic(expected = "exceeds 65535")]
    fn encode_too_big_panics() {
        let v = vec![0u8; 70_000];
        let _ = encode_vars(0, &[(b"K", &v)]);
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes_never_panic(
                buf in proptest::collection::vec(any::<u8>(), 0..300),
                limit in 0usize..70_000,
            ) {
                let _ = parse_packet(&buf, limit);
            }

            #[test]
            fn arbitrary_block_after_valid_header_never_panics(
                block in proptest::collection::vec(any::<u8>(), 0..300),
            ) {
                let mut buf = vec![0u8];
                buf.extend_from_slice(&u16::try_from(block.len()).unwrap().to_le_bytes());
                buf.push(0);
                buf.extend_from_slice(&block);
                match parse_packet(&buf, 4096) {
                    Ok(Parsed::Complete { consumed, .. }) => prop_assert_eq!(consumed, buf.len()),
                    Ok(Parsed::Incomplete) => prop_assert!(false, "whole block present"),
                    Err(_) => {}
                }
            }

            #[test]
            fn prop_round_trip(
                vars in proptest::collection::vec(
                    (proptest::collection::vec(any::<u8>(), 1..20),
                     proptest::collection::vec(any::<u8>(), 0..40)),
                    0..20),
                body in proptest::collection::vec(any::<u8>(), 0..20),
            ) {
                let refs: Vec<(&[u8], &[u8])> =
                    vars.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
                let mut buf = encode_vars(0, &refs);
                let len = buf.len();
                buf.extend_from_slice(&body);
                match parse_packet(&buf, 65535) {
                    Ok(Parsed::Complete { value, consumed }) => {
                        prop_assert_eq!(consumed, len);
                        let back: Vec<(Vec<u8>, Vec<u8>)> =
                            value.vars().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
                        prop_assert_eq!(back, vars);
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
            }
        }
    }
}
