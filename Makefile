# The README's quick start is exactly `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
comma := ,
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint browser postgres clean lock mutation

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Every install comes from the lock (exact versions of every package, direct or not), then the
# project itself without resolving anything again. `make lock` refreshes the lock.
LOCK := requirements/lock.txt
EXTRAS := test,bench,hf,glmnet,postgres,mutation

$(STAMP): pyproject.toml setup.py $(wildcard sparse_probe/solvers/*.c sparse_probe/solvers/*.h) $(LOCK) | $(PY)
	$(PIP) install --quiet -r $(LOCK)
	$(PIP) install --quiet --no-deps -e ".[$(EXTRAS)]"
	$(PIP) check
	touch $(STAMP)

# Re-resolve the lock with uv from pyproject.toml (plus requirements/lock-constraints.txt).
lock: | $(PY)
	$(PIP) install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml $(foreach e,$(subst $(comma), ,$(EXTRAS)),--extra $(e)) \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		-c requirements/lock-constraints.txt --no-emit-package sparse-probe --upgrade -o $(LOCK)

# Debian's chromium + chromedriver for the browser tests (selenium); installed only when missing.
browser:
	@if command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "warning: could not install chromium; browser tests will be skipped"; \
	else echo "note: chromium/chromedriver missing and not root; browser tests will be skipped"; fi

# Debian's PostgreSQL server (initdb, pg_ctl) for the task server's PostgreSQL tests, which
# start their own throwaway cluster; installed only when missing.
postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
		|| echo "warning: could not install postgresql; PostgreSQL tests will be skipped"; \
	else echo "note: postgresql missing and not root; PostgreSQL tests will be skipped"; fi

demo: $(STAMP)
	$(VENV)/bin/sparse-probe demo --out runs/demo

# One torch thread per process: the tests run torch beside server subprocesses and worker
# threads, and oversubscribed OpenMP threads slow everything down by an order of magnitude.
test: $(STAMP) browser postgres lint
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest

# Unit tests only (no end-to-end runs, no browser), for quick loops: well under a minute.
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -m "not slow and not browser" -q

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# ruff, plus the layering contracts (pyproject.toml [tool.importlinter]): the stages meet only
# in run-directory files.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Mutation testing (tools/mutation.py, mutmut) of the modules that decide verdicts, money, access
# and math, each against its own tests; not part of `make test`. One module:
# `make mutation MODULE=tasks/ledger.py`.
MODULE ?=
mutation: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) tools/mutation.py $(if $(MODULE),--module $(MODULE))

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
