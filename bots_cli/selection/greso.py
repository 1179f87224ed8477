"""`GresoSelector`: GRESO's pre-rollout skipping (arXiv 2506.02177; code Infini-AI-Lab/GRESO).

GRESO walks the pool in shuffled epochs, as a data loader does, and skips before rollout the
tasks whose recent groups all had equal rewards. For task k let z_k be the number of its most
recent groups in a row that were all successes (*easy*) or all failures (*hard*; z_k = 0 after
a mixed group or before any). A task met in the walk is kept with probability

    q_k = 1                               z_k = 0
    q_k = max(p_c ^ z_k, q_min)           z_k > 0, c = easy or hard as its streak is

and passed over for the rest of the epoch otherwise. After each update, once the first epoch is
complete, each base probability follows the share of its kind in the batch:

    p_easy ← clip(p_easy − δ, p_lo, p_hi)  if share of all-success groups ≥ α/3,  else + δ
    p_hard ← clip(p_hard − δ, p_lo, p_hi)  if share of all-failure groups ≥ 2α/3, else + δ

with α the target share of zero-variance groups. The paper runs this on top of dynamic sampling
(refilling the batch after rollout with informative groups): `train.dynamic_sampling` does that
in `bots train`, and works with any selector.

Departures from the official code (docs/rivals.md): a group is easy when every rollout succeeds
(s = n) and hard when none does (s = 0), where the code thresholds the mean reward (≥ 0.98,
≤ 0.11: the same for binary rewards and groups of 8); the probabilities adapt after every
`update` (one per dynamic-sampling round) rather than once per training step; a task whose
feedback is pending when the walk meets it is passed over like a skipped one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bots_cli.checks import check_range
from bots_cli.errors import InvalidValue
from bots_cli.selection.base import Selector
from bots_cli.selection.rivals import EpochWalk, check_same_settings, loaded_array


class GresoSelector(Selector):
    """GRESO: a shuffled walk through the pool that skips tasks with a streak of equal groups."""

    name = "greso"

    def __init__(self, n_tasks: int, *, p_easy: float, p_hard: float,
                 target_zero_variance: float, step: float, p_min: float, p_max: float,
                 min_keep: float, seed: int = 0) -> None:
        """Hyperparameters as in conf/selector/greso.yaml, which holds their defaults."""
        super().__init__(n_tasks, seed)
        self.p_min = check_range("p_min (lowest base keep probability)", p_min, 0.0, 1.0,
                                 lo_open=True)
        self.p_max = check_range("p_max (highest base keep probability)", p_max, self.p_min, 1.0)
        bounds = f"[p_min, p_max] = [{self.p_min}, {self.p_max}]"
        self.p_easy0 = check_range(f"p_easy (base keep probability of easy tasks, in {bounds})",
                                   p_easy, self.p_min, self.p_max)
        self.p_hard0 = check_range(f"p_hard (base keep probability of hard tasks, in {bounds})",
                                   p_hard, self.p_min, self.p_max)
        self.target = check_range("target_zero_variance (target share of equal-reward groups)",
                                  target_zero_variance, 0.0, 1.0)
        self.step_size = check_range("step (change of a base probability per update)", step,
                                     0.0, 1.0)
        self.min_keep = check_range("min_keep (floor of the keep probability)", min_keep, 0.0,
                                    1.0, lo_open=True)
        self.p_easy, self.p_hard = self.p_easy0, self.p_hard0
        self.streak = np.zeros(self.n_tasks, dtype=np.int64)  # z_k
        self.easy = np.zeros(self.n_tasks, dtype=bool)  # the streak is of all-success groups
        self.walk = EpochWalk(self.n_tasks, self.rng)
        self.skipped = 0  # tasks passed over by the last select

    def keep_probability(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids),) q_k: the probability that the walk keeps each task when it meets it."""
        z = self.streak[ids]
        base = np.where(self.easy[ids], self.p_easy, self.p_hard)
        return np.where(z == 0, 1.0, np.maximum(base ** z, self.min_keep))

    def metrics(self) -> dict[str, float]:
        """The two base keep probabilities and how many tasks the last batch skipped."""
        return {"selector/p_easy": self.p_easy, "selector/p_hard": self.p_hard,
                "selector/skipped": float(self.skipped)}

    def _select(self, batch_size: int) -> np.ndarray:
        def accept(chunk: np.ndarray) -> np.ndarray:
            return self.rng.random(chunk.shape[0]) < self.keep_probability(chunk)

        ids, self.skipped = self.walk.take(batch_size, self.pending, self.rng, accept)
        return ids

    def _observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        easy = successes >= trials
        hard = successes <= 0
        same_kind = (self.streak[ids] > 0) & (self.easy[ids] == easy)
        self.streak[ids] = np.where(easy | hard, np.where(same_kind, self.streak[ids] + 1, 1), 0)
        self.easy[ids] = easy
        if self.walk.epoch > 0:  # as the official code: adapt from the second epoch on
            self.p_easy = self._adapt(self.p_easy, float(easy.mean()), self.target / 3)
            self.p_hard = self._adapt(self.p_hard, float(hard.mean()), 2 * self.target / 3)

    def _adapt(self, p: float, share: float, target: float) -> float:
        """Skip more of a kind (lower p) while its share is at or above its target."""
        p = p - self.step_size if share >= target else p + self.step_size
        return float(min(max(p, self.p_min), self.p_max))

    def _hparams(self) -> dict[str, Any]:
        return {"p_easy": self.p_easy0, "p_hard": self.p_hard0,
                "target_zero_variance": self.target, "step": self.step_size,
                "p_min": self.p_min, "p_max": self.p_max, "min_keep": self.min_keep}

    def _extra_state(self) -> dict[str, Any]:
        return {"hparams": self._hparams(), "streak": self.streak.copy(),
                "easy": self.easy.copy(), "walk": self.walk.state_dict(),
                "p_now": [self.p_easy, self.p_hard], "skipped": self.skipped}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        check_same_settings(state["hparams"], self._hparams())
        self.streak = loaded_array(state, "streak", (self.n_tasks,), np.int64)
        self.easy = loaded_array(state, "easy", (self.n_tasks,), bool)
        if (self.streak < 0).any():
            raise InvalidValue("state: GRESO streaks must be ≥ 0")
        self.walk.load_state_dict(state["walk"])
        self.p_easy, self.p_hard = (float(p) for p in state["p_now"])
        self.skipped = int(state["skipped"])
