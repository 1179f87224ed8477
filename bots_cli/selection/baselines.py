"""Baseline selectors (DESIGN.md §1.4) behind the same interface as `BotsSelector`.

`mopps` and `implicit_only` are `BotsSelector` with ρ = 0 and λ = ρ = 1; they are built by
`build_selector`. The three here do not learn from feedback (they still check it); each defers a
task whose feedback is pending (DESIGN.md §1.8) until it is free.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from bots_cli.checks import check_range, check_rates
from bots_cli.errors import InvalidValue
from bots_cli.selection.base import Selector


def first_free(queue: np.ndarray, k: int, pending: np.ndarray) -> np.ndarray | None:
    """Positions in `queue` (ascending) of its first k distinct tasks that are not pending, or
    None when it holds fewer. A task met again after its first free place is passed over, as are
    pending ones. Only a prefix of the queue is read: its length grows until it holds k."""
    length = 2 * k
    while True:
        head = queue[:length]
        free = np.flatnonzero(~pending[head])
        _, first = np.unique(head[free], return_index=True)
        if first.shape[0] >= k:
            first.sort()
            return free[first[:k]]
        if length >= queue.shape[0]:
            return None
        length *= 4


class _InOrder(Selector):
    """Draws tasks in the order of a queue (`self.order[self.pos:]`) that is refilled one cycle at
    a time (`_next_cycle`): every task of a cycle is drawn once before the queue moves on.

    Late feedback (DESIGN.md §1.8): a pending task is passed over and keeps its place in the
    queue, so it is drawn as soon as its feedback has arrived: deferred, never lost. A batch that
    reaches the end of the queue fills up from the next cycle, skipping tasks it already holds
    (they stay in the new cycle, drawn later). With nothing pending this takes the queue's next
    tasks in order, exactly as without late feedback.
    """

    order: np.ndarray  # the queue: this cycle's tasks not drawn yet, from `pos` on
    pos: int

    @abstractmethod
    def _next_cycle(self) -> np.ndarray:
        """The tasks of the next cycle, in the order they are to be drawn."""

    def _take(self, batch_size: int) -> np.ndarray:
        rest = self.order[self.pos :]
        taken = first_free(rest, batch_size, self.pending)
        if taken is None:  # the cycle ends inside this batch: the next one fills it up
            rest = np.concatenate([rest, self._next_cycle()])
            taken = first_free(rest, batch_size, self.pending)
            if taken is None:  # the new cycle holds every task of the pool
                raise InvalidValue(f"batch_size ({batch_size}) is larger than the tasks of the "
                                   f"{self.name} pool whose feedback is not pending; feed back "
                                   "earlier batches first, or lower the batch size")
            self.order, self.pos = rest, 0
        ids = rest[taken].astype(np.int64)
        # The tasks passed over move up behind the batch's places, in their order; the queue then
        # starts after the batch.
        end = int(taken[-1]) + 1
        if end > batch_size:
            rest[batch_size:end] = np.delete(rest[:end], taken)
        self.pos += batch_size
        return ids


class UniformSelector(_InOrder):
    """Uniform sampling without replacement within an epoch over a pool of tasks.

    Every task of the pool is drawn once before any is drawn again. A batch that straddles two
    epochs takes the rest of the old epoch and fills up from a fresh permutation, skipping the
    tasks it already holds, so a batch never repeats a task. A task whose feedback is pending is
    deferred, not skipped: it is drawn once it is free, still once per epoch (`_InOrder`).
    """

    name = "uniform"

    def __init__(self, n_tasks: int, seed: int = 0, pool: np.ndarray | None = None) -> None:
        super().__init__(n_tasks, seed)
        self.pool = np.arange(self.n_tasks) if pool is None else np.asarray(pool, dtype=np.int64)
        self.order = self.rng.permutation(self.pool)  # the current epoch's remaining order
        self.pos = 0

    def _next_cycle(self) -> np.ndarray:
        return self.rng.permutation(self.pool)

    def _select(self, batch_size: int) -> np.ndarray:
        size = self.pool.shape[0]
        if batch_size > size:
            raise InvalidValue(
                f"batch_size ({batch_size}) is larger than the {self.name} pool "
                f"({size} tasks); lower the batch size or widen the pool"
            )
        if self.n_pending:
            free = size - self.n_pending  # every pending task was drawn from the pool
            if batch_size > free:
                raise InvalidValue(
                    f"batch_size ({batch_size}) is larger than the {free} tasks of the "
                    f"{self.name} pool ({size} tasks) whose feedback is not pending; feed back "
                    "earlier batches first, lower the batch size or widen the pool"
                )
        ids = self._take(batch_size)
        if self.pos >= size:  # keep the queue short: drop the drawn part once per epoch
            self.order = self.order[self.pos :].copy()
            self.pos = 0
        return ids

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


class Easy2HardSelector(_InOrder):
    """A static curriculum: tasks in order of decreasing reference pass rate, then round again.

    Ties in the pass rate are ordered at random (fixed by the seed). A task whose feedback is
    pending is deferred: drawn as soon as it is free, still once per round (`_InOrder`).
    """

    name = "easy2hard"

    def __init__(self, n_tasks: int, reference: Any, seed: int = 0) -> None:
        super().__init__(n_tasks, seed)
        rates = check_rates("reference", reference, self.n_tasks)
        tiebreak = self.rng.random(self.n_tasks)
        self.curriculum = np.lexsort((tiebreak, -rates)).astype(np.int64)  # easiest first
        self.order = self.curriculum  # the queue: read only until a task is deferred
        self.pos = 0

    def _next_cycle(self) -> np.ndarray:
        return self.curriculum

    def _select(self, batch_size: int) -> np.ndarray:
        if self.order is self.curriculum and not self.n_pending:
            # Nothing was ever deferred: the queue is the curriculum from `pos`, round and round.
            idx = (self.pos + np.arange(batch_size)) % self.n_tasks
            self.pos = int((self.pos + batch_size) % self.n_tasks)
            return self.curriculum[idx]
        if self.order is self.curriculum:
            self.order = self.curriculum[self.pos :].copy()  # ours to rearrange from now on
            self.pos = 0
        ids = self._take(batch_size)
        if self.pos >= self.n_tasks:
            self.order = self.order[self.pos :].copy()
            self.pos = 0
        return ids

    def _extra_state(self) -> dict[str, Any]:
        if self.order is self.curriculum:
            return {"pos": self.pos}
        return {"pos": self.pos, "queue": self.order.copy()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.pos = int(state["pos"])
        queue = state.get("queue")  # absent: the curriculum itself (nothing was ever deferred)
        self.order = (self.curriculum if queue is None
                      else np.asarray(queue, dtype=np.int64).copy())
