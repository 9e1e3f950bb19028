# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv from the pinned lock file on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench lock clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tenancy demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check tenancy services tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/edge.py

# Re-resolve the pinned versions (run after changing dependencies in pyproject.toml).
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet -e '.[test,dev]'
	.lockvenv/bin/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV)
