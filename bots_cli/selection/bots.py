"""`BotsSelector`: Bayesian Online Task Selection (DESIGN.md §1).

Each task k has a Beta(alpha_k, beta_k) posterior over its current success probability. After a
step, the evaluated tasks receive their rollouts as explicit evidence, every other task receives
the implicit estimate p̃_k weighted by ρ, and all posteriors are pulled back towards the prior by
the forgetting factor λ. The next batch is the tasks whose (sampled) success probability is
nearest the target p*.

Beyond the paper (DESIGN.md §1.5): ρ and λ may follow a schedule (schedules.py; the current
values are `sel.rho` and `sel.lam`), the implicit plug-in may be task groups or nearest
neighbours instead of the reference interpolation (pooled.py), and the prior may be one pair per
task (`prior=(a0, b0)` with (N,) arrays, e.g. from a reference's pass rates).

Cost per step is a few vectorised passes over the pool; the dominant term for Thompson sampling
is drawing one Beta sample per task (see benchmarks/selector_overhead.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bots_cli.checks import check_choice, check_range, check_rates
from bots_cli.errors import InvalidValue
from bots_cli.selection.base import Selector
from bots_cli.selection.implicit import ImplicitEvidence, InterpolationEvidence
from bots_cli.selection.posterior import posterior_mean, update_posterior
from bots_cli.selection.schedules import LamSchedule, RhoSchedule
from bots_cli.selection.topk import nearest_to_target, smallest_k, softmax_sample

MODES = ("thompson", "greedy", "softmax")


class BotsSelector(Selector):
    name = "bots"

    def __init__(
        self,
        n_tasks: int,
        weak: Any = None,
        strong: Any = None,
        lam: float = 0.1,
        rho: float = 0.1,
        target: float = 0.5,
        m: float = 16,
        gamma: float = 0.9,
        prior: tuple[Any, Any] = (1.0, 1.0),
        mode: str = "thompson",
        tau: float = 0.1,
        seed: int = 0,
        implicit: ImplicitEvidence | None = None,
        rho_schedule: str = "constant",
        rho_threshold: float = 0.25,
        lam_schedule: str = "constant",
    ) -> None:
        """See DESIGN.md §3. `implicit`, if given, replaces the plug-in built from weak/strong.
        `prior` is (a0, b0) for every task, or two (N,) arrays (one prior per task)."""
        super().__init__(n_tasks, seed)
        self.lam = check_range("lam (forgetting factor λ)", lam, 0.0, 1.0)
        self.rho = check_range("rho (implicit-evidence weight ρ)", rho, 0.0, 1.0)
        self.rho_schedule = RhoSchedule(rho_schedule, self.rho, rho_threshold)
        self.lam_schedule = LamSchedule(lam_schedule, self.lam)
        self.target = check_range("target (target success probability p*)", target, 0.0, 1.0,
                                  lo_open=True, hi_open=True)
        self.m = check_range("m (pseudo-trials per implicit estimate)", m, 1.0)
        self.mode = check_choice("mode", mode, MODES)
        self.tau = check_range("tau (softmax temperature)", tau, 0.0, lo_open=True)
        self.gamma = check_range("gamma (capability momentum γ)", gamma, 0.0, 1.0)
        self.prior = _checked_prior(prior, self.n_tasks)
        if implicit is None and (weak is not None or strong is not None):
            if weak is None or strong is None:
                missing = "weak" if weak is None else "strong"
                raise InvalidValue(f"{missing} reference pass rates are missing; the "
                                   "interpolation needs both the weak and the strong reference")
            implicit = InterpolationEvidence(
                check_rates("weak", weak, self.n_tasks),
                check_rates("strong", strong, self.n_tasks),
                self.gamma,
            )
        if implicit is None and (self.rho > 0 or rho_schedule != "constant"):
            raise InvalidValue(
                f"weak and strong reference pass rates are required when rho > 0 or a rho "
                f"schedule is set (rho = {self.rho}, rho_schedule = {rho_schedule}): profile the "
                "references, use another implicit plug-in, or set rho to 0 for explicit "
                "evidence only"
            )
        self.implicit = implicit
        self.alpha = np.empty(self.n_tasks, dtype=np.float64)
        self.beta = np.empty(self.n_tasks, dtype=np.float64)
        self.alpha[:], self.beta[:] = self.prior
        self.seen = np.zeros(self.n_tasks, dtype=bool)  # tasks with rollouts in their posterior
        self._scratch: np.ndarray | None = None  # reused (N,) buffers, allocated on first use
        self._p_tilde: np.ndarray | None = None

    @property
    def capability(self) -> float | None:
        """The smoothed capability mu~ of the interpolation plug-in (None before any update)."""
        return None if self.implicit is None else self.implicit.capability

    def posterior_mean(self) -> np.ndarray:
        return posterior_mean(self.alpha, self.beta)

    def metrics(self) -> dict[str, float]:
        """`selector/*` values of the last update: ρ_t, λ_t, the plug-in's batch error (mean
        |p̃ − r|) and, where the plug-in has one, the capability estimate."""
        out = {"selector/rho": self.rho, "selector/lam": self.lam}
        if self.rho_schedule.error is not None:
            out["selector/implicit_error"] = self.rho_schedule.error
        if self.rho_schedule.kind == "calibrated":
            out["selector/implicit_reliability"] = self.rho_schedule.reliability
        if self.capability is not None:
            out["selector/capability"] = float(self.capability)
        return out

    def _select(self, batch_size: int) -> np.ndarray:
        # Tasks whose feedback is pending (DESIGN.md §1.8) are left out by an infinite distance
        # to the target, after the same random draws as without a delay; with nothing pending
        # no mask is read at all.
        exclude = self.pending if self.n_pending else None
        if self.mode == "thompson":
            p_hat = self.rng.beta(self.alpha, self.beta)
            # The draw is ours to overwrite: |p̂ - p*| in place saves an array of size N.
            np.subtract(p_hat, self.target, out=p_hat)
            np.abs(p_hat, out=p_hat)
            if exclude is not None:
                p_hat[exclude] = np.inf
            return smallest_k(p_hat, batch_size, self.rng)
        mean = self.posterior_mean()
        if self.mode == "greedy":
            return nearest_to_target(mean, self.target, batch_size, self.rng, exclude)
        return softmax_sample(mean, self.target, batch_size, self.tau, self.rng, exclude)

    def _observe(self, ids: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> None:
        rates = successes / trials
        # λ_t from the batch's posterior before this update (schedules.py)
        self.lam = self.lam_schedule.update(self.alpha[ids], self.beta[ids], rates, trials,
                                            self.seen[ids])
        self.seen[ids] = True
        p_tilde = None
        if self.implicit is not None:
            self.implicit.observe(ids, rates, trials)
            if self.rho > 0 or self.rho_schedule.kind != "constant":
                if self._p_tilde is None:
                    self._p_tilde = np.empty(self.n_tasks)
                    self._scratch = np.empty(self.n_tasks)
                p_tilde = self.implicit.estimate(out=self._p_tilde)
                self.rho = self.rho_schedule.update(p_tilde[ids], rates)
        update_posterior(
            self.alpha, self.beta, ids, successes, trials,
            lam=self.lam, rho=self.rho, m=self.m, prior=self.prior,
            implicit=p_tilde, scratch=self._scratch,
        )

    def _hparams(self) -> dict[str, Any]:
        a0, b0 = self.prior
        prior = ([float(a0), float(b0)] if np.ndim(a0) == 0 else
                 [float(np.sum(a0)), float(np.sum(b0))])  # per-task priors: their sums
        return {"lam": self.lam_schedule.lam0, "rho": self.rho_schedule.rho0,
                "target": self.target, "m": self.m, "gamma": self.gamma, "prior": prior,
                "mode": self.mode, "tau": self.tau, "rho_schedule": self.rho_schedule.kind,
                "rho_threshold": self.rho_schedule.threshold,
                "lam_schedule": self.lam_schedule.kind}

    def _extra_state(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha.copy(),
            "beta": self.beta.copy(),
            "seen": self.seen.copy(),
            "hparams": self._hparams(),
            "implicit": None if self.implicit is None else self.implicit.state_dict(),
            "rho_schedule": self.rho_schedule.state_dict(),
            "lam_schedule": self.lam_schedule.state_dict(),
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        saved = {"rho_schedule": "constant", "rho_threshold": 0.25, "lam_schedule": "constant",
                 **state["hparams"]}  # states saved before the schedules existed
        saved["prior"] = list(saved["prior"])
        mine = self._hparams()
        diff = [k for k in mine if saved.get(k) != mine[k]]
        if diff:
            k = diff[0]
            raise InvalidValue(
                f"{k}: the saved selector state used {k}={saved.get(k)!r}, this selector has "
                f"{k}={mine[k]!r}; resume with the same selector settings"
            )
        for key in ("alpha", "beta"):
            arr = np.asarray(state[key], dtype=np.float64)
            if arr.shape != (self.n_tasks,):
                raise InvalidValue(
                    f"state: {key} has shape {arr.shape}, expected ({self.n_tasks},)"
                )
        self.alpha = np.array(state["alpha"], dtype=np.float64)
        self.beta = np.array(state["beta"], dtype=np.float64)
        if (state["implicit"] is None) != (self.implicit is None):
            raise InvalidValue("state: implicit evidence was used when saving but not now, or "
                               "the reverse; give the same reference pass rates")
        if self.implicit is not None:
            self.implicit.load_state_dict(state["implicit"])
        if "rho_schedule" in state:  # else: saved before the schedules (constant ρ and λ)
            self.rho_schedule.load_state_dict(state["rho_schedule"])
            self.lam_schedule.load_state_dict(state["lam_schedule"])
            self.seen = np.array(state["seen"], dtype=bool)
        else:  # only constant schedules could save it, and they never read `seen`
            self.seen = np.zeros(self.n_tasks, dtype=bool)
        self.rho, self.lam = self.rho_schedule.rho, self.lam_schedule.lam


def _checked_prior(prior: Any, n: int) -> tuple[Any, Any]:
    """(a0, b0): two numbers > 0, or two (N,) arrays of them (one prior per task)."""
    if len(prior) != 2:
        raise InvalidValue(f"prior must be a pair (a0, b0), got {prior!r}")
    if np.ndim(prior[0]) == 0 and np.ndim(prior[1]) == 0:
        return (check_range("prior a0", prior[0], 0.0, lo_open=True),
                check_range("prior b0", prior[1], 0.0, lo_open=True))
    out = []
    for name, values in (("a0", prior[0]), ("b0", prior[1])):
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (n,):
            raise InvalidValue(f"prior {name} must be a number or one value per task ({n}), got "
                               f"shape {arr.shape}")
        if not np.isfinite(arr).all() or (arr <= 0).any():
            raise InvalidValue(f"prior {name} must be > 0 and finite for every task")
        out.append(arr)
    return out[0], out[1]
