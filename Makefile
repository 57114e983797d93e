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

# Per-cell timeout of every execution in `make test` (nbval, the book build, the Colab-style test):
# far above the slowest cell (about 30 s), far below CI's limit, so a stalled kernel fails the run
# in minutes and names the cell. nbval runs the notebooks on both cores, one notebook per worker.
CELL_TIMEOUT ?= 180
NBVAL_WORKERS ?= 2
export BOOK_CELL_TIMEOUT := $(CELL_TIMEOUT)

.PHONY: book test unit notebooks build-strict build-from-nbval browser screenshots chromium env \
        soak colab-check pdf poppler results bench clean

env: $(STAMP)

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build --keep-going .
	@echo "HTML book: _build/html/index.html"

# Every check CI runs, each step timed (the times are printed at the end). nbval executes every
# notebook once; the strict build renders what nbval executed instead of executing it again.
define timed
	@start=$$(date +%s); $(MAKE) --no-print-directory $(1) || exit 1; \
	  echo "  $(1): $$(( $$(date +%s) - start )) s" >> _build/test-times.txt
endef

test:
	@mkdir -p _build; echo "make test, time of each step:" > _build/test-times.txt
	$(call timed,env)
	$(call timed,unit)
	$(call timed,notebooks)
	$(call timed,build-from-nbval)
	$(call timed,browser)
	@cat _build/test-times.txt

unit: $(STAMP)
	$(BIN)/python -m pytest tests/ --ignore=tests/browser --ignore=tests/pdf -q -p no:cacheprovider \
	  -n $(NBVAL_WORKERS)

# nbval executes every notebook (its asserts are the checks) and keeps each executed notebook in
# _build/executed/ for the build
notebooks: $(STAMP)
	rm -rf _build/executed
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=$(CELL_TIMEOUT) \
	  -n $(NBVAL_WORKERS) --dist loadfile -p tests.executed_notebooks -p tests.kernel_start \
	  --executed-dir _build/executed -q -p no:cacheprovider $(NOTEBOOKS)

# the strict build from a clean execution cache: it executes every notebook itself
build-strict: $(STAMP)
	rm -rf _build/.jupyter_cache
	$(BIN)/jupyter-book build --all -W -n --keep-going .
	@echo "HTML book: _build/html/index.html"

# the strict build from the notebooks nbval has just executed (a fresh cache holds exactly those;
# a notebook nbval did not execute is executed by the build). --all re-reads every page, so no page
# keeps outputs from an earlier run because its own source did not change.
build-from-nbval: $(STAMP)
	$(BIN)/python tests/executed_notebooks.py _build/executed _build/.jupyter_cache
	$(BIN)/jupyter-book build --all -W -n --keep-going .
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

# the whole book as one PDF (_build/pdf/book.pdf): the single-page HTML build printed by Debian's
# chromium, then checked (tests/pdf). It renders the notebooks the last nbval run executed
# (`make test` or `make notebooks`); without them the build executes every notebook itself.
pdf: $(STAMP) chromium poppler
	$(BIN)/python tests/executed_notebooks.py _build/executed _build/.jupyter_cache
	$(BIN)/jupyter-book build --all --builder singlehtml -W -n --keep-going .
	cd tests/browser && ../../$(BIN)/python book_pdf.py
	$(BIN)/python -m pytest tests/pdf -q -p no:cacheprovider -rs
	@echo "PDF book: _build/pdf/book.pdf"

# full-mode and benchmark numbers that chapters quote: run again the command recorded in every
# results/*.json (slow; `.venv/bin/python -m utils.results` lists them)
results: $(STAMP)
	$(BIN)/python -m utils.results --run

# Debian's poppler-utils (pdftotext, pdfimages) for the PDF checks
poppler:
	@command -v pdftotext >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null; } || \
	  echo "WARNING: could not install poppler-utils: the PDF checks will be SKIPPED"

# not part of `make test`: execute every notebook 20 times headless beside a busy core, count stalls
soak: $(STAMP)
	$(BIN)/python tests/soak_notebooks.py --runs 20 --cell-timeout 60 --busy 1

# not part of `make test`: each chapter alone, as on Colab, with the newest releases of the packages
# Colab brings (see tests/colab_check.py)
colab-check: $(STAMP)
	$(BIN)/python tests/colab_check.py

clean:
	rm -rf _build

# benchmark extras (requirements-bench.txt, --no-deps keeps the pinned torch) and the per-example
# norms benchmark, which writes results/per_example_bench.json for chapter 6 (about 20 minutes
# on a quiet 2-core machine; run it on a quiet one: the ratios move with other jobs)
BENCH_STAMP := $(VENV)/.bench-requirements-installed

$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-bench.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench_per_example.py --rounds 200 --slow-every 40 --runs 3 --threads 1 2 --save
