# The README's two commands: `make book` builds the HTML, `make test` runs every check CI runs.
# Both create the virtual environment from requirements.txt when it is missing or out of date.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.requirements-installed
NOTEBOOKS := $(wildcard chapters/*.ipynb book/*.ipynb)

# no progress bars in built pages or test logs (never set MPLBACKEND here: it would override the
# notebooks' inline backend and drop every figure from the HTML)
export BOOK_PROGRESS := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: book test unit notebooks build-strict browser screenshots chromium env clean bench

env: $(STAMP)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build --keep-going .
	@echo "HTML book: _build/html/index.html"

test: unit notebooks build-strict browser

unit: $(STAMP)
	$(BIN)/python -m pytest tests/ --ignore=tests/browser -q -p no:cacheprovider

notebooks: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env -q -p no:cacheprovider $(NOTEBOOKS)

build-strict: $(STAMP)
	$(BIN)/jupyter-book build -W -n --keep-going .
	@echo "HTML book: _build/html/index.html"

# the browser suite runs against the freshly built book, offline
browser: $(STAMP) chromium
	$(BIN)/python -m pytest tests/browser -q -p no:cacheprovider -rs

# one full-page PNG per page of the book into _build/screenshots/ (needs a built book)
screenshots: $(STAMP) chromium
	$(BIN)/python tests/browser/site_pages.py

# Debian's chromium for the browser tests; when it cannot be installed the suite skips, loudly
chromium:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "WARNING: could not install chromium: the browser tests will be SKIPPED"

clean:
	rm -rf _build

# benchmark extras (requirements-bench.txt, --no-deps keeps the pinned torch) and the per-example
# norms benchmark, which writes results/per_example_bench.json for chapter 6 (about 40 minutes
# on a busy 2-core machine)
BENCH_STAMP := $(VENV)/.bench-requirements-installed

$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-bench.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench_per_example.py --rounds 60 --slow-every 20 --threads 1 2 --save
