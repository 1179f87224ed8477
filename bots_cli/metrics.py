"""The paper's comparison metrics (DESIGN.md §2), as pure functions of arrays.

Used by `bots simulate` now and by `bots report` on real runs. Conventions:
- a curve is (steps, scores): eval steps in increasing order and the score at each;
- `time_to_baseline` returns `math.inf` when run A never reaches the baseline's target and `nan`
  when the ratio is undefined (the baseline is best at step 0, or has no eval in the window).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_TOL = 1e-12  # "reaches" tolerates float round-off


def effective_task_ratio(successes: np.ndarray, trials: np.ndarray) -> float:
    """ETR: share of the selected tasks with 0 < s_k < n_k (a group with a learning signal)."""
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    return float(np.mean((s > 0) & (s < n)))


def zero_variance_share(rewards: np.ndarray | Sequence[np.ndarray]) -> float:
    """Share of groups whose rewards are all equal (no GRPO signal). `rewards`: (B, G) or ragged."""
    groups = list(rewards)
    flat = [np.asarray(g, dtype=np.float64) for g in groups]
    return float(np.mean([float(np.ptp(g) == 0.0) for g in flat]))


def _window(steps: np.ndarray, scores: np.ndarray, budget: float, fraction: float) -> np.ndarray:
    return scores[steps <= fraction * budget + _TOL]


def _first_reach(steps: np.ndarray, scores: np.ndarray, level: float) -> float:
    hit = np.flatnonzero(scores >= level - _TOL)
    return float(steps[hit[0]]) if hit.size else math.inf


def time_to_baseline(
    steps_a: Sequence[float],
    scores_a: Sequence[float],
    steps_u: Sequence[float],
    scores_u: Sequence[float],
    budget: float,
    fraction: float = 1.0,
) -> float:
    """TTB(x%) of run A against baseline U: t_A / t_U (lower is better).

    best_U = U's best score among its evals within the first `fraction` of `budget` steps,
    t_U = the first step U reaches best_U, t_A = the first step A reaches best_U.
    """
    sa, va = np.asarray(steps_a, float), np.asarray(scores_a, float)
    su, vu = np.asarray(steps_u, float), np.asarray(scores_u, float)
    window = _window(su, vu, budget, fraction)
    if window.size == 0:
        return math.nan
    best_u = float(window.max())
    t_u = _first_reach(su, vu, best_u)
    if t_u <= 0:
        return math.nan  # U never improved on its start: no time to beat
    t_a = _first_reach(sa, va, best_u)
    return t_a / t_u


def best_so_far_ratio(
    steps_a: Sequence[float],
    scores_a: Sequence[float],
    steps_u: Sequence[float],
    scores_u: Sequence[float],
    budget: float,
    fraction: float = 1.0,
) -> float:
    """BSF(x%): A's best score within the first `fraction` of the budget over U's."""
    wa = _window(np.asarray(steps_a, float), np.asarray(scores_a, float), budget, fraction)
    wu = _window(np.asarray(steps_u, float), np.asarray(scores_u, float), budget, fraction)
    if wa.size == 0 or wu.size == 0 or wu.max() <= 0:
        return math.nan
    return float(wa.max() / wu.max())


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from c correct of n samples: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i), stable for large n.
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def avg_at_k(correct: Sequence[float]) -> float:
    """avg@k: mean success over the k samples of a task (rewards in [0, 1])."""
    return float(np.mean(np.asarray(correct, dtype=np.float64)))
