# syntax=docker/dockerfile:1
# Odin's two binaries in small images, built from this workspace.
#
#   docker build --target server    -t odin-server .
#   docker build --target publisher -t odin-publisher .
#
# docker-compose.yml builds both and wires them to NATS. Every setting is an
# ODIN_* environment variable (PROTOCOL.md §7); the images set only the
# listen addresses, which must be 0.0.0.0 inside a container.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build: compile both binaries once ----------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# The whole workspace: cargo reads every member's manifest, and the server
# embeds client/ at compile time. .dockerignore keeps target/ and .git out.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin odin-server --bin odin-publisher \
 && mkdir -p /out \
 && cp target/release/odin-server target/release/odin-publisher /out/

# ---- runtime base: no compiler, no shell tools beyond Debian's minimum ---
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin odin
USER odin
ENV RUST_LOG=info

# ---- the WebSocket gateway ----------------------------------------------
FROM runtime AS server
COPY --from=build /out/odin-server /usr/local/bin/odin-server
ENV ODIN_WS_ADDR=0.0.0.0:8080 \
    ODIN_HTTP_ADDR=0.0.0.0:3001
# 8080: WebSocket (/ws); 3001: HTTP (/, /health, /stats, /metrics).
EXPOSE 8080 3001
# SIGTERM drains clients with 1001 and exits 0 (PROTOCOL.md §4.6).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/odin-server"]

# ---- the market simulator -------------------------------------------------
FROM runtime AS publisher
COPY --from=build /out/odin-publisher /usr/local/bin/odin-publisher
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/odin-publisher"]
