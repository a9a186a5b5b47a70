#!/usr/bin/env bash
# requirements/lock.txt: every package version that pyproject.toml's dependencies with the
# extras the README installs ([book,test]) resolve to, for Python 3.11 on Linux x86_64, with
# torch, torchvision and Jupyter Book held at requirements/pins.txt. The README's two commands
# install through it (pip install ... -c requirements/lock.txt), so a fresh machine gets the
# versions the committed results and CI were made with, not whatever a resolver picks that day.
#
#   scripts/lock.sh            refresh the lock after pyproject.toml or pins.txt changed: a new
#                              or changed requirement is resolved, every other pin is kept
#   scripts/lock.sh --upgrade  move every package to the newest version the inputs allow
#   scripts/lock.sh --check    fail (exit 1, with the diff) if the lock no longer matches the
#                              inputs; what CI runs. Needs PyPI (or PIP_INDEX_URL), no other host
#
# Compiled by uv (`uv pip compile`), at the version below so that the output is byte-for-byte
# repeatable; found as $UV, .venv/bin/uv or uv on PATH, else installed into a temporary venv.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
LOCK=requirements/lock.txt

mode=${1:-refresh}
case "$mode" in
  refresh|--upgrade|--check) ;;
  *) echo "usage: scripts/lock.sh [--upgrade | --check]" >&2; exit 2 ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

uv_version() { "$1" --version 2>/dev/null | awk '{print $2}'; }
uv=""
for candidate in "${UV:-}" .venv/bin/uv "$(command -v uv || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && [ "$(uv_version "$candidate")" = "$UV_VERSION" ]; then
    uv=$candidate
    break
  fi
done
if [ -z "$uv" ]; then
  echo "lock: installing uv $UV_VERSION into a temporary venv" >&2
  python3 -m venv "$tmp/uv-venv"
  "$tmp/uv-venv/bin/pip" install --quiet "uv==$UV_VERSION"
  uv=$tmp/uv-venv/bin/uv
fi
# uv does not read pip's configuration: a mirror given to pip is given to uv too
if [ -n "${PIP_INDEX_URL:-}" ] && [ -z "${UV_DEFAULT_INDEX:-}${UV_INDEX_URL:-}" ]; then
  export UV_DEFAULT_INDEX=$PIP_INDEX_URL
fi

compile() {  # compile OUTPUT [uv options]: the one command line that makes the lock
  local out=$1
  shift
  "$uv" pip compile pyproject.toml --extra book --extra test -c requirements/pins.txt \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --custom-compile-command "scripts/lock.sh" --no-progress --quiet -o "$out" "$@"
}

case "$mode" in
  refresh) compile "$LOCK" && echo "lock: $LOCK written" ;;
  --upgrade) compile "$LOCK" --upgrade && echo "lock: $LOCK written (every package upgraded)" ;;
  --check)
    # resolved again with the lock's own pins preferred: a difference means pyproject.toml or
    # pins.txt asks for something the lock does not hold (not merely a newer release upstream)
    cp "$LOCK" "$tmp/lock.txt"
    compile "$tmp/lock.txt" || { echo "lock: pyproject.toml and requirements/pins.txt" \
      "could not be resolved (above); $LOCK cannot match them" >&2; exit 1; }
    if ! diff -u "$LOCK" "$tmp/lock.txt"; then
      echo "lock: $LOCK does not match pyproject.toml and requirements/pins.txt;" \
           "run scripts/lock.sh and commit the result" >&2
      exit 1
    fi
    echo "lock: $LOCK matches pyproject.toml and requirements/pins.txt"
    ;;
esac
