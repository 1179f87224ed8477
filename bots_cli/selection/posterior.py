"""The Beta posterior update of BOTS (DESIGN.md §1.1), as one vectorised function.

    selected k   : alpha_k <- (1-λ)·alpha_k + λ·a0 + s_k
                   beta_k  <- (1-λ)·beta_k  + λ·b0 + (n_k - s_k)
    unselected k : alpha_k <- (1-λ)·alpha_k + λ·a0 + ρ·m·p̃_k
                   beta_k  <- (1-λ)·beta_k  + λ·b0 + ρ·m·(1 - p̃_k)

λ is the forgetting factor (share pulled back to the prior), ρ the weight of implicit evidence,
m the pseudo-trials one implicit estimate is worth, p̃ the implicit success estimate. The prior
(a0, b0) is one pair for every task, or one pair per task (`selector.prior_from`, DESIGN.md
§1.5.4): forgetting then pulls each task back to its own prior.
"""

from __future__ import annotations

import numpy as np

Prior = tuple[float | np.ndarray, float | np.ndarray]  # scalars, or (N,) arrays


def update_posterior(
    alpha: np.ndarray,  # (N,) float64, updated in place
    beta: np.ndarray,  # (N,) float64, updated in place
    ids: np.ndarray,  # (B,) distinct task indices evaluated this step
    successes: np.ndarray,  # (B,) s_k, may be fractional
    trials: np.ndarray,  # (B,) n_k
    *,
    lam: float,
    rho: float,
    m: float,
    prior: Prior,
    implicit: np.ndarray | None,  # (N,) p̃ in [0, 1]; ignored (may be None) when rho == 0
    scratch: np.ndarray | None = None,  # (N,) float64 work buffer, to avoid an allocation
) -> None:
    """Apply one step of forgetting plus explicit and implicit evidence, in place.

    In place because the pool may hold 10^7 tasks: the whole update is a handful of passes over
    the arrays and no temporary of size N beyond `scratch`.
    """
    a0, b0 = prior
    a0_sel = a0[ids] if isinstance(a0, np.ndarray) else a0
    b0_sel = b0[ids] if isinstance(b0, np.ndarray) else b0
    keep = 1.0 - lam
    # The selected tasks' old values, before the bulk pass below overwrites them.
    alpha_sel = alpha[ids]
    beta_sel = beta[ids]

    alpha *= keep
    beta *= keep
    if rho > 0.0:
        if implicit is None:
            raise ValueError("implicit estimates are required when rho > 0")
        c = rho * m
        # q = ρ·m·p̃ + λ·a0 goes to alpha; beta gets ρ·m·(1 - p̃) + λ·b0 = (ρ·m + λ·(a0 + b0)) - q.
        q = np.multiply(implicit, c, out=scratch)
        q += lam * a0
        alpha += q
        beta -= q
        beta += c + lam * (a0 + b0)
    else:
        alpha += lam * a0
        beta += lam * b0

    alpha[ids] = keep * alpha_sel + lam * a0_sel + successes
    beta[ids] = keep * beta_sel + lam * b0_sel + (trials - successes)


def posterior_mean(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """alpha / (alpha + beta), the expected success probability of each task."""
    return alpha / (alpha + beta)
