"""Selection behaviour, baselines, state round trips and argument checks of every selector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from bots_cli.selection import (
    BotsSelector,
    Easy2HardSelector,
    OfflineBandSelector,
    UniformSelector,
    build_selector,
)
from bots_cli.selection.topk import smallest_k

SELECTOR_CONF = Path(__file__).resolve().parents[1] / "conf" / "selector"
RNG = np.random.default_rng(7)
N = 200
WEAK = RNG.uniform(0.0, 0.7, N)
STRONG = np.clip(WEAK + RNG.uniform(0.0, 0.3, N), 0, 1)


def drive(sel, steps: int, batch: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Run select/update with fixed pseudo-outcomes; return the selections."""
    rng = np.random.default_rng(seed)
    picks = []
    for _ in range(steps):
        ids = sel.select(batch)
        picks.append(ids.copy())
        sel.update(ids, rng.binomial(8, 0.5, len(ids)), np.full(len(ids), 8))
    return picks


ALL_SELECTORS = {
    "bots_thompson": lambda: BotsSelector(N, weak=WEAK, strong=STRONG, seed=3),
    "bots_greedy": lambda: BotsSelector(N, weak=WEAK, strong=STRONG, mode="greedy", seed=3),
    "bots_softmax": lambda: BotsSelector(N, weak=WEAK, strong=STRONG, mode="softmax", seed=3),
    "uniform": lambda: UniformSelector(N, seed=3),
    "offline_band": lambda: OfflineBandSelector(N, WEAK, lo=0.2, hi=0.6, seed=3),
    "easy2hard": lambda: Easy2HardSelector(N, WEAK, seed=3),
}


@pytest.mark.parametrize("name", ALL_SELECTORS)
def test_selections_are_distinct_in_range_int64(name: str) -> None:
    sel = ALL_SELECTORS[name]()
    for ids in drive(sel, 30, batch=16):
        assert ids.dtype == np.int64
        assert len(ids) == 16 and len(np.unique(ids)) == 16
        assert ids.min() >= 0 and ids.max() < N


@pytest.mark.parametrize("name", ALL_SELECTORS)
def test_state_round_trip_reproduces_future_selections(name: str) -> None:
    sel = ALL_SELECTORS[name]()
    drive(sel, 7)
    state = sel.state_dict()
    future = drive(sel, 5, seed=1)
    after = {k: np.copy(v) for k, v in vars(sel).items() if isinstance(v, np.ndarray)}

    restored = ALL_SELECTORS[name]()
    restored.load_state_dict(state)
    assert [list(x) for x in drive(restored, 5, seed=1)] == [list(x) for x in future]
    for key, value in after.items():
        np.testing.assert_array_equal(getattr(restored, key), value)


def test_state_is_a_copy_not_a_view() -> None:
    sel = BotsSelector(N, weak=WEAK, strong=STRONG)
    state = sel.state_dict()
    drive(sel, 3)
    assert np.all(state["alpha"] == 1.0)


def test_loading_state_into_a_different_selector_fails() -> None:
    state = BotsSelector(N, rho=0.0, lam=0.1).state_dict()
    with pytest.raises(ValueError, match="lam"):
        BotsSelector(N, rho=0.0, lam=0.3).load_state_dict(state)
    with pytest.raises(ValueError, match="100"):
        BotsSelector(100, rho=0.0, lam=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="uniform"):
        UniformSelector(N).load_state_dict(state)


@settings(max_examples=60, deadline=None)
@given(
    alpha=st.lists(st.floats(0.5, 50.0), min_size=5, max_size=60),
    data=st.data(),
)
def test_greedy_takes_the_posterior_means_nearest_target(alpha, data) -> None:
    n = len(alpha)
    beta = data.draw(st.lists(st.floats(0.5, 50.0), min_size=n, max_size=n))
    k = data.draw(st.integers(1, n))
    target = data.draw(st.floats(0.05, 0.95))
    sel = BotsSelector(n, rho=0.0, mode="greedy", target=target)
    sel.alpha, sel.beta = np.array(alpha), np.array(beta)
    ids = sel.select(k)
    dist = np.abs(sel.posterior_mean() - target)
    rest = np.setdiff1d(np.arange(n), ids)
    assert len(np.unique(ids)) == k
    if rest.size:
        assert dist[ids].max() <= dist[rest].min()


def test_softmax_with_tiny_temperature_agrees_with_greedy() -> None:
    rng = np.random.default_rng(0)
    for seed in range(5):
        alpha, beta = rng.uniform(1, 20, 300), rng.uniform(1, 20, 300)
        picks = {}
        for mode in ("greedy", "softmax"):
            sel = BotsSelector(300, rho=0.0, mode=mode, tau=1e-6, seed=seed)
            sel.alpha, sel.beta = alpha.copy(), beta.copy()
            picks[mode] = set(sel.select(20).tolist())
        assert picks["greedy"] == picks["softmax"]


