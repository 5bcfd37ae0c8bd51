#!/usr/bin/env bash
# The whole test suite: Rust unit tests, then uwsgi-rs built from this
# checkout and installed into .venv (scripts/develop.sh), then the
# end-to-end tests, which drive .venv/bin/uwsgi-rs with real clients.
# Needs scripts/setup.sh to have run once. .venv/bin comes first on PATH,
# so the tests' `python3` is the server's interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "tests/run.sh: no .venv: run scripts/setup.sh first" >&2
  exit 2
fi
cargo test --release
bash scripts/develop.sh >/dev/null
# The end-to-end tests run in 4 pytest-xdist workers (most of a test is
# waiting on the server; TEST_WORKERS=1 runs them one by one); the tests
# that assert latencies or load the machine run one after another in one
# of them (the xdist_group "serial", see tests/conftest.py). The 20 slowest
# tests are listed at the end. While developing, the fast set skips the
# tests that build the project: add -m "not slow".
workers="${TEST_WORKERS:-4}"
parallel=()
if [ "$workers" != 1 ]; then
  parallel=(-n "$workers" --dist loadgroup)
fi
PATH="$PWD/.venv/bin:$PATH" python3 -m pytest -q -p no:cacheprovider --durations=20 \
  "${parallel[@]}" tests/ "$@"
