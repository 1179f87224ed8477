"""Schedules of ρ and λ: how much implicit evidence is believed, how fast the past is forgotten.

Each schedule sees every step's batch before that step's posterior update and returns the value
the update uses (DESIGN.md §1.5.1, §1.5.2). r_k = s_k/n_k is task k's observed rate, p̃_k the
implicit plug-in's estimate after it observed the batch, B_t the batch.

ρ (`selector.rho_schedule`; ρ0 = `selector.rho`):
    constant   : ρ_t = ρ0
    halving    : e_t = mean_{k∈B_t} |p̃_k − r_k|;  ρ_t = ρ_{t−1}/2 if e_t ≥ θ else ρ_{t−1}
                 (the official code's rule, θ = `selector.rho_threshold`, 0.25 there; ρ never
                 grows back)
    calibrated : x_k = p̃_k − mean_{B_t} p̃,  y_k = r_k − mean_{B_t} r     (within the batch)
                 Sxy <- (1−η)·Sxy + Σ_{k∈B_t} x_k·y_k,  Sxx <- (1−η)·Sxx + Σ_{k∈B_t} x_k²
                 b_t = (Sxy + κ_b) / (Sxx + κ_b),  ρ_t = ρ0 · clip(b_t, 0, 1)
                 b_t is the slope of the observed rates on the plug-in's estimates across tasks:
                 1 when p̃ ranks and spaces tasks as their outcomes do, 0 when p̃ says nothing
                 about which task succeeds (references shuffled across tasks). Binomial noise in
                 r does not bias a slope (it is noise in y), while noise in the references
                 shrinks it by their reliability, the share Bayes would keep. Centring within
                 the batch removes what the plug-in fits by construction: its batch mean. κ_b
                 (a prior of slope 1 worth `CALIBRATION_PRIOR` of Sxx) trusts ρ0 until there
                 is evidence; η = `CALIBRATION_FORGET`.
λ (`selector.lam_schedule`; λ0 = `lambda`):
    constant   : λ_t = λ0
    adaptive   : for the tasks of B_t observed before (their posterior carries past rollouts),
                 z_k² = (r_k − μ_k)² / v_k with μ_k = α_k/(α_k+β_k) before the update and
                 v_k = μ_k(1−μ_k)/n_k · (α_k+β_k+n_k)/(α_k+β_k+1), the variance of r_k under
                 the posterior's own predictive (Beta-binomial); E[z²] = 1 when the posterior
                 is calibrated. D_t = (1−η)·D_{t−1} + η·mean z_k² (D_0 = 1), and
                 λ_t = clip(λ0·D_t, λ0/4, min(1, 4·λ0)): forget faster when re-selected tasks
                 drift from their posterior (the policy is changing), slower when they agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bots_cli.checks import check_choice, check_range
from bots_cli.errors import InvalidValue

RHO_SCHEDULES = ("constant", "halving", "calibrated")
LAM_SCHEDULES = ("constant", "adaptive")
CALIBRATION_FORGET = 0.02  # η of the calibrated ρ: its slope remembers ~50 batches
CALIBRATION_PRIOR = 0.05  # κ_b: the prior slope of 1 is worth this much Sxx (≈ 5 batches' worth)
DRIFT_MOMENTUM = 0.1  # η of the adaptive λ's drift statistic D_t
LAM_RANGE = 4.0  # the adaptive λ stays within [λ0 / 4, min(1, 4·λ0)]


class RhoSchedule:
    """ρ_t for each step's update, from the plug-in's estimates of the batch and its outcomes."""

    def __init__(self, kind: str, rho: float, threshold: float = 0.25) -> None:
        self.kind = check_choice("rho_schedule", kind, RHO_SCHEDULES)
        self.rho0 = rho
        self.threshold = check_range("rho_threshold", threshold, 0.0, 1.0, lo_open=True)
        self.rho = rho  # the current ρ_t
        self.error: float | None = None  # e_t, the batch mean |p̃ − r| (None before a batch)
        self.sxy = 0.0
        self.sxx = 0.0

    @property
    def reliability(self) -> float:
        """b_t, the calibrated slope (1 before any batch)."""
        return (self.sxy + CALIBRATION_PRIOR) / (self.sxx + CALIBRATION_PRIOR)

    def update(self, p_tilde: np.ndarray, rates: np.ndarray) -> float:
        """ρ for this step's update; `p_tilde` and `rates` are the batch's (B,) values."""
        self.error = float(np.mean(np.abs(p_tilde - rates)))
        if self.kind == "halving" and self.error >= self.threshold:
            self.rho /= 2.0
        elif self.kind == "calibrated":
            x = p_tilde - p_tilde.mean()
            y = rates - rates.mean()
            keep = 1.0 - CALIBRATION_FORGET
            self.sxy = keep * self.sxy + float(x @ y)
            self.sxx = keep * self.sxx + float(x @ x)
            self.rho = self.rho0 * min(1.0, max(0.0, self.reliability))
        return self.rho

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rho": self.rho, "error": self.error, "sxy": self.sxy,
                "sxx": self.sxx}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["kind"] != self.kind:
            raise InvalidValue(f"rho_schedule: the saved state used {state['kind']!r}, this "
                               f"selector has {self.kind!r}")
        self.rho = float(state["rho"])
        self.error = None if state["error"] is None else float(state["error"])
        self.sxy, self.sxx = float(state["sxy"]), float(state["sxx"])


class LamSchedule:
    """λ_t for each step's update, from how far re-selected tasks land from their posterior."""

    def __init__(self, kind: str, lam: float) -> None:
        self.kind = check_choice("lam_schedule", kind, LAM_SCHEDULES)
        self.lam0 = lam
        self.lam = lam  # the current λ_t
        self.drift = 1.0  # D_t

    def update(self, alpha: np.ndarray, beta: np.ndarray, rates: np.ndarray,
               trials: np.ndarray, seen: np.ndarray) -> float:
        """λ for this step's update. `alpha`, `beta` are the batch's posterior before it, `seen`
        marks the batch's tasks that were observed before (all (B,))."""
        if self.kind == "constant" or not seen.any():
            return self.lam
        a, b, r, n = alpha[seen], beta[seen], rates[seen], trials[seen]
        mu = a / (a + b)
        var = mu * (1.0 - mu) / n * (a + b + n) / (a + b + 1.0)
        z2 = float(np.mean((r - mu) ** 2 / var))
        self.drift = (1.0 - DRIFT_MOMENTUM) * self.drift + DRIFT_MOMENTUM * z2
        lo, hi = self.lam0 / LAM_RANGE, min(1.0, LAM_RANGE * self.lam0)
        self.lam = min(hi, max(lo, self.lam0 * self.drift))
        return self.lam

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lam": self.lam, "drift": self.drift}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["kind"] != self.kind:
            raise InvalidValue(f"lam_schedule: the saved state used {state['kind']!r}, this "
                               f"selector has {self.kind!r}")
        self.lam, self.drift = float(state["lam"]), float(state["drift"])
