# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamp files: reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/ohp run audio/ --out transcripts/ --db sqlite:///ohp.db

# The tests on every core (pytest-xdist), whole files to a worker: a file's module fixtures (its Ray cluster,
# its served site, its transcribed clips) are made once; the two Ray files, a cluster each, run side by side. One more
# worker than the cores: the tests wait on the commands, the Ray cluster and the browser they start (bench/RESULTS.md,
# "The tests' time"). The files with recogniser runs go first (tests/conftest.py). PYTEST_WORKERS=0 runs
# everything in one process; PYTEST_ARGS adds pytest options or picks tests.
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Lint, layout and types: ruff over the package, the tests and the benchmarks; mypy over the package.
lint: $(VENV)/.installed-test
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/ruff format --check pipeline tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	$(BIN)/python bench/make_longform_en.py
	$(BIN)/python bench/asr.py

clean:
	rm -rf $(VENV) build *.egg-info
