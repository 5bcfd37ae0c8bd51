//! Any bytes as a chunked body, fed whole or in two pieces (the first byte
//! says where to cut): the decoder never panics, never consumes more than
//! it was given, and a split changes nothing: neither what it decodes nor
//! whether it fails.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uwsgi_rs::http::ChunkedDecoder;

/// Decode `pieces` in turn; the decoded bytes, or None once it fails.
fn decode(pieces: &[&[u8]]) -> Option<Vec<u8>> {
    let mut d = ChunkedDecoder::new(1 << 20);
    let mut out = Vec::new();
    for piece in pieces {
        let mut rest = *piece;
        while !rest.is_empty() && !d.is_done() {
            let used = d.decode(rest, &mut out).ok()?;
            assert!(used <= rest.len());
            if used == 0 {
                break;
            }
            rest = &rest[used..];
        }
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(body.len());
    assert_eq!(decode(&[body]), decode(&[&body[..cut], &body[cut..]]));
});
