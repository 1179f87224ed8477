"""`AdarftSelector`: AdaRFT's adaptive curriculum (arXiv 2504.05520; code uscnlp-lime/verl).

Every task has a fixed offline difficulty d_k in [0, 100], here d_k = 100·(1 − r_k) with r_k a
reference model's pass rate (the paper: 100 minus the pass rate in percent of a stronger model,
Qwen2.5-Math-7B, over 128 samples; `reference: strong` by default). A target difficulty T moves
with the batch's mean reward R:

    R_t = Σ_{k∈B_t} s_k / Σ_{k∈B_t} n_k
    T  ← clip(T + η·tanh(α·(R_t − β)), d_min, d_max)          T_0 = `initial_difficulty`

and each batch is the B tasks whose difficulty is nearest the target, |d_k − T| smallest, among
the tasks whose feedback is not pending. β is the target reward, α the sensitivity, η the step.

Departure from the official code (docs/rivals.md): ties in |d_k − T| are broken at random. The
code's argsort breaks them by position, so while T stays put it serves the same batch again;
reference pass rates from a few rollouts tie often, so this matters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bots_cli.checks import check_range, check_rates
from bots_cli.selection.base import Selector
from bots_cli.selection.rivals import check_same_settings
from bots_cli.selection.topk import smallest_k


def offline_difficulty(pass_rates: np.ndarray) -> np.ndarray:
    """AdaRFT's difficulty scale: 100·(1 − pass rate), 0 the easiest, 100 the hardest."""
    return 100.0 * (1.0 - pass_rates)


class AdarftSelector(Selector):
    """AdaRFT: the tasks whose offline difficulty is nearest a target moved by the reward."""

    name = "adarft"

    def __init__(self, n_tasks: int, reference: Any, *, target_reward: float,
                 sensitivity: float, step_size: float, min_difficulty: float,
                 max_difficulty: float, initial_difficulty: float, seed: int = 0) -> None:
        """`reference`: the pass rates r_k the difficulty is made of. Hyperparameters as in
        conf/selector/adarft.yaml, which holds their defaults."""
        super().__init__(n_tasks, seed)
        self.difficulty = offline_difficulty(check_rates("reference", reference, self.n_tasks))
        self.target_reward = check_range("target_reward (β, the batch mean reward aimed at)",
                                         target_reward, 0.0, 1.0)
        self.sensitivity = check_range("sensitivity (α of tanh(α·(R − β)))", sensitivity, 0.0,
                                       lo_open=True)
        self.step_size = check_range("step_size (η, difficulty points per step at most)",
                                     step_size, 0.0, lo_open=True)
        self.min_difficulty = check_range("min_difficulty (lowest target difficulty)",
                                          min_difficulty, 0.0, 100.0)
        self.max_difficulty = check_range("max_difficulty (highest target difficulty)",
                                          max_difficulty, self.min_difficulty, 100.0)
        self.initial_difficulty = check_range(
            f"initial_difficulty (T_0, in [min_difficulty, max_difficulty] = "
            f"[{self.min_difficulty}, {self.max_difficulty}])", initial_difficulty,
            self.min_difficulty, self.max_difficulty)
        self.target = self.initial_difficulty  # T

    def metrics(self) -> dict[str, float]:
        """`selector/target_difficulty`: T after the last update."""
        return {"selector/target_difficulty": self.target}

    def _select(self, batch_size: int) -> np.ndarray:
        d = np.subtract(self.difficulty, self.target)
        np.abs(d, out=d)
        d[self.pending] = np.inf
        return smallest_k(d, batch_size, self.rng)

    def _observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        reward = float(successes.sum() / trials.sum())
        moved = self.target + self.step_size * np.tanh(
            self.sensitivity * (reward - self.target_reward))
        self.target = float(np.clip(moved, self.min_difficulty, self.max_difficulty))

    def _hparams(self) -> dict[str, Any]:
        return {"target_reward": self.target_reward, "sensitivity": self.sensitivity,
                "step_size": self.step_size, "min_difficulty": self.min_difficulty,
                "max_difficulty": self.max_difficulty,
                "initial_difficulty": self.initial_difficulty}

    def _extra_state(self) -> dict[str, Any]:
        return {"hparams": self._hparams(), "target": self.target}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        check_same_settings(state["hparams"], self._hparams())
        self.target = float(state["target"])
