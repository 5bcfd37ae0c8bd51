#!/usr/bin/env bash
# Installs the peers bench/bench.py compares uwsgi-rs with, into their own
# virtualenv bench/.venv (never into .venv, never by the test suite):
#   granian, gunicorn, uWSGI, bjoern, fastwsgi, py-spy (bench/profiler.py) and
#   Django from PyPI (uWSGI,
#   bjoern and fastwsgi are compiled: gcc and the interpreter's headers),
#   and from Debian: libev-dev (bjoern builds against it), nginx and wrk.
# The venv uses .venv's interpreter, so every server runs the apps on the
# same Python. Run again to add what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || { echo "no $PY: run scripts/setup.sh first" >&2; exit 1; }
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
[ -e /usr/include/ev.h ] || need+=(libev-dev)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
if [ "${#need[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
VENV="$ROOT/bench/.venv"
# the base interpreter of .venv (a venv of a venv would point at .venv)
BASE="$("$PY" -c 'import sys; print(sys._base_executable)')"
[ -x "$VENV/bin/python" ] || "$BASE" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  granian gunicorn uwsgi bjoern fastwsgi py-spy "django>=4.2"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as m
print("bench peers: " + ", ".join("%s %s" % (n, m.version(n)) for n in
      ("granian", "gunicorn", "uWSGI", "bjoern", "fastwsgi", "Django")))
PY
