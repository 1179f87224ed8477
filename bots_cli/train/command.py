"""The `bots train` command: one run (or its resumption) in its run directory.

It writes the resolved config, builds the `Trainer` (loop.py), evaluates the starting point, runs
the steps with their records (metrics, selections, samples, checkpoints) and the live display,
and writes `summary.json`. `resume=<run dir>` continues that run with its saved config; only the
few overrides in `RESUMABLE_OVERRIDES` may change then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bots_cli.atomic import write_json, write_text
from bots_cli.errors import UserError
from bots_cli.runs.groups import train_run_dir
from bots_cli.runs.records import open_run_log, run_summary
from bots_cli.train.loop import Phases, Trainer
from bots_cli.train.processes import distributed_state, processes

# Overrides a resumed run may change; anything else would make it a different run.
RESUMABLE_OVERRIDES = ("resume", "train.steps", "train.eval_every", "train.checkpoint_every",
                       "train.keep_last", "train.log_every", "train.live", "logger")


def _resumed_config(cfg: Any, run_dir: Path) -> Any:
    """The run's saved config, with the few overrides a resume may change applied to it."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    saved_path = run_dir / "config.yaml"
    saved = OmegaConf.load(saved_path)
    for override in HydraConfig.get().overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        if not any(key == k or key.startswith(k + ".") for k in RESUMABLE_OVERRIDES):
            raise UserError(f"{key} cannot change when resuming: the run continues with its saved "
                            f"config ({saved_path}); drop `{override}` or start a new run")
        OmegaConf.update(saved, key, OmegaConf.select(cfg, key), merge=False)
    saved.resume = str(run_dir)
    return saved


TRAINERS = ("native", "trl")
MODEL_DTYPES = ("auto",)  # the policy's dtype comes from train.precision


def check_config(cfg: Any) -> None:
    """Every value of a `bots train` config that can be checked without the data or a model:
    the train, sampling and selector settings, the success rule, the trainer's options. Called
    at the start of every run (a resumed one on its saved config) and, with -m, on every job of
    the sweep before the first starts; a bad value is one `UserError` line."""
    from omegaconf import OmegaConf

    from bots_cli.checks import check_int, check_range
    from bots_cli.engines import SamplingParams
    from bots_cli.selection.build import check_selector_config
    from bots_cli.selection.feedback import SuccessRule
    from bots_cli.selection.speed import ScreeningSelector, check_screening
    from bots_cli.train.settings import TrainSettings

    check_range("lambda (forgetting factor)", cfg["lambda"], 0.0, 1.0)
    check_int("seed", cfg.seed, lo=0)
    settings = TrainSettings.from_config(cfg.train)
    sampling = SamplingParams.from_config(cfg.sampling)
    if sampling.temperature == 0:
        raise UserError("sampling.temperature=0 gives every completion of a group the same "
                        "text, so GRPO has no signal to learn from; use a temperature > 0 "
                        "(evaluate.temperature=0 is for greedy evaluation)")
    rule = SuccessRule.from_config(cfg.selector.success)
    if rule.threshold is not None and not 0.0 < rule.threshold <= 1.0:
        raise UserError(f"selector.success.threshold={cfg.selector.success.threshold}: the "
                        "domains' rewards lie in [0, 1], so every completion would count as "
                        f"{'a failure' if rule.threshold > 1 else 'a success'}; use a "
                        "threshold in (0, 1]")
    dtype = str(OmegaConf.select(cfg, "model.dtype", default="auto"))
    if dtype not in MODEL_DTYPES:
        raise UserError(f"model.dtype={dtype}: bots train sets the policy's dtype from "
                        "train.precision (auto | fp32 | bf16-mixed | bf16); drop model.dtype")
    trainer = str(OmegaConf.select(cfg, "trainer.name", default="native"))
    if trainer not in TRAINERS:
        raise UserError(f"trainer must be native or trl, got {trainer!r}")
    # Only the native loop runs a screening selector's rounds (SPEED, selection/speed.py).
    selector = check_selector_config(cfg.selector, group_size=settings.group_size,
                                     screening=trainer == "native")
    check_screening(selector, settings.group_size, "train.group_size")
    if settings.feedback_delay and settings.dynamic_sampling.enabled:
        raise UserError(f"train.feedback_delay={settings.feedback_delay} with "
                        "train.dynamic_sampling: refill rounds need the feedback of the round "
                        "before; set one of them off")
    if isinstance(selector, ScreeningSelector) and settings.dynamic_sampling.enabled:
        raise UserError(f"selector={selector.name} and train.dynamic_sampling both buy a batch "
                        "of informative groups with extra rollouts; set "
                        "train.dynamic_sampling.enabled=false or choose another selector")
    if trainer == "trl":
        from bots_cli.train.trl.backend import check_trl_options

        check_trl_options(cfg.trainer.get("trl"))


