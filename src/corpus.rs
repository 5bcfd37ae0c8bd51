//! Corpus-driven fuzzing of both parsers, run by `cargo test` (so in CI, for
//! a bounded time): every input kept under `fuzz/corpus/` is parsed as is,
//! then mutated thousands of times (bit flips, byte insertions, deletions,
//! truncations, splices) with a fixed-seed generator, and each mutant must
//! parse without a panic and without consuming more bytes than it was given.
//! Add an input there when a bug is found; it is replayed from then on.
//! Test-only: compiled under `cfg(test)`.

use std::path::Path;

fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(dir);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", path.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "corpus {} is nearly empty",
        path.display()
    );
    files
}

/// xorshift64*: deterministic, so a failure reproduces exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8], others: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(v.len() + 1);
                let b = [b'\r', b'\n', b':', b' ', b'0', b'f', 0, 0xff][rng.below(8)];
                v.insert(i, b);
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            3 => v.truncate(rng.below(v.len() + 1)),
            4 => {
                let (_, other) = &others[rng.below(others.len())];
                let at = rng.below(other.len() + 1);
                v.extend_from_slice(&other[..at]);
            }
            _ if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            _ => {}
        }
    }
    v
}

/// Every input of corpus `dir` as is, then 3999 mutants of it, each given
/// to `check` with the input's file name.
fn each_case(dir: &str, seed: u64, mut check: impl FnMut(&str, &[u8])) {
    let files = corpus(dir);
    let mut rng = Rng(seed);
    for (name, input) in &files {
        check(name, input);
        for _ in 1..4000 {
            check(name, &mutate(&mut rng, input, &files));
        }
    }
}

#[test]
fn http_parser_survives_the_corpus_and_its_mutants() {
    use crate::http::{parse_head, ChunkedDecoder, Limits, Parsed};
    let limits = Limits::default();
    each_case("http", 0x5eed_cafe_f00d_0001, |name, data| {
        if let Ok(Parsed::Complete { consumed, .. }) = parse_head(data, &limits) {
            assert!(consumed <= data.len(), "{name}: consumed past the input");
        }
        let mut dec = ChunkedDecoder::new(1 << 20);
        let mut out = Vec::new();
        if let Ok(used) = dec.decode(data, &mut out) {
            assert!(
                used <= data.len() && out.len() <= used,
                "{name}: decoder over-read"
            );
        }
    });
}

#[test]
fn uwsgi_parser_survives_the_corpus_and_its_mutants() {
    use crate::uwsgi_proto::{parse_packet, Parsed};
    each_case("uwsgi", 0x5eed_cafe_f00d_0002, |name, data| {
        if let Ok(Parsed::Complete { consumed, value }) = parse_packet(data, 4096) {
            assert!(consumed <= data.len(), "{name}: consumed past the input");
            let vars: usize = value.vars().map(|(k, v)| k.len() + v.len()).sum();
            assert!(vars <= consumed, "{name}: vars larger than the packet");
        }
    });
}
