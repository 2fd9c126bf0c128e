# The two commands of the README's quick start:
#   make demo   set up, then run the main job on the built-in demo dataset
#   make test   set up (with the test tools), then run the whole test suite
# and for contributors:
#   make lint       ruff, mypy on the contract, the import rules (docs/architecture.md)
#   make test-fast  the tests not marked slow (no llama.cpp build, no model stand-ins)
VENV ?= .venv

.PHONY: setup setup-test demo test test-fast lint bench screenshots

setup:
	bin/setup

setup-test:
	bin/setup --test

demo: setup
	$(VENV)/bin/mirdeck demo

test: setup-test
	$(VENV)/bin/python -m pytest -q -n 2

test-fast: setup-test
	$(VENV)/bin/python -m pytest -q -n 2 -m "not slow"

lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup-test
	for b in engine dsp rhythm_timbral essentia_tf audiobox dashboard exports; do $(VENV)/bin/python -m benchmarks.$$b || exit 1; done

# The README's screenshots are the dashboard's snapshot tests' SVGs (tests/dashboard/test_snapshots.py).
screenshots:
	for f in tests/dashboard/__snapshots__/test_snapshots/test_*.svg; do \
	  n=$$(basename $$f .svg); cp $$f docs/screenshots/$${n#test_}.svg; done
