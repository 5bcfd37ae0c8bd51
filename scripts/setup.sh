#!/usr/bin/env bash
# Sets up a fresh Debian machine (Rust and CPython already present) to run
# uwsgi-rs and its tests, all inside the repository:
#   - nginx, curl, wrk, tmux, chromium (the dashboard's browser test) and
#     python3.X-venv from Debian;
#   - .venv: a virtualenv of python3 with the test and example dependencies
#     (pytest, pytest-xdist, requests, Flask, Django, uwsgitop,
#     prometheus_client), and
#     what builds the wheel (maturin, ziglang, auditwheel);
#   - uwsgi-rs itself, built from this checkout and installed into .venv
#     (scripts/develop.sh), so .venv/bin/uwsgi-rs is the server.
# Run it again after pulling: it only installs what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
for tool in nginx curl wrk tmux chromium; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || need+=("$tool")
done
# Debian's own python3.X (tests/test_packaging.py installs the wheel into a
# venv of it) needs its venv package for `python3.X -m venv`.
for deb in /usr/bin/python3.[0-9]*; do
  case "$deb" in *-config|*m) continue ;; esac
  [ -x "$deb" ] || continue
  "$deb" -c 'import ensurepip' >/dev/null 2>&1 || need+=("$(basename "$deb")-venv")
done
if [ "${#need[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv"
fi
"$ROOT/.venv/bin/python" -m pip install -q --disable-pip-version-check \
  "pytest>=7" "pytest-xdist>=3.5" "requests>=2.28" "flask>=2.2" "django>=4.2" PasteDeploy uwsgitop prometheus_client \
  "maturin>=1.9.4,<2" "ziglang>=0.13" auditwheel
bash "$ROOT/scripts/develop.sh"
