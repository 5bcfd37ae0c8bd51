#!/usr/bin/env bash
# The whole test suite: Rust unit tests, then the end-to-end tests that
# drive the built binary with real clients.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
cargo test --release
python3 -m pytest -q -p no:cacheprovider tests/ "$@"
