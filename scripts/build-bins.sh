#!/usr/bin/env bash
# Builds one set of release binaries for the release gate (odin-load gate):
# odin-server, odin-publisher and odin-load, copied into --out DIR.
#
#   scripts/build-bins.sh --ref REF [--patch FILE] --out DIR [--name NAME] [--no-load]
#   scripts/build-bins.sh --worktree --out DIR
#
# --ref     a commit of this repository (HEAD, a sha, a tag, a branch),
#           checked out as a detached `git worktree` under
#           target/gate/worktrees/NAME (made afresh every time), with
#           --patch FILE applied by `git apply` if given; the worktree is
#           removed afterwards (KEEP_WORKTREE=1 keeps it).
# --worktree  this checkout as it is, uncommitted edits included.
# --name    the worktree's name (default: DIR's last component).
# --no-load only odin-server and odin-publisher: a gate's baseline needs no
#           odin-load of its own (both sides are measured by the
#           candidate's), and leaving it out spares building Goose.
#
# Both build into this checkout's target/release, so dependencies are built
# once (by `make build-release`, the load targets or an earlier build-bins)
# and a --ref build recompiles only the workspace's own crates. A --ref
# build's output of those crates takes the very names and fingerprints of
# this checkout's (cargo names them relative to the workspace root and
# compares only mtimes, and this checkout's sources are older than the
# worktree's build), so the next `make build-release` here would silently
# keep the worktree's — possibly patched — server. After a --ref build this
# script therefore forgets the workspace crates' fingerprints and removes
# the binaries it built from target/release: the next build here compiles
# this checkout's crates again, and nothing runs a worktree's binary by
# mistake in between. (Take this checkout's binaries before a --ref build;
# scripts/gate.sh does.) A --worktree build is this checkout's own
# `cargo build --release`.
#
# Paths compiled into the binaries point into the tree they were built in,
# which for --ref is gone: run odin-load with --scenario-file (and the
# gate's --gate-file) naming a checkout's fixtures/.
#
# Needs git and cargo; flock (util-linux) when present, to keep two of these
# scripts from building at once (they share the same output folder).
# Exits non-zero with one line saying why on any failure.
set -euo pipefail

say() { printf 'build-bins: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
usage() {
  sed -n '4,6p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

BINS=(odin-server odin-publisher odin-load)

ref="" patch="" out="" name="" worktree_mode=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ref) [[ $# -ge 2 ]] || die "--ref needs a value"; ref="$2"; shift 2 ;;
    --patch) [[ $# -ge 2 ]] || die "--patch needs a value"; patch="$2"; shift 2 ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a value"; out="$2"; shift 2 ;;
    --name) [[ $# -ge 2 ]] || die "--name needs a value"; name="$2"; shift 2 ;;
    --worktree) worktree_mode=1; shift ;;
    --no-load) BINS=(odin-server odin-publisher); shift ;;
    -h|--help) usage ;;
    *) say "unknown argument: $1"; usage ;;
  esac
done

[[ -n "$out" ]] || die "--out DIR is required"
if [[ $worktree_mode -eq 1 ]]; then
  [[ -z "$ref" ]] || die "give either --ref or --worktree, not both"
  [[ -z "$patch" ]] || die "--patch applies to a --ref build only (it would edit this checkout)"
else
  [[ -n "$ref" ]] || die "give --ref REF or --worktree"
fi
command -v git >/dev/null 2>&1 || die "git not found"
command -v cargo >/dev/null 2>&1 || die "cargo not found"

root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel) ||
  die "$(dirname "$0") is not inside a git checkout"
# Absolute paths before anything changes directory.
mkdir -p "$out" || die "cannot create --out $out"
out=$(cd "$out" && pwd)
if [[ -n "$patch" ]]; then
  [[ -f "$patch" ]] || die "patch $patch not found"
  patch="$(cd "$(dirname "$patch")" && pwd)/$(basename "$patch")"
fi
target_dir="$root/target"
gate_dir="$target_dir/gate"
mkdir -p "$gate_dir"

# One build at a time: builds of different refs write the same uplifted
# binaries before this script copies them.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$gate_dir/build.lock"
  if ! flock -n 9; then
    say "waiting for another build holding $gate_dir/build.lock"
    flock 9
  fi
else
  say "flock not found: not guarding against a concurrent build-bins.sh"
fi

# The whole workspace's features (as `make build-release` resolves them),
# only these binaries built: the dependencies then are the ones the release
# build compiled, not a set of their own with fewer features.
build_cmd=(cargo build --release --target-dir "$target_dir" --workspace --exclude odin-harness)
for bin in "${BINS[@]}"; do
  build_cmd+=(--bin "$bin")
done

started=$(date +%s)
wt=""
# After a --ref build: this checkout's next build must compile its own
# crates (their fingerprints go) and no worktree binary may stay where this
# checkout's belong.
forget_worktree_build() {
  rm -rf "$target_dir"/release/.fingerprint/odin-*
  for bin in "${BINS[@]}"; do rm -f "$target_dir/release/$bin"; done
}
cleanup() {
  if [[ -n "$wt" && "${KEEP_WORKTREE:-0}" != 1 ]]; then
    git -C "$root" worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
    git -C "$root" worktree prune >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

if [[ $worktree_mode -eq 1 ]]; then
  src="$root"
  built="$target_dir/release"
  describe="worktree $(git -C "$root" rev-parse HEAD)$(git -C "$root" diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
  say "building this checkout ($root)"
  (cd "$root" && "${build_cmd[@]}") || die "cargo build of this checkout failed"
else
  sha=$(git -C "$root" rev-parse --verify --quiet "${ref}^{commit}") ||
    die "$ref is not a commit of $root"
  [[ -n "$name" ]] || name=$(basename "$out")
  name=${name//[^A-Za-z0-9._-]/_}
  wt="$gate_dir/worktrees/$name"
  # Made afresh: a fresh checkout's files are newer than any earlier build
  # output, so cargo rebuilds the workspace's crates from this tree.
  if [[ -e "$wt" ]] || git -C "$root" worktree list --porcelain | grep -qxF "worktree $wt"; then
    say "removing the old worktree $wt"
    git -C "$root" worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
  fi
  git -C "$root" worktree prune
  mkdir -p "$(dirname "$wt")"
  git -C "$root" worktree add --quiet --detach "$wt" "$sha" ||
    die "git worktree add $wt $sha failed"
  describe="$ref ($sha)"
  if [[ -n "$patch" ]]; then
    git -C "$wt" apply --check "$patch" ||
      die "$patch does not apply to $ref ($sha)"
    git -C "$wt" apply "$patch" || die "git apply $patch failed"
    describe="$describe + $(basename "$patch")"
  fi
  src="$wt"
  built="$target_dir/release"
  say "building $describe in $wt"
  (cd "$wt" && "${build_cmd[@]}") || { forget_worktree_build; die "cargo build of $describe failed"; }
fi

# Copied at once: the next build overwrites the uplifted binaries.
for bin in "${BINS[@]}"; do
  [[ -x "$built/$bin" ]] || die "$built/$bin missing after the build"
  { cp -f "$built/$bin" "$out/$bin.tmp" && mv -f "$out/$bin.tmp" "$out/$bin"; } ||
    die "cannot copy $bin into $out"
done
[[ -z "$wt" ]] || forget_worktree_build
{
  echo "source: $describe"
  echo "tree: $src"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "rustc: $(rustc -V)"
} >"$out/build-info.txt"
say "$describe -> $out ($(($(date +%s) - started)) s)"
