"""The selection core beyond the paper (DESIGN.md §1.5): ρ and λ schedules, the groups and knn
plug-ins, per-task priors. Hand-computed values, plain-loop references of every vectorised
update, state round trips and one-line refusals that name the key."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from bots_cli.selection import BotsSelector, build_selector
from bots_cli.selection.implicit import InterpolationEvidence
from bots_cli.selection.pooled import GroupEvidence, NeighbourEvidence
from bots_cli.selection.posterior import update_posterior
from bots_cli.selection.schedules import (
    CALIBRATION_FORGET,
    CALIBRATION_PRIOR,
    DRIFT_MOMENTUM,
    LamSchedule,
    RhoSchedule,
)
from tests.test_selectors import conf, drive

RNG = np.random.default_rng(11)
N = 120
WEAK = RNG.uniform(0.0, 0.6, N)
STRONG = np.clip(WEAK + RNG.uniform(0.1, 0.4, N), 0, 1)
LEVEL = RNG.integers(1, 6, N)


def columns() -> dict:
    emb = np.column_stack([LEVEL, RNG.normal(0, 0.1, N)])
    return {"level": LEVEL, "embedding": list(emb),
            "prompt": [f"level {lv} task {i % 7}" for i, lv in enumerate(LEVEL)]}


COLUMNS = columns()


# --- ρ schedules ---------------------------------------------------------------------------------
def official_halving(rho: float, batches: list[tuple[np.ndarray, np.ndarray]],
                     threshold: float = 0.25) -> list[float]:
    """The official code's rule, written plainly: a batch whose mean |p̃ − r| reaches the
    threshold halves ρ, for good."""
    out = []
    for p_tilde, rates in batches:
        total = 0.0
        for p, r in zip(p_tilde, rates, strict=True):
            total += abs(p - r)
        if total / len(rates) >= threshold:
            rho = rho / 2
        out.append(rho)
    return out


def recorded_batches(seed: int = 0, steps: int = 40) -> list[tuple[np.ndarray, np.ndarray]]:
    """(p̃ of the batch, observed rates) of a BOTS run on fixed outcomes, as the schedule sees
    them."""
    sel = BotsSelector(N, weak=WEAK, strong=STRONG, rho=0.1, m=8, seed=seed)
    rng = np.random.default_rng(seed)
    truth = np.clip(WEAK + rng.uniform(-0.3, 0.5, N), 0, 1)
    seen = []
    for _ in range(steps):
        ids = sel.select(8)
        succ = rng.binomial(8, truth[ids]).astype(float)
        sel.update(ids, succ, np.full(8, 8.0))
        seen.append((sel._p_tilde[ids].copy(), succ / 8))
    return seen


def test_halving_is_the_official_rule_on_recorded_inputs() -> None:
    batches = recorded_batches()
    schedule = RhoSchedule("halving", 0.1, threshold=0.25)
    ours = [schedule.update(p, r) for p, r in batches]
    assert ours == official_halving(0.1, batches)
    assert ours[-1] < 0.1  # the recording did trigger it


def test_halving_inside_bots_halves_before_the_update() -> None:
    """ρ is halved before the step's posterior update uses it (DESIGN.md §1.5)."""
    sel = BotsSelector(3, weak=[0.0, 0.0, 0.0], strong=[1.0, 1.0, 1.0], lam=0.0, rho=0.4, m=10,
                       rho_schedule="halving", rho_threshold=0.25, seed=0)
    sel.update([0], [10.0], [10.0])  # μ = 1: p̃ = 1 everywhere, |p̃ − r| = 0 on the batch
    assert sel.rho == 0.4
    sel.update([1], [0.0], [10.0])  # μ~ = 0.9: p̃ = 0.9 everywhere, error 0.9 ≥ 0.25
    assert sel.rho == 0.2
    # task 2 unselected twice: 1 + 0.4·10·1 at step 1, then + 0.2·10·0.9 (the halved ρ)
    assert sel.alpha[2] == pytest.approx(1 + 4.0 + 1.8)
    assert sel.metrics()["selector/implicit_error"] == pytest.approx(0.9)


