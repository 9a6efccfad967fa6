# VisionPipe. A new user needs two commands: `make demo` and `make test`.
# Every target bootstraps .venv on first use (Python 3.10) against the committed lock file;
# a second run installs nothing (the stamp is newer than setup.py and the lock).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
LOCK := constraints/py310.txt
STAMP := $(VENV)/.installed
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONHASHSEED := 0

.PHONY: setup demo test test-fast bench lock clean help

help:
	@echo "make demo   - generate the shapes data, run the pipeline, push and predict"
	@echo "make test   - the whole test suite (what CI runs)"
	@echo "make bench  - speed, size and accuracy benchmarks (prints ratios)"

PYTHON310 := $(shell \
	if command -v pyenv >/dev/null 2>&1 && pyenv prefix 3.10.13 >/dev/null 2>&1; then echo "$$(pyenv prefix 3.10.13)/bin/python"; \
	elif command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then command -v python3.10; \
	fi)

$(PY):
	@if [ -z "$(PYTHON310)" ]; then \
		echo "error: Python 3.10 not found; install it with 'pyenv install 3.10.13' (or your OS's python3.10 package) and re-run make." >&2; \
		exit 1; fi
	$(PYTHON310) -m venv $(VENV)

$(STAMP): $(PY) setup.py $(LOCK)
	@# tflite-support's metadata writer links libusb-1.0 (a Debian package, not a wheel).
	@ldconfig -p | grep -q 'libusb-1.0.so.0 ' || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null; } \
		|| { echo "error: install libusb-1.0 (Debian/Ubuntu: apt-get install libusb-1.0-0)" >&2; exit 1; }
	$(PY) -m pip install -q -c $(LOCK) pip setuptools wheel
	$(PY) -m pip install -q -c $(LOCK) -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/visionpipe demo

# Two pytest-xdist workers (CI has 2 cores): whole test files go to one worker, so a file's
# module-scoped pipeline run is made once. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
TEST_PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP)
	$(PY) -m pytest $(TEST_PARALLEL)

test-fast: $(STAMP)
	$(PY) -m pytest $(TEST_PARALLEL) -m "not e2e"

bench: $(STAMP)
	$(PY) -m benchmarks

# Re-resolve the lock (needs uv); run after changing constraints/requirements.in.
lock:
	uv pip compile constraints/requirements.in --python-version 3.10 \
		--python-platform x86_64-manylinux_2_28 --exclude-newer 2025-02-01 \
		--exclude-newer-package tensorflow-model-optimization=2026-06-01 -o $(LOCK)

clean:
	rm -rf runs demo_out .pytest_cache
