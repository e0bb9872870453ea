#!/usr/bin/env bash
# Odin wire-contract conformance suite: bash conformance/run.sh [pytest args...]
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$root/target/conformance-venv"
if [ ! -x "$venv/bin/python" ]; then
  py="$(command -v python3.11 || command -v python3)"
  "$py" -m venv "$venv" || exit 2
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" || exit 2
cd "$here"
export PYTHONDONTWRITEBYTECODE=1
timeout -k 10 "${CONFORMANCE_TIMEOUT:-300}" "$venv/bin/python" -m pytest -p no:cacheprovider -q "$@"
exit $?
