"""The official BOTS code (Trinity-RFT) as an oracle for ours.

What runs: Trinity-RFT 0.6.0, pinned in the Makefile and installed by `make setup` with
`--no-deps` into `<venv>/trinity`. Its BOTS is the task selector registered as
`difficulty_based`: `DifficultyBasedSelector` in trinity/buffer/selector/selector.py, over the
estimator `InterpolationBetaPREstimator` in trinity/buffer/selector/difficulty_estimator.py.

Their state: `alphas`, `betas` (N,), `cap_coef` (the smoothed capability mu~) and `rho`. One
update takes the batch's task indices and each task's mean reward r_k (Trinity's
PassRateCalculator averages the raw rewards of a task's rollouts):

    mu_t     = (mean_B r − mean_B w) / (mean_B s̄ − mean_B w + 1e-6),   w, s̄ = features[:, 0], [:, 1]
    cap_coef = mu_1 at the first update, then 0.9·cap_coef + 0.1·mu_t
    p̃        = clip(cap_coef·(s̄ − w) + w, 0, 1);  p̃_k = r_k on the batch
    S_k, F_k = m·r_k, m·(1 − r_k) on the batch, 0 elsewhere (their s_bar, f_bar)
    alphas  <- (1 − lamb)·alphas + lamb + (1 − rho)·S + rho·m·p̃
    betas   <- (1 − lamb)·betas + lamb + (1 − rho)·F + rho·m·(1 − p̃)

On the batch that is (1 − lamb)·alpha + lamb + m·r_k: DESIGN.md §1.1 with s_k = m·r_k, n_k = m,
a0 = b0 = 1. Elsewhere it is §1.1's implicit line. Selection scores every task by
−|target_reward − p_k|, p_k the posterior mean or (do_sample) one Beta draw; tau = 0 takes the
top batch_size, tau > 0 samples that many without replacement ∝ exp(score / tau).

Mapping, theirs -> ours (their names are the keys of the selector's `kwargs`); their lamb is
forgetting and their rho the implicit weight, as DESIGN.md's λ and ρ (not swapped):
    lamb -> lam (λ)        rho -> rho (ρ)        m -> m (theirs also turns mean rewards into
    counts with it: difference 1 below)
    estimator's cap_coef_update_discount (0.9; the selector cannot set it) -> gamma (γ)
    feature_keys [weak column, strong column] -> weak, strong
    adaptive_rho=True -> rho_schedule="halving", rho_threshold=0.25
    target_reward -> target (p*)
    do_sample=False, tau=0 -> mode="greedy";  do_sample=True, tau=0 -> mode="thompson";
    do_sample=False, tau>0 -> mode="softmax" with the same tau;  do_sample=True with tau>0
    (softmax over a Beta draw) has no counterpart in ours
    feedback value r_k (mean reward) -> update(successes=n_k·r_k, trials=n_k)

Where they agree, with every task's n_k = m (asserted below): the posteriors and the capability
after every step, to float rounding, for binary and graded rewards and for a capability beyond
the strong reference (p̃ clipped); ρ and the posteriors under the halving rule; the greedy and
Thompson batches, as sets (for Thompson ours is handed their generator before each call: they
reseed `default_rng(seed + tasks served so far)` every call, ours is one stream from the seed);
the softmax sampling distribution (the samplers differ, torch.multinomial against our
Gumbel-top-k on numpy's generator, so the test compares each one's inclusion frequencies with
the exact probabilities).

Where they differ by design (each asserted in its own test):
1. Counts: they add m·r_k successes whatever the number of rollouts; ours adds the true counts
   s_k of n_k (DESIGN.md §1.6 convention note), so a task with n_k ≠ m differs by
   (n_k − m)·r_k, forgotten at rate λ like any evidence.
2. Prior: theirs is Beta(1, 1) and forgetting pulls back to it; ours is Beta(a0, b0), per task
   if asked. With (a0, b0) ours exceeds theirs by exactly (a0 − 1, b0 − 1) at every step.
3. Rewards outside [0, 1]: they take the mean reward as it comes, so a negative or > 1 mean
   makes alpha or beta negative (not a Beta); ours refuses such feedback (DESIGN.md §1.6).
4. Defaults and settings: theirs lamb = rho = 0.2, m = 16, target_reward 1.0, tau 1.0,
   do_sample False (softmax over the posterior mean), γ fixed at 0.9; ours λ = ρ = 0.1,
   m = the group size, p* = 0.5, Thompson sampling, γ configurable.
Not compared: ties (their torch.topk keeps an order of its own, ours breaks ties at random; the
first batch from the flat prior is all ties, so the tests feed the same first batch to both);
late feedback (DESIGN.md §1.8; theirs has none); input checks (theirs has none).

Stand-ins, for import only: `trinity.utils.log` imports ray, which is not installed here; the
estimator and selector call its `get_logger(name)` only to write debug messages, so it is
replaced by `logging.getLogger`. `trinity.buffer.reader.file_reader` (reached through the
`trinity.buffer` package, which needs sqlalchemy and ray) is needed by selector.py only for
the annotation `_HFBatchReader`; a placeholder class stands in, and the data source handed to
the selector is an object with the attributes it reads from a real reader: `dataset` (a
`datasets.Dataset`) and `dataset_size`. Their two modules are loaded from their files as they
are; nothing of their math is replaced.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bots_cli.selection import BotsSelector
from bots_cli.selection.topk import softmax_sample

TRINITY_VERSION = "0.6.0"  # the Makefile's pin
TRINITY_DIR = Path(sys.prefix) / "trinity"  # `make setup`: pip install --target $(VENV)/trinity

if not (TRINITY_DIR / "trinity").is_dir():
    pytest.skip(f"Trinity-RFT is not installed in {TRINITY_DIR}; `make setup` installs "
                f"trinity-rft=={TRINITY_VERSION} there", allow_module_level=True)

SEED = 3
N, B, M = 40, 6, 8  # pool, batch, rollouts per task (= their m)
LAM, RHO = 0.3, 0.25


def assert_close(actual: Any, desired: Any, msg: str = "") -> None:
    """Equal to float rounding: the two compute the same sums in different orders."""
    np.testing.assert_allclose(actual, desired, rtol=1e-12, atol=1e-12, err_msg=msg)


def _load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _load_trinity() -> tuple[types.ModuleType, types.ModuleType, Any]:
    """Their estimator and selector modules and `DataSelectorConfig`, loaded from TRINITY_DIR.

    Stands in the two import-only modules named in the module docstring, and leaves sys.path
    and sys.modules as they were: the loaded modules keep their own references.
    """
    log = types.ModuleType("trinity.utils.log")
    vars(log).update(get_logger=lambda name=None, level=None, in_ray_actor=False:
                     logging.getLogger(name))
    reader = types.ModuleType("trinity.buffer.reader.file_reader")
    vars(reader).update(_HFBatchReader=type("_HFBatchReader", (), {}))  # data_source's annotation
    before = set(sys.modules)
    sys.path.insert(0, str(TRINITY_DIR))
    try:
        sys.modules["trinity.utils.log"] = log
        sys.modules["trinity.buffer.reader.file_reader"] = reader
        root = TRINITY_DIR / "trinity" / "buffer" / "selector"
        estimator = _load_file("trinity.buffer.selector.difficulty_estimator",
                               root / "difficulty_estimator.py")
        selector = _load_file("trinity.buffer.selector.selector", root / "selector.py")
        from trinity import __version__
        from trinity.common.config import DataSelectorConfig
    finally:
        sys.path.remove(str(TRINITY_DIR))
        for name in set(sys.modules) - before:
            if name == "trinity" or name.startswith("trinity."):
                del sys.modules[name]
    assert __version__ == TRINITY_VERSION, (
        f"{TRINITY_DIR} holds trinity-rft {__version__}, the tests are written for "
        f"{TRINITY_VERSION}: python -m pip install --upgrade --no-deps --ignore-requires-python "
        f"--target {TRINITY_DIR} trinity-rft=={TRINITY_VERSION}")
    return estimator, selector, DataSelectorConfig


ESTIMATOR, SELECTOR, DataSelectorConfig = _load_trinity()


def _references(rng: np.random.Generator, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    weak = rng.uniform(0.0, 0.6, n)
    return weak, np.clip(weak + rng.uniform(0.05, 0.4, n), 0.0, 1.0)


def _theirs(weak: np.ndarray, strong: np.ndarray, *, lam: float = LAM, rho: float = RHO,
            gamma: float = 0.9, adaptive_rho: bool = False) -> Any:
    return ESTIMATOR.InterpolationBetaPREstimator(
        features=np.stack([weak, strong], axis=1), m=M, lamb=lam, rho=rho,
        cap_coef_update_discount=gamma, adaptive_rho=adaptive_rho)


def _outcomes(rng: np.random.Generator, p: np.ndarray, trials: np.ndarray,
              graded: bool = False) -> np.ndarray:
    """s_k: successes of binary rollouts, or the sum of quarter-credit rewards in [0, 1]."""
    if graded:
        credits = [rng.binomial(4, pk, size=int(n)).sum() for pk, n in zip(p, trials, strict=True)]
        return np.array(credits, dtype=np.float64) / 4
    return rng.binomial(trials.astype(np.int64), p).astype(np.float64)


@pytest.mark.parametrize("graded, gamma", [(False, 0.9), (True, 0.7)])
def test_posteriors_agree_when_every_task_has_m_rollouts(graded: bool, gamma: float) -> None:
    rng = np.random.default_rng(SEED)
    weak, strong = _references(rng)
    theirs = _theirs(weak, strong, gamma=gamma)
    ours = BotsSelector(N, weak=weak, strong=strong, lam=LAM, rho=RHO, m=M, gamma=gamma,
                        seed=SEED)
    capabilities: list[float] = []
    for t in range(20):
        # The policy improves from near the weak reference to past the strong one.
        true_p = np.clip(weak + (0.1 + 0.15 * t) * (strong - weak), 0.0, 1.0)
        ids = ours.select(B)
        trials = np.full(B, M, dtype=np.float64)
        s = _outcomes(rng, true_p[ids], trials, graded)
        theirs.update(ids.tolist(), (s / M).tolist())
        ours.update(ids, s, trials)
        assert ours.capability == pytest.approx(theirs.cap_coef, rel=1e-12), f"step {t}"
        assert_close(ours.alpha, theirs.alphas, f"step {t}")
        assert_close(ours.beta, theirs.betas, f"step {t}")
        capabilities.append(float(theirs.cap_coef))
    # The comparison covered an estimate beyond the strong reference, where p̃ is clipped.
    assert max(capabilities) > 1.0 and min(capabilities) < 1.0
    if graded:
        assert np.any(ours.alpha % 1 != 0)


def test_rho_halving_agrees_with_their_adaptive_rho() -> None:
    rng = np.random.default_rng(SEED + 1)
    weak, strong = _references(rng)
    theirs = _theirs(weak, strong, adaptive_rho=True)
    ours = BotsSelector(N, weak=weak, strong=strong, lam=LAM, rho=RHO, m=M, gamma=0.9,
                        rho_schedule="halving", rho_threshold=0.25, seed=SEED)
    rhos = []
    for t in range(12):
        # First the weak reference is the truth (p̃ close), then its opposite (p̃ far off).
        true_p = weak if t < 6 else 1.0 - weak
        ids = ours.select(B)
        trials = np.full(B, M, dtype=np.float64)
        s = _outcomes(rng, true_p[ids], trials)
        theirs.update(ids.tolist(), (s / M).tolist())
        ours.update(ids, s, trials)
        assert ours.rho == theirs.rho, f"step {t}"
        assert_close(ours.alpha, theirs.alphas, f"step {t}")
        assert_close(ours.beta, theirs.betas, f"step {t}")
        rhos.append(ours.rho)
    steps = np.array([RHO, *rhos])
    # ρ was kept at some steps and halved at several (the rule compounds: ρ0/2, ρ0/4, ...).
    assert (steps[1:] == steps[:-1]).any() and (steps[1:] < steps[:-1]).sum() >= 2


def _their_selector(weak: np.ndarray, strong: np.ndarray, **kwargs: Any) -> Any:
    import datasets

    dataset = datasets.Dataset.from_dict({"weak": weak.tolist(), "strong": strong.tolist()})
    source = types.SimpleNamespace(dataset=dataset, dataset_size=len(dataset))
    config = DataSelectorConfig(selector_type="difficulty_based", seed=SEED,
                                feature_keys=["weak", "strong"], kwargs=kwargs)
    return SELECTOR.DifficultyBasedSelector(source, config)


@pytest.mark.parametrize("mode, do_sample", [("greedy", False), ("thompson", True)])
def test_same_batches_from_the_same_posterior(mode: str, do_sample: bool) -> None:
    rng = np.random.default_rng(SEED + 2)
    weak, strong = _references(rng)
    theirs = _their_selector(weak, strong, m=M, lamb=LAM, rho=RHO, do_sample=do_sample, tau=0,
                             target_reward=0.5)
    ours = BotsSelector(N, weak=weak, strong=strong, lam=LAM, rho=RHO, m=M, gamma=0.9,
                        target=0.5, mode=mode, seed=SEED)
    true_p = np.clip(weak + 0.8 * (strong - weak), 0.0, 1.0)
    ids = rng.permutation(N)[:B]  # the flat prior ties every task: one first batch for both
    for t in range(10):
        trials = np.full(B, M, dtype=np.float64)
        s = _outcomes(rng, true_p[ids], trials)
        theirs.feedback(ids.tolist(), (s / M).tolist())
        ours.update(ids, s, trials)
        if mode == "thompson":  # the draws they make this call (see the module docstring)
            ours.rng = np.random.default_rng(theirs.seed + theirs.current_index)
        their_ids = np.asarray(theirs.get_indices(B).tolist())
        our_ids = ours.select(B)
        assert sorted(our_ids.tolist()) == sorted(their_ids.tolist()), f"step {t}"
        ids = their_ids
    assert_close(ours.alpha, theirs.diff_estimator.alphas)


def test_softmax_selection_has_the_same_distribution() -> None:
    n, k, tau, draws = 6, 2, 0.2, 1500
    rng = np.random.default_rng(SEED + 3)
    weak, strong = _references(rng, n)
    theirs = _their_selector(weak, strong, m=M, lamb=LAM, rho=RHO, do_sample=False, tau=tau,
                             target_reward=0.5)
    ours = BotsSelector(n, weak=weak, strong=strong, lam=LAM, rho=RHO, m=M, gamma=0.9,
                        target=0.5, mode="softmax", tau=tau, seed=SEED)
    for ids, s in (([0, 1], [8, 1]), ([2, 3], [4, 0]), ([4, 5], [7, 2])):
        theirs.feedback(ids, [x / M for x in s])
        ours.update(ids, s, [M, M])
    mean = ours.posterior_mean()
    assert_close(mean, theirs.diff_estimator.predict_pr())

    w = np.exp(-np.abs(mean - 0.5) / tau)
    p = w / w.sum()
    # P(i among k = 2 drawn one by one without replacement) = p_i + Σ_{j≠i} p_j·p_i/(1 − p_j)
    exact = p + np.array([sum(p[j] * p[i] / (1 - p[j]) for j in range(n) if j != i)
                          for i in range(n)])
    their_freq = np.zeros(n)
    our_freq = np.zeros(n)
    for _ in range(draws):
        their_freq[theirs.get_indices(k).tolist()] += 1
        # What BotsSelector._select does in softmax mode; select() itself would mark the drawn
        # tasks pending (awaiting feedback) and exclude them from the next draw.
        our_freq[softmax_sample(mean, ours.target, k, ours.tau, ours.rng)] += 1
    assert p.max() > 2 * p.min()  # the weights are far from uniform
    # 1500 draws (theirs take ~5 ms each, mostly formatting debug messages): each frequency's
    # standard deviation is at most 0.013. The exact values range from 0.18 to 0.62.
    np.testing.assert_allclose(their_freq / draws, exact, atol=0.055)
    np.testing.assert_allclose(our_freq / draws, exact, atol=0.055)


# -- where they differ by design --------------------------------------------------------------

def test_their_counts_are_m_times_the_mean_reward_ours_the_true_counts() -> None:
    # n_k ≠ m: a task evaluated on n_k rollouts (e.g. a group that lost rollouts to filtering or
    # a length limit) adds m·r_k successes to theirs and n_k·r_k = s_k to ours (DESIGN.md §1.6).
    # Both update linearly with the same forgetting, so ours − theirs follows
    #   Δ_t = (1 − λ)·Δ_{t−1} + (n_k − m)·r_k on the batch, (1 − λ)·Δ_{t−1} elsewhere
    # (and (n_k − m)·(1 − r_k) for beta). The capability uses the rates r_k in both: equal.
    rng = np.random.default_rng(SEED + 4)
    weak, strong = _references(rng)
    theirs = _theirs(weak, strong)
    ours = BotsSelector(N, weak=weak, strong=strong, lam=LAM, rho=RHO, m=M, gamma=0.9,
                        seed=SEED)
    true_p = np.clip(weak + 0.7 * (strong - weak), 0.0, 1.0)
    d_alpha, d_beta = np.zeros(N), np.zeros(N)
    for t in range(12):
        ids = ours.select(B)
        trials = rng.choice([2.0, 4.0, 8.0, 16.0], size=B)
        s = _outcomes(rng, true_p[ids], trials)
        r = s / trials
        theirs.update(ids.tolist(), r.tolist())
        ours.update(ids, s, trials)
        d_alpha *= 1 - LAM
        d_beta *= 1 - LAM
        d_alpha[ids] += (trials - M) * r
        d_beta[ids] += (trials - M) * (1 - r)
        assert ours.capability == pytest.approx(theirs.cap_coef, rel=1e-12), f"step {t}"
        assert_close(ours.alpha - theirs.alphas, d_alpha, f"step {t}")
        assert_close(ours.beta - theirs.betas, d_beta, f"step {t}")
    assert np.abs(d_alpha).max() > 1.0 and np.abs(d_beta).max() > 1.0  # a real difference

    # By hand: 2 of 2 solved, m = 8. Theirs counts 8 successes, ours 2.
    one = _theirs(weak[:1], strong[:1], rho=0.0)
    mine = BotsSelector(1, weak=weak[:1], strong=strong[:1], lam=LAM, rho=0.0, m=M)
    one.update([0], [1.0])
    mine.update([0], [2], [2])
    assert (one.alphas[0], one.betas[0]) == pytest.approx((1 + M, 1.0))
    assert (mine.alpha[0], mine.beta[0]) == pytest.approx((1 + 2, 1.0))


def test_their_prior_is_beta_1_1_ours_any_a0_b0() -> None:
    # Their update adds `lamb` (λ·1) and starts from ones: the prior Beta(1, 1) is fixed. Ours
    # starts from (a0, b0) and adds λ·a0: the offset a0 − 1 is forgotten at rate λ and restored
    # by λ·(a0 − 1) every step, so ours − theirs stays (a0 − 1, b0 − 1) exactly.
    a0, b0 = 2.0, 3.0
    rng = np.random.default_rng(SEED + 5)
    weak, strong = _references(rng)
    theirs = _theirs(weak, strong)
    ours = BotsSelector(N, weak=weak, strong=strong, lam=LAM, rho=RHO, m=M, gamma=0.9,
                        prior=(a0, b0), seed=SEED)
    true_p = np.clip(weak + 0.5 * (strong - weak), 0.0, 1.0)
    for t in range(10):
        ids = ours.select(B)
        trials = np.full(B, M, dtype=np.float64)
        s = _outcomes(rng, true_p[ids], trials)
        theirs.update(ids.tolist(), (s / M).tolist())
        ours.update(ids, s, trials)
        assert_close(ours.alpha - theirs.alphas, a0 - 1, f"step {t}")
        assert_close(ours.beta - theirs.betas, b0 - 1, f"step {t}")


@pytest.mark.parametrize("reward", [-0.5, 1.5])
def test_rewards_outside_0_1_they_take_we_refuse(reward: float) -> None:
    # Trinity's PassRateCalculator averages raw rewards (a format penalty of −1, a bonus above 1)
    # and the estimator counts m·r_k successes and m·(1 − r_k) failures: one of them negative.
    weak, strong = np.array([0.2, 0.4]), np.array([0.6, 0.9])
    theirs = _theirs(weak, strong)
    theirs.update([0], [reward])
    assert min(theirs.alphas[0], theirs.betas[0]) < 0  # no longer a Beta distribution
    ours = BotsSelector(2, weak=weak, strong=strong, lam=LAM, rho=RHO, m=M)
    with pytest.raises(ValueError, match="successes must be"):
        ours.update([0], [reward * M], [M])


def test_their_defaults_and_settings_differ_from_ours() -> None:
    weak, strong = _references(np.random.default_rng(SEED + 6))
    # Their selector builds the estimator from lamb, rho, m, adaptive_rho only: γ stays 0.9.
    theirs = _their_selector(weak, strong, cap_coef_update_discount=0.5, gamma=0.5)
    est = theirs.diff_estimator
    assert (est.lamb, est.rho, est.m, est.cap_coef_update_discount, est.adaptive_rho) == (
        0.2, 0.2, 16, 0.9, False)
    assert (theirs.target_reward, theirs.tau, theirs.do_sample) == (1.0, 1.0, False)
    ours = BotsSelector(N, weak=weak, strong=strong, gamma=0.5)
    assert (ours.lam, ours.rho, ours.m, ours.gamma, ours.target, ours.mode) == (
        0.1, 0.1, 16, 0.5, 0.5, "thompson")
