#!/usr/bin/env bash
# Makes sure valgrind is available (the instruction-count benchmark runs
# under callgrind), installing Debian's package when it is missing.
# Prints nothing but progress on stderr; exits non-zero with one line when it
# cannot. Safe to run again: it does nothing when valgrind is present.
set -euo pipefail

say() { printf 'ensure-valgrind: %s\n' "$*" >&2; }

if command -v valgrind >/dev/null 2>&1; then
  exit 0
fi

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi
}

if command -v apt-get >/dev/null 2>&1; then
  say "installing valgrind from Debian's packages"
  if as_root apt-get install -y -qq valgrind >/dev/null 2>&1 ||
     { as_root apt-get update -qq >/dev/null 2>&1 && as_root apt-get install -y -qq valgrind >/dev/null 2>&1; }; then
    command -v valgrind >/dev/null 2>&1 && exit 0
  fi
fi

say "cannot install valgrind: install it with 'apt-get install valgrind'"
exit 1