def test_calibrated_slope_by_hand() -> None:
    s = RhoSchedule("calibrated", 0.5)
    assert s.reliability == 1.0  # the prior slope before any batch
    p, r = np.array([0.2, 0.4, 0.6]), np.array([0.0, 0.5, 0.5])
    rho = s.update(p, r)
    x, y = p - 0.4, r - 1 / 3
    sxy, sxx = float(x @ y), float(x @ x)  # 0.1, 0.08
    slope = (sxy + CALIBRATION_PRIOR) / (sxx + CALIBRATION_PRIOR)
    assert rho == pytest.approx(0.5 * min(1.0, slope))
    p2, r2 = np.array([0.3, 0.7]), np.array([0.75, 0.25])  # anti-correlated
    rho2 = s.update(p2, r2)
    keep = 1 - CALIBRATION_FORGET
    sxy2 = keep * sxy + float((p2 - 0.5) @ (r2 - 0.5))
    sxx2 = keep * sxx + float((p2 - 0.5) @ (p2 - 0.5))
    expected = (sxy2 + CALIBRATION_PRIOR) / (sxx2 + CALIBRATION_PRIOR)
    assert s.reliability == pytest.approx(expected)
    assert rho2 == pytest.approx(0.5 * min(1.0, max(0.0, expected)))


def test_calibrated_cuts_rho_for_shuffled_references_and_keeps_it_for_good_ones() -> None:
    def final_rho(weak: np.ndarray, strong: np.ndarray) -> float:
        sel = BotsSelector(N, weak=weak, strong=strong, rho=0.5, m=8,
                           rho_schedule="calibrated", seed=1)
        rng = np.random.default_rng(1)
        for _ in range(150):
            ids = sel.select(12)
            sel.update(ids, rng.binomial(8, truth[ids]), np.full(12, 8))
        return sel.rho

    truth = np.clip(0.5 * WEAK + 0.5 * STRONG, 0, 1)
    order = np.random.default_rng(2).permutation(N)
    assert final_rho(WEAK, STRONG) > 0.35
    assert final_rho(WEAK[order], STRONG[order]) < 0.1


# --- λ schedule ----------------------------------------------------------------------------------
def test_adaptive_lambda_by_hand() -> None:
    s = LamSchedule("adaptive", 0.1)
    alpha, beta = np.array([3.0, 1.0]), np.array([1.0, 1.0])
    rates, trials = np.array([0.25, 1.0]), np.array([4.0, 4.0])
    seen = np.array([True, False])  # only the first task has past rollouts
    lam = s.update(alpha, beta, rates, trials, seen)
    mu = 0.75
    var = mu * (1 - mu) / 4 * (4 + 4) / (4 + 1)
    z2 = (0.25 - mu) ** 2 / var
    drift = (1 - DRIFT_MOMENTUM) * 1.0 + DRIFT_MOMENTUM * z2
    assert s.drift == pytest.approx(drift)
    assert lam == pytest.approx(min(0.4, max(0.025, 0.1 * drift)))
    assert s.update(alpha, beta, rates, trials, np.array([False, False])) == lam  # nothing seen
    assert LamSchedule("constant", 0.1).update(alpha, beta, rates, trials, seen) == 0.1


def test_adaptive_lambda_forgets_faster_when_tasks_drift() -> None:
    def mean_lam(swing: float) -> float:
        sel = BotsSelector(N, lam=0.1, rho=0.0, lam_schedule="adaptive", seed=0)
        rng = np.random.default_rng(0)
        base = rng.uniform(0.2, 0.8, N)
        lams = []
        for step in range(300):  # every task's success moves by up to ±swing, back and forth
            truth = np.clip(base + swing * np.sin(step / 15 + 6 * base), 0, 1)
            ids = sel.select(20)
            sel.update(ids, rng.binomial(8, truth[ids]), np.full(20, 8))
            lams.append(sel.lam)
        return float(np.mean(lams[100:]))

    still, moving = mean_lam(0.0), mean_lam(0.3)
    assert still < 0.1 < moving  # agreement: slower than λ0; drift: faster


# --- plug-ins ------------------------------------------------------------------------------------
def test_groups_by_hand() -> None:
    g = GroupEvidence(["a", "a", "b"], forget=0.5, smoothing=2.0, prior_mean=0.5)
    np.testing.assert_allclose(g.estimate(), [0.5, 0.5, 0.5])  # never observed: the prior mean
    g.observe(np.array([0]), np.array([0.75]), np.array([4.0]))
    np.testing.assert_allclose(g.estimate(), [4 / 6, 4 / 6, 0.5])  # (3 + 2·0.5) / (4 + 2)
    g.observe(np.array([2]), np.array([0.5]), np.array([2.0]))
    # a: S = 1.5, T = 2 after forgetting half; b: S = 1, T = 2
    np.testing.assert_allclose(g.estimate(), [2.5 / 4, 2.5 / 4, 2.0 / 4])
    assert g.group_rates() == {"a": 0.75, "b": 0.5}


