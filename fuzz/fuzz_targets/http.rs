//! Any bytes as an HTTP request head: the parser never panics, never claims
//! more bytes than it was given, and the request path's view of the head
//! (`request::parse`) agrees with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uwsgi_rs::http::{parse_head, Limits, Parsed};
use uwsgi_rs::request::{self, Parse};
use uwsgi_rs::Protocol;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let head = parse_head(data, &limits);
    if let Ok(Parsed::Complete { consumed, .. }) = &head {
        assert!(*consumed <= data.len());
    }
    match (head, request::parse(Protocol::Http, data, &limits)) {
        (
            Ok(Parsed::Complete { consumed: a, .. }),
            Parse::Complete {
                consumed: b,
                request,
            },
        ) => {
            assert_eq!(a, b);
            assert!(!request.method().is_empty());
        }
        (Ok(Parsed::Incomplete), Parse::Incomplete) => {}
        (Err(e), Parse::Rejected { status, .. }) => assert_eq!(e.status(), status),
        (h, r) => panic!("parse_head and request::parse disagree: {h:?} vs {r:?}"),
    }
});
