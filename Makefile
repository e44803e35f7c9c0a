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

# Python: the virtual environment (gitignored) that `make pyenv` builds from the pinned lock file,
# and the `shmtel` module that `make pybuild` installs into it. Nothing Python is installed by hand.
PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
VENV_PY := $(VENV)/bin/python
PY_LOCK := pybind/requirements.lock
# Written once the venv matches the lock file: `make pyenv` is a no-op until the lock changes.
PYENV_STAMP := $(VENV)/.shmtel-pyenv-stamp
# Python code that ruff checks and formats.
PY_SOURCES := pybind/python pybind/pgo pybind/tests tests/python benches/python benches/asgi
# Tool caches live in target/ (gitignored, removed by `make clean`).
export RUFF_CACHE_DIR := $(TARGET_DIR)/ruff-cache
export MYPY_CACHE_DIR := $(TARGET_DIR)/mypy-cache

.PHONY: help  ## Show this message
help:
	@echo 'usage: make <target>'
	@echo
	@grep -E '^\.PHONY: [a-z-]+ +## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = "^\\.PHONY: | +## "} {printf "  %-13s %s\n", $$2, $$3}'

.PHONY: deps  ## Install the system tools the tests need (strace, prometheus/promtool, rsyslog, curl, jq, wrk)
deps:
	@bash .ci/install-deps

.PHONY: build  ## Build the release binaries and examples (target/release/shmtel, examples/loadgen, ...)
build:
	$(CARGO) build --release --workspace --bins --examples

.PHONY: pyenv  ## Create .venv (Python 3.11) from pybind/requirements.lock; quick when up to date
pyenv: $(PYENV_STAMP)

$(PYENV_STAMP): $(PY_LOCK)
	@command -v $(PYTHON) >/dev/null 2>&1 || \
		{ echo "pyenv: $(PYTHON) not found on PATH (the extension is built for CPython 3.11)" >&2; exit 1; }
	@# A venv of another interpreter (or a broken one) is rebuilt from scratch.
	@if ! $(VENV_PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
		echo "pyenv: creating $(VENV) with $(PYTHON)"; \
		rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(VENV_PY) -m pip install --disable-pip-version-check --no-input -q --no-deps -r $(PY_LOCK)
	$(VENV_PY) -m pip check --disable-pip-version-check
	@touch $@

# PGO=0: without profile-guided optimization (one build instead of two and a training run).
PGO ?= 1
.PHONY: pybuild  ## Build the Python extension (maturin, profile pyext, PGO: pybind/pgo) into .venv
pybuild: pyenv
	VIRTUAL_ENV=$(VENV) PGO=$(PGO) bash pybind/pgo/build.sh

.PHONY: format  ## Format the code (cargo fmt, ruff format)
format: pyenv
	$(CARGO) fmt --all
	$(VENV)/bin/ruff format $(PY_SOURCES)

.PHONY: lint  ## Check formatting, clippy with warnings as errors, ruff, mypy --strict
lint: pyenv
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/mypy --strict pybind/python/shmtel

.PHONY: test-unit  ## Unit, integration and end-to-end tests (cargo test --release, real collector and backends)
test-unit: export SHMTEL_REQUIRE_PROMTOOL := 1
test-unit: export SHMTEL_REQUIRE_STRACE := 1
test-unit: export SHMTEL_REQUIRE_PROMETHEUS := 1
test-unit: export SHMTEL_REQUIRE_RSYSLOG := 1
test-unit: deps build
	@mkdir -p $(LOG_DIR)
	$(CARGO) test --workspace --release 2>&1 | tee $(LOG_DIR)/test-unit.log

.PHONY: test-python  ## Python tests: pybind/tests (API) and tests/python (uvicorn, gunicorn, collector e2e)
test-python: build pyenv pybuild
	@mkdir -p $(LOG_DIR)
	@# The hand-written stubs must match the built module (signatures, names, kinds).
	$(VENV_PY) -m mypy.stubtest shmtel._native
	$(VENV_PY) -m pytest pybind/tests tests/python 2>&1 | tee $(LOG_DIR)/test-python.log

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

.PHONY: test  ## Everything CI runs: deps, build, pyenv, pybuild, lint, test-unit, test-python, test-loom, test-fuzz
test: deps build pyenv pybuild lint test-unit test-python test-loom test-fuzz
	@echo 'make test: all passed (deps, build, pyenv, pybuild, lint, test-unit, test-python, test-loom, test-fuzz)'
	@# The plain closing line CI reads: cargo's per-binary "test result:" lines and pytest's
	@# summary line ("== 3 passed, 1 skipped in 9.1s =="; errors count as failed), added up.
	@awk '/^test result:/ { for (i = 2; i <= NF; i++) { \
			if ($$i ~ /^passed/) p += $$(i-1); \
			if ($$i ~ /^failed/) f += $$(i-1); \
			if ($$i ~ /^ignored/) s += $$(i-1) } } \
		/^=+ .* in [0-9.]+s/ { for (i = 2; i <= NF; i++) { \
			if ($$i ~ /^passed/) p += $$(i-1); \
			if ($$i ~ /^(failed|errors?)[,]?$$/) f += $$(i-1); \
			if ($$i ~ /^(skipped|xfailed|deselected)[,]?$$/) s += $$(i-1) } } \
		END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' \
		$(LOG_DIR)/test-unit.log $(LOG_DIR)/test-python.log $(LOG_DIR)/test-loom.log

.PHONY: demo  ## Run the demo: a collector, two loadgens, a Python worker, /metrics and `shmtel dump`
demo: export SHMTEL_PYTHON := $(VENV_PY)
demo: deps build pyenv pybuild
	bash tests/demo.sh

.PHONY: bench  ## Run the benchmarks (benches/, shmtel against the libraries it replaces)
bench:
	$(CARGO) bench -p shmtel-benches

.PHONY: bench-python  ## Python benchmark: shmtel vs prometheus_client, OpenTelemetry SDK, logging, structlog
bench-python: pyenv pybuild
	@mkdir -p $(TARGET_DIR)
	$(VENV_PY) benches/python/bench.py --writer-only --json $(TARGET_DIR)/bench-python-writer.json
	$(VENV_PY) benches/python/bench.py --json $(TARGET_DIR)/bench-python.json

.PHONY: bench-asgi  ## End-to-end ASGI benchmark: uvicorn + wrk, bare vs today's stack vs shmtel
# bare_cid (the bare app returning a correlation id) is the floor shmtel is also paired with.
bench-asgi: build pyenv pybuild
	@mkdir -p $(TARGET_DIR)
	$(VENV_PY) benches/asgi/run.py --seconds 5 --rounds 2 --slices 4 --workers 1,4 \
		--variants bare,bare_cid,today,today_mp,shmtel --json $(TARGET_DIR)/bench-asgi.json

.PHONY: clean  ## Remove build output (target/, including the loom build and test logs)
clean:
	$(CARGO) clean
