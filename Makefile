# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv from the pinned lock file on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench lock clean

$(STAMP): pyproject.toml examples/pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The library, and the examples (their own distribution: the demo's commands plug
	# into the `tenancy` command line wherever they are installed).
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test,dev,docs,bench]' -e ./examples
	# OPA's own Go evaluator, the reference engine for policy tests and engine parity.
	# Its metadata asks for Python >= 3.14; the py3-none wheel runs on 3.11.
	$(BIN)/pip install --quiet --ignore-requires-python -c requirements.lock opa-golib-python-bindings
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tenancy demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff format --check tenancy examples tests bench
	$(BIN)/ruff check tenancy examples tests bench
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir .site

bench: $(STAMP)
	$(BIN)/python bench/edge.py

# Re-resolve the pinned versions (run after changing dependencies in pyproject.toml).
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet -e '.[test,dev,docs,bench]' -e ./examples
	.lockvenv/bin/pip install --quiet --ignore-requires-python opa-golib-python-bindings
	.lockvenv/bin/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV)
