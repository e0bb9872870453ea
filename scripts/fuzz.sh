#!/usr/bin/env bash
# `make fuzz`: builds the cargo-fuzz targets of fuzz/ and runs each for
# FUZZ_SECONDS (default 60) from a copy of its committed seed corpus
# (fuzz/corpus/<target>/), FUZZ_JOBS targets at a time (default 2). Exits
# non-zero when any target finds a crash, a panic or a hang, and says where
# the input that did it was written.
#
#   FUZZ_SECONDS=600 scripts/fuzz.sh              every target, 10 min each
#   FUZZ_TARGETS="jwt_claims" scripts/fuzz.sh     one target
#
# Installs cargo-fuzz (pinned below) from crates.io when it is missing.
# Works on stable Rust: with `--sanitizer none` cargo-fuzz passes rustc no
# -Z flag (no AddressSanitizer; Rust's own checks, debug assertions and
# overflow checks on, still catch what matters in safe code).
# Everything a run writes (grown corpus, crashes, logs) goes under FUZZ_OUT
# (default target/fuzz-runs), never into the committed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
CARGO=${CARGO:-cargo}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_JOBS=${FUZZ_JOBS:-2}
FUZZ_OUT=${FUZZ_OUT:-target/fuzz-runs}
# The build flags (pass the same to `cargo fuzz run` to reuse this build).
# --codegen-units 16 instead of cargo-fuzz's 1: the big crates that end the
# build (odin-server, async-nats) compile on every core, for somewhat slower
# fuzzing (cargo-fuzz's own advice for faster builds); CI builds cold.
BUILD_FLAGS=(--sanitizer none --codegen-units 16)

say() { printf 'fuzz: %s\n' "$*" >&2; }

# libfuzzer-sys compiles libFuzzer (C++) with the system's C++ compiler.
if ! command -v "${CXX:-c++}" >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1; then
  as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi
  }
  say "installing g++ (libFuzzer is C++) from Debian's packages"
  as_root apt-get install -y -qq g++ >/dev/null 2>&1 ||
    { as_root apt-get update -qq >/dev/null 2>&1 && as_root apt-get install -y -qq g++ >/dev/null 2>&1; } ||
    { say "cannot install a C++ compiler: install g++"; exit 1; }
fi

if ! "$CARGO" fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
  "$CARGO" install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi

targets=${FUZZ_TARGETS:-$("$CARGO" fuzz list)}
say "building $(echo $targets | tr '\n' ' ')($(date -u +%H:%M:%S))"
"$CARGO" fuzz build "${BUILD_FLAGS[@]}"
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=${CARGO_TARGET_DIR:-fuzz/target}/$host/release

rm -rf "$FUZZ_OUT"
mkdir -p "$FUZZ_OUT"
out=$(cd "$FUZZ_OUT" && pwd)

# Runs one target: libFuzzer's output to $out/<target>.log, its exit code to
# $out/<target>.rc.
run_one() {
  local target=$1 rc=0
  mkdir -p "$out/corpus/$target" "$out/artifacts/$target"
  cp -R "fuzz/corpus/$target/." "$out/corpus/$target/"
  local dict=()
  [[ -f fuzz/dicts/$target.dict ]] && dict=(-dict="fuzz/dicts/$target.dict")
  # -timeout: one input taking 30 s is a hang; -rss_limit_mb: libFuzzer's
  # default, said out loud.
  "$bin_dir/$target" "$out/corpus/$target" "${dict[@]}" \
    -max_total_time="$FUZZ_SECONDS" -timeout=30 -rss_limit_mb=2048 \
    -artifact_prefix="$out/artifacts/$target/" -print_final_stats=1 \
    >"$out/$target.log" 2>&1 || rc=$?
  echo "$rc" >"$out/$target.rc"
}

say "running each target for ${FUZZ_SECONDS}s, $FUZZ_JOBS at a time ($(date -u +%H:%M:%S))"
for target in $targets; do
  while (( $(jobs -rp | wc -l) >= FUZZ_JOBS )); do
    wait -n || true
  done
  run_one "$target" &
done
wait

failed=()
for target in $targets; do
  if [[ $(cat "$out/$target.rc" 2>/dev/null) == 0 ]]; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$target.log" | tail -1)
    corpus=$(find "$out/corpus/$target" -type f | wc -l)
    say "$target: ok: ${runs:-?} inputs, no crash; corpus $(find "fuzz/corpus/$target" -type f | wc -l) -> $corpus"
    continue
  fi
  failed+=("$target")
  log=$out/$target.log
  say "$target: FAILED (exit $(cat "$out/$target.rc" 2>/dev/null || echo '?')); from $log:"
  # The panic's message (not its backtrace), then libFuzzer's verdict.
  { sed -n '/panicked at/,/^stack backtrace:/p' "$log" | grep -v '^stack backtrace:' | head -20
    sed -n '/ERROR: libFuzzer/,$p' "$log" | grep -v '^stat::' | head -20
  } >&2 || true
  grep -q 'ERROR: libFuzzer' "$log" || tail -20 "$log" >&2
  for artifact in "$out/artifacts/$target"/*; do
    [[ -e $artifact ]] || continue
    say "$target: the input that failed: $artifact"
    say "  reproduce: $bin_dir/$target $artifact"
    say "         or: $CARGO fuzz run ${BUILD_FLAGS[*]} $target $artifact"
  done
done

if (( ${#failed[@]} > 0 )); then
  say "FAILED: ${failed[*]} (their inputs are under $out/artifacts/)"
  exit 1
fi
say "every target ran ${FUZZ_SECONDS}s without a crash ($(date -u +%H:%M:%S))"