def start_run(cfg: Any) -> tuple[Path, Any, bool]:
    """(run directory, the run's config, whether it resumes); a new run's config.yaml is
    written here, a resumed run's config is read back."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    resuming = cfg.get("resume") is not None
    if resuming:
        from bots_cli.runs.checkpoints import latest_checkpoint, trl_checkpoints

        run_dir = train_run_dir("resume", cfg.resume)
        cfg = _resumed_config(cfg, run_dir)
        latest, trl = latest_checkpoint(run_dir), trl_checkpoints(run_dir)
        if latest is None and not trl:
            # Refused here, before the pool, the references or a model are loaded.
            raise UserError(f"{run_dir} has no complete checkpoint to resume from; start a "
                            "new run")
        check_config(cfg)
        from bots_cli.runs.records import check_records

        if latest is not None:
            from bots_cli.runs.checkpoints import check_resumable

            check_resumable(run_dir, latest)
        step = int(latest.name.split("_")[1]) if latest is not None else max(trl)
        check_records(run_dir, step)
    else:
        if (run_dir / "metrics.jsonl").exists():
            raise UserError(f"{run_dir} already holds a training run; continue it with "
                            f"resume={run_dir}, or choose another run directory")
        check_config(cfg)
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    return run_dir, cfg, resuming


def start_run_everywhere(cfg: Any) -> tuple[Path, Any, bool]:
    """`start_run` on process 0, its outcome (or its error) shared with every other process."""
    if processes() == 1:
        return start_run(cfg)
    from accelerate.utils import broadcast_object_list
    from omegaconf import OmegaConf

    state = distributed_state()
    outcome: list[Any] = [None]
    if state.is_main_process:
        try:
            run_dir, run_cfg, resuming = start_run(cfg)
            outcome = [(str(run_dir), OmegaConf.to_yaml(run_cfg), resuming, None)]
        except UserError as err:
            outcome = [(None, None, None, str(err))]
    broadcast_object_list(outcome, from_process=0)
    run_dir_s, text, resuming, error = outcome[0]
    if error is not None:
        raise UserError(error)
    return Path(run_dir_s), OmegaConf.create(text), bool(resuming)


def train(cfg: Any) -> dict[str, Any]:
    """The `bots train` command: run (or resume) one training run in the Hydra run directory."""
    import os

    from omegaconf import OmegaConf

    if os.environ.get("RANK", "0") == "0":  # loading takes seconds to minutes: say what runs
        what = f"resuming {cfg.resume}" if cfg.get("resume") else (
            f"{cfg.selector.name} · {cfg.model.name} on {cfg.domain.name}")
        print(f"bots train: {what}: loading the pool, the selector and the model, then the "
              "first step (the starting point is evaluated first when train.eval_every > 0)",
              flush=True)
    run_dir, cfg, resuming = start_run_everywhere(cfg)
    trainer_name = OmegaConf.select(cfg, "trainer.name", default="native")
    if trainer_name == "trl":
        from bots_cli.train.trl.backend import train_trl

        return train_trl(cfg, run_dir, resuming)
    if trainer_name != "native":
        raise UserError(f"trainer must be native or trl, got {trainer_name!r}")
    if processes() > 1:
        raise UserError(f"trainer=native runs in one process, but {processes()} were launched; "
                        "use trainer=trl with torchrun or accelerate launch")
    return _train_native(cfg, run_dir, resuming)


def _train_native(cfg: Any, run_dir: Path, resuming: bool) -> dict[str, Any]:
    """The native loop (loop.py) with its records and display."""
    from bots_cli.train.display import TrainDisplay

    trainer = Trainer.open(cfg, run_dir, resuming)
    settings = trainer.settings
    try:
        check_trainer_prompts(trainer)
    except UserError:
        trainer.close()
        raise
    if resuming and trainer.step_done >= settings.steps:
        trainer.close()
        raise UserError(f"{run_dir} already finished its {settings.steps} steps (checkpoint step "
                        f"{trainer.step_done}); raise train.steps to train further")
    log = open_run_log(cfg, run_dir, trainer.step_done if resuming else None)
    display = TrainDisplay(f"bots train · {cfg.selector.name} · {cfg.model.name} on "
                           f"{cfg.domain.name} · {run_dir}", trainer.step_done, settings.steps,
                           settings.live, settings.log_every)
    trainer.restore_rng()
    summary: dict[str, Any] = {}
    saving = Phases()  # checkpoints are written after their step's record: timed in the summary
    try:
        if not resuming and settings.is_eval_step(0):
            metrics, samples = trainer.evaluate()
            log.log(0, metrics)
            log.log_samples(0, samples)
            display.step(0, metrics)
        for step in range(trainer.step_done + 1, settings.steps + 1):
            metrics, rounds = trainer.step(step)
            trainer.elapsed += metrics["time/step"]
            for ev in (r.evidence for r in rounds):
                log.add_selections(step, [trainer.task_ids[i] for i in ev.ids], ev.successes,
                                   ev.trials, round=ev.round, trained=ev.trained,
                                   predicted=ev.predicted)
            if settings.is_eval_step(step):
                evaluation = Phases()
                with evaluation("eval"):
                    evals, samples = trainer.evaluate()
                metrics.update(evals, **evaluation.metrics())
                log.log_samples(step, samples)
            log.log(step, metrics)
            display.step(step, metrics)
            if settings.is_checkpoint_step(step):
                log.flush()
                with saving("checkpoint"):
                    trainer.save(step)
        summary = run_summary(run_dir, cfg, settings.steps, trainer.elapsed)
        summary["checkpoint_seconds"] = round(saving.seconds.get("checkpoint", 0.0), 3)
        write_json(run_dir / "summary.json", summary)
    finally:
        display.close()
        log.close()
        trainer.close()
    display.message(f"run directory: {run_dir}")
    return summary


def check_trainer_prompts(trainer: Trainer) -> None:
    """Refuse, before the first step, a training or held-out prompt too long for the model."""
    from bots_cli.models.context import (
        check_pool_prompts,
        check_prompt_lengths,
        context_length,
        prompt_lengths,
    )

    context = context_length(trainer.model)
    new_tokens, tok = trainer.sampling.max_new_tokens, trainer.tokenizer
    check_pool_prompts(trainer.pool, trainer.domain, tok, context, new_tokens)
    held = trainer.held_out
    if held is not None and context is not None:
        check_prompt_lengths(held.task_ids, prompt_lengths(held.prompts, tok), context,
                             new_tokens, "eval")
