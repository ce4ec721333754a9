# Two commands on a fresh machine:
#   make demo   create .venv, install spmcli, run it on sample_images/ (results in demo_output/)
#   make test   create .venv, install spmcli with its test tools, run lint and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
OUT ?= demo_output

.PHONY: demo test lint bench install clean

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

test: lint
	$(BIN)/python -m pytest -q

bench: $(BIN)/spmcli
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench_omp.py

clean:
	rm -rf $(VENV) $(OUT)
