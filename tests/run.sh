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
# The end-to-end tests run in two rounds. First the tests that mostly wait
# on the server, in 4 pytest-xdist workers (they leave the cores idle most
# of the time); then, alone and one after another as before, the tests that
# assert latencies or load the machine ("serial" in tests/conftest.py), and
# those that build the project. TEST_WORKERS=1 runs the first round one by
# one too. The 20 slowest tests of each round are listed at its end. While
# developing, the fast set skips the tests that build the project: add
# -m "not slow" (or see the README for the one-round fast set).
export PATH="$PWD/.venv/bin:$PATH"
workers="${TEST_WORKERS:-4}"
parallel=()
if [ "$workers" != 1 ]; then
  if python3 -c "import xdist" 2>/dev/null; then
    parallel=(-n "$workers")
  else
    echo "tests/run.sh: no pytest-xdist in .venv (scripts/setup.sh installs it): one by one" >&2
  fi
fi
status=0
# (exit status 5: the arguments left no test in that round)
python3 -m pytest -q -p no:cacheprovider --durations=20 --serial-tests=skip \
  "${parallel[@]}" tests/ "$@" || { rc=$?; [ "$rc" = 5 ] || status=$rc; }
python3 -m pytest -q -p no:cacheprovider --durations=20 --serial-tests=only \
  tests/ "$@" || { rc=$?; [ "$rc" = 5 ] || status=$rc; }
exit "$status"
