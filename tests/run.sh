#!/usr/bin/env bash
# The whole test suite: Rust unit tests, then the end-to-end tests that
# drive the built binary with real clients.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
cargo test --release
# The 20 slowest tests are listed at the end. While developing, the fast
# set skips the tests that build the project: add -m "not slow".
python3 -m pytest -q -p no:cacheprovider --durations=20 tests/ "$@"
