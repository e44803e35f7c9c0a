# One Makefile drives development and CI (`.ci/run` is `make test`). `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# Targets depend on each other in a fixed order (deps, build, lint, tests): never run them in parallel.
.NOTPARALLEL:
MAKEFLAGS += --no-print-directory

CARGO ?= cargo
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),$(CURDIR)/target))
RELEASE_DIR := $(TARGET_DIR)/release
# Loom builds with `--cfg loom`: its own target dir keeps it from invalidating the main build cache.
LOOM_TARGET_DIR := $(TARGET_DIR)/loom
# cargo test output is kept here so `make test` can add up the counts at the end.
LOG_DIR := $(TARGET_DIR)/test-logs

# What the end-to-end tests and the demo run: the binaries `make build` produced, nothing rebuilt.
export SHMTEL_BIN := $(RELEASE_DIR)/shmtel
export SHMTEL_LOADGEN := $(RELEASE_DIR)/examples/loadgen

.PHONY: help  ## Show this message
help:
	@echo 'usage: make <target>'
	@echo
	@grep -E '^\.PHONY: [a-z-]+ +## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = "^\\.PHONY: | +## "} {printf "  %-11s %s\n", $$2, $$3}'

.PHONY: deps  ## Install the system tools the tests need (strace, prometheus/promtool, curl, jq)
deps:
	@bash .ci/install-deps

.PHONY: build  ## Build the release binaries and examples (target/release/shmtel, examples/loadgen, ...)
build:
	$(CARGO) build --release --workspace --bins --examples

.PHONY: format  ## Format the code (cargo fmt)
format:
	$(CARGO) fmt --all

.PHONY: lint  ## Check formatting and run clippy with warnings as errors
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: test-unit  ## Unit, integration and end-to-end tests (cargo test --release, real collector and backends)
test-unit: export SHMTEL_REQUIRE_PROMTOOL := 1
test-unit: export SHMTEL_REQUIRE_STRACE := 1
test-unit: export SHMTEL_REQUIRE_PROMETHEUS := 1
test-unit: deps build
	@mkdir -p $(LOG_DIR)
	$(CARGO) test --workspace --release 2>&1 | tee $(LOG_DIR)/test-unit.log

.PHONY: test-loom  ## Model-check the ring's memory ordering with loom (shm-core/tests/loom.rs)
test-loom: export RUSTFLAGS := --cfg loom
test-loom: export LOOM_MAX_PREEMPTIONS := 3
# Optimised but not fat-LTO'd: these binaries live in their own target dir and only need to run fast.
test-loom: export CARGO_PROFILE_RELEASE_LTO := false
test-loom: export CARGO_PROFILE_RELEASE_CODEGEN_UNITS := 16
test-loom: export CARGO_PROFILE_BENCH_LTO := false
test-loom: export CARGO_PROFILE_BENCH_CODEGEN_UNITS := 16
test-loom:
	@mkdir -p $(LOG_DIR)
	$(CARGO) test -p shmtel-core --test loom --release --target-dir $(LOOM_TARGET_DIR) 2>&1 \
		| tee $(LOG_DIR)/test-loom.log

.PHONY: test-fuzz  ## Fuzz the region readers for 30 s (fails on any crash)
test-fuzz:
	$(CARGO) run --release -p shmtel-core --example fuzz_reader -- --seconds 30

.PHONY: test  ## Everything CI runs: deps, build, lint, test-unit, test-loom, test-fuzz
test: deps build lint test-unit test-loom test-fuzz
	@echo 'make test: all passed (deps, build, lint, test-unit, test-loom, test-fuzz)'
	@# The plain closing line CI reads: cargo's per-binary "test result:" lines, added up.
	@awk '/^test result:/ { for (i = 2; i <= NF; i++) { \
			if ($$i ~ /^passed/) p += $$(i-1); \
			if ($$i ~ /^failed/) f += $$(i-1); \
			if ($$i ~ /^ignored/) s += $$(i-1) } } \
		END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' \
		$(LOG_DIR)/test-unit.log $(LOG_DIR)/test-loom.log

.PHONY: demo  ## Run the demo: a collector, two loadgens, /metrics and `shmtel dump`
demo: deps build
	bash tests/demo.sh

.PHONY: bench  ## Run the benchmarks (benches/, shmtel against the libraries it replaces)
bench:
	$(CARGO) bench -p shmtel-benches

.PHONY: clean  ## Remove build output (target/, including the loom build and test logs)
clean:
	$(CARGO) clean
