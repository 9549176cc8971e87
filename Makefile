# Two commands for a fresh machine: `make train` and `make test`. Each sets up everything first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dlbench-installed

.PHONY: train test test-fast setup data bench clean

train: data
	$(BIN)/dlbench train

# two workers (pytest-xdist), each test sent to whichever worker is free; see tests/conftest.py
test: data
	$(BIN)/python -m pytest -n 2 --dist worksteal

# the unmarked tests only: no end-to-end runs through the CLI (slow), no CUDA (gpu)
test-fast: data
	$(BIN)/python -m pytest -n 2 --dist worksteal -m "not slow and not gpu"

setup: $(STAMP)

# torch first, at the versions that lie in the local wheel cache (a plain `torch` would download GBs)
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -e '.[test]'
	touch $@

# Fashion-MNIST: configured root, system mirror, torchvision download, then Debian's package (as root)
data: setup
	$(BIN)/dlbench data fashion_mnist

bench: data
	$(BIN)/python scripts/bench_epoch.py

clean:
	rm -rf $(VENV)
