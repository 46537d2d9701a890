# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The Makefile pins the torch it installs (a CPU build here); the package itself accepts a range.
TORCH ?= torch==2.13.0

.PHONY: install test lint pytest demo bench peers bench-peers results-glyphs results-small1 results-conditional results-warp results-free results-between results-noise results-noise-aug results-caltech clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=23" "setuptools>=64" wheel
	$(BIN)/pip install -q "$(TORCH)" pluggy numpy pillow tqdm pytest ruff ninja "torchmetrics>=1.0" matplotlib tensorboard
	$(BIN)/pip install -q --no-build-isolation -e . "$(TORCH)"
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check metagan plugins tests benchmarks setup.py

pytest: install
	$(BIN)/python -m pytest -q

test: lint nvcc-check pytest

DEMO_OUT ?= runs/demo
demo: install  # --overwrite: a second `make demo` replaces the first demo run
	$(BIN)/metagan train --config configs/demo.toml run.out=$(DEMO_OUT) --overwrite
	$(BIN)/metagan adapt --checkpoint $(DEMO_OUT)/checkpoint.pt --unseen 8 --shots 5 --num 8 --out $(DEMO_OUT)/adapted

bench: install
	$(BIN)/metagan bench

# The peers (learn2learn, higher) for benchmarks/peers.py: never part of `make install`.
peers: install
	bash benchmarks/install_peers.sh $(BIN)/python

bench-peers: peers
	$(BIN)/python benchmarks/peers.py

# The tables of docs/results.md: meta-train every algorithm, fit the feature extractor, evaluate.
results-glyphs: install
	BIN=$(BIN) benchmarks/results.sh glyphs

results-small1: install
	BIN=$(BIN) benchmarks/results.sh small1

results-conditional: install
	BIN=$(BIN) benchmarks/results.sh conditional

results-warp: install
	BIN=$(BIN) benchmarks/results.sh warp

results-free: install
	BIN=$(BIN) JOBS=1 benchmarks/results.sh free eval

# the `between` generator (registered shots, a bank of real deformations) beside the free rows
results-between: install
	BIN=$(BIN) benchmarks/results_between.sh

# the noise-only Meta-GAN (MLP G/D, Reptile) against finetune and scratch, curves to step 50
results-noise: install
	BIN=$(BIN) benchmarks/results_noise.sh

# the same with task augmentation (configs/noise_only_aug.toml), K = 5, curves to step 20
results-noise-aug: install
	BIN=$(BIN) CONFIG=configs/noise_only_aug.toml OUT=runs/results/noise_aug \
	  FEATURES_FROM=runs/results/noise SHOTS=5 CURVE=20 benchmarks/results_noise.sh

results-caltech: install
	BIN=$(BIN) benchmarks/results.sh caltech

clean:
	rm -rf build *.egg-info runs .pytest_cache .ruff_cache

include csrc/nvcc_check.mk
