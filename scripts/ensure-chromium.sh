#!/usr/bin/env bash
# Makes sure headless Chromium and ChromeDriver are installed for the browser
# test, from Debian's packages (chromium, chromium-driver). Without apt-get
# it says so and exits 0: the browser test then reports itself skipped.
set -euo pipefail

say() { printf 'ensure-chromium: %s\n' "$*" >&2; }

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi
}
if ! command -v apt-get >/dev/null 2>&1; then
  say "no apt-get here: install chromium and chromedriver yourself to run the browser test"
  exit 0
fi
say "installing chromium and chromium-driver from Debian's packages"
if as_root apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 ||
   { as_root apt-get update -qq >/dev/null 2>&1 && as_root apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; }; then
  exit 0
fi
say "could not install chromium: the browser test will report itself skipped"
exit 0
