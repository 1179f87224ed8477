"""Picking the k tasks whose score is nearest the target, in O(N)."""

from __future__ import annotations

import numpy as np

_SAMPLE = 4096  # subsample size used to guess a threshold on large pools


def smallest_k(d: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the k smallest entries of `d`, ties at the boundary broken uniformly at random.

    O(N): a random subsample proposes a threshold, one pass keeps the entries under it (a few
    times k of them), and the exact selection runs on those. If the guess keeps fewer than k
    entries, the exact selection runs on the whole array. The result is the same either way.
    Returned in no particular order. Entries of +inf (excluded) are never chosen while at least
    k entries are finite: the k-th smallest is then finite, and only entries ≤ it are kept.
    """
    n = d.shape[0]
    cand: np.ndarray | None = None
    if n > 16 * (k + _SAMPLE):
        sample = d[rng.integers(0, n, _SAMPLE)]
        # The r-th smallest of the subsample sits near the (r/_SAMPLE) quantile: r is chosen so
        # that about 4k + 64 entries are expected under it, enough to rarely fall short.
        r = min(_SAMPLE - 1, int((4 * k + 64) * _SAMPLE / n))
        threshold = np.partition(sample, r)[r]
        cand = np.flatnonzero(d <= threshold)
        if cand.shape[0] < k:
            cand = None
    if cand is None:
        cand = np.arange(n)
        sub = d
    else:
        sub = d[cand]
    kth = np.partition(sub, k - 1)[k - 1]
    below = cand[sub < kth]
    tied = cand[sub == kth]
    fill = rng.choice(tied, size=k - below.shape[0], replace=False)
    return np.concatenate([below, fill]).astype(np.int64, copy=False)


def nearest_to_target(
    values: np.ndarray, target: float, k: int, rng: np.random.Generator,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """The k indices with the smallest |values - target| (ties at random), none of them where
    the (N,) bool mask `exclude` is True (it must leave at least k)."""
    d = np.subtract(values, target)
    np.abs(d, out=d)
    if exclude is not None:
        d[exclude] = np.inf
    return smallest_k(d, k, rng)


def softmax_sample(
    values: np.ndarray, target: float, k: int, tau: float, rng: np.random.Generator,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """k distinct indices drawn with probability ∝ exp(-|values - target| / tau), among those
    where the (N,) bool mask `exclude` is False (it must leave at least k).

    The Gumbel-top-k trick: adding Gumbel noise to the log-weights and keeping the k largest is
    exactly sequential sampling without replacement, in one O(N) pass. An excluded index gets
    weight 0 (key +inf), which is sampling without replacement among the others.
    """
    keys = np.subtract(values, target)
    np.abs(keys, out=keys)
    keys /= tau  # -log-weight
    u = rng.random(values.shape[0])
    # -log-weight - Gumbel = |v - t|/tau + log(-log u); the k smallest are the k largest keys.
    keys += np.log(-np.log(u))
    if exclude is not None:
        keys[exclude] = np.inf
    return smallest_k(keys, k, rng)
