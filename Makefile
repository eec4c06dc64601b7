# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist
LATENTMAP := $(BIN)/latentmap

.PHONY: install data demo example-report test test-all lint typecheck mutate notebooks docs docs-screenshots checkpoints support-sets benchmarks bench bench-quick clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,pythae,docs,diffusers]'
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST comes from Debian's package when the files are missing and apt-get is there.
data:
	@if [ -f $(FMNIST_DIR)/t10k-images-idx3-ubyte.gz ] || [ -n "$$LATENTMAP_DATA_DIR" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else echo "Fashion-MNIST missing: install Debian's dataset-fashion-mnist or set LATENTMAP_DATA_DIR"; fi

demo: install data
	$(LATENTMAP) demo

# The committed example report in reports/demo.
example-report: install data
	$(LATENTMAP) demo --out reports/demo --overwrite

test: install data
	$(BIN)/python -m pytest -q

test-all: install data
	LATENTMAP_SLOW=1 $(BIN)/python -m pytest -q

# ruff over the whole tree with the rules of pyproject.toml's [tool.ruff] (CI runs it after `make test`), then mypy.
lint: install
	$(BIN)/ruff check .
	$(MAKE) typecheck

# mypy over latentmap/ and cli/ with pyproject.toml's [tool.mypy] (every function annotated; the modules of its
# remaining-sweep list are skipped). mypy comes with the dev extra.
typecheck: install
	$(BIN)/python -m mypy latentmap cli

# The notebooks of examples/, each run top to bottom in a fresh python3 kernel (also part of `make test`).
notebooks: install data
	$(BIN)/python -m pytest -q tests/project/test_notebook.py

# The documentation site (docs/, mkdocs.yml) into site/, offline; any warning fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

# The screenshots of the committed example reports that the pages of docs/reading/ show (headless chromium).
docs-screenshots: install
	$(BIN)/python tests/project/test_browser.py docs/img

# Mutation testing of maps/, evaluation/, support/ and stats.py (not in CI; docs/mutation.md): mutmut tests a
# seeded sample of MUTANTS mutants, each with the tests that reach its function; MUTATE_JOBS at once, at nice 19.
# Summary and survivors in benchmarks/results/mutation.json. Measured: 20 s a mutant with 2 jobs on 2 shared
# cores (load average 14), so 400 mutants take about 2.5 hours.
MUTANTS ?= 400
SEED ?= 0
MUTATE_JOBS ?= 2
mutate: install data
	$(BIN)/python -c 'import mutmut' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[mutate]'
	nice -n 19 $(BIN)/python tools/mutate.py --mutants $(MUTANTS) --seed $(SEED) --jobs $(MUTATE_JOBS)

# How the shipped checkpoints were made (CPU, 2 cores: about 10 minutes each). Commands refuse to write into
# checkpoints/ and support_sets/ unless LATENTMAP_WRITE_SHIPPED=1, as these two targets set it.
checkpoints: export LATENTMAP_WRITE_SHIPPED = 1
checkpoints: install data
	$(LATENTMAP) train vae --latent-dim 32 --seed 0 --epochs 10 --out checkpoints/fmnist-vae-a --overwrite --no-progress
	OMP_NUM_THREADS=1 $(LATENTMAP) train vae --latent-dim 32 --seed 1 --epochs 10 --out checkpoints/fmnist-vae-b --overwrite --no-progress
	OMP_NUM_THREADS=1 $(LATENTMAP) train split-vae --latent-dim 64 --seed 0 --epochs 10 --out checkpoints/fmnist-svae --overwrite --no-progress
	OMP_NUM_THREADS=1 $(LATENTMAP) train gan --latent-dim 64 --channels 64,128 --inverter-channels 32,64 --batch-size 64 --epochs 5 --seed 0 --inverter-steps 3000 --inverter-eval-samples 1000 --out checkpoints/fmnist-gan --overwrite
	OMP_NUM_THREADS=1 $(LATENTMAP) train stylegan --latent-dim 64 --channels 64,32,16 --batch-size 64 --epochs 3 --seed 0 --inverter-steps 2000 --inverter-eval-samples 1000 --out checkpoints/fmnist-stylegan --overwrite
	OMP_NUM_THREADS=1 $(LATENTMAP) train vae --dataset 'fashion-mnist?pad=2' --latent-dim 32 --seed 2 --epochs 4 --out checkpoints/fmnist-vae-32 --overwrite --no-progress
	$(LATENTMAP) train kl --channels 16,32,32 --latent-channels 4 --train-images 40000 --epochs 1 --batch-size 64 --seed 0 --out checkpoints/fmnist-kl-a --overwrite --no-progress
	$(LATENTMAP) train kl --channels 16,32,32 --latent-channels 4 --train-images 40000 --epochs 1 --batch-size 64 --seed 1 --out checkpoints/fmnist-kl-b --overwrite --no-progress

# How the shipped support set was built: the Split-VAE's sectors, sized for the shipped models.
support-sets: export LATENTMAP_WRITE_SHIPPED = 1
support-sets: install data
	$(LATENTMAP) support-set build --model checkpoints/fmnist-svae --dataset fashion-mnist --split train \
	  --for-models checkpoints/fmnist-vae-a,checkpoints/fmnist-vae-b,checkpoints/fmnist-svae \
	  --seed 0 --gain-images 2000 --out support_sets/fmnist-svae --overwrite --no-progress

# The benchmark suite: each script prints a table of ratios measured side by side, records the machine in
# benchmarks/results/NAME.json and exits non-zero when a target is missed; every script runs, then make fails
# if any missed. bench-quick: smoke runs on small sizes (results in benchmarks/results/*_quick.json).
BENCHMARKS := bench_fit bench_memory bench_infogain bench_eval bench_loader bench_scale
bench: install data
	@status=0; for b in $(BENCHMARKS); do \
	  $(BIN)/python benchmarks/$$b.py $$( [ $$b = bench_memory ] && echo --cli ) || status=1; done; exit $$status

bench-quick: install data
	@status=0; for b in bench_fit bench_infogain bench_eval bench_scale; do \
	  $(BIN)/python benchmarks/$$b.py --quick || status=1; done; \
	  $(BIN)/python benchmarks/bench_memory.py --sizes 2000,20000,200000 || status=1; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache site
