#!/usr/bin/env bash
# Odin wire-contract conformance suite: bash conformance/run.sh [pytest args...]
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$root/target/conformance-venv"
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi
}
if [ ! -x "$venv/bin/python" ]; then
  py="$(command -v python3.11 || command -v python3 || true)"
  if [ -z "$py" ] || ! "$py" -m venv "$venv" >/dev/null 2>&1; then
    # A fresh Debian has python3 without its venv module (or no python3).
    echo "conformance: installing python3 and python3-venv from Debian's packages" >&2
    rm -rf "$venv"
    { as_root apt-get install -y -qq python3 python3-venv >/dev/null 2>&1 ||
      { as_root apt-get update -qq >/dev/null 2>&1 &&
        as_root apt-get install -y -qq python3 python3-venv >/dev/null 2>&1; }; } || {
      echo "conformance: cannot create a Python venv; install python3-venv" >&2
      exit 2
    }
    py="$(command -v python3)"
    "$py" -m venv "$venv" || exit 2
  fi
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" || exit 2
cd "$here"
export PYTHONDONTWRITEBYTECODE=1
timeout -k 10 "${CONFORMANCE_TIMEOUT:-300}" "$venv/bin/python" -m pytest -p no:cacheprovider -q "$@"
exit $?
