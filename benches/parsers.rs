//! Criterion benchmarks of the request parsers, the part of the hot path
//! that runs without the GIL: an HTTP head (curl's, a browser's), a chunked
//! body, and nginx's uwsgi packet, each also through `request::parse` (the
//! one request head type the request path serves).
//!
//! `cargo bench --bench parsers`; numbers are per parse.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

use uwsgi_rs::http::{parse_head, ChunkedDecoder, Limits, Parsed};
use uwsgi_rs::request::{self, Parse};
use uwsgi_rs::uwsgi_proto::parse_packet;
use uwsgi_rs::Protocol;

const CURL: &[u8] = b"GET /hello?name=world HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

const BROWSER: &[u8] = b"GET /static/app.js?v=3 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\nsec-ch-ua: \"Chromium\";v=\"124\"\r\nsec-ch-ua-mobile: ?0\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\nsec-ch-ua-platform: \"Linux\"\r\nAccept: */*\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: script\r\nReferer: https://example.com/\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\nCookie: sessionid=abcdef0123456789; csrftoken=0123456789abcdef0123456789abcdef\r\n\r\n";

/// A uwsgi packet as nginx's uwsgi_params send it.
fn nginx_packet() -> Vec<u8> {
    let vars: &[(&[u8], &[u8])] = &[
        (b"QUERY_STRING", b"name=world"),
        (b"REQUEST_METHOD", b"GET"),
        (b"CONTENT_TYPE", b""),
        (b"CONTENT_LENGTH", b""),
        (b"REQUEST_URI", b"/hello?name=world"),
        (b"PATH_INFO", b"/hello"),
        (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"http"),
        (b"REMOTE_ADDR", b"203.0.113.7"),
        (b"REMOTE_PORT", b"51234"),
        (b"SERVER_PORT", b"80"),
        (b"SERVER_NAME", b"example.com"),
        (b"HTTP_HOST", b"example.com"),
        (b"HTTP_USER_AGENT", b"curl/8.5.0"),
        (b"HTTP_ACCEPT", b"*/*"),
    ];
    let mut block = Vec::new();
    for (k, v) in vars {
        block.extend_from_slice(&(k.len() as u16).to_le_bytes());
        block.extend_from_slice(k);
        block.extend_from_slice(&(v.len() as u16).to_le_bytes());
        block.extend_from_slice(v);
    }
    let mut packet = vec![0];
    packet.extend_from_slice(&(block.len() as u16).to_le_bytes());
    packet.push(0);
    packet.extend_from_slice(&block);
    packet
}

fn heads(c: &mut Criterion) {
    let limits = Limits::default();
    let packet = nginx_packet();
    let mut g = c.benchmark_group("head");
    for (name, bytes) in [("curl", CURL), ("browser", BROWSER)] {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::new("http", name), bytes, |b, bytes| {
            b.iter(|| match parse_head(black_box(bytes), &limits) {
                Ok(Parsed::Complete { value, .. }) => value,
                other => panic!("{other:?}"),
            })
        });
        g.bench_with_input(BenchmarkId::new("request/http", name), bytes, |b, bytes| {
            b.iter(
                || match request::parse(Protocol::Http, black_box(bytes), &limits) {
                    Parse::Complete { request, .. } => request,
                    other => panic!("{other:?}"),
                },
            )
        });
    }
    g.throughput(Throughput::Bytes(packet.len() as u64));
    g.bench_function("uwsgi/nginx", |b| {
        b.iter(|| parse_packet(black_box(&packet), limits.max_head).unwrap())
    });
    g.bench_function("request/uwsgi/nginx", |b| {
        b.iter(
            || match request::parse(Protocol::Uwsgi, black_box(&packet), &limits) {
                Parse::Complete { request, .. } => request,
                other => panic!("{other:?}"),
            },
        )
    });
    g.finish();
}

fn chunked(c: &mut Criterion) {
    // 64 KiB of body in 4 KiB chunks.
    let mut body = Vec::new();
    for _ in 0..16 {
        body.extend_from_slice(b"1000\r\n");
        body.extend_from_slice(&[b'x'; 4096]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("64KiB_in_4KiB_chunks", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::new(0);
            let mut out = Vec::with_capacity(65536);
            d.decode(black_box(&body), &mut out).unwrap();
            out
        })
    });
    g.finish();
}

criterion_group!(benches, heads, chunked);
criterion_main!(benches);
