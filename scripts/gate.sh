#!/usr/bin/env bash
# `make gate`: the release gate of the work tree against a baseline commit.
#
#   BASELINE=<ref>  the commit to compare against (default: the merge-base
#                   with origin/main when that differs from HEAD, else HEAD~1)
#   GATE=<name>     the gate of fixtures/gate.toml (default: release)
#   GATE_OUT=<dir>  where its files go (default: runs/gate)
#   GATE_ARGS=...   extra odin-load gate flags (e.g. "--pairs 4 -- --hold 8s")
#
# Builds the candidate's binaries from the work tree as it is and the
# baseline's server and publisher from a git worktree (scripts/build-bins.sh,
# sharing this checkout's compiled dependencies), then runs the candidate's
# `odin-load gate`: the same load generator measures both sides. Exits with the
# gate's code: 0 pass, 1 regression, 2 invalid, 3 setup error. An invalid
# gate (the load generator lagged: no verdict) is run once more before that
# counts, as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'gate: %s\n' "$*" >&2; }

baseline=${BASELINE:-}
if [[ -z "$baseline" ]]; then
  head=$(git rev-parse HEAD)
  if git rev-parse --verify --quiet origin/main >/dev/null &&
    mb=$(git merge-base HEAD origin/main) && [[ "$mb" != "$head" ]]; then
    baseline=$mb
  else
    baseline=HEAD~1
  fi
fi
baseline_sha=$(git rev-parse --verify --quiet "${baseline}^{commit}") ||
  { say "BASELINE=$baseline is not a commit"; exit 3; }
say "baseline $baseline ($baseline_sha), candidate: the work tree"

bins=target/gate
# The candidate first: this checkout's release build (what `make
# build-release` and the load targets make, so CI builds nothing twice),
# copied before the baseline's build takes target/release over.
# shellcheck disable=SC2086 # RELEASE_BUILD is cargo's arguments
${CARGO:-cargo} ${RELEASE_BUILD:-build --release --workspace --bins --exclude odin-harness} || exit 3
mkdir -p "$bins/candidate"
for bin in odin-server odin-publisher odin-load; do
  cp -f "target/release/$bin" "$bins/candidate/$bin" || exit 3
done
# The baseline's server and publisher, from a worktree, reusing this
# checkout's compiled dependencies; afterwards the next build here compiles
# this checkout's crates again (see scripts/build-bins.sh).
scripts/build-bins.sh --ref "$baseline_sha" --out "$bins/baseline" --name baseline --no-load || exit 3

out=${GATE_OUT:-runs/gate}
# shellcheck disable=SC2086 # GATE_ARGS is a list of flags
run_gate() {
  "$bins/candidate/odin-load" gate "${GATE:-release}" \
    --baseline-bins "$bins/baseline" --candidate-bins "$bins/candidate" \
    --out "$1" ${GATE_ARGS:-}
}
code=0
run_gate "$out" || code=$?
if [[ $code -eq 2 ]]; then
  say "invalid (no verdict): running the gate once more"
  code=0
  run_gate "$out-rerun" || code=$?
fi
exit "$code"
