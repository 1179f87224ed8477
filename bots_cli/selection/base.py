"""What every task selector shares: the select/update/state contract and input checks."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from bots_cli.checks import check_int, shown
from bots_cli.errors import InvalidValue


class Selector(ABC):
    """Chooses a batch of task indices each step and learns from the batch's outcomes.

    Subclasses implement `_select`, and `_observe` if they learn. `select` and `update` check
    their arguments here, once for all selectors.

    Feedback may arrive late (DESIGN.md §1.8): `select` may be called again before the earlier
    batches' `update`. Each selected batch is *in flight* until an `update` names one of its
    tasks; its tasks are *pending* (`self.pending`) until then, and `_select` must choose among
    the tasks that are not. One update delivers the whole of every batch it touches: a task of
    such a batch that the update leaves out (its completions unscorable, or dropped by a filter
    before the update) receives no evidence and is free again, so a lost task is never locked
    out of the pool. Updates apply in the order they come. With no delay nothing is pending when
    `select` runs, so everything is as if this did not exist.
    """

    name: str = "selector"

    def __init__(self, n_tasks: int, seed: int = 0) -> None:
        self.n_tasks = check_int("n_tasks", n_tasks, lo=1)
        self.seed = check_int("seed", seed, lo=0)
        self.rng = np.random.default_rng(self.seed)
        self.step = 0  # number of update() calls so far
        self.pending = np.zeros(self.n_tasks, dtype=bool)  # (N,) in a batch still in flight
        self.n_pending = 0  # pending.sum(), kept so that the no-delay path costs nothing
        self.in_flight: list[np.ndarray] = []  # the batches awaiting their update, oldest first

    # -- the contract -------------------------------------------------------------------------
    def select(self, batch_size: int) -> np.ndarray:
        """`batch_size` distinct task indices in [0, n_tasks), as int64."""
        check_int("batch_size", batch_size, lo=1)
        if batch_size > self.n_tasks:
            raise InvalidValue(
                f"batch_size ({batch_size}) is larger than the task pool ({self.n_tasks} tasks); "
                "lower the batch size or use a larger pool"
            )
        free = self.n_tasks - self.n_pending
        if batch_size > free:
            raise InvalidValue(
                f"batch_size ({batch_size}) is larger than the {free} tasks whose feedback is not "
                f"pending ({self.n_pending} tasks of {len(self.in_flight)} batches await their "
                "update); feed back earlier batches first, or lower the batch size"
            )
        ids = self._select(batch_size)
        if self.n_pending and self.pending[ids].any():
            raise AssertionError(f"{type(self).__name__}._select chose a task whose feedback is "
                                 "pending; it must choose among ~self.pending")
        self.pending[ids] = True
        self.n_pending += ids.shape[0]
        self.in_flight.append(ids.copy())
        return ids

    def update(self, ids: Any, successes: Any, trials: Any) -> None:
        """Report the outcome of a step: per selected task, `successes` out of `trials` rollouts.

        Successes may be fractional (a sum of rewards in [0, 1]).
        """
        ids_a, s, n = self.check_feedback(ids, successes, trials)
        self._observe(ids_a, s, n)
        self._deliver(ids_a)
        self.step += 1

    def release(self, ids: Any) -> None:
        """Selected tasks that will not be fed back (a screened candidate not trained on): free
        again, with no evidence. The other tasks of their batches stay in flight."""
        ids_a = np.unique(np.asarray(ids, dtype=np.int64))
        if ids_a.shape[0] == 0:
            return
        if not self.pending[ids_a].all():
            raise InvalidValue("release: only pending tasks (selected, not yet fed back) can be "
                               "released")
        self.pending[ids_a] = False
        self.n_pending -= ids_a.shape[0]
        self.in_flight = [rest for b in self.in_flight if (rest := b[self.pending[b]]).shape[0]]

    def _deliver(self, ids: np.ndarray) -> None:
        """Every in-flight batch that shares a task with `ids` has arrived: its tasks are free.
        Ids of no batch in flight (evidence from elsewhere) free nothing."""
        if not self.n_pending or not self.pending[ids].any():
            return
        if len(self.in_flight) == 1:  # the usual case: the one batch in flight came back
            arrived, self.in_flight = self.in_flight, []
        else:
            touched = ids[self.pending[ids]]
            hit = [bool(np.isin(b, touched).any()) for b in self.in_flight]
            arrived = [b for b, h in zip(self.in_flight, hit, strict=True) if h]
            self.in_flight = [b for b, h in zip(self.in_flight, hit, strict=True) if not h]
        for batch in arrived:
            self.pending[batch] = False
            self.n_pending -= batch.shape[0]

    def metrics(self) -> dict[str, float]:
        """The selector's own `selector/*` values after the last update, logged every step by
        every trainer (BOTS: ρ_t, λ_t, the implicit plug-in's error, the capability)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this selector is, RNG included."""
        return {
            "name": self.name,
            "n_tasks": self.n_tasks,
            "step": self.step,
            "rng": copy.deepcopy(self.rng.bit_generator.state),
            "in_flight": [b.copy() for b in self.in_flight],
            **self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise InvalidValue(
                f"state: saved by a {state.get('name')!r} selector, cannot load into {self.name!r}"
            )
        if state.get("n_tasks") != self.n_tasks:
            raise InvalidValue(
                f"state: saved for {state.get('n_tasks')} tasks, this selector has {self.n_tasks}"
            )
        self.step = int(state["step"])
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        # States saved before late feedback existed have no batch in flight.
        self.in_flight = [np.asarray(b, dtype=np.int64).copy() for b in state.get("in_flight", [])]
        self.pending = np.zeros(self.n_tasks, dtype=bool)
        for batch in self.in_flight:
            self.pending[batch] = True
        self.n_pending = int(sum(b.shape[0] for b in self.in_flight))
        self._load_extra_state(state)

    # -- for subclasses -----------------------------------------------------------------------
    @abstractmethod
    def _select(self, batch_size: int) -> np.ndarray: ...

    def _observe(  # noqa: B027 - a hook: selectors that do not learn keep the no-op
        self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray
    ) -> None:
        """Learn from a step (baselines that do not learn keep this no-op)."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        pass

    def check_feedback(
        self, ids: Any, successes: Any, trials: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validate an update's arguments; return them as int64 / float64 arrays."""
        ids_a = np.asarray(ids)
        if ids_a.ndim != 1 or ids_a.shape[0] == 0:
            raise InvalidValue(f"ids must be a non-empty 1-D array, got shape {ids_a.shape}")
        if not np.issubdtype(ids_a.dtype, np.integer):
            raise InvalidValue(f"ids must be integers, got dtype {ids_a.dtype}")
        ids_a = ids_a.astype(np.int64, copy=False)
        if ids_a.min() < 0 or ids_a.max() >= self.n_tasks:
            raise InvalidValue(
                f"ids must lie in [0, {self.n_tasks}), got values from {ids_a.min()} to "
                f"{ids_a.max()}"
            )
        if np.unique(ids_a).shape[0] != ids_a.shape[0]:
            raise InvalidValue("ids must be distinct: a task appears twice in one update")
        s = np.asarray(successes, dtype=np.float64)
        n = np.asarray(trials, dtype=np.float64)
        for name, arr in (("successes", s), ("trials", n)):
            if arr.shape != ids_a.shape:
                raise InvalidValue(
                    f"{name} must align with ids (shape {ids_a.shape}), got shape {arr.shape}"
                )
            if np.isnan(arr).any() or np.isinf(arr).any():
                raise InvalidValue(f"{name} must be finite, got NaN or inf")
        if (n <= 0).any():
            raise InvalidValue(f"trials must be > 0 for every task, got {shown(n[n <= 0][0])}")
        if (s < 0).any():
            raise InvalidValue(f"successes must be ≥ 0, got {shown(s[s < 0][0])}")
        over = s > n
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise InvalidValue(
                f"successes must be ≤ trials, got {shown(s[i])} > {shown(n[i])} for task "
                f"{ids_a[i]}"
            )
        return ids_a, s, n