def fixed_posterior(n: int, alpha: np.ndarray, beta: np.ndarray | None = None,
                    **kwargs) -> list[BotsSelector]:
    """Selectors of one posterior that differ only in their seed: repeated draws from one
    belief (a selector that is fed back learns, and one that is not has its tasks pending)."""
    out = []
    for seed in range(kwargs.pop("draws")):
        sel = BotsSelector(n, rho=0.0, seed=seed, **kwargs)
        sel.alpha = np.asarray(alpha, dtype=np.float64)
        if beta is not None:
            sel.beta = np.asarray(beta, dtype=np.float64)
        out.append(sel)
    return out


def test_softmax_with_large_temperature_is_close_to_uniform() -> None:
    counts = np.zeros(50)
    for sel in fixed_posterior(50, np.linspace(1, 50, 50), mode="softmax", tau=1e6, draws=2000):
        counts[sel.select(5)] += 1
    # 200 expected per task; a ±35% band is > 6 standard deviations.
    assert counts.min() > 130 and counts.max() < 270


def test_thompson_prefers_tasks_near_target() -> None:
    # means 0.95, 0.5, 0.05
    sels = fixed_posterior(3, [95.0, 50.0, 5.0], [5.0, 50.0, 95.0], draws=50)
    assert all(sel.select(1)[0] == 1 for sel in sels)


def test_greedy_breaks_ties_at_random() -> None:
    sels = fixed_posterior(100, np.ones(100), mode="greedy", draws=200)
    first = {int(sel.select(1)[0]) for sel in sels}
    assert len(first) > 50  # all means tie at the prior: any task may come first


@settings(max_examples=60, deadline=None)
@given(d=st.lists(st.integers(0, 6), min_size=1, max_size=300), data=st.data())
def test_smallest_k_matches_a_full_sort(d, data) -> None:
    arr = np.array(d, dtype=np.float64)
    k = data.draw(st.integers(1, len(arr)))
    ids = smallest_k(arr, k, np.random.default_rng(0))
    assert len(np.unique(ids)) == k
    np.testing.assert_array_equal(np.sort(arr[ids]), np.sort(arr)[:k])


def test_smallest_k_fast_path_is_exact_on_a_large_pool() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        arr = rng.random(200_000)
        ids = smallest_k(arr, 256, rng)
        np.testing.assert_array_equal(np.sort(ids), np.sort(np.argsort(arr)[:256]))
    ties = np.repeat(np.arange(10.0), 20_000)  # heavy ties on the fast path
    ids = smallest_k(ties, 300, rng)
    assert len(np.unique(ids)) == 300 and np.all(ties[ids] == 0.0)


def test_uniform_visits_every_task_once_per_epoch() -> None:
    sel = UniformSelector(10, seed=1)
    seen = np.concatenate(drive(sel, 3, batch=3) + drive(sel, 1, batch=1))
    assert sorted(seen.tolist()) == list(range(10))
    [straddle] = drive(sel, 1, batch=7)  # crosses into the next epoch, no task twice in a batch
    assert len(np.unique(straddle)) == 7


def test_offline_band_only_selects_inside_the_band() -> None:
    sel = OfflineBandSelector(N, WEAK, lo=0.2, hi=0.5, seed=0)
    picked = np.concatenate(drive(sel, 20, batch=4))
    assert np.all((WEAK[picked] >= 0.2) & (WEAK[picked] <= 0.5))


def test_easy2hard_walks_from_easy_to_hard() -> None:
    rates = np.array([0.1, 0.9, 0.5, 0.7])
    sel = Easy2HardSelector(4, rates)
    assert [ids.tolist() for ids in drive(sel, 2, batch=2)] == [[1, 3], [2, 0]]
    assert drive(sel, 1, batch=1)[0].tolist() == [1]  # and round again


# --- bad arguments ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lam": 1.5}, r"lam \(forgetting factor λ\) must be in \[0, 1\], got 1.5"),
        ({"lam": -0.1}, "lam"),
        ({"rho": 2.0}, r"rho .* must be in \[0, 1\]"),
        ({"lam": float("nan")}, "lam .* finite"),
        ({"target": 0.0}, r"target .* must be in \(0, 1\)"),
        ({"target": 1.0}, "target"),
        ({"m": 0.5}, "m .* ≥ 1"),
        ({"gamma": 1.2}, "gamma"),
        ({"tau": 0.0}, "tau"),
        ({"mode": "best"}, "mode must be one of thompson, greedy, softmax"),
        ({"prior": (0.0, 1.0)}, "prior a0"),
        ({"weak": None, "strong": None}, "weak and strong reference pass rates are required"),
        ({"strong": None}, "strong reference pass rates are missing"),
        ({"weak": WEAK[:-1]}, r"weak must hold one pass rate per task \(200\)"),
        ({"strong": np.where(np.arange(N) == 3, np.nan, STRONG)}, "strong has 1 NaN"),
        ({"weak": WEAK + 0.5}, r"weak has .* outside \[0, 1\]"),
    ],
)
def test_bad_constructor_arguments(kwargs, match) -> None:
    args = {"weak": WEAK, "strong": STRONG, **kwargs}
    with pytest.raises(ValueError, match=match):
        BotsSelector(N, **args)


@pytest.mark.parametrize(
    ("ids", "succ", "trials", "match"),
    [
        ([0, 0], [1, 1], [2, 2], "distinct"),
        ([0, N], [1, 1], [2, 2], r"ids must lie in \[0, 200\)"),
        ([-1], [1], [2], "ids must lie"),
        ([0.5], [1], [2], "integers"),
        ([], [], [], "non-empty"),
        ([0, 1], [1], [2, 2], "successes must align"),
        ([0, 1], [3, 1], [2, 2], "successes must be ≤ trials"),
        ([0], [-1], [2], "successes must be ≥ 0"),
        ([0], [float("nan")], [2], "successes must be finite"),
        ([0], [0], [0], "trials must be > 0"),
    ],
)
@pytest.mark.parametrize("name", ["bots_thompson", "uniform", "easy2hard"])
def test_bad_feedback(name, ids, succ, trials, match) -> None:
    sel = ALL_SELECTORS[name]()
    with pytest.raises(ValueError, match=match):
        sel.update(np.array(ids, dtype=np.float64 if ids and ids[0] == 0.5 else np.int64),
                   succ, trials)


@pytest.mark.parametrize("name", ALL_SELECTORS)
def test_batch_larger_than_pool(name) -> None:
    with pytest.raises(ValueError, match="larger than the"):
        ALL_SELECTORS[name]().select(N + 1)


def test_offline_band_with_empty_band() -> None:
    with pytest.raises(ValueError, match="no task has a reference pass rate"):
        OfflineBandSelector(N, WEAK, lo=0.95, hi=1.0)


# --- build_selector ----------------------------------------------------------------------------
def conf(option: str, **over):
    """conf/selector/<option>.yaml as Hydra composes it (λ = 0.1), with `over` merged in."""
    from bots_cli.config import compose_selector

    return OmegaConf.create(compose_selector(option, over, lam=0.1))


@pytest.mark.parametrize(
    "name", ["bots", "bots_calibrated", "mopps", "implicit_only", "uniform", "offline_band",
             "easy2hard"]
)
def test_build_every_configured_selector(name) -> None:
    sel = build_selector(conf(name), n_tasks=N, weak=WEAK, strong=STRONG, seed=1, group_size=8)
    assert sel.name == name
    drive(sel, 3)


def test_build_passes_lambda_and_group_size_through() -> None:
    sel = build_selector(conf("bots", lam=0.3), n_tasks=N, weak=WEAK, strong=STRONG,
                         group_size=12)
    assert isinstance(sel, BotsSelector)
    assert sel.lam == 0.3 and sel.m == 12 and sel.rho == 0.1
    mopps = build_selector(conf("mopps"), n_tasks=N, group_size=8)  # no references needed
    assert isinstance(mopps, BotsSelector) and mopps.rho == 0.0
    calibrated = build_selector(conf("bots_calibrated"), n_tasks=N, weak=WEAK, strong=STRONG,
                                group_size=8)
    assert isinstance(calibrated, BotsSelector) and calibrated.rho == 1.0
    assert calibrated.rho_schedule.kind == "calibrated"


@pytest.mark.parametrize(
    ("name", "over", "match"),
    [
        ("bots", {"rho": 1.5}, r"^selector\.rho .* must be in \[0, 1\], got 1.5"),
        ("bots", {"name": "best"}, "selector.name must be one of"),
        ("mopps", {"rho": 0.2}, "selector.rho: mopps is BOTS with rho = 0"),
        ("implicit_only", {"lam": 0.5}, "implicit_only is BOTS with lam = rho = 1"),
        ("bots_calibrated", {"rho_schedule": "halving"},
         "bots_calibrated is BOTS with rho_schedule=calibrated"),
        ("offline_band", {"hi": 0.1}, "selector.hi"),
        ("easy2hard", {"reference": "medium"}, "selector.reference must be one of weak, strong"),
    ],
)
def test_build_errors_name_the_config_key(name, over, match) -> None:
    with pytest.raises(ValueError, match=match):
        build_selector(conf(name, **over), n_tasks=N, weak=WEAK, strong=STRONG, group_size=8)


def test_build_without_group_size_for_null_m() -> None:
    with pytest.raises(ValueError, match=r"selector\.m is null"):
        build_selector(conf("bots"), n_tasks=N, weak=WEAK, strong=STRONG)


def test_build_reference_selectors_without_references() -> None:
    with pytest.raises(ValueError, match="needs the weak reference"):
        build_selector(conf("easy2hard"), n_tasks=N)
