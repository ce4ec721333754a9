# Two commands on a fresh machine:
#   make demo   create .venv, install spmcli, run it on sample_images/ (results in demo_output/)
#   make test   create .venv, install spmcli with its test tools (and Debian's chromium when
#               missing), run lint and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
OUT ?= demo_output

.PHONY: demo test lint browser bench install clean

$(BIN)/spmcli: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(BIN)/spmcli

install: $(BIN)/spmcli

demo: $(BIN)/spmcli
	bash scripts/demo.sh $(BIN)/spmcli $(OUT)

lint: $(BIN)/spmcli
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

browser:
	bash scripts/ensure_chromium.sh

test: lint browser
	$(BIN)/python -m pytest -q

bench: $(BIN)/spmcli
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_omp.py

clean:
	rm -rf $(VENV) $(OUT)
