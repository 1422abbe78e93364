# Two commands a new user needs: `make demo` (the main job) and `make test`.
# Both create .venv on first use. torch is installed first and pinned to the CPU build that
# this kind of machine keeps on disk, so pip never pulls a multi-GB CUDA build on a CPU machine.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,llamacpp,train,lmeval

.PHONY: setup demo test test-rest test-random test-all lint wheel-check floor-check bench clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

demo: setup
	$(VENV)/bin/tourney demo

# The fast set plus one end-to-end test of the shipped pair (marker e2e); under 5 minutes.
test: setup
	$(VENV)/bin/pytest -q -m "(not slow and not integration) or e2e"

# Everything make test leaves out: training, real servers, kill/resume (marker slow/integration).
test-rest: setup
	$(VENV)/bin/pytest -q -m "(slow or integration) and not e2e"

test-all: test test-rest

# The fast set in a random order (pytest-random-order; the seed is printed, `-p random_order
# --random-order-seed=N` repeats it): a test that passes only after another is a defect.
test-random: setup
	$(VENV)/bin/pytest -q -p random_order --random-order-bucket=global -m "not slow and not integration"

# pyflakes + pycodestyle errors (the rule set is pinned in pyproject.toml); seconds.
lint: setup
	$(VENV)/bin/ruff check tourney tests benchmarks

# Build the wheel, install it in a fresh venv, run the product from a foreign directory.
wheel-check:
	bash .ci/wheel-check.sh

# The oldest transformers / peft / accelerate / pydantic / click pyproject.toml allows, in a second
# venv (.venv-floor), with the fast trainer, backend and CLI tests.
floor-check:
	bash .ci/floor-check.sh

bench: setup
	$(VENV)/bin/python benchmarks/harness_overhead.py

clean:
	rm -rf runs .pytest_cache
