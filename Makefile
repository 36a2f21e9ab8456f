# The README's quick start is exactly `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint browser clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e ".[test,bench,hf]"
	touch $(STAMP)

# Debian's chromium + chromedriver for the browser tests (selenium); installed only when missing.
browser:
	@if command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "warning: could not install chromium; browser tests will be skipped"; \
	else echo "note: chromium/chromedriver missing and not root; browser tests will be skipped"; fi

demo: $(STAMP)
	$(VENV)/bin/sparse-probe demo --out runs/demo

# One torch thread per process: the tests run torch beside server subprocesses and worker
# threads, and oversubscribed OpenMP threads slow everything down by an order of magnitude.
test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
