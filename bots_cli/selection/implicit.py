"""Implicit evidence: success estimates for the tasks that were not evaluated this step.

`ImplicitEvidence` is the interface the posterior consumes; `InterpolationEvidence` is the
paper's ultra-light plug-in (DESIGN.md §1.2): it places the current policy between a weak and a
strong reference model and reads every task's success probability off that interpolation.
The plug-ins that need no reference model, task groups and nearest neighbours, are in pooled.py
(DESIGN.md §1.5.3).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from bots_cli.checks import check_range, check_rates
from bots_cli.errors import InvalidValue

EPS = 1e-6  # keeps the capability finite when the references agree on a batch


class ImplicitEvidence(ABC):
    """Predicts p̃_k, the current success probability of every task, without new rollouts."""

    @abstractmethod
    def observe(self, ids: np.ndarray, rates: np.ndarray,
                trials: np.ndarray | None = None) -> None:
        """Take in the batch just evaluated: task indices, observed success rates s_k/n_k and
        the trials n_k behind them (None: one each; plug-ins that pool counts weigh by them)."""

    @abstractmethod
    def estimate(self, out: np.ndarray | None = None) -> np.ndarray:
        """p̃ for every task, shape (N,), values in [0, 1]. Writes into `out` when given."""

    @property
    def capability(self) -> float | None:
        """A scalar summary of the policy's ability, if the plug-in has one (for logging)."""
        return None

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def batch_capability(rates: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> float:
    """mu_t: where the policy sits between the references on this batch (0 = weak, 1 = strong).

    mu_t = (mean s_k/n_k - mean w_k) / (mean s̄_k - mean w_k + 1e-6), all means over the batch.
    Not clipped: a policy beyond the strong reference extrapolates.
    """
    w = float(np.mean(weak))
    return (float(np.mean(rates)) - w) / (float(np.mean(strong)) - w + EPS)


def interpolate_pass_rates(
    mu: float, weak: np.ndarray, strong: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """p̃_k = clip(mu·s̄_k + (1 - mu)·w_k, 0, 1) for every task."""
    out = np.subtract(strong, weak, out=out)
    out *= mu
    out += weak
    if not 0.0 <= mu <= 1.0:  # inside [0, 1] the interpolation cannot leave [0, 1]
        np.clip(out, 0.0, 1.0, out=out)
    return out


class InterpolationEvidence(ImplicitEvidence):
    """The interpolation plug-in with a momentum-smoothed capability estimate.

    mu~_t = gamma·mu~_{t-1} + (1 - gamma)·mu_t, and mu~_1 = mu_1.
    """

    def __init__(self, weak: np.ndarray, strong: np.ndarray, gamma: float = 0.9) -> None:
        self.weak = check_rates("weak", weak, len(weak))
        self.strong = check_rates("strong", strong, len(self.weak))
        self.gamma = check_range("gamma (capability momentum γ)", gamma, 0.0, 1.0)
        self.mu: float | None = None  # mu~, None before the first batch

    @property
    def capability(self) -> float | None:
        return self.mu

    def observe(self, ids: np.ndarray, rates: np.ndarray,
                trials: np.ndarray | None = None) -> None:
        mu_t = batch_capability(rates, self.weak[ids], self.strong[ids])
        self.mu = mu_t if self.mu is None else self.gamma * self.mu + (1.0 - self.gamma) * mu_t

    def estimate(self, out: np.ndarray | None = None) -> np.ndarray:
        if self.mu is None:
            raise RuntimeError("InterpolationEvidence.estimate() called before any observe()")
        return interpolate_pass_rates(self.mu, self.weak, self.strong, out=out)

    def state_dict(self) -> dict[str, Any]:
        return {"mu": self.mu, "gamma": self.gamma}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("gamma") != self.gamma:
            raise InvalidValue(
                f"gamma: the saved state used gamma={state.get('gamma')}, this plug-in has "
                f"gamma={self.gamma}"
            )
        self.mu = None if state["mu"] is None else float(state["mu"])
