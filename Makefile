# blitz: `make run` sets up and trains the tutorial recipe; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_ROOT ?= $(if $(BLITZ_DATA_ROOT),$(BLITZ_DATA_ROOT),$(if $(wildcard ../shared/data/cifar10),../shared/data/cifar10,data))
RECIPE ?= tutorial
ARGS ?=

.PHONY: setup run test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	@# blitz was distributed as "blitz" until 2026-11-27: two installs would register every plugin twice
	$(PY) -m pip uninstall --quiet --yes blitz 2>/dev/null || true
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

run: setup
	$(VENV)/bin/blitz run --recipe $(RECIPE) --data-root $(DATA_ROOT) $(ARGS)

test: setup
	$(PY) -m pytest -q -n 2

bench: setup
	$(PY) bench/bench.py --data-root $(DATA_ROOT)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
