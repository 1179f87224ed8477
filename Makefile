# bots: `make demo` runs the main job on the embedded default, `make test` runs the test suite.
# Both set up .venv first when needed, so they work on a fresh clone with nothing installed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# Where the CPU build of torch lives (used only on machines without an NVIDIA GPU).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
PYTEST_WORKERS ?= 2
STAMP  := $(VENV)/.installed

.PHONY: setup test test-slow lint bench demo demo-steps simulate clean data bubblewrap gpu-check

setup: $(STAMP) bubblewrap

# The code sandbox isolates programs with bubblewrap. Install it where we can (root + apt-get);
# never fail setup over it: without it the sandbox falls back to resource limits and says so.
bubblewrap:
	@command -v bwrap >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			(apt-get install -y -q bubblewrap >/dev/null 2>&1 || \
			 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1)) \
			&& echo "installed bubblewrap" || echo "could not install bubblewrap (the code sandbox will use resource limits only)"; \
		else \
			echo "bubblewrap (bwrap) not found: install the package 'bubblewrap' for the isolated code sandbox"; \
		fi; }

# Torch comes first and, without a GPU, from the CPU index: installing the package later then
# finds torch satisfied and never pulls the multi-GB CUDA build. The package and its extras (dev,
# and trl for `trainer=trl` and its tests) install with that torch held by a constraints file.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "torch already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		$(BIN)/python -m pip install "torch==$(TORCH_VERSION)"; \
	else \
		$(BIN)/python -m pip install "torch==$(TORCH_VERSION)" --extra-index-url $(TORCH_CPU_INDEX); \
	fi
	@$(BIN)/python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/constraints.txt
	$(BIN)/python -m pip install -e ".[dev,trl]" -c $(VENV)/constraints.txt
	@touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) -m slow

lint: setup
	$(BIN)/ruff check bots_cli tests benchmarks
	$(BIN)/mypy bots_cli

bench: setup
	$(BIN)/python benchmarks/selector_overhead.py
	$(BIN)/python benchmarks/rewards.py
	$(BIN)/python benchmarks/rollout_throughput.py
	$(BIN)/python benchmarks/sample_efficiency.py --steps 300 -- train.eval_every=25   # ~30 min
	$(BIN)/python benchmarks/trainers.py --steps 100 -- train.eval_every=25

# On a GPU machine: a randomly initialised model of Qwen2.5-0.5B's shape trained for a few steps
# by trainer=native and trainer=trl in bf16 (step time, tokens/s, peak GPU memory; < 8 min).
# Without a GPU it is a dry run of the same recipe on a two-layer model.
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py

# The whole pipeline on the tiny world (CPU): build the world, profile its references, train BOTS
# and uniform with the same budget and seed, evaluate the checkpoints, compare. The DEMO_*
# variables pass extra overrides to each step (the tests run the same recipe on a miniature).
ifndef DEMO_DIR
DEMO_DIR := outputs/demo/$(shell date +%Y-%m-%d_%H-%M-%S)
endif
DEMO_STEPS    ?= 400
DEMO_SEED     ?= 0
DEMO_BUILD    ?=
DEMO_PROFILE  ?=
DEMO_TRAIN    ?=
DEMO_EVALUATE ?=

demo: setup demo-steps

demo-steps:
	$(BIN)/bots build-tiny $(DEMO_BUILD)
	$(BIN)/bots profile-refs domain=arith $(DEMO_PROFILE)
	$(BIN)/bots train -m selector=bots,uniform seed=$(DEMO_SEED) train.steps=$(DEMO_STEPS) \
		train.live=false hydra.sweep.dir=$(DEMO_DIR) $(DEMO_TRAIN)
	$(BIN)/bots evaluate run=$(DEMO_DIR)/0 $(DEMO_EVALUATE)
	$(BIN)/bots evaluate run=$(DEMO_DIR)/1 $(DEMO_EVALUATE)
	$(BIN)/bots report $(DEMO_DIR)

# The selection core alone, on the synthetic learner of `bots simulate` (seconds).
simulate: setup
	$(BIN)/bots simulate

# Regenerate the shipped task tables under data/ (seeded: the same files every time).
data: setup
	for d in arith logic math code; do $(BIN)/bots make-data domain=$$d || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
