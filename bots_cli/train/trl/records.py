"""The run records of `bots train trainer=trl`, written from TRL's callbacks.

`RunRecords` gives a TRL run the native loop's records: `metrics.jsonl` with the native key names
(`RENAMED`; TRL's other metrics as `trl/<name>`), `selections.parquet` (what the selector was told
about each generation batch), `samples.jsonl` and the held-out evaluation every `train.eval_every`
steps, and the live display. Process 0 writes them; the others only keep step time and wait
while process 0 evaluates.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bots_cli.selection import record
from bots_cli.train.settings import TrainSettings

# TRL's logged names -> the native loop's names (metrics.jsonl compares across trainers); the
# selection record's `train/*` metrics are BotsGRPOTrainer's own, logged without `train/` as TRL's
# are (wandb prefixes it).
RENAMED = {"reward": "train/reward_mean", "loss": "train/loss", "kl": "train/kl",
           "grad_norm": "train/grad_norm", "clip_ratio/region_mean": "train/clip_frac",
           "learning_rate": "train/lr", "completions/mean_length": "train/response_len",
           "completions/clipped_ratio": "train/truncated_share",
           **{name.removeprefix("train/"): name for name in record.METRICS
              if name.startswith("train/")}}

COUNTS = record.COUNTS  # whole numbers in the rows


def _callback_base() -> Any:
    from transformers import TrainerCallback

    return TrainerCallback


class RunRecords(_callback_base()):  # type: ignore[misc]
    """The native run records, written from TRL's callbacks by process 0 (others only time
    and evaluate nothing)."""

    def __init__(self, cfg: Any, settings: TrainSettings, run_dir: Path, pool: Any, domain: Any,
                 tokenizer: Any, processes: int, optimizer_steps: int, resume_step: int | None,
                 main: bool) -> None:
        from bots_cli.runs.records import open_run_log
        from bots_cli.train.display import TrainDisplay

        self.cfg, self.settings, self.main = cfg, settings, main
        self.optimizer_steps = optimizer_steps  # TRL optimizer steps per bots step
        self.task_ids = [str(t) for t in pool["task_id"]]
        self.resuming = resume_step is not None
        self.start_step = resume_step or 0
        self.trainer: Any = None
        self.elapsed = 0.0
        self._step_started = 0.0
        self._step_seconds = 0.0
        self._fed = 0  # feedback entries already recorded
        self.domain = domain
        self._timeouts = 0  # the domain's reward timeouts already counted (training only)
        self._pending: dict[str, Any] = {}  # this step's metrics until TRL logs
        self.log: Any = None
        self.display: Any = None
        self.held_out: Any = None
        if not main:
            return
        self.log = open_run_log(cfg, run_dir, resume_step)
        self.display = TrainDisplay(f"bots train · trl × {processes} · {cfg.selector.name} "
                                    f"· {cfg.model.name} on {cfg.domain.name} · {run_dir}",
                                    self.start_step, settings.steps, settings.live,
                                    settings.log_every)
        if settings.eval_every:
            from bots_cli.evaluation.scoring import HeldOut

            tasks = domain.load(cfg.domain, split="eval", max_tasks=settings.eval_tasks,
                             key="train.eval_tasks")
            self.held_out = HeldOut(domain, tasks, tokenizer)

    def attach(self, trainer: Any) -> None:
        self.trainer = trainer
        if self.resuming and self.main:
            # The run's elapsed training time so far, from its records.
            import json

            rows = [json.loads(line) for line in self.log.metrics_path.read_text().splitlines()]
            self.elapsed = float(sum(r.get("time/step", 0.0) for r in rows))

    def bots_step(self, global_step: int) -> int:
        return global_step // self.optimizer_steps

    # -- evaluation ----------------------------------------------------------------------------

    def _evaluate(self) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Held-out avg@k / pass@k of the current weights, on process 0, fixed seeds."""
        from bots_cli.engines import SamplingParams
        from bots_cli.engines.hf import HFEngine

        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        was_training = model.training
        model.eval()
        try:
            engine = HFEngine(model, self.trainer.processing_class,
                              max_batch_tokens=self.cfg.engine.max_batch_tokens)  # engine=hf
            result = self.held_out.evaluate(engine, self.settings.eval_n,
                                            SamplingParams.from_config(self.cfg.sampling),
                                            self.settings.eval_seed)
        finally:
            model.train(was_training)
        return result.metrics(), result.samples(self.settings.eval_samples)

    def _maybe_evaluate(self, step: int) -> None:
        if not self.settings.is_eval_step(step):
            return
        if self.main:
            start = time.perf_counter()
            import torch

            with torch.random.fork_rng(devices=[]):  # evaluation leaves TRL's draws as they were
                metrics, samples = self._evaluate()
            self._pending.update(metrics, **{"time/eval": time.perf_counter() - start})
            self.log.log_samples(step, samples)
        self.trainer.accelerator.wait_for_everyone()

    # -- TRL's callbacks -----------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not self.resuming and self.settings.is_eval_step(0):
            self._maybe_evaluate(0)
            if self.main:
                self.log.log(0, self._pending)
                self.display.step(0, self._pending)
            self._pending = {}

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._step_started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        from bots_cli.train.loop import gpu_memory

        self._step_seconds += time.perf_counter() - self._step_started
        if state.global_step % self.optimizer_steps:
            return  # inside a bots step (several optimizer steps per selected batch)
        step = self.bots_step(state.global_step)
        if step >= self.settings.steps:
            control.should_save = True  # the end is always a resume point, as natively
        new = self.trainer.feedback[self._fed:]
        self._fed = len(self.trainer.feedback)
        phases = dict(self.trainer.phase_seconds)
        self.trainer.phase_seconds.clear()
        timeouts = self._gathered(self.domain.reward_timeouts - self._timeouts)
        if self.main:
            for fb in new:
                self.log.add_selections(step, [self.task_ids[i] for i in fb.ids], fb.successes,
                                        fb.trials, round=fb.round, trained=fb.trained,
                                        predicted=fb.predicted)
            select = sum(fb.select_seconds for fb in new)
            update = sum(fb.update_seconds for fb in new)
            inner = select + update + phases.get("rollout", 0.0) + phases.get("reward", 0.0)
            self._pending.update({
                "time/select": select, "time/rollout": phases.get("rollout", 0.0),
                "time/reward": phases.get("reward", 0.0) - update,
                "time/update": max(0.0, self._step_seconds - inner),
                "time/selector_update": update, "time/step": self._step_seconds,
                "train/reward_timeouts": timeouts,
                **gpu_memory(),
            })
            self.elapsed += self._step_seconds
        self._step_seconds = 0.0
        self._maybe_evaluate(step)
        self._timeouts = self.domain.reward_timeouts  # an evaluation's timeouts are not training's
        if self.main and control.should_save:
            self.log.flush()  # the selections up to this checkpoint are on disk before it

    def _gathered(self, count: int) -> int:
        """`count` summed over the processes (each scores its own share of the batch); every
        process calls this."""
        if self.trainer.accelerator.num_processes == 1:
            return count
        import torch

        mine = torch.tensor([count], device=self.trainer.accelerator.device)
        return int(self.trainer.accelerator.gather(mine).sum().item())

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kw: Any) -> None:
        if not self.main or logs is None or "train_runtime" in logs:
            return
        step = self.bots_step(state.global_step)
        row: dict[str, Any] = {"train/kl": 0.0}
        for key, value in logs.items():
            if not isinstance(value, (int, float)) or key == "epoch":
                continue
            name = RENAMED.get(key, key if key.startswith("selector/") else f"trl/{key}")
            row[name] = int(value) if name in COUNTS else value
        row.update(self._pending)
        self._pending = {}
        self.log.log(step, row)
        self.display.step(step, row)

    def close(self) -> None:
        if self.main:
            self.display.close()
            self.log.close()
