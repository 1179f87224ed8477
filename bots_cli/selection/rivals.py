"""What the published rival selectors share (docs/rivals.md): a walk through the pool in epochs,
and the check that a resumed state was saved with the same settings.

The rivals themselves live one to a module: `dps.py`, `greso.py`, `speed.py`,
`learnability.py`, `adarft.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bots_cli.errors import InvalidValue

# Candidates examined per pass of `EpochWalk.take`: a few times what is still needed, so that a
# pass usually finishes the batch, and at least this many, so that small batches do not loop.
_MIN_CHUNK = 64


class EpochWalk:
    """The pool in a random order, read front to back, a fresh order once it runs out: the order in
    which a shuffled data loader offers its prompts (GRESO's and SPEED's candidates).

    `take(k, blocked, accept)` reads on until k tasks are accepted: a task that is blocked (its
    feedback pending, or already in this batch) or that `accept` turns down is passed over for
    the rest of this epoch. A batch that runs into the next epoch never repeats a task.
    """

    def __init__(self, n_tasks: int, rng: np.random.Generator) -> None:
        self.n_tasks = n_tasks
        self.order = rng.permutation(n_tasks).astype(np.int64)
        self.pos = 0
        self.epoch = 0  # completed passes through the pool

    def take(
        self,
        k: int,
        blocked: np.ndarray,  # (N,) bool, not modified
        rng: np.random.Generator,
        accept: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, int]:
        """(k accepted task indices in walk order, how many unblocked tasks were turned down).

        The caller guarantees that at least k tasks are not blocked; `accept(chunk)` returns a
        bool per task of the chunk (with probability > 0 for each, or the walk may not end).
        """
        taken: list[np.ndarray] = []
        in_batch = np.zeros(0, dtype=np.int64)
        declined = 0
        need = k
        while need > 0:
            if self.pos >= self.order.shape[0]:
                self.order = rng.permutation(self.n_tasks).astype(np.int64)
                self.pos = 0
                self.epoch += 1
            chunk = self.order[self.pos : self.pos + max(4 * need, _MIN_CHUNK)]
            free = ~blocked[chunk]
            if in_batch.shape[0]:  # only after an epoch boundary can a task come round again
                free &= ~np.isin(chunk, in_batch)
            ok = free if accept is None else free & accept(chunk)
            hits = np.flatnonzero(ok)
            if hits.shape[0] >= need:
                last = int(hits[need - 1])
                declined += int(free[: last + 1].sum()) - need
                hits = hits[:need]
                self.pos += last + 1
            else:
                declined += int(free.sum()) - hits.shape[0]
                self.pos += chunk.shape[0]
            got = chunk[hits]
            taken.append(got)
            in_batch = np.concatenate([in_batch, got])
            need -= got.shape[0]
        return np.concatenate(taken), declined

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order.copy(), "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        order = np.asarray(state["order"], dtype=np.int64)
        if order.shape != (self.n_tasks,):
            raise InvalidValue(f"state: the epoch order has shape {order.shape}, expected "
                               f"({self.n_tasks},)")
        self.order = order.copy()
        self.pos = int(state["pos"])
        self.epoch = int(state["epoch"])


def check_same_settings(saved: dict[str, Any], mine: dict[str, Any]) -> None:
    """Refuse a state saved under other hyperparameters: its statistics mean something else."""
    for key, value in mine.items():
        if saved.get(key) != value:
            raise InvalidValue(f"{key}: the saved selector state used {key}={saved.get(key)!r}, "
                               f"this selector has {key}={value!r}; resume with the same "
                               "selector settings")


def loaded_array(state: dict[str, Any], key: str, shape: tuple[int, ...],
                 dtype: Any) -> np.ndarray:
    """`state[key]` as a fresh array of `shape`, or an error naming what was saved."""
    arr = np.array(state[key], dtype=dtype)
    if arr.shape != shape:
        raise InvalidValue(f"state: {key} has shape {arr.shape}, expected {shape}")
    return arr
