# Every target sets up .venv first when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo lint test test-fast bench report clean

setup: $(STAMP)

# torch==2.13.0 is installed in the same step as everything else so pip never swaps in a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0" -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/xraydenoise demo --out demo_output

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/mypy

test: $(STAMP)
	sh tests/setup_system_deps.sh
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/run_benchmarks.py --out benchmarks/results

report: $(STAMP)
	$(BIN)/xraydenoise report --out docs/results

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache
