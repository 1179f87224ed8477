"""Feedback that arrives late (DESIGN.md §1.8), for every selector of the registry.

`select` may be called again before earlier batches' `update`: batches in flight never share a
task, a pending task is never selected, updates may come in any order, and the state round trip
holds what is in flight. Every name in `BUILDERS` is tested, so a selector added later is too.
"""

from __future__ import annotations

import functools
import inspect
import pickle
from typing import Any

import numpy as np
import pytest

from bots_cli.config import compose_selector
from bots_cli.errors import InvalidValue
from bots_cli.selection import BotsSelector, Easy2HardSelector, UniformSelector
from bots_cli.selection.base import Selector
from bots_cli.selection.build import BUILDERS, build_selector

NAMES = tuple(BUILDERS)
GROUP = 8


@functools.cache
def config(name: str, mode: str | None = None) -> dict[str, Any]:
    return compose_selector(name, {} if mode is None else {"mode": mode})


def references(n: int, lo: float = 0.0, hi: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    weak = rng.uniform(lo, hi, n)
    return weak, np.clip(weak + rng.uniform(0.0, 0.3, n), 0.0, 1.0)


def build(name: str, n: int, *, seed: int = 5, mode: str | None = None,
          band: bool = False) -> Selector:
    """`name` from conf/selector/ on n tasks; `band`: every reference rate in [0.3, 0.8], inside
    offline_band's [0.2, 0.8], so that its pool is the whole pool."""
    weak, strong = references(n, 0.3, 0.5) if band else references(n)
    # A selector that screens candidates (SPEED) is built as `bots simulate` builds it.
    screening = ({"screening": True} if "screening" in inspect.signature(build_selector).parameters
                 else {})
    return build_selector(config(name, mode), n_tasks=n, weak=weak, strong=strong, seed=seed,
                          group_size=GROUP, **screening)


def outcome(rng: np.random.Generator, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return rng.binomial(GROUP, 0.5, len(ids)), np.full(len(ids), GROUP)


def run_delayed(sel: Selector, steps: int, batch: int, delay: int, rng: np.random.Generator,
                order: str = "oldest", in_flight: list[np.ndarray] | None = None,
                ) -> list[np.ndarray]:
    """`steps` selections with `delay` batches in flight: after each select, once more than
    `delay` batches await feedback, one of them is fed back (`order`: the oldest, or one at
    random). Checks at every select that no task is in two batches in flight."""
    flight = [] if in_flight is None else in_flight
    picks = []
    for _ in range(steps):
        ids = sel.select(batch)
        assert len(np.unique(ids)) == batch
        waiting = np.concatenate(flight) if flight else np.empty(0, dtype=np.int64)
        assert not np.isin(ids, waiting).any(), (ids, waiting)
        picks.append(ids.copy())
        flight.append(ids.copy())
        if len(flight) > delay:
            done = flight.pop(0 if order == "oldest" else int(rng.integers(len(flight))))
            sel.update(done, *outcome(rng, done))
    return picks


# Selections recorded from the code before late feedback existed (commit 4d556c1, its
# bots_cli/selection loaded as a module), with no delay: build(name, n, mode=mode), then per step
# select(batch) and update with rng = default_rng(0) binomial(8, 0.5) successes of 8.
RECORDED: dict[tuple[str, str | None, int, int], list[list[int]]] = {  # (name, mode, n, batch)
    ('bots', None, 40, 8): [
        [4, 10, 13, 22, 23, 34, 36, 11],
        [3, 4, 8, 13, 16, 26, 28, 34],
        [3, 7, 20, 29, 30, 36, 37, 34],
        [5, 7, 14, 15, 23, 30, 37, 35],
        [12, 17, 29, 31, 34, 38, 39, 27],
        [3, 10, 19, 22, 28, 34, 39, 12],
    ],
    ('bots', 'greedy', 40, 8): [
        [29, 24, 17, 0, 19, 27, 22, 11],
        [4, 10, 12, 14, 21, 22, 25, 37],
        [1, 2, 4, 16, 23, 34, 35, 18],
        [2, 4, 16, 19, 24, 29, 33, 35],
        [2, 4, 12, 24, 29, 35, 37, 25],
        [2, 4, 12, 24, 25, 29, 37, 18],
    ],
    ('bots', 'softmax', 40, 8): [
        [9, 13, 14, 22, 25, 27, 28, 15],
        [9, 11, 13, 15, 28, 35, 36, 1],
        [5, 11, 12, 14, 16, 20, 36, 1],
        [2, 8, 17, 23, 25, 30, 39, 1],
        [1, 2, 8, 13, 15, 24, 34, 14],
        [1, 9, 10, 13, 15, 26, 28, 8],
    ],
    ('mopps', None, 40, 8): [
        [4, 10, 13, 22, 23, 34, 36, 11],
        [15, 16, 19, 27, 28, 30, 32, 2],
        [3, 11, 13, 15, 28, 34, 36, 30],
        [7, 15, 23, 25, 28, 31, 32, 30],
        [12, 15, 17, 20, 26, 28, 34, 24],
        [4, 11, 15, 24, 28, 30, 34, 21],
    ],
    ('implicit_only', None, 40, 8): [
        [4, 10, 13, 22, 23, 34, 36, 11],
        [13, 14, 20, 24, 27, 31, 37, 16],
        [1, 8, 10, 12, 13, 17, 20, 34],
        [2, 3, 8, 24, 26, 36, 37, 34],
        [2, 6, 21, 22, 30, 38, 39, 26],
        [2, 7, 16, 17, 19, 21, 24, 14],
    ],
    ('uniform', None, 18, 8): [
        [7, 17, 3, 1, 13, 9, 11, 12],
        [2, 4, 16, 10, 6, 0, 15, 5],
        [14, 8, 10, 11, 2, 6, 4, 7],
        [5, 12, 15, 16, 9, 1, 3, 0],
        [8, 17, 14, 13, 6, 11, 0, 9],
        [10, 12, 1, 16, 3, 15, 2, 14],
    ],
    ('offline_band', None, 40, 4): [
        [36, 16, 19, 8],
        [27, 11, 38, 12],
        [18, 2, 30, 28],
        [25, 24, 5, 9],
        [34, 23, 17, 20],
        [1, 10, 33, 22],
    ],
    ('easy2hard', None, 18, 8): [
        [8, 5, 15, 16, 12, 9, 2, 17],
        [11, 1, 10, 13, 4, 14, 7, 0],
        [6, 3, 8, 5, 15, 16, 12, 9],
        [2, 17, 11, 1, 10, 13, 4, 14],
        [7, 0, 6, 3, 8, 5, 15, 16],
        [12, 9, 2, 17, 11, 1, 10, 13],
    ],
    ('bots', None, 100000, 12): [
        [3250, 12998, 14751, 17352, 20718, 56364, 68763, 71665, 73928, 81244, 85658, 12738],
        [1880, 6040, 17632, 19490, 36451, 59529, 60597, 72858, 77343, 87350, 96023, 57424],
        [369, 1067, 25007, 36484, 42307, 54288, 67758, 70708, 73253, 73674, 81813, 41381],
    ],
}


@pytest.mark.parametrize("name", NAMES)
def test_three_batches_in_flight_partition_the_pool(name: str) -> None:
    """The issue's case: three batches of 32 from 96 tasks, none fed back yet, hold every task
    once (BOTS re-selected 5 in-flight tasks before); a fourth batch has no task left."""
    sel = build(name, 96, band=True)
    picked = np.concatenate([sel.select(32) for _ in range(3)])
    assert sorted(picked.tolist()) == list(range(96))
    with pytest.raises(InvalidValue) as err:
        sel.select(1)
    assert str(err.value) == ("batch_size (1) is larger than the 0 tasks whose feedback is not "
                              "pending (96 tasks of 3 batches await their update); feed back "
                              "earlier batches first, or lower the batch size")


@pytest.mark.parametrize("delay", [1, 3])
@pytest.mark.parametrize("order", ["oldest", "random"])
@pytest.mark.parametrize("name", NAMES)
def test_batches_in_flight_never_share_a_task(name: str, order: str, delay: int) -> None:
    """With `delay` batches in flight, fed back oldest first or in any order, no selection holds
    a pending task (run_delayed checks each one), and the selector keeps learning."""
    sel = build(name, 60, band=True)
    rng = np.random.default_rng(1)
    run_delayed(sel, 40, 10, delay, rng, order)
    assert sel.step == 40 - delay
    assert sel.n_pending == 10 * delay and int(sel.pending.sum()) == 10 * delay


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_in_flight_continues_exactly(name: str) -> None:
    """Saved with two batches in flight (pickled, as a checkpoint is) and loaded into a fresh
    selector: the same selections follow as without the interruption, the pending ones fed back
    in the same order."""
    sel = build(name, 60, band=True)
    rng = np.random.default_rng(2)
    flight: list[np.ndarray] = []
    run_delayed(sel, 7, 10, 2, rng, in_flight=flight)
    state = pickle.loads(pickle.dumps(sel.state_dict()))
    saved_rng, saved_flight = rng.bit_generator.state, [b.copy() for b in flight]
    straight = run_delayed(sel, 12, 10, 2, rng, in_flight=flight)

    resumed = build(name, 60, band=True)
    resumed.load_state_dict(state)
    assert resumed.n_pending == 20
    rng = np.random.default_rng()
    rng.bit_generator.state = saved_rng
    again = run_delayed(resumed, 12, 10, 2, rng, in_flight=saved_flight)
    assert [a.tolist() for a in again] == [s.tolist() for s in straight]


@pytest.mark.parametrize(("name", "mode", "n", "batch"), list(RECORDED))
def test_no_delay_selects_as_before_late_feedback(name: str, mode: str | None, n: int,
                                                  batch: int) -> None:
    """Fed back before each next select, every selector chooses exactly what the code before
    late feedback chose (recorded above; n = 100 000 takes smallest_k's sampled threshold)."""
    sel = build(name, n, mode=mode)
    rng = np.random.default_rng(0)
    picks = []
    for _ in RECORDED[name, mode, n, batch]:
        ids = sel.select(batch)
        picks.append(ids.tolist())
        sel.update(ids, *outcome(rng, ids))
    assert picks == RECORDED[name, mode, n, batch]


@pytest.mark.parametrize("name", NAMES)
def test_a_task_left_out_of_its_update_is_free_again(name: str) -> None:
    """A task whose completions were all unscorable, or dropped by a filter, is missing from its
    batch's update: the batch has still arrived, so no task stays locked out of the pool."""
    sel = build(name, 12, band=True)
    ids = sel.select(12)
    sel.update(ids[:-1], *outcome(np.random.default_rng(0), ids[:-1]))
    assert sel.n_pending == 0 and not sel.pending.any()
    assert sorted(sel.select(12).tolist()) == list(range(12))


def test_evidence_from_elsewhere_frees_no_batch() -> None:
    """An update of tasks that no batch in flight holds is evidence like any other (it moves the
    posterior) and leaves the batches in flight pending."""
    sel = build("bots", 10)
    flying = sel.select(8)
    others = np.setdiff1d(np.arange(10), flying)
    before = sel.alpha.copy()
    sel.update(others, [8, 8], [8, 8])
    assert (sel.alpha[others] > before[others]).all()
    assert sel.n_pending == 8 and sel.pending[flying].all()
    assert sorted(sel.select(2).tolist()) == sorted(others.tolist())


def test_greedy_takes_the_nearest_free_tasks() -> None:
    """Greedy with one batch in flight: the next batch is the nearest to p* among the rest."""
    sel = BotsSelector(6, rho=0.0, mode="greedy")
    sel.alpha = np.array([50.0, 45.0, 40.0, 30.0, 20.0, 10.0])  # means .5 .45 .4 .3 .2 .1
    sel.beta = 100.0 - sel.alpha
    assert sorted(sel.select(2).tolist()) == [0, 1]
    assert sorted(sel.select(2).tolist()) == [2, 3]
    assert sorted(sel.select(2).tolist()) == [4, 5]


def in_flight(sel: Selector, batch: list[int]) -> None:
    """Put `batch` in flight as a checkpoint saved at that moment would: through the state."""
    state = sel.state_dict()
    state["in_flight"] = [np.asarray(batch, dtype=np.int64)]
    sel.load_state_dict(state)


@pytest.mark.parametrize("mode", ["thompson", "softmax"])
def test_sampling_modes_draw_among_the_free_tasks_only(mode: str) -> None:
    """With the four tasks at p* in flight, Thompson and softmax choose among the other four as
    if those were the pool: softmax's inclusion probabilities are those of sampling without
    replacement with weights exp(−|p − p*|/τ) over the free tasks alone."""
    counts = np.zeros(8)
    runs = 1000
    for seed in range(runs):
        sel = BotsSelector(8, rho=0.0, mode=mode, tau=0.2, seed=seed)
        sel.alpha = np.array([50.0, 50.0, 50.0, 50.0, 30.0, 30.0, 10.0, 10.0])
        sel.beta = 100.0 - sel.alpha
        in_flight(sel, [0, 1, 2, 3])
        counts[sel.select(2)] += 1
    assert counts[:4].sum() == 0
    if mode == "thompson":  # means 0.3 beat 0.1 but for draws many deviations out
        assert counts[4:6].min() >= 0.99 * runs
        return
    w = np.exp(-np.array([0.2, 0.2, 0.4, 0.4]) / 0.2)  # free tasks 4, 5, 6, 7
    # P(task 4 in a batch of 2) = P(first) + Σ_j≠4 P(first = j) · w_4 / (W − w_j)
    p4 = w[0] / w.sum() + sum(w[j] / w.sum() * w[0] / (w.sum() - w[j]) for j in (1, 2, 3))
    sd = np.sqrt(p4 * (1 - p4) / runs)
    assert abs(counts[4] / runs - p4) < 5 * sd and abs(counts[5] / runs - p4) < 5 * sd


def test_uniform_defers_a_pending_task_within_its_epoch() -> None:
    """Uniform: the second epoch begins while the first epoch's first batch is in flight; its
    tasks are passed over, then drawn as soon as they are free, so the second epoch still
    holds every task once."""
    sel = UniformSelector(10, seed=3)
    first, second = sel.select(5), sel.select(5)
    sel.update(second, [1] * 5, [2] * 5)  # out of order: the first batch is still in flight
    third = sel.select(5)
    assert sorted(third.tolist()) == sorted(second.tolist())
    sel.update(first, [1] * 5, [2] * 5)
    sel.update(third, [1] * 5, [2] * 5)
    fourth = sel.select(5)
    assert sorted(np.concatenate([third, fourth]).tolist()) == list(range(10))


def test_easy2hard_defers_a_pending_task_within_its_round() -> None:
    """Easy2hard: round two begins while 0, 1, 2 are in flight; they are passed over, then drawn
    first once free, still once per round."""
    rates = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])  # easiest first: 0, 1, ..., 5
    sel = Easy2HardSelector(6, rates)
    assert sel.select(3).tolist() == [0, 1, 2]
    assert sel.select(2).tolist() == [3, 4]
    sel.update(np.array([3, 4]), [1, 1], [2, 2])
    assert sel.select(2).tolist() == [5, 3]  # round two: 0, 1, 2 in flight, passed over
    sel.update(np.array([0, 1, 2]), [1] * 3, [2] * 3)
    sel.update(np.array([5, 3]), [1, 1], [2, 2])
    assert sel.select(4).tolist() == [0, 1, 2, 4]  # the deferred ones first, in their order
    assert sel.select(2).tolist() == [5, 3]  # 5 ends round two; round three: 0, 1, 2, 4 in flight


def test_release_frees_part_of_a_batch() -> None:
    """`release`: candidates that will not be trained on (SPEED's screening) are free again at
    once; the rest of their batch stays in flight until its update, in the saved state too."""
    sel = build("uniform", 10)
    batch = sel.select(6)
    sel.release(batch[:2])
    assert sel.n_pending == 4 and sel.pending.sum() == 4 and not sel.pending[batch[:2]].any()
    resumed = build("uniform", 10)
    resumed.load_state_dict(sel.state_dict())
    assert [b.tolist() for b in resumed.in_flight] == [batch[2:].tolist()]
    assert set(resumed.select(6).tolist()) == set(range(10)) - set(batch[2:].tolist())
    with pytest.raises(InvalidValue, match="release: only pending tasks"):
        sel.release(batch[:1])


def test_a_state_saved_before_late_feedback_has_nothing_in_flight() -> None:
    sel = build("bots", 10)
    sel.update(np.arange(3), [1, 2, 3], [4, 4, 4])
    state = sel.state_dict()
    del state["in_flight"]
    resumed = build("bots", 10)
    resumed.load_state_dict(state)
    assert resumed.n_pending == 0 and resumed.in_flight == [] and not resumed.pending.any()
    np.testing.assert_array_equal(resumed.alpha, sel.alpha)
