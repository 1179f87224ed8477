"""The published rival selectors (docs/rivals.md): DPS, GRESO, SPEED, learnability, AdaRFT.

Each rule on hand-computed cases, DPS's vectorised filter against a per-task loop of the
paper's three stages, bad hyperparameters as one-line errors naming the config key, the exact
state round trip with batches in flight, and which of them read reference pass rates.
"""

from __future__ import annotations

import functools
import math
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots_cli.config import compose_selector
from bots_cli.errors import InvalidValue
from bots_cli.selection import (
    AdarftSelector,
    DpsSelector,
    GresoSelector,
    LearnabilitySelector,
    SpeedSelector,
    build_selector,
    check_screening,
    needs_references,
    refuse_screening,
    screen_rounds,
)
from bots_cli.selection.base import Selector
from bots_cli.selection.record import SelectionRecord
from bots_cli.selection.rivals import EpochWalk

RIVALS = ("dps", "greso", "speed", "learnability", "adarft")
N = 120
RNG = np.random.default_rng(3)
WEAK = RNG.uniform(0.0, 0.7, N)
STRONG = np.clip(WEAK + RNG.uniform(0.0, 0.3, N), 0.0, 1.0)


@functools.cache
def _conf(name: str) -> dict[str, Any]:
    return compose_selector(name)


def build(name: str, n: int = N, seed: int = 4, **over: Any) -> Selector:
    """conf/selector/<name>.yaml with `over`, built as bots simulate builds it."""
    return build_selector({**_conf(name), **over}, n_tasks=n, weak=WEAK[:n],
                          strong=STRONG[:n], seed=seed, group_size=8, screening=True)


def hparams(name: str, **over: Any) -> dict[str, Any]:
    """The constructor's hyperparameters: conf/selector/<name>.yaml's defaults with `over`."""
    cfg = {**_conf(name), **over}
    return {k: v for k, v in cfg.items() if k not in ("name", "success", "reference")}


def run_delayed(sel: Selector, steps: int, batch: int, rng: np.random.Generator,
                flight: list[np.ndarray], delay: int = 2) -> list[np.ndarray]:
    """`steps` selections with up to `delay` batches awaiting feedback; each selection is
    checked against every task still pending."""
    picks = []
    for _ in range(steps):
        pending = sel.pending.copy()
        ids = sel.select(batch)
        assert len(np.unique(ids)) == batch and not pending[ids].any()
        picks.append(ids.copy())
        flight.append(ids.copy())
        if len(flight) > delay:
            done = flight.pop(0)
            sel.update(done, rng.binomial(8, 0.5, len(done)), np.full(len(done), 8))
    return picks


