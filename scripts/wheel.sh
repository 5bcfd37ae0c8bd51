#!/usr/bin/env bash
# scripts/wheel.sh PYTHON: builds the uwsgi-rs wheel for PYTHON's CPython
# X.Y from this checkout (maturin, release profile, manylinux_2_28 linked
# with zig, as `pip wheel .` does) and prints its path.
#
# Each X.Y gets its own cargo directory, ${UWSGI_RS_PY_TARGET:-target/py-}X.Y,
# so builds for different versions do not invalidate one another and a
# rebuild after an edit is incremental. Build a given X.Y always with the
# same interpreter (PyO3 reruns its build script when the path changes).
# Needs .venv (scripts/setup.sh) for maturin and ziglang.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${1:?usage: scripts/wheel.sh PYTHON}"
TOOLS="$ROOT/.venv/bin"
xy="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
target="${UWSGI_RS_PY_TARGET:-$ROOT/target/py-}$xy"
out="$target/wheels"
mkdir -p "$out"
rm -f "$out"/uwsgi_rs-*.whl
# maturin finds zig through `python -m ziglang`: the tools' python has it
CARGO_TARGET_DIR="$target" CARGO_ZIGBUILD_PYTHON_PATH="$TOOLS/python" \
  "$TOOLS/maturin" build --quiet --release --zig --manifest-path "$ROOT/Cargo.toml" \
  --interpreter "$PY" --out "$out" >&2
ls "$out"/uwsgi_rs-*.whl
