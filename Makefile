# Two commands matter (see README): `make demo` and `make test`. Each one sets
# up what it needs: uv, the runtime venv synced to the lock, the tools venv.
#
# Venvs live in a cache keyed by the hash of their lock, so a fresh clone on a
# machine that already built them starts in seconds, and a changed lock can
# never reuse a stale env.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

TFX_VERSION ?= 1.16.0
BASE_PINS ?= ../shared/base-images/tfx-$(TFX_VERSION)/pins.txt
CACHE_DIR ?= $(HOME)/.cache/trainer-runtime
UV_VERSION := 0.13.9
# The lock targets the image: CPython 3.10 on manylinux x86_64.
LOCK_FLAGS := --python-version 3.10 --python-platform x86_64-manylinux_2_28 \
	--generate-hashes --no-header --quiet

# The other supported bases: bases/tfx-<version>/ holds each one's pins (from TFX's own build files,
# devtools/base_pins.py), requirements.in and hash-locked requirements.lock. Their wheels (tfx-bsl, TFDV,
# ml-metadata) are manylinux_2_39, so they resolve for that platform.
OTHER_BASES := 1.17.3 1.21.0
BASE_LOCK_FLAGS := --python-version 3.10 --python-platform x86_64-manylinux_2_39 \
	--generate-hashes --no-header --quiet

# Python 3.10 (TFX 1.16 needs <3.11): pyenv's, else whatever is on PATH.
PYTHON310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10.*/bin/python3.10) \
	$(shell command -v python3.10 2>/dev/null))
BOOT_PYTHON ?= $(firstword $(shell command -v python3 2>/dev/null) $(PYTHON310))

export UV_PYTHON_DOWNLOADS := never
UV_DIR := $(CACHE_DIR)/uv-$(UV_VERSION)
UV := $(UV_DIR)/bin/uv

RUNTIME_HASH := $(shell cat requirements.lock requirements-dev.lock | sha256sum | cut -c1-12)
TOOLS_HASH := $(shell sha256sum < requirements-tools.lock | cut -c1-12)
RUNTIME_VENV := $(CACHE_DIR)/venvs/runtime-$(RUNTIME_HASH)
TOOLS_VENV := $(CACHE_DIR)/venvs/tools-$(TOOLS_HASH)
PY := $(RUNTIME_VENV)/bin/python

# What the tests and the demo need to find their parts.
export TR_TOOLS_VENV := $(TOOLS_VENV)
export TR_UV := $(UV)
export TR_BASE_PINS := $(abspath $(BASE_PINS))
# TFRS >= 0.7.5 refuses Keras 3; the image sets the same.
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

PYTEST_ARGS ?=

.PHONY: help env lock test demo docs clean-cache bench bench-sink bench-docs bench-memory reliability

help:
	@echo "make demo   run a real TFX pipeline through the runtime, tracked in MLflow"
	@echo "make test   set up everything and run the whole test suite"
	@echo "make lock   re-resolve requirements*.lock (TFX_VERSION=$(TFX_VERSION))"
	@echo "make docs   regenerate the generated tables (config, exit codes) in the docs"
	@echo "make reliability  rerun the fault suite (tests/faults) and rewrite docs/reliability.md"
	@echo "make bench  run the benchmarks in bench/ (QUICK=1: a few minutes) and regenerate docs/performance.md"
	@echo "make bench-sink  only the null-sink rows (the client's own cost) and the MLflow server's sizing"
	@echo "make bench-memory  measure RSS growth per million pending points and regenerate docs/memory.md"

$(UV):
	@echo "==> bootstrapping uv $(UV_VERSION) into $(UV_DIR)"
	@test -n "$(BOOT_PYTHON)" || { echo "no python3 on PATH to bootstrap uv" >&2; exit 1; }
	rm -rf $(UV_DIR)
	$(BOOT_PYTHON) -m venv $(UV_DIR)
	$(UV_DIR)/bin/python -m pip install --quiet uv==$(UV_VERSION)

# Runtime venv: exactly requirements.lock + requirements-dev.lock (sync, so
# nothing extra survives), bytecode compiled because PYTHONDONTWRITEBYTECODE=1
# here would otherwise make every TF import recompile.
$(RUNTIME_VENV)/.synced: | $(UV)
	@echo "==> building runtime venv $(RUNTIME_VENV)"
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found: install it (pyenv install 3.10) or set PYTHON310=/path/to/python3.10" >&2; exit 1; }
	rm -rf $(RUNTIME_VENV)
	$(UV) venv --quiet --python $(PYTHON310) $(RUNTIME_VENV)
	$(UV) pip sync --quiet --python $(PY) --require-hashes --compile-bytecode \
		requirements.lock requirements-dev.lock
	$(UV) pip check --python $(PY)
	touch $@

$(TOOLS_VENV)/.synced: | $(UV)
	@echo "==> building tools venv $(TOOLS_VENV) (mlflow server, storage emulator, linters)"
	rm -rf $(TOOLS_VENV)
	$(UV) venv --quiet --python $(PYTHON310) $(TOOLS_VENV)
	$(UV) pip sync --quiet --python $(TOOLS_VENV)/bin/python --require-hashes \
		--compile-bytecode requirements-tools.lock
	touch $@