# --- the shuffled walk (GRESO's and SPEED's candidates) --------------------------------------
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 200), data=st.data())
def test_epoch_walk_takes_distinct_unblocked_tasks(n: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    blocked = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    free = int((~blocked).sum())
    k = data.draw(st.integers(0, free))
    walk = EpochWalk(n, rng)
    if k == 0:
        return
    ids, declined = walk.take(k, blocked, rng, lambda c: rng.random(c.shape[0]) < 0.5)
    assert len(np.unique(ids)) == k and not blocked[ids].any() and declined >= 0
    # Without rejections a walk over the unblocked pool visits each task once per epoch.
    walk, seen = EpochWalk(n, rng), []
    while len(seen) < free:
        seen += walk.take(1, blocked, rng)[0].tolist()
    assert sorted(seen) == np.flatnonzero(~blocked).tolist() and walk.epoch == 0


# --- DPS -------------------------------------------------------------------------------------
def test_dps_filter_after_two_groups_equals_the_hand_computed_posterior() -> None:
    sel = DpsSelector(2, **hparams("dps", decay=0.5, prior_alpha=1.0, candidate_ratio=None))
    sel.update(np.array([0]), [0.0], [4.0])  # unsolved
    # Soft counts ξ[0, j] = 1/3 (uniform P and belief); the decay keeps A at 1 elsewhere.
    np.testing.assert_allclose(sel.counts[:, :, 0], [[4 / 3] * 3, [1.0] * 3, [1.0] * 3])
    np.testing.assert_allclose(sel.belief[:, 0], [0.4, 0.3, 0.3])  # column 0 of P
    np.testing.assert_allclose(sel.belief[:, 1], [1 / 3] * 3)  # never observed: the prior
    sel.update(np.array([0]), [2.0], [4.0])  # partial; the last state was unsolved for sure
    # A ← 0.5·A + 0.5 (row 0: 7/6), then ξ = e_partial ⊗ e_unsolved: A[1, 0] += 1.
    np.testing.assert_allclose(sel.counts[:, :, 0],
                               [[7 / 6] * 3, [2.0, 1.0, 1.0], [1.0] * 3])
    np.testing.assert_allclose(sel.belief[:, 0], [7 / 19, 6 / 19, 6 / 19])  # column 1 of P


def dps_loop(counts: np.ndarray, belief: np.ndarray, last: np.ndarray, ids: list[int],
             states: list[int], decay: float, a0: float) -> None:
    """The paper's three stages, one task at a time (the official sampler's order)."""
    for k in range(counts.shape[2]):
        a = counts[:, :, k].copy()
        p = a / a.sum(axis=0, keepdims=True)
        if k in ids:
            z = states[ids.index(k)]
            post = np.zeros(3)
            post[z] = 1.0
            soft = np.outer(post, last[:, k]) * p
            a = decay * a + (1 - decay) * a0 + soft / soft.sum()
        else:
            post = belief[:, k].copy()
            a = decay * a + (1 - decay) * a0
        nxt = (a / a.sum(axis=0, keepdims=True)) @ post
        counts[:, :, k], last[:, k], belief[:, k] = a, post, nxt / nxt.sum()


def test_dps_vectorised_filter_equals_the_per_task_loop() -> None:
    n, rng = 12, np.random.default_rng(0)
    sel = DpsSelector(n, **hparams("dps", decay=0.7, prior_alpha=0.5, candidate_ratio=None))
    counts, belief, last = sel.counts.copy(), sel.belief.copy(), sel.last_belief.copy()
    for _ in range(25):
        ids = rng.choice(n, 4, replace=False)
        succ = rng.integers(0, 5, 4).astype(float)
        sel.update(ids, succ, np.full(4, 4.0))
        states = [0 if s == 0 else 2 if s == 4 else 1 for s in succ]
        dps_loop(counts, belief, last, ids.tolist(), states, 0.7, 0.5)
    np.testing.assert_allclose(sel.counts, counts, rtol=1e-12)
    np.testing.assert_allclose(sel.belief, belief, rtol=1e-12)
    np.testing.assert_allclose(sel.last_belief, last, rtol=1e-12)


def test_dps_takes_the_tasks_most_likely_partial() -> None:
    sel = DpsSelector(6, seed=1, **hparams("dps", decay=1.0, candidate_ratio=None))
    # Task 2 was partial twice in a row, task 4 partial once; the others unsolved or solved.
    sel.update(np.array([0, 1, 2, 3, 4, 5]), [0, 4, 2, 0, 0, 4], np.full(6, 4))
    sel.update(np.array([0, 1, 2, 3, 4, 5]), [0, 4, 2, 0, 2, 4], np.full(6, 4))
    partial = sel.partial_probability()
    assert partial[2] > partial[4] > max(partial[[0, 1, 3, 5]])
    assert sorted(sel.select(2).tolist()) == [2, 4]


def test_dps_draws_only_candidate_ratio_times_the_batch() -> None:
    sel = DpsSelector(1000, **hparams("dps", candidate_ratio=2))
    sel.belief[1, :] = np.linspace(0.0, 0.5, 1000)  # the best tasks are the last ones
    picks = sel.select(5)
    # Among 10 random candidates, the best 5 are very unlikely to be the pool's best 5.
    assert not set(picks.tolist()) <= set(range(995, 1000))


# --- GRESO -----------------------------------------------------------------------------------
def test_greso_keep_probability_after_streaks() -> None:
    sel = GresoSelector(4, **hparams("greso", p_easy=0.5, p_hard=0.4, min_keep=0.01))
    for _ in range(3):
        sel.update(np.array([0]), [8], [8])  # all successes, three times
    for _ in range(2):
        sel.update(np.array([1]), [0], [8])  # all failures, twice
    for _ in range(7):
        sel.update(np.array([2]), [8], [8])
    sel.update(np.array([2, 3]), [3, 8], [8, 8])  # task 2's streak ends; task 3's begins
    assert sel.streak.tolist() == [3, 2, 0, 1]
    np.testing.assert_allclose(sel.keep_probability(np.arange(4)), [0.125, 0.16, 1.0, 0.5])
    for _ in range(6):
        sel.update(np.array([3]), [8], [8])
    assert sel.keep_probability(np.array([3]))[0] == 0.01  # 0.5^7 < the floor


def test_greso_skips_tasks_on_a_long_streak() -> None:
    sel = GresoSelector(1000, **hparams("greso"))
    sel.streak[:500], sel.easy[:500] = 10, True  # keep probability 0.01 each
    picks = sel.select(50)
    # Expected about 50·0.01/1.01 ≈ 0.5 of the first half; without skipping, about 25.
    assert (picks < 500).sum() < 8
    assert sel.metrics()["selector/skipped"] > 0


def test_greso_base_probabilities_adapt_from_the_second_epoch() -> None:
    sel = GresoSelector(10, **hparams("greso", p_easy=0.5, p_hard=0.5,
                                            target_zero_variance=0.3, step=0.01))
    ids = sel.select(4)
    sel.update(ids, [8, 8, 3, 4], np.full(4, 8))  # half easy, none hard: first epoch, no change
    assert (sel.p_easy, sel.p_hard) == (0.5, 0.5)
    for _ in range(2):
        sel.update(sel.select(4), [8, 8, 3, 4], np.full(4, 8))  # the walk enters epoch 2
    assert sel.walk.epoch == 1
    # easy share 0.5 ≥ 0.3/3: skip more easy ones; hard share 0 < 0.2: skip fewer hard ones.
    assert sel.p_easy == pytest.approx(0.49) and sel.p_hard == pytest.approx(0.51)


def test_greso_walk_visits_every_task_once_per_epoch_without_streaks() -> None:
    sel = GresoSelector(12, seed=2, **hparams("greso"))
    seen = []
    for _ in range(3):
        ids = sel.select(4)
        seen += ids.tolist()
        sel.update(ids, [3, 4, 5, 1], np.full(4, 8))
    assert sorted(seen) == list(range(12))


# --- learnability ----------------------------------------------------------------------------
def test_learnability_ranks_by_p_times_one_minus_p() -> None:
    sel = LearnabilitySelector(6, **hparams("learnability", momentum=0.0, prior_rate=0.0,
                                                   explore=0.0))
    sel.update(np.arange(6), [0, 2, 4, 6, 8, 1], np.full(6, 8))  # rates 0, ¼, ½, ¾, 1, ⅛
    np.testing.assert_allclose(sel.learnability(),
                               [0, 3 / 16, 1 / 4, 3 / 16, 0, 7 / 64])
    assert sorted(sel.select(3).tolist()) == [1, 2, 3]


def test_learnability_averages_the_recent_pass_rate() -> None:
    sel = LearnabilitySelector(2, **hparams("learnability", momentum=0.5, prior_rate=0.5,
                                                   explore=0.0))
    sel.update(np.array([0]), [4], [8])  # first group: p = 1/2
    sel.update(np.array([0]), [8], [8])  # p = 0.5·½ + 0.5·1 = ¾
    np.testing.assert_allclose(sel.rate, [0.75, 0.5])
    np.testing.assert_allclose(sel.learnability(), [3 / 16, 1 / 4])


def test_learnability_draws_its_uniform_share_then_the_most_learnable() -> None:
    sel = LearnabilitySelector(40, seed=1, **hparams("learnability", prior_rate=0.0,
                                                             explore=0.5))
    sel.update(np.arange(40), np.r_[np.full(4, 4), np.zeros(36)], np.full(40, 8))
    ids = sel.select(8)
    assert set(range(4)) <= set(ids.tolist())  # the 4 learnable ones, after 4 uniform draws
    assert len(np.unique(ids)) == 8


# --- AdaRFT ----------------------------------------------------------------------------------
def test_adarft_target_follows_the_reward() -> None:
    sel = AdarftSelector(4, [1.0, 0.6, 0.5, 0.0], **hparams("adarft"))  # d: 0, 40, 50, 100
    np.testing.assert_allclose(sel.difficulty, [0, 40, 50, 100])
    sel.update(sel.select(2), [8, 8], [8, 8])  # R = 1: T = 0 + 50·tanh(2·0.5)
    assert sel.target == pytest.approx(50 * math.tanh(1.0))  # 38.08
    assert sorted(sel.select(2).tolist()) == [1, 2]  # 40 and 50 are nearest 38.08
    sel.update(np.array([1, 2]), [2, 2], [8, 8])  # R = ¼: T += 50·tanh(−0.5)
    assert sel.target == pytest.approx(50 * math.tanh(1.0) + 50 * math.tanh(-0.5))
    for _ in range(3):
        sel.update(np.array([0]), [0], [8])
    assert sel.target == 0.0  # clipped at min_difficulty


def test_adarft_never_selects_a_pending_task() -> None:
    sel = AdarftSelector(6, [0.5] * 6, **hparams("adarft", initial_difficulty=50.0))
    first, second = sel.select(3), sel.select(3)
    assert sorted(np.concatenate([first, second]).tolist()) == list(range(6))


# --- SPEED -----------------------------------------------------------------------------------
def test_speed_keeps_the_intermediate_candidates_and_counts_its_rollouts() -> None:
    sel = SpeedSelector(100, **hparams("speed", screen_ratio=2.0, screen_rollouts=4,
                                             max_rounds=10))

    def rollout(ids: np.ndarray, n: int) -> np.ndarray:  # odd tasks mixed, even all solved
        return np.where((ids % 2 == 1)[:, None], np.tile([1.0, 0.0], n // 2), 1.0)

    out = screen_rounds(sel, 8, rollout)
    assert len(out.ids) == 8 and np.all(out.ids % 2 == 1)
    assert out.rewards.shape == (8, 4)
    assert out.rollouts == out.rounds * 16 * 4  # every screened candidate, kept or not
    assert sel.pending[out.ids].all() and int(sel.pending.sum()) == 8  # the rest released
    sel.update(out.ids, np.full(8, 5.0), np.full(8, 8.0))
    assert not sel.pending.any()


def test_speed_fills_the_batch_when_the_rounds_run_out() -> None:
    sel = SpeedSelector(100, **hparams("speed", screen_ratio=1.0, screen_rollouts=4,
                                             max_rounds=3))
    out = screen_rounds(sel, 8, lambda ids, n: np.zeros((len(ids), n)))  # nothing is kept
    assert out.rounds == 3 and out.rollouts == 3 * 8 * 4 and len(out.ids) == 8
    assert int(sel.pending.sum()) == 8


def test_speed_is_refused_where_no_screening_runs() -> None:
    with pytest.raises(InvalidValue, match=r"^selector\.name=speed: this selector screens "
                       r"candidates with 4 extra rollouts each .* only bots simulate and the "
                       r"native bots train run; trainer=trl and the verl adapter cannot"):
        build_selector(compose_selector("speed"), n_tasks=N)
    from bots_cli.selection.build import check_selector_config

    with pytest.raises(InvalidValue, match="name=speed"):  # bots train's config check (trl)
        check_selector_config(compose_selector("speed"), group_size=8)
    sel = check_selector_config(compose_selector("speed"), group_size=8, screening=True)
    check_screening(sel, 8, "train.group_size")  # the native loop: n0 = 4 < G = 8
    with pytest.raises(InvalidValue, match=r"^selector\.screen_rollouts \(4\) must be < "
                       r"train\.group_size \(4\)"):
        check_screening(sel, 4, "train.group_size")
    with pytest.raises(InvalidValue, match=r"^data\.sampler\.selector\.name=speed: "):
        refuse_screening(build("speed"), "data.sampler.selector")  # a ready selector
    refuse_screening(build("dps"))  # any other: nothing to refuse
    with pytest.raises(InvalidValue, match="name=speed"):  # a trainer's selection record
        SelectionRecord(build("speed"))
    SelectionRecord(build("speed"), screening=True)  # the native loop's


def test_screening_leaves_unscorable_completions_out_and_uses_the_callers_select() -> None:
    """NaN (an unscorable completion) is out of a candidate's trials; a candidate with none
    scored is not kept. The trainer's own `select` (its selection record's) picks."""
    sel = SpeedSelector(100, **hparams("speed", screen_ratio=1.0, screen_rollouts=3,
                                       max_rounds=1))
    picked: list[int] = []

    def select(n: int) -> np.ndarray:
        ids = sel.select(n)
        picked.extend(ids.tolist())
        return ids

    def rollout(ids: np.ndarray, n: int) -> np.ndarray:
        out = np.zeros((len(ids), n))
        out[0] = [1.0, np.nan, 0.0]  # 1 of 2 scored: intermediate, kept
        out[1] = [1.0, np.nan, np.nan]  # 1 of 1 scored: all right, not kept
        out[2] = np.nan  # nothing scored: not kept (and no evidence)
        return out

    out = screen_rounds(sel, 4, rollout, select=select)
    assert out.ids.tolist() == picked  # one round: its kept one, then the others as filler
    assert sel.screened == 3 and sel.kept == 1  # the unscored candidate was not screened
    assert out.rollouts == 4 * 3


def test_the_selection_record_counts_what_no_update_reports() -> None:
    record = SelectionRecord(build("uniform"))
    record.feed(np.repeat(record.select(2), 4), np.ones(8), tokens=80)
    record.spend(12, 30)  # e.g. screened-out candidates
    assert (record.rollouts, record.tokens) == (20, 110)
    assert record.metrics([])["train/rollouts"] == 20


def test_simulate_counts_speeds_screening_rollouts() -> None:
    from hydra import compose, initialize_config_dir

    from bots_cli.config import config_dir
    from bots_cli.simulate.run import SimParams, _build, run_one
    from bots_cli.simulate.world import World, WorldParams

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="simulate", overrides=[
            "simulate.steps=3", "simulate.batch_size=8", "simulate.group_size=8",
            "world.n_tasks=300"])
    params = WorldParams.from_config(cfg.world)
    world, sim = World.generate(params, 0), SimParams.from_config(cfg.simulate, params)
    rows, _ = run_one(world, _build(compose_selector("speed"), world, 0, 8, "selector"), sim, 0)
    spent = np.diff([0] + [r["train/rollouts"] for r in rows])
    # Each step: ≥ 1 round of 32 candidates × 4 screening rollouts, then 8 × 4 continuations.
    assert np.all(spent >= 32 * 4 + 8 * 4) and np.all((spent - 8 * 4) % (32 * 4) == 0)
    rows, _ = run_one(world, _build(compose_selector("uniform"), world, 0, 8, "selector"), sim, 0)
    assert [r["train/rollouts"] for r in rows] == [64, 128, 192]
    with pytest.raises(InvalidValue, match=r"selector\.screen_rollouts \(8\) must be < "
                       r"simulate\.group_size \(8\)"):
        _build(compose_selector("speed", {"screen_rollouts": 8}), world, 0, 8, "selector")


# --- every rival -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "over", "match"),
    [
        ("dps", {"decay": 1.5}, r"^selector\.decay \(share of transition counts kept per "
         r"step\) must be in \[0, 1\], got 1\.5$"),
        ("dps", {"prior_alpha": 0.0}, r"^selector\.prior_alpha .* must be > 0, got 0\.0$"),
        ("dps", {"candidate_ratio": 0.5}, r"^selector\.candidate_ratio .* must be ≥ 1"),
        ("greso", {"p_easy": 0.99}, r"^selector\.p_easy .* in \[p_min, p_max\] = \[0\.05, "
         r"0\.95\]\) must be in \[0\.05, 0\.95\], got 0\.99$"),
        ("greso", {"min_keep": 0.0}, r"^selector\.min_keep .* must be in \(0, 1\]"),
        ("greso", {"p_max": 0.01}, r"^selector\.p_max .* must be in \[0\.05, 1\]"),
        ("speed", {"screen_rollouts": 1}, r"^selector\.screen_rollouts .* must be ≥ 2"),
        ("speed", {"max_rounds": 0}, r"^selector\.max_rounds .* must be ≥ 1"),
        ("speed", {"screen_ratio": 0.5}, r"^selector\.screen_ratio .* must be ≥ 1"),
        ("learnability", {"momentum": 1.0}, r"^selector\.momentum .* must be in \[0, 1\)"),
        ("learnability", {"explore": -0.1}, r"^selector\.explore .* must be in \[0, 1\]"),
        ("adarft", {"sensitivity": 0.0}, r"^selector\.sensitivity .* must be > 0"),
        ("adarft", {"max_difficulty": 120.0}, r"^selector\.max_difficulty .* must be in "
         r"\[0, 100\], got 120\.0$"),
        ("adarft", {"initial_difficulty": 90.0, "max_difficulty": 80.0},
         r"^selector\.initial_difficulty .* must be in \[0, 80\]"),
        ("adarft", {"reference": "oracle"}, r"^selector\.reference must be one of weak, strong"),
    ],
)
def test_bad_hyperparameters_are_one_line_errors(name: str, over: dict[str, Any],
                                                 match: str) -> None:
    with pytest.raises(InvalidValue, match=match) as err:
        build(name, **over)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", RIVALS)
def test_state_round_trip_with_batches_in_flight(name: str) -> None:
    sel = build(name)
    rng = np.random.default_rng(5)
    flight: list[np.ndarray] = []
    run_delayed(sel, 9, 12, rng, flight)
    state = pickle.loads(pickle.dumps(sel.state_dict()))
    saved_rng, saved_flight = rng.bit_generator.state, [b.copy() for b in flight]
    straight = run_delayed(sel, 15, 12, rng, flight)
    after = {k: np.copy(v) for k, v in vars(sel).items() if isinstance(v, np.ndarray)}

    resumed = build(name)
    resumed.load_state_dict(state)
    rng = np.random.default_rng()
    rng.bit_generator.state = saved_rng
    again = run_delayed(resumed, 15, 12, rng, saved_flight)
    assert [a.tolist() for a in again] == [s.tolist() for s in straight]
    for key, value in after.items():
        np.testing.assert_array_equal(getattr(resumed, key), value)
    assert resumed.metrics() == sel.metrics()


@pytest.mark.parametrize("name", RIVALS)
def test_a_state_saved_with_other_settings_is_refused(name: str) -> None:
    key, value = {"dps": ("decay", 0.5), "greso": ("p_easy", 0.3),
                  "speed": ("screen_rollouts", 2), "learnability": ("explore", 0.3),
                  "adarft": ("step_size", 10.0)}[name]
    state = build(name).state_dict()
    with pytest.raises(InvalidValue, match=rf"^{key}: the saved selector state used"):
        build(name, **{key: value}).load_state_dict(state)


@pytest.mark.parametrize("name", RIVALS)
def test_references_are_read_only_by_adarft(name: str) -> None:
    cfg = compose_selector(name)
    assert needs_references(cfg) == (name == "adarft")
    if name == "adarft":
        with pytest.raises(InvalidValue, match="needs the strong reference's pass rates"):
            build_selector(cfg, n_tasks=N)
        weak = build_selector({**cfg, "reference": "weak"}, n_tasks=N, weak=WEAK, strong=None)
        assert isinstance(weak, AdarftSelector)
        np.testing.assert_allclose(weak.difficulty, 100 * (1 - WEAK))
        return
    # The others ignore references: the same selections with or without them.
    runs = []
    for weak, strong in ((WEAK, STRONG), (None, None)):
        sel = build_selector(cfg, n_tasks=N, weak=weak, strong=strong, seed=2, screening=True)
        runs.append(run_delayed(sel, 6, 10, np.random.default_rng(0), [], delay=0))
    assert [a.tolist() for a in runs[0]] == [b.tolist() for b in runs[1]]
