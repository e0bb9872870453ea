#!/usr/bin/env bash
# The release gate's selftest: does `odin-load gate` catch the seeded
# regressions of loadtests/regressions/*.patch, and pass the unchanged code
# against itself?
#
#   scripts/gate-selftest.sh [--dry-run]
#
# 1. Builds the unchanged code (SELFTEST_REF, default HEAD) once into
#    target/gate/selftest/base (scripts/build-bins.sh).
# 2. For each patch: builds the patched set, runs
#    base/odin-load gate --baseline-bins base --candidate-bins patched
#    and expects exit 1 (a regression caught).
# 3. Runs the unchanged code against itself SELFTEST_CLEAN_RUNS times
#    (default 10) and expects exit 0 every time.
# A gate exit 2 (the run is invalid: measure again) is rerun once, as CI
# does; the rerun's exit code is the one judged.
#
# Writes runs/gate-selftest/summary.md (printed at the end): one row per
# gate run with the expected and actual exit code and the metrics the gate
# failed, read from its gate.json when it writes one, else from its printed
# output. Exits 1 if any expectation failed.
#
# Settings (environment):
#   SELFTEST_REF         the commit to patch and compare against (HEAD)
#   SELFTEST_CLEAN_RUNS  clean runs of the unchanged code (10; 0 skips them)
#   SELFTEST_ONLY        space-separated patch names to run (default: all)
#   SELFTEST_OUT         where the gate's output and summary go (runs/gate-selftest)
#   SELFTEST_BINS        where the binary sets go (target/gate/selftest)
#   SELFTEST_BASE        a folder holding $ref's release odin-server,
#                        odin-publisher and odin-load to use instead of
#                        building them (e.g. target/release of a clean
#                        checkout of $ref)
#   GATE_ARGS            extra arguments for every `odin-load gate`
#                        (e.g. a scenario name); split on spaces
# --dry-run prints what would be built and run, pretends every gate run
# gave the expected exit code, and still writes the summary.
set -euo pipefail

say() { printf '\n==> gate-selftest: %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" >&2; }
die() { printf 'gate-selftest: error: %s\n' "$*" >&2; exit 1; }

dry=0
case "${1:-}" in
  "") ;;
  --dry-run) dry=1 ;;
  -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument $1 (only --dry-run)" ;;
esac

cd "$(dirname "$0")/.."
root=$(pwd)
ref=${SELFTEST_REF:-HEAD}
clean_runs=${SELFTEST_CLEAN_RUNS:-10}
[[ "$clean_runs" =~ ^[0-9]+$ ]] || die "SELFTEST_CLEAN_RUNS must be a whole number, not '$clean_runs'"
out_root=${SELFTEST_OUT:-runs/gate-selftest}
bins_root=${SELFTEST_BINS:-target/gate/selftest}
read -r -a gate_args <<<"${GATE_ARGS:-}"
# odin-load's default scenario and gate files are paths compiled in from the
# tree it was built in, a worktree build-bins.sh has removed: name this
# checkout's.
for f in scenario:fixtures/scenarios.toml gate:fixtures/gate.toml; do
  [[ -f "${f#*:}" ]] && gate_args=(--"${f%%:*}"-file "$root/${f#*:}" "${gate_args[@]}")
