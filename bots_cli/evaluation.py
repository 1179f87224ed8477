"""Scoring a model on held-out tasks: k completions per task, avg@k, pass@k, per level.

Used by `bots train` (its periodic `eval/*` metrics) and by `bots evaluate`. Every evaluation
samples with the same seed, so two evaluations of the same weights draw the same completions and
a difference between two checkpoints measures the weights, not the sampling noise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bots_cli.metrics import pass_at_k


@dataclass
class EvalResult:
    task_ids: list[str]
    levels: np.ndarray | None  # (E,) or None when the tasks have no level
    rewards: np.ndarray  # (E, k) reward of each completion, in [0, 1]
    texts: list[list[str]]  # (E, k) the completions

    @property
    def k(self) -> int:
        return int(self.rewards.shape[1])

    def per_task(self) -> dict[str, np.ndarray]:
        """avg@k and pass@k of every task (pass@k counts a reward of 1 as correct)."""
        correct = (self.rewards >= 1.0).sum(axis=1)
        return {
            "avg_at_k": self.rewards.mean(axis=1),
            "pass_at_k": np.array([pass_at_k(self.k, int(c), self.k) for c in correct]),
        }

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        """`accuracy` (mean avg@k: the score curves and `bots report` use), `pass@k`, and the
        accuracy of each level (`level_1`, ...)."""
        per = self.per_task()
        out = {f"{prefix}accuracy": float(per["avg_at_k"].mean()),
               f"{prefix}pass@{self.k}": float(per["pass_at_k"].mean())}
        if self.levels is not None:
            for level in np.unique(self.levels):
                out[f"{prefix}level_{int(level)}"] = float(
                    per["avg_at_k"][self.levels == level].mean())
        return out

    def samples(self, count: int) -> list[dict[str, Any]]:
        """The first completion of the first `count` tasks, for a look at what the model writes."""
        return [{"task_id": self.task_ids[i], "completion": self.texts[i][0],
                 "reward": float(self.rewards[i, 0])} for i in range(min(count, len(self.texts)))]


class HeldOut:
    """A fixed set of held-out tasks with their prompts rendered once for one tokenizer."""

    def __init__(self, dom: Any, tasks: Any, tokenizer: Any) -> None:
        from bots_cli.models.loading import render_prompt_for_model

        self.dom = dom
        self.rows = [row for _, row in tasks.iterrows()]
        self.task_ids = [str(t) for t in tasks["task_id"]]
        self.levels = tasks["level"].to_numpy() if "level" in tasks.columns else None
        self.prompts = [render_prompt_for_model(tokenizer, dom.render_messages(r))
                        for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def evaluate(self, engine: Any, k: int, sampling: Any, seed: int,
                 subset: Sequence[int] | None = None) -> EvalResult:
        """k completions of every task (or of `subset`) sampled with `seed`, and their rewards."""
        idx = list(range(len(self.rows))) if subset is None else list(subset)
        params = dataclasses.replace(sampling, seed=seed)
        groups = engine.generate([self.prompts[i] for i in idx], k, params)
        texts = [[c.text for c in g] for g in groups]
        rewards = self.dom.rewards([t for g in texts for t in g],
                                   [self.rows[i] for i in idx for _ in range(k)])
        return EvalResult(
            task_ids=[self.task_ids[i] for i in idx],
            levels=None if self.levels is None else self.levels[idx],
            rewards=np.asarray(rewards, dtype=np.float64).reshape(len(idx), k),
            texts=texts,
        )
