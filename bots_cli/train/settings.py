"""The `train` section of conf/train.yaml, validated once at start with one-line errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from bots_cli.checks import check_choice, check_int, check_range
from bots_cli.errors import UserError
from bots_cli.selection.dynamic import DynamicSampling
from bots_cli.train.grpo import LossAggregation
from bots_cli.train.update import UpdateConfig

LOSS_AGGREGATIONS: tuple[str, ...] = get_args(LossAggregation)
PRECISIONS = ("auto", "fp32", "bf16-mixed", "bf16")


def _optional_int(name: str, value: Any, lo: int) -> int | None:
    return None if value is None else check_int(name, value, lo=lo)


def _live(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return {"auto": "auto", "true": "on", "false": "off"}[
        check_choice("train.live", str(value).lower(), ("auto", "true", "false"))]


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int  # tasks per step
    group_size: int  # completions per task
    max_tasks: int | None
    levels: tuple[int, ...] | None  # keep only the pool's tasks of these levels
    lr: float
    warmup_steps: int
    weight_decay: float
    betas: tuple[float, float]
    mini_batch_size: int  # tasks per optimizer step
    update: UpdateConfig  # the parts of the update that do not depend on the batch
    scale_by_std: bool
    loss_norm: str  # kept: over the groups that carry a signal | batch: over the whole batch
    dynamic_sampling: DynamicSampling  # refill the batch with informative groups (dynamic.py)
    feedback_delay: int  # k: a step's evidence reaches the selector k batches later
    precision: str  # auto | fp32 | bf16-mixed | bf16
    gradient_checkpointing: bool
    eval_every: int
    eval_tasks: int | None
    eval_n: int
    eval_seed: int
    eval_samples: int
    checkpoint_every: int
    keep_last: int | None
    log_every: int
    live: str  # auto | on | off

    @classmethod
    def from_config(cls, t: Any) -> TrainSettings:
        batch = check_int("train.batch_size", t.batch_size, lo=1)
        group = t.group_size
        if check_int("train.group_size", group) < 2:
            raise UserError(f"train.group_size must be ≥ 2, got {group}: GRPO's advantages "
                            "compare the completions of one task with each other")
        mini = batch if t.mini_batch_size is None else check_int("train.mini_batch_size",
                                                                 t.mini_batch_size, lo=1)
        if batch % mini:
            raise UserError(f"train.mini_batch_size ({mini}) must divide train.batch_size "
                            f"({batch}): each optimizer step takes an equal share of the batch")
        steps = t.steps
        if check_int("train.steps", steps) < 1:
            raise UserError(f"train.steps must be ≥ 1, got {steps}")
        lr = check_range("train.lr", t.lr, 0.0, lo_open=True)
        betas = tuple(float(b) for b in t.betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise UserError(f"train.betas must be two numbers in [0, 1), got {list(t.betas)}")
        clip_high = t.clip_eps_high
        if t.levels is not None and len(t.levels) == 0:
            raise UserError("train.levels=[] keeps no task; list the levels to train on (e.g. "
                            "train.levels=[5,6,7]) or set train.levels=null for all of them")
        return cls(
            steps=steps,
            batch_size=batch,
            group_size=group,
            max_tasks=_optional_int("train.max_tasks", t.max_tasks, lo=1),
            levels=None if t.levels is None else tuple(
                check_int("train.levels[]", v) for v in t.levels),
            lr=lr,
            warmup_steps=check_int("train.warmup_steps", t.warmup_steps, lo=0),
            weight_decay=check_range("train.weight_decay", t.weight_decay, 0.0),
            betas=(betas[0], betas[1]),
            mini_batch_size=mini,
            update=UpdateConfig(
                ppo_epochs=check_int("train.ppo_epochs", t.ppo_epochs, lo=1),
                micro_batch_size=_optional_int("train.micro_batch_size", t.micro_batch_size,
                                               lo=1) or 0,
                clip_eps=check_range("train.clip_eps", t.clip_eps, 0.0, 1.0, lo_open=True),
                clip_eps_high=None if clip_high is None else check_range(
                    "train.clip_eps_high", clip_high, 0.0, lo_open=True),
                kl_coef=check_range("train.kl_coef", t.kl_coef, 0.0),
                loss_agg=check_choice("train.loss_agg", t.loss_agg,  # type: ignore[arg-type]
                                      LOSS_AGGREGATIONS),
                max_grad_norm=check_range("train.max_grad_norm", t.max_grad_norm, 0.0,
                                          lo_open=True),
            ),
            scale_by_std=bool(t.scale_by_std),
            loss_norm=check_choice("train.loss_norm", t.loss_norm,
                                   ("kept", "batch")),
            dynamic_sampling=DynamicSampling.from_config(t.dynamic_sampling),
            # a run saved before the setting existed resumes without a delay
            feedback_delay=check_int("train.feedback_delay", t.get("feedback_delay", 0), lo=0),
            precision=check_choice("train.precision", t.precision, PRECISIONS),
            gradient_checkpointing=bool(t.gradient_checkpointing),
            eval_every=check_int("train.eval_every", t.eval_every, lo=0),
            eval_tasks=_optional_int("train.eval_tasks", t.eval_tasks, lo=1),
            eval_n=check_int("train.eval_n", t.eval_n, lo=1),
            eval_seed=check_int("train.eval_seed", t.eval_seed, lo=0),
            eval_samples=check_int("train.eval_samples", t.eval_samples, lo=0),
            checkpoint_every=check_int("train.checkpoint_every", t.checkpoint_every, lo=1),
            keep_last=_optional_int("train.keep_last", t.keep_last, lo=1),
            log_every=check_int("train.log_every", t.log_every, lo=1),
            live=_live(t.live),
        )

    def optimizer_steps_per_update(self) -> int:
        return self.update.ppo_epochs * (self.batch_size // self.mini_batch_size)

    def is_eval_step(self, step: int) -> bool:
        """Evaluations happen at step 0 (the starting point), every `eval_every`, and at the end."""
        return self.eval_every > 0 and (step % self.eval_every == 0 or step == self.steps)

    def is_checkpoint_step(self, step: int) -> bool:
        return step % self.checkpoint_every == 0 or step == self.steps
