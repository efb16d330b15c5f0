# Two commands from a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup setup-postgres demo test test-all lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pin torch here: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[all,dev]"
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

clean:
	rm -rf $(VENV) build *.egg-info
