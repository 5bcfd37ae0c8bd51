#!/usr/bin/env bash
# Installs what building and testing uwsgi-rs needs on a fresh Debian
# machine with Rust and CPython (with its shared library) already present:
# nginx, curl, wrk and tmux from Debian; pytest, requests, Flask, Django,
# uwsgitop and prometheus_client from PyPI.
set -euo pipefail
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
for tool in nginx curl wrk tmux; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || need+=("$tool")
done
if [ "${#need[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check \
  "pytest>=7" "requests>=2.28" "flask>=2.2" "django>=4.2" uwsgitop prometheus_client
