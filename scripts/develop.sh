#!/usr/bin/env bash
# Builds uwsgi-rs from this checkout for .venv's python (scripts/wheel.sh),
# copies the wheel to target/wheels/ (where the tests find it) and installs
# it into .venv, replacing what was there. Prints the wheel's path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv"
OUT="$ROOT/target/wheels"
built="$(bash "$ROOT/scripts/wheel.sh" "$VENV/bin/python")"
mkdir -p "$OUT"
rm -f "$OUT"/uwsgi_rs-*.whl
cp "$built" "$OUT/"
wheel="$OUT/$(basename "$built")"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
  --force-reinstall "$wheel" >&2
echo "$wheel"