def test_groups_fall_back_to_the_interpolation_when_references_exist() -> None:
    fallback = InterpolationEvidence(np.array([0.0, 0.2, 0.4]), np.array([1.0, 0.6, 0.8]))
    g = GroupEvidence([1, 1, 2], forget=0.0, smoothing=1.0, prior_mean=0.5, fallback=fallback)
    g.observe(np.array([0]), np.array([0.5]), np.array([1.0]))  # μ = 0.5 on task 0
    pi = fallback.estimate()
    np.testing.assert_allclose(g.estimate(), [(0.5 + pi[0]) / 2, (0.5 + pi[1]) / 2, pi[2]])
    assert g.capability == pytest.approx(0.5)


def test_knn_by_hand() -> None:
    nb = np.array([[1, 2], [0, 2], [0, 1]])
    w = np.array([[1.0, 0.5], [1.0, 0.0], [0.5, 0.5]])
    k = NeighbourEvidence(nb, w, forget=0.0, smoothing=1.0, prior_mean=0.5)
    k.observe(np.array([0, 1]), np.array([1.0, 0.0]), np.array([2.0, 2.0]))  # S = 2, 0; T = 2, 2
    expected = [(1 * 0 + 0.5) / (1 * 2 + 1),  # task 0 sees task 1 (w 1) and task 2 (unseen)
                (1 * 2 + 0.5) / (1 * 2 + 1),  # task 1 sees task 0 (w 1), task 2 at weight 0
                (0.5 * 2 + 0.5 * 0 + 0.5) / (0.5 * 2 + 0.5 * 2 + 1)]
    np.testing.assert_allclose(k.estimate(), expected)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.integers(1, 5), st.floats(0, 1), st.floats(0.1, 10),
       st.integers(0, 10_000))
