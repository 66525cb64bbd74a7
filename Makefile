# engan developer entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# CPU boxes take the local CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: setup demo test test-quick bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)" -e ".[train,eval,dev,video,openvino,ray]" nncf
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q benchmarks --quick

bench: setup
	$(PY) -m pytest -q -s benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache demo_out
