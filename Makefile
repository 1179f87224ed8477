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

.PHONY: setup setup-verl test test-slow lint docs bench demo demo-steps simulate leaderboard leaderboard-tiny predictions clean data bubblewrap gpu-check verl-check

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
# finds torch satisfied and never pulls the multi-GB CUDA build. The package and its extras then
# install with that torch held by a constraints file. $(1) is the venv.
define install_torch
	@test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	@if $(1)/bin/python -c "import torch" 2>/dev/null; then \
		echo "torch already installed in $(1)"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		$(1)/bin/python -m pip install "torch==$(TORCH_VERSION)"; \
	elif $(1)/bin/python -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/', timeout=5)" 2>/dev/null; then \
		$(1)/bin/python -m pip install "torch==$(TORCH_VERSION)" --extra-index-url $(TORCH_CPU_INDEX); \
	else \
		echo "the CPU index $(TORCH_CPU_INDEX) is unreachable: torch from the configured indexes"; \
		$(1)/bin/python -m pip install "torch==$(TORCH_VERSION)"; \
	fi
	@$(1)/bin/python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(1)/constraints.txt
endef

# The main environment: bots with dev tools and TRL (`trainer=trl` and its tests), and the
# official BOTS code, Trinity-RFT, beside it (--no-deps --target) as the oracle of
# tests/test_trinity_oracle.py. The test loads only its estimator and selector modules, which
# need numpy and torch (installed here), so its other dependencies and its Python bound (< 3.13)
# are left out.
$(STAMP): pyproject.toml
	$(call install_torch,$(VENV))
	$(BIN)/python -m pip install -e ".[dev,trl]" -c $(VENV)/constraints.txt
	$(BIN)/python -m pip install -q --upgrade --no-deps --ignore-requires-python --target $(VENV)/trinity "trinity-rft==0.6.0"
	@touch $(STAMP)

# verl pins transformers < 5.11 and TRL 1.16 needs a newer one, so verl's tests run in an
# environment of their own: bots with the verl extra (0.9.1), and verl 0.7.1 beside it
# (--no-deps --target) for its class_path factory.
VENV_VERL  ?= .venv-verl
VERL_STAMP := $(VENV_VERL)/.installed
$(VERL_STAMP): pyproject.toml
	$(call install_torch,$(VENV_VERL))
	$(VENV_VERL)/bin/python -m pip install -e ".[dev,verl]" -c $(VENV_VERL)/constraints.txt
	$(VENV_VERL)/bin/python -m pip install -q --no-deps --target $(VENV_VERL)/verl071 "verl==0.7.1"
	@touch $(VERL_STAMP)

setup-verl: $(VERL_STAMP)

test: setup setup-verl
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) -m "not slow"
	$(VENV_VERL)/bin/python -m pytest -q tests/integrations/test_verl.py tests/integrations/test_verl_fit.py

# BOTS inside verl 0.9.1 as a user launches it, on this CPU: verl's run_ppo, a local Ray, the task
# runner as a Ray actor and verl's own RayPPOTrainer.fit(), with only the GPU workers (actor and
# rollout server) stood in; an uninterrupted run against one resumed at an epoch boundary and
# mid-epoch (~6 min on 2 cores; `make test` runs it too).
verl-check: setup-verl
	$(VENV_VERL)/bin/python -m pytest -q tests/integrations/test_verl_fit.py

test-slow: setup
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) -m slow

lint: setup
	$(BIN)/ruff check bots_cli tests benchmarks
	$(BIN)/mypy bots_cli

# The documentation (docs/, navigation in mkdocs.yml) as a site in build/site; --strict turns every
# warning into a failure: a broken link or anchor, a page left out of the nav.
docs: setup
	$(BIN)/mkdocs build --strict -d build/site

bench: setup
	$(BIN)/python benchmarks/selector_overhead.py
	$(BIN)/python benchmarks/rewards.py
	$(BIN)/python benchmarks/rollout_throughput.py
	$(BIN)/python benchmarks/sample_efficiency.py --steps 300 -- train.eval_every=25   # ~30 min
	$(BIN)/python benchmarks/sample_efficiency.py --experiment dynamic_sampling          # ~40 min
	$(BIN)/python benchmarks/trainers.py --steps 100 -- train.eval_every=25

# On a GPU machine: a randomly initialised model of Qwen2.5-0.5B's shape trained for a few steps
# by trainer=native and trainer=trl in bf16 (step time, tokens/s, peak GPU memory; < 8 min).
# Without a GPU it is a dry run of the same recipe on a two-layer model.
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py

# The whole pipeline on the tiny world (CPU): check the tiny model (it ships in data/models/tiny;
# built only when its recipe changed), profile its references (shipped too: nothing left to do),
# train BOTS and uniform with the same budget and seed (conf/experiment/demo.yaml), evaluate the
# checkpoints, compare. DEMO_STEPS replaces the experiment's 400 steps; the other DEMO_* variables
# pass extra overrides to each step (the tests run the same recipe on a miniature).
ifndef DEMO_DIR
DEMO_DIR := outputs/demo/$(shell date +%Y-%m-%d_%H-%M-%S)
endif
DEMO_STEPS    ?=
DEMO_BUILD    ?=
DEMO_PROFILE  ?=
DEMO_TRAIN    ?=
DEMO_EVALUATE ?=

demo: setup demo-steps

demo-steps:
	$(BIN)/bots build-tiny $(DEMO_BUILD)
	$(BIN)/bots profile-refs domain=arith $(DEMO_PROFILE)
	$(BIN)/bots train -m experiment=demo hydra.sweep.dir=$(DEMO_DIR) \
		$(if $(DEMO_STEPS),train.steps=$(DEMO_STEPS)) $(DEMO_TRAIN)
	$(BIN)/bots evaluate run=$(DEMO_DIR)/0 $(DEMO_EVALUATE)
	$(BIN)/bots evaluate run=$(DEMO_DIR)/1 $(DEMO_EVALUATE)
	$(BIN)/bots report $(DEMO_DIR)

# The selection core alone, on the synthetic learner of `bots simulate` (seconds).
simulate: setup
	$(BIN)/bots simulate

# Every selector x 7 simulator worlds (references good, shuffled, none; drift; a pool mostly out of
# reach; feedback delay 2 and 8) x 5 seeds, ranked by TTB and BSF on steps and rollouts with the
# noise test; prints markdown tables, writes outputs/leaderboard/rank_by_world.png (~2.5 min of CPU).
leaderboard: setup
	$(BIN)/python benchmarks/leaderboard.py

# The leaderboard's second stage: uniform and its best four on rollouts, real GRPO on the tiny
# world, 3 seeds x 400 steps, compared on steps, rollouts and tokens (~30 min on 2 CPU cores).
leaderboard-tiny: setup
	$(BIN)/python benchmarks/sample_efficiency.py --experiment leaderboard_tiny --axes steps rollouts tokens

# How well each selector predicts the pass rate of the tasks it picks (MAE, calibration) beside
# two naive predictors, and a grid over BOTS' λ, ρ and prior, on 3 simulator worlds x 5 seeds;
# prints markdown tables (~3 min of CPU).
predictions: setup
	$(BIN)/python benchmarks/predictions.py

# Regenerate the shipped task tables under data/ (seeded: the same files every time).
data: setup
	for d in arith logic math code; do $(BIN)/bots make-data domain=$$d || exit 1; done

clean:
	rm -rf $(VENV) $(VENV_VERL) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
