"""The paper's metrics on hand-made curves (DESIGN.md §2)."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest

from bots_cli.metrics import (
    avg_at_k,
    best_so_far_ratio,
    effective_task_ratio,
    pass_at_k,
    time_to_baseline,
    zero_variance_share,
)

STEPS = [0, 10, 20, 30, 40]
UNIFORM = [0.30, 0.40, 0.50, 0.55, 0.60]
FAST = [0.30, 0.50, 0.60, 0.65, 0.70]
SLOW = [0.30, 0.32, 0.34, 0.36, 0.38]


def test_ttb_full_budget() -> None:
    # U's best in 40 steps is 0.60 at step 40; FAST reaches it at step 20.
    assert time_to_baseline(STEPS, FAST, STEPS, UNIFORM, budget=40) == pytest.approx(0.5)
    assert time_to_baseline(STEPS, UNIFORM, STEPS, UNIFORM, budget=40) == pytest.approx(1.0)


def test_ttb_partial_budget_uses_the_best_of_the_window() -> None:
    # First 50% = steps ≤ 20: U's best 0.50 at 20; FAST reaches 0.50 at 10.
    assert time_to_baseline(STEPS, FAST, STEPS, UNIFORM, 40, 0.5) == pytest.approx(0.5)
    # First 25% = steps ≤ 10: U's best 0.40 at 10; FAST reaches it at 10.
    assert time_to_baseline(STEPS, FAST, STEPS, UNIFORM, 40, 0.25) == pytest.approx(1.0)


def test_ttb_never_reaching_is_infinite_not_a_number() -> None:
    assert time_to_baseline(STEPS, SLOW, STEPS, UNIFORM, 40) == math.inf


def test_ttb_undefined_when_baseline_never_improves() -> None:
    flat = [0.3] * 5
    assert math.isnan(time_to_baseline(STEPS, FAST, STEPS, flat, 40))
    assert math.isnan(time_to_baseline([], [], [], [], 40))


def test_ttb_reach_tolerates_round_off() -> None:
    assert time_to_baseline(STEPS, [0.3, 0.6 - 1e-15, 0.6, 0.6, 0.6], STEPS, UNIFORM, 40) == 0.25


def test_ttb_and_bsf_on_a_cost_axis() -> None:
    # x = rollouts so far: A spends 300 a step, U 100; both evaluated every 10 steps.
    cost_a, cost_u = [300.0 * s for s in STEPS], [100.0 * s for s in STEPS]
    # U's best in its 4000 rollouts is 0.60 at 4000; FAST reaches it at step 20 = 6000 rollouts.
    assert time_to_baseline(cost_a, FAST, cost_u, UNIFORM, budget=4000) == pytest.approx(1.5)
    # Within the 4000-rollout budget A saw its steps 0 and 10 only (0.50 vs U's 0.60).
    assert best_so_far_ratio(cost_a, FAST, cost_u, UNIFORM, 4000) == pytest.approx(0.5 / 0.6)


def test_bsf() -> None:
    assert best_so_far_ratio(STEPS, FAST, STEPS, UNIFORM, 40) == pytest.approx(0.70 / 0.60)
    assert best_so_far_ratio(STEPS, FAST, STEPS, UNIFORM, 40, 0.5) == pytest.approx(0.60 / 0.50)
    assert best_so_far_ratio(STEPS, SLOW, STEPS, UNIFORM, 40) == pytest.approx(0.38 / 0.60)
    assert math.isnan(best_so_far_ratio(STEPS, FAST, STEPS, [0.0] * 5, 40))


def test_etr_and_zero_variance_share() -> None:
    assert effective_task_ratio([0, 3, 8, 5], [8, 8, 8, 8]) == 0.5
    assert effective_task_ratio([0.5, 2.0], [2, 2]) == 0.5  # fractional successes
    rewards = np.array([[1, 1, 1], [0, 1, 0], [0, 0, 0], [0.5, 0.5, 0.5]])
    assert zero_variance_share(rewards) == 0.75
    assert zero_variance_share([np.array([1.0, 0.0]), np.array([1.0])]) == 0.5


def test_pass_at_k_against_the_combinatorial_definition() -> None:
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                subsets = list(combinations(range(n), k))
                exact = np.mean([any(i < c for i in s) for s in subsets])
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
    assert pass_at_k(100, 0, 10) == 0.0
    assert pass_at_k(100, 95, 10) == 1.0
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(4, 5, 1)


def test_avg_at_k() -> None:
    assert avg_at_k([1, 0, 1, 1]) == 0.75