def test_pooled_estimates_equal_plain_loops(n: int, k: int, forget: float, kappa: float,
                                            seed: int) -> None:
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 3, n)
    nb = rng.integers(0, n, (n, k))
    w = rng.uniform(0, 1, (n, k))
    prior = rng.uniform(0.1, 0.9, n)
    g = GroupEvidence(groups, forget=forget, smoothing=kappa, prior_mean=prior)
    kn = NeighbourEvidence(nb, w, forget=forget, smoothing=kappa, prior_mean=prior)
    gs, gt = {}, {}
    ts, tt = np.zeros(n), np.zeros(n)
    for _ in range(3):
        ids = rng.choice(n, size=min(n, 4), replace=False)
        trials = rng.integers(1, 9, len(ids)).astype(float)
        rates = rng.integers(0, 9, len(ids)) / 8 * 1.0
        rates = np.minimum(rates, 1.0)
        g.observe(ids, rates, trials)
        kn.observe(ids, rates, trials)
        for key in list(gs):
            gs[key] *= 1 - forget
            gt[key] *= 1 - forget
        for j in range(n):
            ts[j] *= 1 - forget
            tt[j] *= 1 - forget
        for i, r, t in zip(ids, rates, trials, strict=True):
            gs[groups[i]] = gs.get(groups[i], 0.0) + r * t
            gt[groups[i]] = gt.get(groups[i], 0.0) + t
            ts[i] += r * t
            tt[i] += t
    want_g = [(gs.get(groups[j], 0.0) + kappa * prior[j]) / (gt.get(groups[j], 0.0) + kappa)
              for j in range(n)]
    want_k = []
    for j in range(n):
        num = sum(w[j, c] * ts[nb[j, c]] for c in range(k)) + kappa * prior[j]
        den = sum(w[j, c] * tt[nb[j, c]] for c in range(k)) + kappa
        want_k.append(num / den)
    np.testing.assert_allclose(g.estimate(), want_g, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(kn.estimate(), want_k, rtol=1e-9, atol=1e-12)


def test_knn_graph_from_tfidf_links_similar_prompts() -> None:
    pytest.importorskip("sklearn")
    from bots_cli.selection.graph import knn_graph, task_vectors

    prompts = ["add two numbers", "add three numbers", "sort a list", "sort a list fast"]
    nb, w = knn_graph(task_vectors({"prompt": prompts}, None), 1)
    assert nb[:, 0].tolist() == [1, 0, 3, 2]
    assert ((w > 0) & (w <= 1)).all()
    nb, _ = knn_graph(task_vectors({"e": [[1, 0], [0.9, 0.1], [0, 1]]}, "e"), 5)
    assert nb.shape == (3, 2) and (nb != np.arange(3)[:, None]).all()  # never itself


# --- per-task prior ----------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(2, 20), st.floats(0, 1), st.floats(0, 1), st.integers(0, 10_000))
def test_per_task_prior_update_equals_a_plain_loop(n: int, lam: float, rho: float,
                                                   seed: int) -> None:
    rng = np.random.default_rng(seed)
    a0, b0 = rng.uniform(0.5, 3, n), rng.uniform(0.5, 3, n)
    alpha, beta = rng.uniform(0.5, 9, n), rng.uniform(0.5, 9, n)
    ids = rng.choice(n, size=max(1, n // 3), replace=False)
    trials = np.full(len(ids), 4.0)
    succ = rng.integers(0, 5, len(ids)).astype(float)
    p_tilde, m = rng.uniform(0, 1, n), 4.0
    want_a, want_b = alpha.copy(), beta.copy()
    for j in range(n):
        if j in ids:
            i = int(np.flatnonzero(ids == j)[0])
            want_a[j] = (1 - lam) * alpha[j] + lam * a0[j] + succ[i]
            want_b[j] = (1 - lam) * beta[j] + lam * b0[j] + trials[i] - succ[i]
        else:
            want_a[j] = (1 - lam) * alpha[j] + lam * a0[j] + rho * m * p_tilde[j]
            want_b[j] = (1 - lam) * beta[j] + lam * b0[j] + rho * m * (1 - p_tilde[j])
    update_posterior(alpha, beta, ids, succ, trials, lam=lam, rho=rho, m=m, prior=(a0, b0),
                     implicit=p_tilde)
    np.testing.assert_allclose(alpha, want_a, rtol=1e-12)
    np.testing.assert_allclose(beta, want_b, rtol=1e-12)


def test_prior_from_a_reference_and_forgetting_pulls_back_to_it() -> None:
    cfg = conf("mopps", prior_from="weak", prior_strength=4.0, lam=1.0)
    sel = build_selector(cfg, n_tasks=N, weak=WEAK, strong=STRONG, group_size=8)
    np.testing.assert_allclose(sel.alpha, 1 + 4 * WEAK)
    np.testing.assert_allclose(sel.beta, 1 + 4 * (1 - WEAK))
    sel.update([0], [8.0], [8.0])  # λ = 1, ρ = 0: every other task is back at its own prior
    np.testing.assert_allclose(sel.alpha[1:], 1 + 4 * WEAK[1:])
    assert sel.alpha[0] == pytest.approx(1 + 4 * WEAK[0] + 8)


# --- from config: every extension, round trips, refusals -----------------------------------------
EXTENSIONS = {
    "halving": {"rho_schedule": "halving"},
    "calibrated": {"rho_schedule": "calibrated", "rho": 0.5},
    "adaptive_lam": {"lam_schedule": "adaptive"},
    "groups": {"implicit": {"name": "groups", "column": "level"}},
    "groups_no_refs": {"implicit": {"name": "groups", "column": "level"}, "refs": False},
    "knn": {"implicit": {"name": "knn", "column": "embedding", "k": 4}},
    "knn_tfidf": {"implicit": {"name": "knn", "k": 3}, "refs": False},
    "prior_from": {"prior_from": "strong", "prior_strength": 2.0},
}


def _build(over: dict) -> BotsSelector:
    over = copy.deepcopy(over)
    refs = over.pop("refs", True)
    if "knn" in str(over):
        pytest.importorskip("sklearn")
    sel = build_selector(conf("bots", **over), n_tasks=N, weak=WEAK if refs else None,
                         strong=STRONG if refs else None, seed=4, group_size=8,
                         columns=COLUMNS)
    assert isinstance(sel, BotsSelector)
    return sel


@pytest.mark.parametrize("name", EXTENSIONS)
def test_state_round_trip_gives_the_same_future(name: str) -> None:
    a = _build(EXTENSIONS[name])
    drive(a, 6, seed=1)
    state = copy.deepcopy(a.state_dict())
    b = _build(EXTENSIONS[name])
    b.load_state_dict(state)
    assert [p.tolist() for p in drive(a, 6, seed=2)] == [p.tolist() for p in drive(b, 6, seed=2)]
    np.testing.assert_array_equal(a.alpha, b.alpha)
    assert a.metrics() == b.metrics()
    assert {"selector/rho", "selector/lam"} <= set(a.metrics())


def test_groups_need_no_references() -> None:
    sel = _build(EXTENSIONS["groups_no_refs"])
    assert sel.rho == 0.1 and sel.capability is None
    drive(sel, 3)
    assert "selector/implicit_error" in sel.metrics()


@pytest.mark.parametrize(("over", "match"), [
    ({"rho_schedule": "sometimes"}, r"^selector\.rho_schedule must be one of constant, halving"),
    ({"lam_schedule": "fast"}, r"^selector\.lam_schedule must be one of constant, adaptive"),
    ({"rho_schedule": "halving", "rho_threshold": 0.0}, r"^selector\.rho_threshold"),
    ({"implicit": {"name": "oracle"}}, r"^selector\.implicit\.name must be one of"),
    ({"implicit": {"name": "groups", "column": "skill"}}, r"^selector\.implicit\.column=skill"),
    ({"implicit": {"name": "groups", "column": "level", "forget": 2}},
     r"^selector\.implicit\.forget"),
    ({"implicit": {"name": "groups", "column": "level", "smoothing": 0}},
     r"^selector\.implicit\.smoothing"),
    ({"prior_from": "medium"}, r"^selector\.prior_from must be one of weak, strong"),
    ({"prior_from": "weak", "prior_strength": 0}, r"^selector\.prior_strength"),
])
def test_bad_extension_values_name_the_key(over: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_selector(conf("bots", **over), n_tasks=N, weak=WEAK, strong=STRONG, group_size=8,
                       columns=COLUMNS)


def test_a_saved_state_refuses_another_schedule() -> None:
    a = _build(EXTENSIONS["halving"])
    drive(a, 2)
    with pytest.raises(ValueError, match="rho_schedule"):
        _build({}).load_state_dict(a.state_dict())


def test_success_rule_from_config() -> None:
    from bots_cli.selection.feedback import SuccessRule, task_evidence

    rule = SuccessRule.from_config(OmegaConf.create({"threshold": None, "reward_range": [-1, 1]}))
    _, s, n = task_evidence(np.array([0, 0]), np.array([-1.0, 0.0]), rule)
    assert s.tolist() == [0.5] and n.tolist() == [2.0]
    with pytest.raises(ValueError, match=r"selector\.success\.threshold / "
                                         r"selector\.success\.reward_range: a reward of 2"):
        task_evidence(np.array([0]), np.array([2.0]), SuccessRule.from_config(
            OmegaConf.create({"threshold": None, "reward_range": None})))


def test_the_verl_sampler_composes_selectors_as_hydra_does() -> None:
    """data.sampler.selector names a conf/selector/ option: its defaults list counts (mopps is
    bots with ρ = 0, every selector has `success`), overrides go on top."""
    from bots_cli.integrations.verl.sampler import selector_config

    mopps = selector_config("mopps")
    assert mopps["rho"] == 0.0 and mopps["rho_schedule"] == "constant"
    assert mopps["success"] == {"threshold": None, "reward_range": None}
    groups = selector_config({"name": "bots", "lam": 0.3,
                              "implicit": {"name": "groups", "column": "level"}})
    assert groups["lam"] == 0.3 and groups["implicit"]["smoothing"] == 4.0
    sel = build_selector(groups, n_tasks=N, group_size=8, columns=COLUMNS)
    assert isinstance(sel.implicit, GroupEvidence)


def test_graded_code_rewards_reach_the_posterior_as_fractional_successes() -> None:
    """domain=code with reward.graded=true: a program passing some tests is that share of a
    success, through the real sandbox, the §1.6 rule (selector.success) and the posterior."""
    from bots_cli.domains import load_domain
    from bots_cli.selection.feedback import SuccessRule, task_evidence

    dom = load_domain("code", {"reward": {"graded": True},
                               "sandbox": {"use_bwrap": False, "workers": 1}})
    task = dom.load(split="train").iloc[0]  # is_multiple(n): divisible by 5, 8 tests
    always_true = "```python\ndef is_multiple(n):\n    return True\n```"
    right = "```python\ndef is_multiple(n):\n    return n % 5 == 0\n```"
    rewards = np.array(dom.rewards([always_true, right], [task, task]))
    assert rewards.tolist() == [3 / 8, 1.0]  # 3 of its 8 expected values are True
    rule = SuccessRule.from_config(conf("bots").success)
    ids, successes, trials = task_evidence(np.array([5, 5]), rewards, rule)
    sel = BotsSelector(10, lam=0.0, rho=0.0, seed=0)
    sel.update(ids, successes, trials)
    assert sel.alpha[5] == pytest.approx(1 + 3 / 8 + 1) and sel.beta[5] == pytest.approx(1 + 5 / 8)