done
base="$root/$bins_root/base"
[[ "$bins_root" = /* ]] && base="$bins_root/base"
bins_dir=$(dirname "$base")

shopt -s nullglob
patches=()
for p in loadtests/regressions/*.patch; do
  name=$(basename "$p" .patch)
  if [[ -n "${SELFTEST_ONLY:-}" && " $SELFTEST_ONLY " != *" $name "* ]]; then
    continue
  fi
  patches+=("$p")
done
shopt -u nullglob
[[ ${#patches[@]} -gt 0 || -n "${SELFTEST_ONLY:-}" ]] ||
  die "no patches in loadtests/regressions/"

mkdir -p "$out_root"
summary="$out_root/summary.md"
rows=()
failures=0

# Waits while another load run or gate is running on this machine: two at
# once disturb each other's measurements.
wait_for_quiet() {
  command -v pgrep >/dev/null 2>&1 || return 0
  local waited=0
  while pgrep -f "odin-load (run|gate)" >/dev/null 2>&1; do
    if [[ $waited -eq 0 ]]; then
      printf 'gate-selftest: waiting for another odin-load run/gate to finish\n' >&2
    fi
    sleep 5
    waited=$((waited + 5))
    [[ $waited -lt 1800 ]] || die "another odin-load run/gate has been running for 30 minutes"
  done
}

build() { # build <out dir> <name> [patch]
  local args=(--ref "$ref" --out "$1" --name "selftest-$2")
  # A patched set is a candidate: the base's odin-load measures it.
  [[ $# -ge 3 ]] && args+=(--patch "$3" --no-load)
  if [[ $dry -eq 1 ]]; then
    echo "[dry-run] scripts/build-bins.sh ${args[*]}" >&2
    return 0
  fi
  scripts/build-bins.sh "${args[@]}"
}

# The metrics the gate failed, comma-separated, from its gate.json if it
# wrote one (its checks whose judgement is "regression"; also a list
# under failedMetrics, failed, failures or regressions, of names or of
# objects with a metric/name), else from its verdict line
# ("REGRESSION in N pairs: a, b"), else from lines of its output that say
# FAIL or REGRESS. Empty when nothing is found.
failed_metrics() { # failed_metrics <gate out dir> <log>
  local json="$1/gate.json" found=""
  if [[ -f "$json" ]] && command -v python3 >/dev/null 2>&1; then
    found=$(python3 - "$json" <<'PY' 2>/dev/null || true
import json, sys
doc = json.load(open(sys.argv[1]))
def name(x):
    if isinstance(x, str):
        return x
    if isinstance(x, dict):
        for k in ("metric", "name", "id", "key"):
            if isinstance(x.get(k), str):
                return x[k]
    return None
out = []
if isinstance(doc, dict):
    for k in ("failedMetrics", "failed", "failures", "regressions"):
        if isinstance(doc.get(k), list):
            out = [n for n in map(name, doc[k]) if n]
            break
    if not out:
        def walk(x):
            if isinstance(x, dict):
                v = next((x[k] for k in ("judgement", "verdict", "status", "result") if isinstance(x.get(k), str)), None)
                if v and any(w in v.lower() for w in ("fail", "regress")) and name(x):
                    out.append(name(x))
                for y in x.values():
                    walk(y)
            elif isinstance(x, list):
                for y in x:
                    walk(y)
        walk(doc)
seen = []
for n in out:
    if n not in seen:
        seen.append(n)
print(", ".join(seen))
PY
)
  fi
  if [[ -z "$found" && -f "$2" ]]; then
    found=$(sed -n 's/^.*REGRESSION in [0-9]* pairs*: //p' "$2" | tail -n 1)
  fi
  if [[ -z "$found" && -f "$2" ]]; then
    found=$(grep -iE '\b(fail(ed)?|regress(ion|ed)?)\b' "$2" | grep -viE '^\s*(exit|verdict)\b' |
      sed -E 's/[[:space:]]+/ /g; s/^ //' | head -n 4 | paste -sd ';' - | cut -c1-160 || true)
  fi
  printf '%s' "${found//|/\\|}"
}

# Runs the gate once (and once more on exit 2) and records a row.
gate() { # gate <label> <candidate dir> <expected exit> <expectation>
  local label=$1 cand=$2 expected=$3 what=$4 out log code attempt note=""
  for attempt in 1 2; do
    out="$out_root/$label"
    [[ $attempt -eq 2 ]] && out="$out_root/$label-rerun"
    log="$out.log"
    rm -rf "$out"
    if [[ $dry -eq 1 ]]; then
      echo "[dry-run] $base/odin-load gate --baseline-bins $base --candidate-bins $cand --out $out ${gate_args[*]}" >&2
      code=$expected
      : >"$log"
    else
      wait_for_quiet
      say "$label: gate (expect exit $expected)"
      set +e
      "$base/odin-load" gate --baseline-bins "$base" --candidate-bins "$cand" \
        --out "$out" "${gate_args[@]}" 2>&1 | tee "$log"
      code=${PIPESTATUS[0]}
      set -e
    fi
    if [[ $code -eq 2 && $attempt -eq 1 ]]; then
      note="invalid, rerun; "
      continue
    fi
    break
  done
  local verdict="ok"
  if [[ $code -ne $expected ]]; then
    verdict="**FAILED**"
    failures=$((failures + 1))
  fi
  local metrics=""
  [[ $code -ne 0 ]] && metrics=$(failed_metrics "$out" "$log")
  rows+=("| $label | $what | $expected | $code | $verdict | ${note}${metrics:--} |")
}

build_failed() { # build_failed <label> <expectation>
  rows+=("| $1 | $2 | 1 | build failed | **FAILED** | - |")
  failures=$((failures + 1))
}

started=$(date +%s)
if [[ -n "${SELFTEST_BASE:-}" ]]; then
  # Already built (e.g. target/release after `make build-release` of a clean
  # checkout of $ref): copied, not rebuilt.
  say "the unchanged code: the binaries in $SELFTEST_BASE"
  if [[ $dry -eq 0 ]]; then
    mkdir -p "$base"
    for bin in odin-server odin-publisher odin-load; do
      cp -f "$SELFTEST_BASE/$bin" "$base/$bin" || die "$SELFTEST_BASE/$bin missing"
    done
  fi
else
  say "building the unchanged code ($ref) into $base"
  build "$base" base || die "the unchanged code ($ref) does not build"
fi

for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  cand="$bins_dir/$name"
  say "$name: building $ref + $p"
  if build "$cand" "$name" "$p"; then
    gate "$name" "$cand" 1 "caught (exit 1)"
  else
    build_failed "$name" "caught (exit 1)"
  fi
done

if [[ $clean_runs -gt 0 ]]; then
  # A second copy, so the gate compares two folders as it would in use.
  clean="$bins_dir/clean"
  if [[ $dry -eq 0 ]]; then
    rm -rf "$clean" && cp -r "$base" "$clean"
  fi
  for i in $(seq 1 "$clean_runs"); do
    gate "clean-$i" "$clean" 0 "passes (exit 0)"
  done
fi

{
  echo "# Gate selftest"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $ref = $(git rev-parse --short "$ref")," \
    "$((($(date +%s) - started) / 60)) min$([[ $dry -eq 1 ]] && echo ', DRY RUN: nothing was built or run')"
  echo
  echo "| run | expected | expected exit | exit | verdict | failed metrics |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  if [[ $failures -eq 0 ]]; then
    echo "All ${#rows[@]} expectations held."
  else
    echo "$failures of ${#rows[@]} expectations FAILED."
  fi
} >"$summary"
echo
cat "$summary"
[[ $failures -eq 0 ]]
