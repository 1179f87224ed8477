"""From rewards to evidence (DESIGN.md §1.6): each task's (successes, trials) after a step.

Every trainer and integration turns its scored completions into selector feedback here, so the
rule is written once:

- a completion's reward r must lie in [0, 1] and counts as r successes (binary rewards: the
  number of successes; graded rewards: fractional successes);
- `threshold=t` counts a completion as a success when r ≥ t (any real reward);
- `reward_range=(lo, hi)` rescales r to (r − lo) / (hi − lo), which must then lie in [0, 1];
- a reward that is NaN (an engine's "unscorable" completion) is left out of both successes and
  trials, and a task whose completions are all unscorable is left out of the update;
- anything else outside [0, 1] is refused with an error naming the setting that maps it.

Completions of one task may arrive in any order and from several processes: they are grouped by
task index, and the tasks come out in the order of their first completion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bots_cli.errors import InvalidValue


@dataclass(frozen=True)
class SuccessRule:
    """How one completion's reward becomes its share of a success (see the module docstring)."""

    threshold: float | None = None
    reward_range: tuple[float, float] | None = None
    key: str = "success"  # the setting's name in error messages (a config key or an argument)

    def __post_init__(self) -> None:
        if self.threshold is not None and self.reward_range is not None:
            raise InvalidValue(f"{self.key}: set a success threshold or a reward range, not both")
        if self.reward_range is not None:
            lo, hi = (float(v) for v in self.reward_range)
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise InvalidValue(f"{self.key}: reward_range must be (lo, hi) with lo < hi, got "
                                   f"{tuple(self.reward_range)}")
        if self.threshold is not None and not np.isfinite(float(self.threshold)):
            raise InvalidValue(f"{self.key}: threshold must be a finite number, got "
                               f"{self.threshold!r}")

    @classmethod
    def from_config(cls, section: Any, key: str = "selector.success") -> SuccessRule:
        """The rule of a `selector.success` config section (conf/selector/success/)."""
        threshold, span = section["threshold"], section["reward_range"]
        if span is not None and len(span) != 2:
            raise InvalidValue(f"{key}.reward_range must be [lo, hi], got {list(span)}")
        return cls(threshold=None if threshold is None else float(threshold),
                   reward_range=None if span is None else (float(span[0]), float(span[1])),
                   key=f"{key}.threshold / {key}.reward_range")

    def successes(self, rewards: np.ndarray) -> np.ndarray:
        """Each reward's success share in [0, 1] (NaN stays NaN: an unscorable completion)."""
        r = np.asarray(rewards, dtype=np.float64)
        if self.threshold is not None:
            return np.where(np.isnan(r), np.nan, (r >= float(self.threshold)).astype(np.float64))
        if self.reward_range is not None:
            lo, hi = (float(v) for v in self.reward_range)
            r = (r - lo) / (hi - lo)
        bad = ~np.isnan(r) & ((r < 0.0) | (r > 1.0))
        if bad.any():
            raw = np.asarray(rewards, dtype=np.float64)[bad][0]
            where = (f"outside the declared reward_range {tuple(self.reward_range)}"
                     if self.reward_range is not None else "outside [0, 1]")
            raise InvalidValue(f"{self.key}: a reward of {raw:g} is {where}; BOTS counts a "
                               "reward as a share of one success, so set a success threshold "
                               "(a success is reward ≥ t) or the reward range to rescale from")
        return r


def task_evidence(task_index: np.ndarray, rewards: np.ndarray,
                  rule: SuccessRule | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(task ids, successes, trials) from one reward per completion and its task's index.

    `task_index` and `rewards` are aligned 1-D arrays over completions, e.g. a gathered
    generation batch. Unscorable (NaN) completions count in neither column.
    """
    tasks = np.asarray(task_index)
    if tasks.ndim != 1 or not np.issubdtype(tasks.dtype, np.integer):
        raise InvalidValue(f"task_index must be a 1-D integer array, got {tasks.dtype} of shape "
                           f"{tasks.shape}")
    share = (rule or SuccessRule()).successes(rewards)
    if share.shape != tasks.shape:
        raise InvalidValue(f"rewards (shape {share.shape}) must align with task_index (shape "
                           f"{tasks.shape})")
    scored = ~np.isnan(share)
    uniq, first, inverse = np.unique(tasks, return_index=True, return_inverse=True)
    successes = np.bincount(inverse, weights=np.where(scored, share, 0.0), minlength=uniq.size)
    trials = np.bincount(inverse, weights=scored.astype(np.float64), minlength=uniq.size)
    order = np.argsort(first, kind="stable")  # tasks in the order they first appear
    keep = order[trials[order] > 0]
    return uniq[keep].astype(np.int64), successes[keep], trials[keep]
