//! Any bytes as a uwsgi packet: the parser never panics, never claims more
//! bytes than it was given, and a complete packet either becomes a request
//! or is refused with a 4xx.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uwsgi_rs::http::Limits;
use uwsgi_rs::request::{self, Parse};
use uwsgi_rs::uwsgi_proto::{parse_packet, Parsed};
use uwsgi_rs::Protocol;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(Parsed::Complete { consumed, .. }) = parse_packet(data, limits.max_head) {
        assert!(consumed <= data.len());
    }
    match request::parse(Protocol::Uwsgi, data, &limits) {
        Parse::Complete { consumed, request } => {
            assert!(consumed <= data.len());
            let _ = (request.method(), request.uri(), request.remote(""));
        }
        Parse::Rejected { status, .. } => assert!((400..500).contains(&status)),
        Parse::Incomplete => {}
    }
});
