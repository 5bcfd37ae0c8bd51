#!/usr/bin/env bash
# Builds the uwsgi-rs wheel for every CPython on this machine that it
# supports (3.9-3.13) and tests each one.
#
#   scripts/pythons.sh list             VERSION PYTHON, one line per interpreter found
#   scripts/pythons.sh build [PY...]    build the wheel for each one's X.Y (all by default);
#                                       prints VERSION PYTHON WHEEL per interpreter
#   scripts/pythons.sh check [PY...]    run tests/test_pythons.py on them (what CI runs): each
#                                       interpreter gets a venv with its X.Y's wheel installed
#                                       and serves, dumps (both tracebacker paths) and harakiris
#   scripts/pythons.sh suite [PY...]    build, then run the end-to-end suite (tests/, without
#                                       test_pythons/test_packaging) once per interpreter, from
#                                       a venv of it (target/py-X.Y/venv-VERSION) with its wheel,
#                                       Flask, Django, pytest and requests (needs PyPI)
#
# PY is a version (3.12, 3.12.1) or a path to an interpreter. Interpreters are
# found under `pyenv root`/versions/ and as python3.X on PATH and in /usr/bin;
# each one that is a CPython 3.9-3.13 (not free-threaded) is listed once.
# Others are reported on stderr with the reason and not built. A shared
# libpython is not needed: the wheel's extension links none.
#
# One wheel serves every build of an X.Y (scripts/wheel.sh builds it into
# target/py-X.Y): it is built with .venv's python when that is the same X.Y
# (the build tests/run.sh makes anyway), else with the first interpreter of
# that X.Y listed, and installed into a venv of each interpreter of the X.Y.
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

# The interpreter that builds X.Y's wheel: .venv's python if it is X.Y.
builder_for() {
  local xy="${1%.*}" venv_py="$ROOT/.venv/bin/python" v
  if [ -x "$venv_py" ]; then
    v="$("$venv_py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [ "$v" = "$xy" ] && { echo "$venv_py"; return; }
  fi
  discover | awk -v xy="$xy" 'index($1, xy ".") == 1 { print $2; exit }'
}

build_one() {
  local version="$1" py="$2" builder wheel
  builder="$(builder_for "$version")"
  echo "pythons.sh: building the CPython ${version%.*} wheel (with $builder)" >&2
  wheel="$(bash "$ROOT/scripts/wheel.sh" "$builder")"
  echo "$version $py $wheel"
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
    # The runner is this python3 (it has pytest and requests); the server
    # runs from a venv of each interpreter with its wheel and the apps'
    # dependencies, whose bin/ goes first on PATH (the tests' `python3`).
    runner="$(python3 -c 'import sys; print(sys.executable)')"
    status=0
    summary=()
    while read -r v p w; do
      venv="${TARGET_PREFIX}${v%.*}/venv-$v"
      if [ ! -x "$venv/bin/python" ]; then
        "$p" -m venv "$venv" >&2
        "$venv/bin/python" -m pip install -q --disable-pip-version-check \
          flask django pytest requests uwsgitop prometheus_client >&2
      fi
      "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
        --force-reinstall "$w" >&2
      echo "=== CPython $v ($p): $w" >&2
      if PATH="$venv/bin:$PATH" UWSGI_RS_BIN="$venv/bin/uwsgi-rs" "$runner" -m pytest -q \
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
    sed -n '2,30p' "$0" >&2; exit 2 ;;
esac
