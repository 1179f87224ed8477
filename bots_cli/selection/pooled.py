"""Implicit evidence without reference models: what related tasks were observed to do.

Many pools have structure a user already knows: a `level`, `skill` or `data_source` column, or
embeddings of the prompts. Two plug-ins read p̃_k off the recent outcomes of k's relatives
(DESIGN.md §1.5.3). Both keep discounted counts of what was observed, forgetting a share f per
step (`forget`), and shrink towards a fallback π_k with κ pseudo-trials (`smoothing`):

    groups : S_g <- (1-f)·S_g + Σ_{j∈B_t, g(j)=g} s_j     T_g <- (1-f)·T_g + Σ_{j∈B_t, g(j)=g} n_j
             p̃_k = (S_{g(k)} + κ·π_k) / (T_{g(k)} + κ)
    knn    : S_j <- (1-f)·S_j + s_j·[j∈B_t]             T_j <- (1-f)·T_j + n_j·[j∈B_t]
             p̃_k = (Σ_{j∈J_k} w_kj·S_j + κ·π_k) / (Σ_{j∈J_k} w_kj·T_j + κ)

J_k are k's nearest neighbours (itself excluded) and w_kj ≥ 0 their similarities, a sparse k-NN
graph built once (graph.py). π_k is the interpolation plug-in's estimate when reference pass rates
exist, else the prior mean a0_k / (a0_k + b0_k): a group never observed yet, or a task whose
neighbours were never observed, gets exactly the fallback. Cost per step: groups O(N + B), knn
O(N·k).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bots_cli.checks import check_range
from bots_cli.errors import InvalidValue
from bots_cli.selection.implicit import ImplicitEvidence


class _Pooled(ImplicitEvidence):
    """Discounted counts shrunk towards a fallback: what groups and knn share."""

    kind = "pooled"

    def __init__(self, n_tasks: int, *, forget: float, smoothing: float,
                 prior_mean: float | np.ndarray, fallback: ImplicitEvidence | None) -> None:
        self.n_tasks = n_tasks
        self.forget = check_range("implicit.forget", forget, 0.0, 1.0)
        self.smoothing = check_range("implicit.smoothing", smoothing, 0.0, lo_open=True)
        self.prior_mean = prior_mean
        self.fallback = fallback
        self.seen = False  # whether the fallback has been observed at least once

    @property
    def capability(self) -> float | None:
        return None if self.fallback is None else self.fallback.capability

    def observe(self, ids: np.ndarray, rates: np.ndarray,
                trials: np.ndarray | None = None) -> None:
        n = np.ones(len(ids)) if trials is None else np.asarray(trials, dtype=np.float64)
        self._count(ids, rates * n, n)
        if self.fallback is not None:
            self.fallback.observe(ids, rates, trials)
        self.seen = True

    def _fallback(self, out: np.ndarray) -> np.ndarray:
        """π for every task, written into `out`."""
        if self.fallback is not None and self.seen:
            return self.fallback.estimate(out=out)
        out[...] = self.prior_mean
        return out

    def _shrunk(self, pooled_s: np.ndarray, pooled_t: np.ndarray, out: np.ndarray) -> np.ndarray:
        """(pooled_s + κ·π) / (pooled_t + κ), in `out` (π is written there first)."""
        pi = self._fallback(out)
        pi *= self.smoothing
        pi += pooled_s
        pi /= pooled_t + self.smoothing
        return pi

    def _count(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        raise NotImplementedError

    def _check_kind(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise InvalidValue(f"state: implicit evidence saved by a {state.get('kind')!r} "
                               f"plug-in, this selector uses {self.kind!r}")
        for key in ("forget", "smoothing"):
            if state[key] != getattr(self, key):
                raise InvalidValue(f"implicit.{key}: the saved state used {state[key]}, this "
                                   f"plug-in has {getattr(self, key)}")
        if (state["fallback"] is None) != (self.fallback is None):
            raise InvalidValue("state: the implicit plug-in was saved with an interpolation "
                               "fallback but has none now, or the reverse; give the same "
                               "reference pass rates")
        if self.fallback is not None:
            self.fallback.load_state_dict(state["fallback"])
        self.seen = bool(state["seen"])

    def _base_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "forget": self.forget, "smoothing": self.smoothing,
                "seen": self.seen,
                "fallback": None if self.fallback is None else self.fallback.state_dict()}


class GroupEvidence(_Pooled):
    """p̃_k from the discounted success rate of k's group (a level, a skill, a data source)."""

    kind = "groups"

    def __init__(self, groups: Any, *, forget: float = 0.1, smoothing: float = 4.0,
                 prior_mean: float | np.ndarray = 0.5,
                 fallback: ImplicitEvidence | None = None) -> None:
        values = np.asarray(groups)
        if values.ndim != 1 or values.shape[0] == 0:
            raise InvalidValue(f"implicit.column: groups must be one value per task, got shape "
                               f"{values.shape}")
        if values.dtype.kind == "f" and np.isnan(values).any():
            raise InvalidValue("implicit.column: a task has no group (NaN); fill the column")
        names, self.group = np.unique(values, return_inverse=True)
        self.names = [str(v) for v in names]
        super().__init__(len(values), forget=forget, smoothing=smoothing, prior_mean=prior_mean,
                         fallback=fallback)
        self.s = np.zeros(len(names))  # (G,) discounted successes of each group
        self.t = np.zeros(len(names))  # (G,) discounted trials

    def _count(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        keep = 1.0 - self.forget
        self.s *= keep
        self.t *= keep
        g = self.group[ids]
        self.s += np.bincount(g, weights=successes, minlength=len(self.names))
        self.t += np.bincount(g, weights=trials, minlength=len(self.names))

    def estimate(self, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty(self.n_tasks) if out is None else out
        return self._shrunk(self.s[self.group], self.t[self.group], out)

    def group_rates(self) -> dict[str, float | None]:
        """Each group's discounted observed rate (None when never observed), for inspection."""
        return {name: (float(s / t) if t > 0 else None)
                for name, s, t in zip(self.names, self.s, self.t, strict=True)}

    def state_dict(self) -> dict[str, Any]:
        return {**self._base_state(), "names": list(self.names), "s": self.s.copy(),
                "t": self.t.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_kind(state)
        if list(state["names"]) != self.names:
            raise InvalidValue("state: the task groups differ from the saved ones (another "
                               "implicit.column or task table); resume with the same pool")
        self.s = np.array(state["s"], dtype=np.float64)
        self.t = np.array(state["t"], dtype=np.float64)


class NeighbourEvidence(_Pooled):
    """p̃_k from the similarity-weighted discounted success rate of k's nearest neighbours."""

    kind = "knn"

    def __init__(self, neighbours: np.ndarray, weights: np.ndarray, *, forget: float = 0.1,
                 smoothing: float = 4.0, prior_mean: float | np.ndarray = 0.5,
                 fallback: ImplicitEvidence | None = None) -> None:
        idx = np.asarray(neighbours)
        w = np.asarray(weights, dtype=np.float64)
        if idx.ndim != 2 or idx.shape != w.shape or not np.issubdtype(idx.dtype, np.integer):
            raise InvalidValue(f"implicit: the k-NN graph must be (N, k) integer neighbours with "
                               f"(N, k) weights, got {idx.shape} and {w.shape}")
        n = idx.shape[0]
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise InvalidValue("implicit: a neighbour index lies outside the pool")
        if not np.isfinite(w).all() or (w < 0).any():
            raise InvalidValue("implicit: neighbour weights must be finite and ≥ 0")
        super().__init__(n, forget=forget, smoothing=smoothing, prior_mean=prior_mean,
                         fallback=fallback)
        self.neighbours = idx.astype(np.int64, copy=False)  # (N, k)
        self.weights = w  # (N, k)
        self.s = np.zeros(n)  # (N,) discounted successes of each task
        self.t = np.zeros(n)  # (N,) discounted trials

    def _count(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        keep = 1.0 - self.forget
        self.s *= keep
        self.t *= keep
        self.s[ids] += successes
        self.t[ids] += trials

    def estimate(self, out: np.ndarray | None = None) -> np.ndarray:
        out = np.empty(self.n_tasks) if out is None else out
        # (N, k) gathers, reduced over k: the O(N·k) of a step.
        pooled_s = np.einsum("nk,nk->n", self.weights, self.s[self.neighbours])
        pooled_t = np.einsum("nk,nk->n", self.weights, self.t[self.neighbours])
        return self._shrunk(pooled_s, pooled_t, out)

    def state_dict(self) -> dict[str, Any]:
        return {**self._base_state(), "graph": list(self.neighbours.shape), "s": self.s.copy(),
                "t": self.t.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_kind(state)
        if list(state["graph"]) != list(self.neighbours.shape):
            raise InvalidValue(f"state: saved with a k-NN graph of shape {state['graph']}, this "
                               f"one is {list(self.neighbours.shape)}; resume with the same "
                               "pool and implicit.k")
        self.s = np.array(state["s"], dtype=np.float64)
        self.t = np.array(state["t"], dtype=np.float64)
