# Two commands a new user needs: `make demo` (the main job) and `make test`.
# Both create .venv on first use. torch is installed first and pinned to the CPU build that
# this kind of machine keeps on disk, so pip never pulls a multi-GB CUDA build on a CPU machine.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,llamacpp,train,lmeval

.PHONY: setup demo test bench clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

demo: setup
	$(VENV)/bin/tourney demo

test: setup
	$(VENV)/bin/pytest -q

bench: setup
	$(VENV)/bin/python benchmarks/harness_overhead.py

clean:
	rm -rf runs .pytest_cache
