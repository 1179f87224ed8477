"""Baseline selectors (DESIGN.md §1.4) behind the same interface as `BotsSelector`.

`mopps` and `implicit_only` are `BotsSelector` with ρ = 0 and λ = ρ = 1; they are built by
`build_selector`. The three here do not learn from feedback (they still check it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bots_cli.checks import check_range, check_rates
from bots_cli.errors import InvalidValue
from bots_cli.selection.base import Selector


class UniformSelector(Selector):
    """Uniform sampling without replacement within an epoch over a pool of tasks.

    Every task of the pool is drawn once before any is drawn again. A batch that straddles two
    epochs takes the rest of the old epoch and fills up from a fresh permutation, skipping the
    tasks it already holds, so a batch never repeats a task.
    """

    name = "uniform"

    def __init__(self, n_tasks: int, seed: int = 0, pool: np.ndarray | None = None) -> None:
        super().__init__(n_tasks, seed)
        self.pool = np.arange(self.n_tasks) if pool is None else np.asarray(pool, dtype=np.int64)
        self.order = self.rng.permutation(self.pool)  # the current epoch's remaining order
        self.pos = 0

    def _select(self, batch_size: int) -> np.ndarray:
        if batch_size > self.pool.shape[0]:
            raise InvalidValue(
                f"batch_size ({batch_size}) is larger than the {self.name} pool "
                f"({self.pool.shape[0]} tasks); lower the batch size or widen the pool"
            )
        rest = self.order[self.pos :]
        if rest.shape[0] >= batch_size:
            self.pos += batch_size
            return rest[:batch_size].astype(np.int64)
        fresh = self.rng.permutation(self.pool)
        taken = np.isin(fresh, rest)
        need = batch_size - rest.shape[0]
        fill_pos = np.flatnonzero(~taken)[:need]
        fill = fresh[fill_pos]
        self.order = np.delete(fresh, fill_pos)
        self.pos = 0
        return np.concatenate([rest, fill]).astype(np.int64)

    def _extra_state(self) -> dict[str, Any]:
        return {"order": self.order.copy(), "pos": self.pos}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.order = np.asarray(state["order"], dtype=np.int64).copy()
        self.pos = int(state["pos"])


class OfflineBandSelector(UniformSelector):
    """Uniform over the tasks whose reference pass rate lies in [lo, hi] (offline filtering)."""

    name = "offline_band"

    def __init__(
        self, n_tasks: int, reference: Any, lo: float = 0.2, hi: float = 0.8, seed: int = 0
    ) -> None:
        self.lo = check_range("lo (lower pass-rate bound)", lo, 0.0, 1.0)
        self.hi = check_range("hi (upper pass-rate bound)", hi, self.lo, 1.0)
        rates = check_rates("reference", reference, n_tasks)
        pool = np.flatnonzero((rates >= self.lo) & (rates <= self.hi))
        if pool.shape[0] == 0:
            raise InvalidValue(
                f"lo/hi: no task has a reference pass rate in [{self.lo}, {self.hi}]; "
                "widen the band"
            )
        super().__init__(n_tasks, seed, pool=pool)


class Easy2HardSelector(Selector):
    """A static curriculum: tasks in order of decreasing reference pass rate, then round again.

    Ties in the pass rate are ordered at random (fixed by the seed).
    """

    name = "easy2hard"

    def __init__(self, n_tasks: int, reference: Any, seed: int = 0) -> None:
        super().__init__(n_tasks, seed)
        rates = check_rates("reference", reference, self.n_tasks)
        tiebreak = self.rng.random(self.n_tasks)
        self.order = np.lexsort((tiebreak, -rates)).astype(np.int64)  # easiest first
        self.pos = 0

    def _select(self, batch_size: int) -> np.ndarray:
        idx = (self.pos + np.arange(batch_size)) % self.n_tasks
        self.pos = int((self.pos + batch_size) % self.n_tasks)
        return self.order[idx]

    def _extra_state(self) -> dict[str, Any]:
        return {"pos": self.pos}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.pos = int(state["pos"])
