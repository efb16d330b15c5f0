# Two commands from a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup setup-postgres demo test test-all lint docs clean bench bench-quick bench-full setup-bench

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pin torch here: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[all,dev,docs]"
	$(PY) -m pip install -q -e tests/plugin_pkg
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nnblocks train recipes/numbers_de.yaml

test: $(STAMP)
	$(PY) -m pytest -q

# The PostgreSQL server for the shared-run-table tests (Debian/Ubuntu); without it those
# tests skip and say why. `make test-all` tries it and goes on if it cannot install.
setup-postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y postgresql; }

test-all: $(STAMP)
	-$(MAKE) setup-postgres
	$(PY) -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check nnblocks tests benchmarks
	$(VENV)/bin/ruff format --check nnblocks tests benchmarks
	$(VENV)/bin/mypy nnblocks

# The documentation site: every page under docs/, reference pages generated from the
# registry; --strict fails on a broken link or a missing reference.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# Benchmarks: one thread per process, ratios measured side by side (benchmarks/run_all.py).
BENCH := OMP_NUM_THREADS=1 PYTHONPATH=$(CURDIR) $(PY) benchmarks/run_all.py

# `make bench` measures against the peers, so it installs them first (once); bench-quick
# is a smoke run without them (a missing peer is listed as skipped).
BENCH_STAMP := $(VENV)/.bench-installed

bench: $(BENCH_STAMP)
	$(BENCH)

bench-quick: $(STAMP)
	$(BENCH) --quick --out benchmarks/results/quick.md

bench-full: $(BENCH_STAMP)
	$(BENCH) --full

# The peers pull another torch build and torchvision unless torch is pinned.
setup-bench: $(BENCH_STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/bench-constraints.txt
	$(PY) -m pip install -q -c $(VENV)/bench-constraints.txt -e ".[bench]"
	$(PY) -m pip uninstall -y -q torchvision || true
	touch $(BENCH_STAMP)

clean:
	rm -rf $(VENV) build site *.egg-info
