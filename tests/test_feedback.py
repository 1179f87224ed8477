"""From rewards to evidence (DESIGN.md §1.6): hand-computed cases, a plain loop, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots_cli.errors import InvalidValue
from bots_cli.selection.feedback import SuccessRule, task_evidence


def test_completions_of_a_task_are_grouped_wherever_they_come_from() -> None:
    # Task 7's group is split over two processes' slices; task 3 comes first.
    tasks = np.array([3, 3, 7, 7, 3, 7])
    rewards = np.array([1.0, 0.0, 0.5, 1.0, 1.0, 0.0])
    ids, s, n = task_evidence(tasks, rewards)
    assert ids.tolist() == [3, 7]  # in the order of their first completion
    np.testing.assert_allclose(s, [2.0, 1.5])  # graded rewards give fractional successes
    np.testing.assert_allclose(n, [3.0, 3.0])


def test_unscorable_completions_count_in_no_trial() -> None:
    ids, s, n = task_evidence(np.array([0, 0, 1, 1]), np.array([1.0, math.nan, math.nan,
                                                                 math.nan]))
    assert ids.tolist() == [0]  # task 1 had no scored completion: it is left out
    assert s.tolist() == [1.0] and n.tolist() == [1.0]


def test_threshold_and_reward_range() -> None:
    tasks = np.array([0, 0, 0, 0])
    rewards = np.array([-1.0, 0.0, 2.0, 3.0])
    _, s, n = task_evidence(tasks, rewards, SuccessRule(threshold=2.0))
    assert s.tolist() == [2.0] and n.tolist() == [4.0]
    _, s, _ = task_evidence(tasks, rewards, SuccessRule(reward_range=(-1.0, 3.0)))
    assert s[0] == pytest.approx(0.0 + 0.25 + 0.75 + 1.0)


@pytest.mark.parametrize("rule", [SuccessRule(), SuccessRule(reward_range=(0.0, 1.0))])
def test_rewards_outside_the_unit_interval_are_refused(rule: SuccessRule) -> None:
    with pytest.raises(InvalidValue, match=r"threshold.*reward range"):
        task_evidence(np.array([0, 0]), np.array([0.5, -0.5]), rule)


def test_bad_rules_are_refused() -> None:
    with pytest.raises(InvalidValue, match="not both"):
        SuccessRule(threshold=0.5, reward_range=(0.0, 2.0))
    with pytest.raises(InvalidValue, match="lo < hi"):
        SuccessRule(reward_range=(1.0, 1.0))
    with pytest.raises(InvalidValue, match="align"):
        task_evidence(np.array([0, 1]), np.array([1.0]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.one_of(st.floats(0, 1), st.just(math.nan))),
                min_size=1, max_size=40))
def test_vectorised_equals_a_plain_loop(pairs: list[tuple[int, float]]) -> None:
    tasks = np.array([t for t, _ in pairs], dtype=np.int64)
    rewards = np.array([r for _, r in pairs])
    expected: dict[int, list[float]] = {}
    for t, r in pairs:
        entry = expected.setdefault(t, [0.0, 0.0])
        if not math.isnan(r):
            entry[0] += r
            entry[1] += 1
    ids, s, n = task_evidence(tasks, rewards)
    assert ids.tolist() == [t for t, (_, k) in expected.items() if k > 0]
    np.testing.assert_allclose(s, [expected[t][0] for t in ids.tolist()])
    np.testing.assert_allclose(n, [expected[t][1] for t in ids.tolist()])
