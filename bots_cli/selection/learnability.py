"""`LearnabilitySelector`: prioritise learnability p(1 − p) (LILO, "Learning to Reason at the
Frontier of Learnability", Foster et al., arXiv 2502.12272, NeurIPS 2025).

A task's learnability is the variance p_k(1 − p_k) of a success under its current pass rate:
zero when the policy always or never solves it, largest at p_k = 1/2. Here p_k is the recent
pass rate of the task's own groups, an exponential moving average with weight μ on the past:

    first group of k : p_k ← r_k                       r_k = s_k / n_k
    later groups     : p_k ← μ·p_k + (1 − μ)·r_k       (μ = 0: the last group's rate)
    never observed   : p_k = p0

`select(B)` draws E = round(ε·B) tasks uniformly among those whose feedback is not pending (the
uniform share of sampling for learnability, which keeps stale estimates from freezing a task
out), then the B − E others with the largest p_k(1 − p_k) (ties at random).

Departure (docs/rivals.md): the paper estimates p_k with fresh rollouts of a sampled candidate
set before each training batch and trains on the most learnable of them; this selector spends
no extra rollouts and ranks by the pass rate of each task's past groups instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bots_cli.checks import check_range
from bots_cli.selection.base import Selector
from bots_cli.selection.rivals import check_same_settings, loaded_array
from bots_cli.selection.topk import smallest_k


class LearnabilitySelector(Selector):
    """The B tasks with the largest p(1 − p) of their recent pass rate, plus a uniform share."""

    name = "learnability"

    def __init__(self, n_tasks: int, *, momentum: float, prior_rate: float, explore: float,
                 seed: int = 0) -> None:
        """Hyperparameters as in conf/selector/learnability.yaml, which holds their defaults."""
        super().__init__(n_tasks, seed)
        self.momentum = check_range("momentum (weight μ of the past in the pass-rate average)",
                                    momentum, 0.0, 1.0, hi_open=True)
        self.prior_rate = check_range("prior_rate (pass rate p0 of a task never observed)",
                                      prior_rate, 0.0, 1.0)
        self.explore = check_range("explore (share ε of each batch drawn uniformly)", explore,
                                   0.0, 1.0)
        self.rate = np.full(self.n_tasks, self.prior_rate)  # p_k
        self.seen = np.zeros(self.n_tasks, dtype=bool)
        self.score = self.rate * (1.0 - self.rate)  # p_k(1 − p_k), kept up to date

    def learnability(self) -> np.ndarray:
        """(N,) p_k(1 − p_k) of every task."""
        return self.score

    def _select(self, batch_size: int) -> np.ndarray:
        n_uniform = round(self.explore * batch_size)
        d = np.negative(self.score)  # smallest first = most learnable first
        d[self.pending] = np.inf
        uniform = np.zeros(0, dtype=np.int64)
        if n_uniform:
            uniform = self.rng.choice(np.flatnonzero(~self.pending), size=n_uniform,
                                      replace=False).astype(np.int64)
            d[uniform] = np.inf
        if n_uniform == batch_size:
            return uniform
        ranked = smallest_k(d, batch_size - n_uniform, self.rng)
        return np.concatenate([uniform, ranked])

    def _observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        r = successes / trials
        past = np.where(self.seen[ids], self.rate[ids], r)
        p = self.momentum * past + (1.0 - self.momentum) * r
        self.rate[ids] = p
        self.seen[ids] = True
        self.score[ids] = p * (1.0 - p)

    def _hparams(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "prior_rate": self.prior_rate,
                "explore": self.explore}

    def _extra_state(self) -> dict[str, Any]:
        return {"hparams": self._hparams(), "rate": self.rate.copy(), "seen": self.seen.copy()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        check_same_settings(state["hparams"], self._hparams())
        self.rate = loaded_array(state, "rate", (self.n_tasks,), np.float64)
        self.seen = loaded_array(state, "seen", (self.n_tasks,), bool)
        self.score = self.rate * (1.0 - self.rate)
