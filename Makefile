# Two entry points for a fresh clone (see README):
#   make demo   set up .venv, then train and evaluate MSANet on the offline toy benchmark
#   make test   set up .venv, then lint and run every test and every notebook (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint lab clean-outputs

setup: $(STAMP)

# Re-installs only when pyproject.toml changes. torch is a range (torch>=2.4): pip picks the
# build that fits the machine (CPU, CUDA or MPS).
$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is needed, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,notebooks]"
	touch $(STAMP)

demo: setup
	$(BIN)/msanet-demo

lint: setup
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/pytest tests
	$(BIN)/msanet-data generate toy
	MSANET_FAST=1 $(BIN)/pytest -p no:cacheprovider --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=600 notebooks/

lab: setup
	$(BIN)/jupyter lab notebooks/

clean-outputs:
	rm -rf outputs runs