# The package itself, editable, re-pointed at this checkout on every run (the
# venv is shared between clones; this takes about a second).
env: $(RUNTIME_VENV)/.synced $(TOOLS_VENV)/.synced
	@$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@echo "==> runtime venv: $(RUNTIME_VENV)"

lock: | $(UV)
	@test -f $(BASE_PINS) || { echo "base pins not found: $(BASE_PINS)" >&2; exit 1; }
	$(UV) pip compile $(LOCK_FLAGS) requirements.in -c $(BASE_PINS) -o requirements.lock
	$(UV) pip compile $(LOCK_FLAGS) requirements-dev.in -c requirements.lock -o requirements-dev.lock
	$(UV) pip compile $(LOCK_FLAGS) requirements-tools.in -o requirements-tools.lock
	@echo "==> locked $$(grep -c '^[A-Za-z]' requirements.lock) runtime packages"
	for v in $(OTHER_BASES); do \
		$(UV) pip compile $(BASE_LOCK_FLAGS) bases/tfx-$$v/requirements.in -c bases/tfx-$$v/pins.txt \
			-o bases/tfx-$$v/requirements.lock && \
		echo "==> locked $$(grep -c '^[A-Za-z]' bases/tfx-$$v/requirements.lock) packages on TFX $$v" || exit 1; \
	done

# Three pytest processes at once. The fault suite (tests/faults) spends most of its ~34 minutes (beside
# the other two) waiting on outages and paced epochs; the container suite (tests/container) first builds every
# base's stand-in and product image (downloads and installs, cached by recipe hash), then runs its
# per-base tests; the rest is the main suite. With PYTEST_ARGS, exactly what they name runs.
FAULT_LOG := $(CACHE_DIR)/fault-suite.log
CONTAINER_LOG := $(CACHE_DIR)/container-suite.log
MAIN_LOG := $(CACHE_DIR)/main-suite.log
test: env
	@echo "==> running tests"
ifeq ($(strip $(PYTEST_ARGS)),)
	@mkdir -p $(CACHE_DIR) && rm -f $(FAULT_LOG).rc $(CONTAINER_LOG).rc
	cd $(CURDIR) && { $(PY) -m pytest tests/faults -p no:cacheprovider > $(FAULT_LOG) 2>&1 && echo 0 > $(FAULT_LOG).rc \
		|| echo $$? > $(FAULT_LOG).rc; } & \
	cd $(CURDIR) && { $(PY) -m pytest tests/container -p no:cacheprovider > $(CONTAINER_LOG) 2>&1 \
		&& echo 0 > $(CONTAINER_LOG).rc || echo $$? > $(CONTAINER_LOG).rc; } & \
	main=0; cd $(CURDIR) && $(PY) -m pytest --ignore=tests/faults --ignore=tests/container 2>&1 \
		| tee $(MAIN_LOG) || main=$$?; wait; \
	echo "==> container suite (tests/container):"; tail -n 40 $(CONTAINER_LOG); \
	echo "==> fault suite (tests/faults):"; tail -n 40 $(FAULT_LOG); \
	echo "==> what failed, in all three suites (last, so that a log's tail shows it):"; \
	grep -h -E "^(FAILED|ERROR) " $(MAIN_LOG) $(CONTAINER_LOG) $(FAULT_LOG) | cut -c1-1200 || echo "nothing"; \
	faults=$$(cat $(FAULT_LOG).rc); containers=$$(cat $(CONTAINER_LOG).rc); \
	test $$main -eq 0 && test $$faults -eq 0 && test $$containers -eq 0
else
	cd $(CURDIR) && $(PY) -m pytest $(PYTEST_ARGS)
endif

demo: env
	cd $(CURDIR) && $(PY) -m examples.demo

docs: env
	$(PY) -m devtools.docs .

# QUICK=1: tiny fits, 2 sets, short outages (minutes); BENCH_ARGS: more flags (python -m bench --help).
bench: env
	cd $(CURDIR) && $(PY) -m bench $(if $(QUICK),--quick) $(BENCH_ARGS)

# RSS growth per million pending points, the spool's RAM window against none (a few minutes).
# Only the null-sink rows and the server sizing (bench/sink.py): bench/results/sink/, docs regenerated.
bench-sink: env
	cd $(CURDIR) && $(PY) -m bench --only sink $(if $(QUICK),--quick) $(BENCH_ARGS)

bench-memory: env
	cd $(CURDIR) && $(PY) -m bench.memory --write

bench-docs: env
	cd $(CURDIR) && $(PY) -m bench.report

clean-cache:
	rm -rf $(CACHE_DIR)/venvs

# The fault suite (tests/faults) rewrites docs/reliability.md from what it measures.
# TR_FAULT_LONG_OUTAGE / TR_FAULT_TOKEN_FIT / TR_FAULT_WORKERS stretch or shrink it.
reliability: env
	cd $(CURDIR) && TR_WRITE_RELIABILITY=1 $(PY) -m pytest tests/faults -q $(PYTEST_ARGS)
