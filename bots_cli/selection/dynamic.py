"""Dynamic sampling (DAPO's, and Bae et al. 2025's balanced online filtering): buy a batch of
informative groups with extra rollouts. Shared by the native loop and the TRL adapter: one step's
rounds run in `sample_rounds`.

One training step with `train.dynamic_sampling.enabled=true` runs in rounds:

    round 1      the selector picks `batch_size` tasks; each gets `group_size` completions, scored
    after each   every task's (successes, trials) goes to the selector (one `update` per round);
                 a group is *informative* when its rewards are not all equal (GRPO signal ≠ 0)
    round r > 1  while fewer than `batch_size` informative groups are in hand and r ≤ max_rounds,
                 the selector picks `refill_size(...)` more tasks, the same way
    the batch    the first `batch_size` informative groups, in the order they were generated;
                 when the rounds ran out first, the earliest equal-reward groups fill it up to
                 `batch_size` (the native update drops them; TRL gives them advantage 0)

Every generated completion is counted (`train/rollouts`, `train/tokens`) and every round's
evidence reaches the selector, trained on or not: the selector learns from everything it paid for.
Because each round is one selector update, λ forgets per round, not per training step.

A refill round asks for the missing groups divided by the informative share seen so far this step
(so that it fills the batch in one more round on average), never more than `batch_size` tasks: a
round is never larger than the first, so rollout memory stays bounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bots_cli.checks import check_int


@dataclass(frozen=True)
class DynamicSampling:
    """`train.dynamic_sampling`: off by default; max_rounds counts the first round too."""

    enabled: bool
    max_rounds: int

    @classmethod
    def from_config(cls, section: Any) -> DynamicSampling:
        return cls(enabled=bool(section["enabled"]),
                   max_rounds=check_int("train.dynamic_sampling.max_rounds",
                                        section["max_rounds"], lo=1))

    @property
    def rounds(self) -> int:
        """The most rounds one step may take (1 when off)."""
        return self.max_rounds if self.enabled else 1


def informative(rewards: Sequence[np.ndarray]) -> np.ndarray:
    """(groups,) bool: whether each group's rewards differ (NaN rewards, unscorable, left out)."""
    out = []
    for group in rewards:
        scored = np.asarray(group, dtype=np.float64)
        scored = scored[~np.isnan(scored)]
        out.append(scored.size > 1 and float(np.ptp(scored)) > 0.0)
    return np.asarray(out, dtype=bool)


def refill_size(missing: int, kept: int, generated: int, batch_size: int, pool: int,
                multiple: int = 1) -> int:
    """Tasks to draw in the next round: `missing` informative groups are still wanted, `kept` of
    the `generated` groups so far were informative. At most `batch_size` (and the pool), at least
    `missing`, rounded up to a multiple of `multiple` (TRL: so each process gets whole rows)."""
    share = kept / generated if generated else 0.0
    n = batch_size if share == 0.0 else math.ceil(missing / share)
    n = max(missing, min(n, batch_size))
    n = math.ceil(n / multiple) * multiple
    if n > batch_size:  # rounded past the cap: the largest multiple that fits
        n = max(multiple, (batch_size // multiple) * multiple)
    return min(n, pool)


def sample_rounds(sample: Callable[[int], np.ndarray], batch_size: int, pool: int,
                  max_rounds: int, multiple: int = 1) -> list[tuple[int, int]]:
    """One step's sampling rounds, then its batch: `sample(n)` draws and scores a round of n
    groups (selecting, generating, feeding the selector back) and returns whether each group is
    informative, in generation order. Round 1 has `batch_size` groups; later ones, while fewer
    than `batch_size` informative groups are in hand and at most `max_rounds` rounds (1: dynamic
    sampling off), `refill_size(...)`. Returns the batch's groups as (round, group) pairs, in
    generation order (`batch_groups`)."""
    flags: list[np.ndarray] = []
    kept = generated = 0
    while len(flags) < max_rounds and kept < batch_size:
        n = batch_size if not flags else refill_size(batch_size - kept, kept, generated,
                                                     batch_size, pool, multiple)
        flags.append(np.asarray(sample(n), dtype=bool))
        kept += int(flags[-1].sum())
        generated += n
    where = [(r, j) for r, f in enumerate(flags) for j in range(len(f))]
    return [where[c] for c in batch_groups(np.concatenate(flags), batch_size)]


def batch_groups(signal: Sequence[bool] | np.ndarray, batch_size: int) -> np.ndarray:
    """Indices (into the step's groups, in generation order) of the groups trained on: the first
    `batch_size` informative ones, then the earliest equal-reward ones up to `batch_size`."""
    flags = np.asarray(signal, dtype=bool)
    chosen = np.flatnonzero(flags)[:batch_size]
    if chosen.size < batch_size:
        fill = np.flatnonzero(~flags)[: batch_size - chosen.size]
        chosen = np.concatenate([chosen, fill])
    return np.sort(chosen) if chosen.size else chosen


def posterior_means(selector: Any, ids: np.ndarray) -> np.ndarray:
    """The selector's posterior mean α/(α+β) of each task, before it is observed (NaN for
    selectors without a posterior): the `predicted` column of selections.parquet."""
    alpha, beta = getattr(selector, "alpha", None), getattr(selector, "beta", None)
    if alpha is None or beta is None:
        return np.full(len(ids), np.nan)
    return np.asarray(alpha[ids] / (alpha[ids] + beta[ids]), dtype=np.float64)
