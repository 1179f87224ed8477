"""`DpsSelector`: Dynamics-Predictive Sampling (DPS, arXiv 2603.10887; code maoyixiu/DPS).

Each task is a hidden Markov model over three solving states, z ∈ {unsolved, partial, solved},
observed exactly through its groups: a group with no success is `unsolved`, one with every
rollout a success `solved`, anything between `partial`. Per task, a Dirichlet count A[i, j]
for each transition j → i gives the expected transition matrix P[i, j] = A[i, j] / Σ_i' A[i', j];
the belief π (the predicted distribution of the task's state at the next step) is filtered
online. After every update, for every task (docs/rivals.md has the equations):

    observed k   : A ← d·A + (1 − d)·A0 + ξ    ξ[i, j] = 1[i = z]·P[z, j]·π̄[j] / Σ_j' P[z, j']·π̄[j']
                   π̄ ← e_z                      (π̄: the belief about the state at the last step)
    unobserved k : A ← d·A + (1 − d)·A0          π̄ ← π
    every k      : π ← P(A)·π̄ / Σ (P(A)·π̄)

`select(B)` draws `candidate_ratio`·B candidates uniformly among the tasks whose feedback is not
pending and takes the B with the largest π[partial] (ties at random).

Departures from the official code (docs/rivals.md): every task's belief is propagated every step
from the start (the code creates a task's state when it first appears among the candidates; with
the uniform prior used here an untouched task stays at the prior either way); only a symmetric
Dirichlet prior (one number) and a uniform initial belief; selection by `topk` only (the code's
`uniform` and `topk+entropy` strategies are left out).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bots_cli.checks import check_range
from bots_cli.errors import InvalidValue
from bots_cli.selection.base import Selector
from bots_cli.selection.rivals import check_same_settings, loaded_array
from bots_cli.selection.topk import smallest_k

UNSOLVED, PARTIAL, SOLVED = 0, 1, 2


def observed_state(successes: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """(B,) int64: 0 unsolved (no success), 2 solved (every rollout a success), 1 in between."""
    return np.where(successes <= 0, UNSOLVED, np.where(successes >= trials, SOLVED, PARTIAL))


class DpsSelector(Selector):
    """DPS: the B tasks most likely to be partially solved at the next step."""

    name = "dps"

    def __init__(self, n_tasks: int, *, decay: float, prior_alpha: float,
                 candidate_ratio: float | None, seed: int = 0) -> None:
        """Hyperparameters as in conf/selector/dps.yaml, which holds their defaults."""
        super().__init__(n_tasks, seed)
        self.decay = check_range("decay (share of transition counts kept per step)", decay,
                                 0.0, 1.0)
        self.prior_alpha = check_range("prior_alpha (Dirichlet prior of each transition count)",
                                       prior_alpha, 0.0, lo_open=True)
        self.candidate_ratio = (None if candidate_ratio is None else check_range(
            "candidate_ratio (candidates per batch, as a multiple of the batch size)",
            candidate_ratio, 1.0))
        # A = A0 + scale·dev: the decay towards the prior is one multiplication of `scale`, so
        # a step touches every task only to predict its belief. dev[i, j, k] belongs to task k's
        # transition from state j to state i; dev_col[j, k] = Σ_i dev[i, j, k], kept in step.
        self.scale = 1.0
        self.dev = np.zeros((3, 3, self.n_tasks))
        self.dev_col = np.zeros((3, self.n_tasks))
        self.belief = np.full((3, self.n_tasks), 1.0 / 3.0)  # π: the next step's state
        self.last_belief = self.belief.copy()  # π̄: the state at the last step
        self._selected_partial: float | None = None

    @property
    def counts(self) -> np.ndarray:
        """(3, 3, N) the Dirichlet counts A[i, j, k] of each task's transition j → i (a copy)."""
        return self.prior_alpha + self.scale * self.dev

    def partial_probability(self) -> np.ndarray:
        """(N,) π[partial]: each task's predicted probability of being partially solved."""
        return self.belief[PARTIAL]

    def metrics(self) -> dict[str, float]:
        """`selector/predicted_partial`: mean π[partial] of the last batch, when it was chosen."""
        if self._selected_partial is None:
            return {}
        return {"selector/predicted_partial": self._selected_partial}

    def _select(self, batch_size: int) -> np.ndarray:
        free = np.flatnonzero(~self.pending)
        if self.candidate_ratio is not None:
            m = min(free.shape[0], int(np.ceil(self.candidate_ratio * batch_size)))
            if m < free.shape[0]:
                free = self.rng.choice(free, size=m, replace=False)
        score = self.belief[PARTIAL, free]
        ids = free[smallest_k(-score, batch_size, self.rng)]
        self._selected_partial = float(self.belief[PARTIAL, ids].mean())
        return ids

    def _observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        z = observed_state(successes, trials)
        a0 = self.prior_alpha
        # The soft transition counts of the observed tasks, from the counts before this step:
        # the posterior of (z_{t-1} = j, z_t = z) given the observation.
        row = a0 + self.scale * self.dev[z, :, ids]  # (B, 3): A[z, j]
        col = 3.0 * a0 + self.scale * self.dev_col[:, ids].T  # (B, 3): Σ_i A[i, j]
        joint = row / col * self.last_belief[:, ids].T
        joint /= joint.sum(axis=1, keepdims=True)
        # Every task's counts drift back towards the prior (A ← d·A + (1 − d)·A0 is
        # scale ← d·scale); the observed gain their soft counts.
        self.scale *= self.decay
        if self.scale < 1e-100:  # fold the scale in before it underflows (d = 0: at once)
            self.dev *= self.scale
            self.dev_col *= self.scale
            self.scale = 1.0
        self.dev[z, :, ids] += joint / self.scale
        self.dev_col[:, ids] += joint.T / self.scale
        # The belief about this step's state: exact for the observed, predicted for the rest.
        self.last_belief[...] = self.belief
        self.last_belief[:, ids] = 0.0
        self.last_belief[z, ids] = 1.0
        self._predict()

    def _predict(self) -> None:
        """π ← P(A)·π̄, normalised, for every task: π[i] ∝ Σ_j A[i, j]·w[j], w[j] = π̄[j] /
        Σ_i' A[i', j], which is A0·Σ_j w[j] + scale·Σ_j dev[i, j]·w[j]."""
        w = self.dev_col * self.scale
        w += 3.0 * self.prior_alpha
        np.divide(self.last_belief, w, out=w)  # (3, N): w[j]
        base = w.sum(axis=0)
        base *= self.prior_alpha
        w *= self.scale
        out = self.belief
        for i in range(3):  # three rows of a 3×3 product: no loop over tasks
            np.multiply(self.dev[i, 0], w[0], out=out[i])
            out[i] += self.dev[i, 1] * w[1]
            out[i] += self.dev[i, 2] * w[2]
            out[i] += base
        out /= out.sum(axis=0)

    def _hparams(self) -> dict[str, Any]:
        return {"decay": self.decay, "prior_alpha": self.prior_alpha,
                "candidate_ratio": self.candidate_ratio}

    def _extra_state(self) -> dict[str, Any]:
        return {"hparams": self._hparams(), "scale": self.scale, "dev": self.dev.copy(),
                "dev_col": self.dev_col.copy(), "belief": self.belief.copy(),
                "last_belief": self.last_belief.copy(), "selected_partial": self._selected_partial}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        check_same_settings(state["hparams"], self._hparams())
        n = self.n_tasks
        self.scale = float(state["scale"])
        self.dev = loaded_array(state, "dev", (3, 3, n), np.float64)
        self.dev_col = loaded_array(state, "dev_col", (3, n), np.float64)
        self.belief = loaded_array(state, "belief", (3, n), np.float64)
        self.last_belief = loaded_array(state, "last_belief", (3, n), np.float64)
        self._selected_partial = state["selected_partial"]
        if not self.scale > 0 or (self.dev < 0).any():
            raise InvalidValue("state: DPS transition counts must be > 0")
