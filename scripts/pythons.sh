#!/usr/bin/env bash
# Builds uwsgi-rs for every CPython on this machine that it supports
# (3.9-3.13) and tests each build.
#
#   scripts/pythons.sh list             VERSION PYTHON, one line per interpreter found
#   scripts/pythons.sh build [PY...]    build one binary per interpreter (all by default);
#                                       prints VERSION PYTHON BINARY per build
#   scripts/pythons.sh check [PY...]    build, then run tests/test_pythons.py (what CI runs)
#   scripts/pythons.sh suite [PY...]    build, then run the end-to-end suite (tests/, without
#                                       test_pythons/test_packaging) once per binary
#                                       (UWSGI_RS_BIN=...), the binary's interpreter first on
#                                       PATH as python3; Flask and Django for it are pip
#                                       installed into a private PYTHONUSERBASE (needs PyPI)
#
# PY is a version (3.12, 3.12.1) or a path to an interpreter. Interpreters are
# found under `pyenv root`/versions/ and as python3.X on PATH and in /usr/bin;
# each one that is a CPython 3.9-3.13 with a shared libpython is listed once.
# Others are reported on stderr with the reason and not built.
#
# Each build is a plain `cargo build --release` with PYO3_PYTHON set to the
# interpreter and its own target directory, ${UWSGI_RS_PY_TARGET:-target/py-}VERSION
# (e.g. target/py-3.12.1), so the builds do not invalidate one another.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET_PREFIX="${UWSGI_RS_PY_TARGET:-$ROOT/target/py-}"
MIN_MINOR=9
MAX_MINOR=13

# Print "VERSION REALPATH" if $1 is a usable CPython, else a reason on stderr.
probe() {
  local py="$1" out
  out="$("$py" - "$MIN_MINOR" "$MAX_MINOR" 2>/dev/null <<'EOF'
import os, platform, sys, sysconfig
lo, hi = int(sys.argv[1]), int(sys.argv[2])
v = platform.python_version()
exe = os.path.realpath(sys.executable)
if platform.python_implementation() != "CPython":
    print("skip", v, exe, "not CPython")
elif not (sys.version_info[0] == 3 and lo <= sys.version_info[1] <= hi):
    print("skip", v, exe, "outside the supported 3.%d-3.%d" % (lo, hi))
elif sysconfig.get_config_var("Py_GIL_DISABLED"):
    print("skip", v, exe, "free-threaded build (not supported)")
elif not sysconfig.get_config_var("Py_ENABLE_SHARED"):
    print("skip", v, exe, "no shared libpython (built without --enable-shared)")
else:
    print("ok", v, exe)
EOF
)" || return 0
  case "$out" in
    ok\ *) echo "${out#ok }" ;;
    skip\ *) echo "pythons.sh: not used: ${out#skip }" >&2 ;;
  esac
}

# All usable interpreters, "VERSION PATH", sorted by version, one per real path.
discover() {
  local cands=() root m p
  if command -v pyenv >/dev/null 2>&1; then root="$(pyenv root)"; else root="${PYENV_ROOT:-$HOME/.pyenv}"; fi
  for p in "$root"/versions/*/bin/python3; do [ -x "$p" ] && cands+=("$p"); done
  for m in $(seq 6 20); do
    p="$(command -v "python3.$m" 2>/dev/null || true)"
    [ -n "$p" ] && cands+=("$p")
    [ -x "/usr/bin/python3.$m" ] && cands+=("/usr/bin/python3.$m")
  done
  for p in "${cands[@]}"; do probe "$p"; done | sort -u -k2,2 | sort -t. -k1,1n -k2,2n -k3,3n -s
}

# Resolve the command line selection (versions or paths) against discover().
select_pythons() {
  local all
  all="$(discover)"
  if [ "$#" -eq 0 ]; then
    printf '%s\n' "$all" | sed '/^$/d'
    return
  fi
  local want line found
  for want in "$@"; do
    found=""
    if [ -x "$want" ] && [ ! -d "$want" ]; then
      found="$(probe "$want")"
    else
      while read -r line; do
        [ -z "$line" ] && continue
        case "${line%% *}" in "$want"|"$want".*) found="$line"; break ;; esac
      done <<<"$all"
    fi
    [ -n "$found" ] || { echo "pythons.sh: no usable CPython $want" >&2; exit 2; }
    echo "$found"
  done
}

build_one() {
  local version="$1" py="$2" target="${TARGET_PREFIX}$1"
  echo "pythons.sh: building for CPython $version ($py) into $target" >&2
  (cd "$ROOT" && PYO3_PYTHON="$py" CARGO_TARGET_DIR="$target" cargo build --release --quiet --bin uwsgi-rs) >&2
  echo "$version $py $target/release/uwsgi-rs"
}

PYTEST_ARGS=()
[ -n "${UWSGI_RS_PYTEST_ARGS:-}" ] && read -r -a PYTEST_ARGS <<<"$UWSGI_RS_PYTEST_ARGS"
cmd="${1:-list}"
[ "$#" -gt 0 ] && shift
case "$cmd" in
  list)
    select_pythons "$@" ;;
  build)
    select_pythons "$@" | while read -r v p; do build_one "$v" "$p"; done ;;
  check)
    sel=()
    while read -r v p; do sel+=("$p"); done < <(select_pythons "$@")
    UWSGI_RS_PYTHONS="$(IFS=:; echo "${sel[*]}")" exec python3 -m pytest -q -p no:cacheprovider -s "$ROOT/tests/test_pythons.py" ;;
  suite)
    # The runner is this python3 (it has pytest and requests). The server's
    # interpreter gets Flask and Django in a private user site,
    # ${TARGET_PREFIX}VERSION/userbase (PYTHONUSERBASE), so nothing is
    # installed into the interpreters themselves, and its bin/ directory
    # goes first on PATH, so the tests' `python3` is that interpreter.
    runner="$(python3 -c 'import sys; print(sys.executable)')"
    status=0
    summary=()
    while read -r v p b; do
      ub="${TARGET_PREFIX}$v/userbase"
      if ! PYTHONUSERBASE="$ub" "$p" -c 'import flask, django' 2>/dev/null; then
        echo "pythons.sh: installing Flask and Django for $v into $ub" >&2
        PYTHONUSERBASE="$ub" PIP_BREAK_SYSTEM_PACKAGES=1 "$p" -m pip install -q --user \
          --disable-pip-version-check flask django >&2
      fi
      bindir="${TARGET_PREFIX}$v/bin"
      mkdir -p "$bindir"
      ln -sf "$p" "$bindir/python3"
      pydir="$(dirname "$p")"
      [ "$("$pydir/python3" -c 'import platform; print(platform.python_version())' 2>/dev/null)" = "$v" ] && bindir="$pydir"
      echo "=== CPython $v ($p): $b" >&2
      if PATH="$bindir:$PATH" PYTHONUSERBASE="$ub" UWSGI_RS_BIN="$b" "$runner" -m pytest -q \
          -p no:cacheprovider "$ROOT/tests/" --ignore "$ROOT/tests/test_pythons.py" \
          --ignore "$ROOT/tests/test_packaging.py" "${PYTEST_ARGS[@]}" >&2; then
        summary+=("PASS $v $p")
      else
        summary+=("FAIL $v $p"); status=1
      fi
    done < <(select_pythons "$@" | while read -r v p; do build_one "$v" "$p"; done)
    printf '%s\n' "${summary[@]}"
    exit "$status" ;;
  *)
    sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
