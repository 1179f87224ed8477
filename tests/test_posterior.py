"""The posterior update and the interpolation plug-in against hand computations and a plain loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots_cli.selection import BotsSelector, ImplicitEvidence, interpolate_pass_rates


def test_three_tasks_by_hand() -> None:
    # λ = 0.5, ρ = 0.5, m = 4, γ = 0.9, prior (1, 1).
    weak, strong = [0.2, 0.4, 0.6], [0.6, 0.8, 1.0]
    sel = BotsSelector(3, weak=weak, strong=strong, lam=0.5, rho=0.5, m=4, gamma=0.9)
    assert sel.capability is None

    # Step 1: task 0 solved 3 of 4 times.
    sel.update([0], [3], [4])
    mu1 = (0.75 - 0.2) / (0.6 - 0.2 + 1e-6)  # ≈ 1.375: extrapolates past the strong model
    assert sel.capability == pytest.approx(mu1, rel=1e-12)
    p1 = 0.4 + mu1 * (0.8 - 0.4)  # ≈ 0.95
    # Task 2's interpolation, 0.6 + 1.375 * 0.4 = 1.15, is clipped to 1.
    np.testing.assert_allclose(sel.alpha, [0.5 + 0.5 + 3, 0.5 + 0.5 + 2 * p1, 0.5 + 0.5 + 2])
    np.testing.assert_allclose(sel.beta, [0.5 + 0.5 + 1, 0.5 + 0.5 + 2 * (1 - p1), 0.5 + 0.5])
    assert sel.alpha[0] == pytest.approx(4.0) and sel.beta[0] == pytest.approx(2.0)
    assert sel.alpha[2] == pytest.approx(3.0) and sel.beta[2] == pytest.approx(1.0)

    # Step 2: tasks 1 and 2 solved 1 of 2 and 2 of 2.
    sel.update([1, 2], [1, 2], [2, 2])
    mu2 = (0.75 - 0.5) / (0.9 - 0.5 + 1e-6)  # ≈ 0.625
    mu_smooth = 0.9 * mu1 + 0.1 * mu2  # ≈ 1.3
    assert sel.capability == pytest.approx(mu_smooth, rel=1e-12)
    p0 = 0.2 + mu_smooth * 0.4  # ≈ 0.72
    np.testing.assert_allclose(
        sel.alpha, [0.5 * 4 + 0.5 + 2 * p0, 0.5 * (1 + 2 * p1) + 0.5 + 1, 0.5 * 3 + 0.5 + 2]
    )
    np.testing.assert_allclose(
        sel.beta, [0.5 * 2 + 0.5 + 2 * (1 - p0), 0.5 * (1 + 2 * (1 - p1)) + 0.5 + 1, 0.5 + 0.5]
    )
    assert sel.alpha[0] == pytest.approx(3.94, abs=1e-5)
    assert sel.beta[0] == pytest.approx(2.06, abs=1e-5)


def reference_run(n, weak, strong, steps, lam, rho, m, gamma, prior):
    """DESIGN.md §1.1-1.2 written as a plain loop over tasks, one equation per line."""
    a0, b0 = prior
    alpha, beta = [a0] * n, [b0] * n
    mu_smooth = None
    for ids, succ, trials in steps:
        mean_rate = sum(s / t for s, t in zip(succ, trials, strict=True)) / len(ids)
        mean_w = sum(weak[k] for k in ids) / len(ids)
        mean_s = sum(strong[k] for k in ids) / len(ids)
        mu = (mean_rate - mean_w) / (mean_s - mean_w + 1e-6)
        mu_smooth = mu if mu_smooth is None else gamma * mu_smooth + (1 - gamma) * mu
        obs = dict(zip(ids, zip(succ, trials, strict=True), strict=True))
        for k in range(n):
            if k in obs:
                s, t = obs[k]
                alpha[k] = (1 - lam) * alpha[k] + lam * a0 + s
                beta[k] = (1 - lam) * beta[k] + lam * b0 + (t - s)
            else:
                p = min(1.0, max(0.0, mu_smooth * strong[k] + (1 - mu_smooth) * weak[k]))
                alpha[k] = (1 - lam) * alpha[k] + lam * a0 + rho * m * p
                beta[k] = (1 - lam) * beta[k] + lam * b0 + rho * m * (1 - p)
    return np.array(alpha), np.array(beta), mu_smooth


unit = st.floats(0.0, 1.0)


@st.composite
def scenarios(draw):
    n = draw(st.integers(2, 12))
    weak = draw(st.lists(unit, min_size=n, max_size=n))
    strong = draw(st.lists(unit, min_size=n, max_size=n))
    steps = []
    for _ in range(draw(st.integers(1, 6))):
        ids = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
        trials = draw(st.lists(st.integers(1, 16), min_size=len(ids), max_size=len(ids)))
        # Fractional successes are allowed (sums of rewards in [0, 1]).
        succ = [draw(st.floats(0.0, 1.0)) * t for t in trials]
        steps.append((ids, succ, trials))
    params = {
        "lam": draw(unit),
        "rho": draw(unit),
        "m": draw(st.floats(1.0, 32.0)),
        "gamma": draw(unit),
        "prior": (draw(st.floats(0.1, 5.0)), draw(st.floats(0.1, 5.0))),
    }
    return n, weak, strong, steps, params


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_vectorised_update_equals_plain_loop(scenario) -> None:
    n, weak, strong, steps, params = scenario
    sel = BotsSelector(n, weak=weak, strong=strong, **params)
    for ids, succ, trials in steps:
        sel.update(ids, succ, trials)
    alpha, beta, mu = reference_run(n, weak, strong, steps, **params)
    np.testing.assert_allclose(sel.alpha, alpha, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sel.beta, beta, rtol=1e-9, atol=1e-9)
    assert sel.capability == pytest.approx(mu, rel=1e-9, abs=1e-9)
    # The posterior stays a proper Beta.
    assert np.all(np.isfinite(sel.alpha)) and np.all(sel.alpha > 0)
    assert np.all(np.isfinite(sel.beta)) and np.all(sel.beta > 0)


@settings(max_examples=50, deadline=None)
@given(scenarios())
def test_forget_everything_keeps_only_prior_and_last_evidence(scenario) -> None:
    n, _, _, steps, params = scenario
    a0, b0 = params["prior"]
    sel = BotsSelector(n, lam=1.0, rho=0.0, prior=(a0, b0))
    for ids, succ, trials in steps:
        sel.update(ids, succ, trials)
    ids, succ, trials = steps[-1]
    expect_a, expect_b = np.full(n, a0), np.full(n, b0)
    expect_a[ids] += succ
    expect_b[ids] += np.asarray(trials) - np.asarray(succ)
    np.testing.assert_allclose(sel.alpha, expect_a)
    np.testing.assert_allclose(sel.beta, expect_b)


def test_explicit_only_needs_no_references_and_ignores_them() -> None:
    with_refs = BotsSelector(4, weak=[0.1] * 4, strong=[0.9] * 4, rho=0.0, lam=0.3)
    without = BotsSelector(4, rho=0.0, lam=0.3)
    for sel in (with_refs, without):
        sel.update([0, 2], [1, 3], [4, 4])
    np.testing.assert_allclose(with_refs.alpha, without.alpha)
    assert with_refs.capability is not None and without.capability is None


def test_interpolation_clips_only_outside_unit_interval() -> None:
    weak, strong = np.array([0.0, 0.5, 0.9]), np.array([0.4, 1.0, 1.0])
    np.testing.assert_allclose(interpolate_pass_rates(0.5, weak, strong), [0.2, 0.75, 0.95])
    np.testing.assert_allclose(interpolate_pass_rates(2.0, weak, strong), [0.8, 1.0, 1.0])
    np.testing.assert_allclose(interpolate_pass_rates(-1.0, weak, strong), [0.0, 0.0, 0.8])


class OracleEvidence(ImplicitEvidence):
    """A plug-in that knows the true pass rates: shows the interface is all the posterior needs."""

    def __init__(self, truth: np.ndarray) -> None:
        self.truth = truth
        self.seen = 0

    def observe(self, ids: np.ndarray, rates: np.ndarray, trials: np.ndarray | None = None) -> None:
        self.seen += len(ids)

    def estimate(self, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            return self.truth.copy()
        out[:] = self.truth
        return out

    def state_dict(self) -> dict:
        return {"seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.seen = state["seen"]


def test_custom_implicit_plugin_drives_the_posterior() -> None:
    truth = np.array([0.1, 0.5, 0.9, 0.5])
    plugin = OracleEvidence(truth)
    sel = BotsSelector(4, lam=1.0, rho=1.0, m=10, implicit=plugin, mode="greedy")
    sel.update([0], [0], [10])
    # λ = ρ = 1: unselected tasks hold exactly prior + m·truth.
    np.testing.assert_allclose(sel.alpha[1:], 1 + 10 * truth[1:])
    np.testing.assert_allclose(sel.beta[1:], 1 + 10 * (1 - truth[1:]))
    assert plugin.seen == 1 and sel.capability is None
    assert set(sel.select(2).tolist()) == {1, 3}  # the two tasks at p* = 0.5
    assert sel.state_dict()["implicit"] == {"seen": 1}
