"""What every trainer behind `bots train` starts from: the training pool and its selector.

The native loop (loop.py) and the TRL backend (trl/backend.py) build both here, so the same config
gives the same tasks, the same reference pass rates and the same selector whichever trains.
"""

from __future__ import annotations

from typing import Any

from bots_cli.errors import UserError
from bots_cli.train.settings import TrainSettings


def training_pool(cfg: Any, settings: TrainSettings, domain: Any) -> Any:
    """The train split after `train.levels` and `train.max_tasks`, as a task table."""
    pool = domain.load(cfg.domain, split="train", levels=settings.levels,
                       max_tasks=settings.max_tasks, key="train.max_tasks",
                       levels_key="train.levels")
    if settings.batch_size > len(pool):
        raise UserError(f"train.batch_size ({settings.batch_size}) exceeds the training pool "
                        f"({len(pool)} tasks); lower it or use a larger pool")
    delay = settings.feedback_delay
    if settings.batch_size * (delay + 1) > len(pool):
        raise UserError(f"train.batch_size ({settings.batch_size}) × (train.feedback_delay "
                        f"({delay}) + 1) exceeds the training pool ({len(pool)} tasks): a task "
                        "whose feedback is pending is not selected again, so that many must be "
                        "free; lower either or use a larger pool")
    return pool


def reference_rates(cfg: Any, pool: Any, domain: Any) -> tuple[Any, Any]:
    """(weak, strong) pass rates of the pool's tasks, or (None, None) when the selector needs
    none."""
    from bots_cli.selection.build import needs_references

    if not needs_references(cfg.selector):
        return None, None
    from bots_cli.references.pass_rates import reference_pass_rates
    from bots_cli.references.profile import profiles_dir

    refs = cfg.refs
    if refs.get("name") == "tiny" and cfg.model.get("build") is None:
        raise UserError(f"refs=tiny are the tiny world's references, but model="
                        f"{cfg.model.get('name')} is not the tiny model; use refs=qwen "
                        "(or set refs.weak.path and refs.strong.path)")
    return reference_pass_rates(pool, domain.name, refs,
                                profiles_dir(cfg.train.get("profiles_dir")), cfg.domain)


def pool_selector(cfg: Any, settings: TrainSettings, pool: Any, domain: Any,
                  screening: bool = False) -> Any:
    """The configured selector over the pool (index i = row i), seeded with `seed`;
    `screening`: the trainer runs a screening selector's rounds (SPEED; the native loop does)."""
    from bots_cli.selection.build import build_selector

    weak, strong = reference_rates(cfg, pool, domain)
    return build_selector(cfg.selector, n_tasks=len(pool), weak=weak, strong=strong,
                          seed=int(cfg.seed), group_size=settings.group_size, columns=pool,
                          screening=screening)
