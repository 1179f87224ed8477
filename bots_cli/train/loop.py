"""The GRPO training loop behind `bots train`: a task selector chooses every batch.

One training step (`Trainer.step`), in named phases, each timed through `Phases` (`time/<phase>`
in the step's row of metrics.jsonl; the checkpoint, written after that row, is timed in
summary.json's `checkpoint_seconds`):

    select           the selector picks `batch_size` tasks from the train pool
    rollout          the engine samples `group_size` completions per task (current weights)
    reward           the domain's reward scores every completion
    selector_update  each task's successes and trials go back to the selector, through the
                     selection record that every trainer shares (selection/record.py: the
                     counters, `train/etr` and the other selection metrics); with
                     `train.feedback_delay` k, those of step t − k instead, now that step t's
                     batch was selected (`selector/fed_back_step`)
                     (with `train.dynamic_sampling`, these four repeat in rounds until the batch
                     holds `batch_size` informative groups: dynamic.py; a screening selector,
                     `selector=speed`, first screens candidates with n0 completions each, then
                     samples the other G − n0 of the tasks it keeps: selection/speed.py)
    update           group advantages, then the clipped policy-gradient update (update.py)
    eval             every `eval_every` steps: avg@k / pass@k on held-out tasks, fixed seeds
    checkpoint       every `checkpoint_every` steps and at the end: everything a resume needs

Resuming (`resume=<run dir>`, `Trainer.open`) reloads the latest complete checkpoint: weights,
optimizer, scheduler, the selector's full state (posterior, capability estimate, its random
generator) with the selection counters, every random state and the step counter; records after
that step are dropped first. Sampling seeds are derived from (seed, step), so the resumed run
draws what the uninterrupted one would.

Where this departs from the paper's setup (verl with vLLM on 8 GPUs, Qwen2.5 models):
- One process holds the policy and the engine. The `hf` engine generates with the policy object
  itself; the `vllm` engine is colocated, sleeps during the update and receives the new weights
  after it (`load_weights`).
- Groups whose rewards are all equal are dropped before the update (no backward pass), and the
  loss is normalised over the tokens of the groups that remain (see update.py); their share is
  `train/zero_variance_share`. `train.loss_norm=batch` normalises over the whole batch instead,
  as verl's token mean does. `train.dynamic_sampling.enabled=true` refills the batch with
  informative groups instead, at the cost of extra rollouts (counted in `train/rollouts`), as
  `selector=speed` screens for them (its screening counted there too).
- The learning rate is warmed up linearly, then constant: no decay, so `train.steps` can be raised
  on resume without changing the steps already taken.
- The KL penalty (k3, to the initial policy) is in the loss and off by default; no entropy bonus.
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from bots_cli.errors import UserError
from bots_cli.seeds import derive_seed
from bots_cli.selection.dynamic import sample_rounds
from bots_cli.selection.feedback import SuccessRule
from bots_cli.selection.record import Evidence, SelectionRecord, mark_trained
from bots_cli.selection.speed import ScreeningSelector, screen_rounds
from bots_cli.train.settings import TrainSettings


def gpu_memory() -> dict[str, float]:
    """`system/gpu_peak_gb`: the most GPU memory this process has held so far (none on a CPU)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"system/gpu_peak_gb": torch.cuda.max_memory_allocated() / 2**30}


class Phases:
    """Wall-clock seconds of each named phase of one step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def metrics(self) -> dict[str, float]:
        return {f"time/{k}": v for k, v in self.seconds.items()}


@dataclasses.dataclass
class Round:
    """One sampling round of a step: what the engine generated, and what the selector was told
    (`evidence`: successes, trials, the prediction at selection, which groups were trained on)."""

    ids: np.ndarray  # (n,) the tasks selected, in group order
    prompts: list[tuple[str, list[int]]]
    groups: list[list[Any]]  # n groups of G completions
    rewards: np.ndarray  # (n, G)
    evidence: Evidence


@dataclasses.dataclass
class Screening:
    """A screening selector's step: the round trained on, and what screening spent besides."""

    round: Round  # the batch: each group its n0 screening completions, then G − n0 more
    discarded: list[Any]  # completions of the candidates screened out (not trained on)
    discarded_rewards: np.ndarray  # (len(discarded),) their rewards
    rollouts: int  # screening completions generated this step, kept or not
    rounds: int  # screening rounds run this step

    def metrics(self) -> dict[str, int]:
        """`train/screening_rollouts` and `train/screening_rounds`, this step's."""
        return {"train/screening_rollouts": self.rollouts, "train/screening_rounds": self.rounds}


class Trainer:
    """Everything one run holds: pool, selection record, policy, engine, optimizer, records.

    `Trainer(cfg, run_dir)` builds a run from its config (the policy from `weights`, a
    checkpoint's model directory, when given); `Trainer.open` builds and, when resuming,
    `restore`s the latest checkpoint into it."""

    def __init__(self, cfg: Any, run_dir: Path, weights: Path | None = None) -> None:
        import torch

        from bots_cli.domains import load_domain
        from bots_cli.engines import SamplingParams
        from bots_cli.evaluation.scoring import HeldOut
        from bots_cli.train.pool import pool_selector, training_pool

        self.cfg, self.run_dir = cfg, run_dir
        self.settings = TrainSettings.from_config(cfg.train)
        self.sampling = SamplingParams.from_config(cfg.sampling)
        self.domain = load_domain(str(cfg.domain.name), cfg.domain)
        self.pool = training_pool(cfg, self.settings, self.domain)
        self.task_ids = [str(t) for t in self.pool["task_id"]]
        self.record = SelectionRecord(
            pool_selector(cfg, self.settings, self.pool, self.domain, screening=True),
            SuccessRule.from_config(cfg.selector.success), recorded_costs=self._recorded_costs,
            screening=True, delay=self.settings.feedback_delay)
        torch.manual_seed(int(cfg.seed))
        self.device_type, self.autocast = self._precision()
        # The initial policy is loaded when training starts, or as the KL reference on resume.
        self.ref_model = None
        if weights is None or self.settings.update.kl_coef > 0:
            self.model, self.tokenizer = self._load_policy(None)
            self.ref_model = self._reference_policy()
        if weights is not None:
            self.model, self.tokenizer = self._load_policy(weights)
        self.engine = self._engine()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.settings.lr,
                                           betas=self.settings.betas,
                                           weight_decay=self.settings.weight_decay)
        warm = self.settings.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda k: min(1.0, (k + 1) / warm) if warm else 1.0)
        self.pad_id = (self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                       else self.tokenizer.eos_token_id)
        self._prompts: dict[int, tuple[str, list[int]]] = {}
        self.step_done = 0
        self.elapsed = 0.0  # seconds of training so far, across resumes
        eval_tasks = self.domain.load(cfg.domain, split="eval",
                                      max_tasks=self.settings.eval_tasks, key="train.eval_tasks")
        self.held_out = (HeldOut(self.domain, eval_tasks, self.tokenizer)
                         if self.settings.eval_every else None)
        self._restore_state: dict[str, Any] | None = None

    @classmethod
    def open(cls, cfg: Any, run_dir: Path, resuming: bool) -> Trainer:
        """A new run, or (`resuming`) the run of `run_dir` at its latest complete checkpoint."""
        if not resuming:
            return cls(cfg, run_dir)
        from bots_cli.runs.checkpoints import latest_checkpoint

        latest = latest_checkpoint(run_dir)
        if latest is None:
            raise UserError(f"{run_dir} has no complete checkpoint to resume from; start a new "
                            "run")
        trainer = cls(cfg, run_dir, weights=latest / "model")
        trainer.restore(latest)
        return trainer

    def restore(self, checkpoint: Path) -> None:
        """The optimizer, scheduler, selection record and counters of a checkpoint (its weights
        were loaded when building); the random states are restored last, by `restore_rng`."""
        from bots_cli.runs.checkpoints import load_checkpoint

        state = load_checkpoint(checkpoint, restore_rng=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step_done = int(state["step"])
        self.elapsed = float(state["trainer"]["elapsed"])
        self.record.load_state_dict({"selector": state["selector"], **state["trainer"]})
        self._restore_state = state["rng"]  # restored last, once nothing else draws

    def _recorded_costs(self) -> tuple[int, int]:
        """(rollouts, tokens) up to the resumed step from metrics.jsonl, for a checkpoint written
        before they were saved in it."""
        from bots_cli.runs.records import recorded_costs

        return recorded_costs(self.run_dir / "metrics.jsonl", self.step_done,
                              self.settings.batch_size * self.settings.group_size)

    @property
    def selector(self) -> Any:
        return self.record.selector

    # -- set-up --------------------------------------------------------------------------------

    def _precision(self) -> tuple[str, bool]:
        """(device type, whether to autocast to bf16). `auto` is bf16-mixed on a GPU (fp32
        weights and optimizer state, bf16 compute) and fp32 on a CPU; `bf16` keeps the weights
        and the optimizer state in bf16 too (least memory, e.g. a 7B model on one GPU)."""
        from bots_cli.models.loading import resolve_device

        device = resolve_device(self.cfg.model.get("device"))
        mixed = self.settings.precision == "bf16-mixed" or (self.settings.precision == "auto"
                                                     and device.type == "cuda")
        return device.type, mixed

    def _load_policy(self, path: Path | None) -> tuple[Any, Any]:
        """The trainable policy, from its config or from a checkpoint's model directory."""
        from omegaconf import OmegaConf

        from bots_cli.models.loading import load_model_and_tokenizer

        model_cfg = OmegaConf.to_container(self.cfg.model, resolve=True)
        assert isinstance(model_cfg, dict)
        model_cfg["dtype"] = "bfloat16" if self.settings.precision == "bf16" else "float32"
        if path is not None:
            model_cfg.update(path=str(path), hub_id=None, build=None)
        model, tokenizer = load_model_and_tokenizer(model_cfg, None, self.cfg.domain)
        if self.settings.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        return model, tokenizer

    def _reference_policy(self) -> Any:
        """A frozen copy of the initial policy for the KL penalty (none when kl_coef is 0)."""
        if self.settings.update.kl_coef == 0:
            return None
        import copy

        ref = copy.deepcopy(self.model)
        ref.requires_grad_(False)
        return ref

    def _engine(self) -> Any:
        from bots_cli.engines import build_engine

        engine = build_engine(self.cfg.engine, self.cfg.model, model=self.model,
                              tokenizer=self.tokenizer, domain_cfg=self.cfg.domain,
                              colocated=True)
        engine.load_weights(self.model)  # a separate engine (vLLM) starts from these weights
        return engine

    def restore_rng(self) -> None:
        if self._restore_state is not None:
            from bots_cli.runs.checkpoints import restore_rng_state

            restore_rng_state(self._restore_state)
            self._restore_state = None

    # -- one step ------------------------------------------------------------------------------

    def prompt(self, i: int) -> tuple[str, list[int]]:
        """Task i's rendered prompt and its token ids (rendered on first use, then cached)."""
        if i not in self._prompts:
            from bots_cli.models.loading import render_prompt_for_model

            text = render_prompt_for_model(self.tokenizer,
                                           self.domain.render_messages(self.pool.iloc[i]))
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            self._prompts[i] = (text, list(ids))
        return self._prompts[i]

    def step(self, step: int) -> tuple[dict[str, Any], list[Round]]:
        """One training step: its metrics, and every sampling round's tasks and evidence (one
        round unless `train.dynamic_sampling` is on, see dynamic.py; a screening selector's
        step is one round after its screening, see `_screened_round`)."""
        phases = Phases()
        timeouts = self.domain.reward_timeouts
        rounds: list[Round] = []
        with phases("rollout"):
            self.engine.wake_up()

        def sample(n: int) -> np.ndarray:
            rounds.append(self._sample_round(step, len(rounds) + 1, n, phases))
            ev = rounds[-1].evidence
            return np.isin(rounds[-1].ids, ev.ids[ev.informative])  # (n,) by group

        screening: Screening | None = None
        if isinstance(self.selector, ScreeningSelector):
            screening = self._screened_round(step, phases)
            rounds.append(screening.round)
            batch = [(0, j) for j in range(len(screening.round.ids))]
        else:  # the batch the update trains on: B groups, informative ones first (dynamic.py)
            batch = sample_rounds(sample, self.settings.batch_size, len(self.pool),
                                  self.settings.dynamic_sampling.rounds)
        with phases("selector_update"):  # with train.feedback_delay k: step − k's evidence
            fed_back = self.record.end_step()
        mark_trained([r.evidence for r in rounds], [r.ids for r in rounds], batch)
        prompts = [rounds[r].prompts[j] for r, j in batch]
        groups = [rounds[r].groups[j] for r, j in batch]
        rewards = np.stack([rounds[r].rewards[j] for r, j in batch])
        lr = float(self.scheduler.get_last_lr()[0])  # the rate of this step's first update
        with phases("update"):
            self.engine.sleep()
            stats = self._update(prompts, groups, rewards)
            self.engine.load_weights(self.model)

        # every completion generated this step, trained on or not (screened-out ones too)
        every = [c for r in rounds for g in r.groups for c in g]
        generated = [r.rewards.ravel() for r in rounds]
        if screening is not None:
            every += screening.discarded
            generated.append(screening.discarded_rewards)
        metrics: dict[str, Any] = {
            "train/reward_mean": float(np.mean(np.concatenate(generated))),
            **{f"train/{k}": v for k, v in stats.items()},
            "train/lr": lr,
            "train/response_len": float(np.mean([len(c.token_ids) for c in every])),
            "train/truncated_share": float(np.mean([c.finish_reason == "length"
                                                    for c in every])),
            "train/reward_timeouts": self.domain.reward_timeouts - timeouts,
            **self.record.metrics([r.evidence for r in rounds]),
        }
        if screening is not None:
            metrics.update(screening.metrics())
        if fed_back is not None:  # train.feedback_delay: whose evidence arrived at this step
            metrics["selector/fed_back_step"] = fed_back
        metrics.update(phases.metrics())
        metrics["time/step"] = sum(phases.seconds.values())
        metrics.update(gpu_memory())
        return metrics, rounds

    def _sample_round(self, step: int, number: int, n: int, phases: Phases) -> Round:
        """Round `number` of a step: select n tasks, sample and score their groups, and tell the
        selector (round 1 samples with the step's seed, as without dynamic sampling)."""
        G = self.settings.group_size
        with phases("select"):
            ids = self.record.select(n)
        seed = (derive_seed(self.sampling.seed, step) if number == 1 else
                derive_seed(self.sampling.seed, step, number))
        groups, rewards = self._generate(ids, G, seed, phases)
        prompts = [self.prompt(int(i)) for i in ids]
        with phases("selector_update"):  # each task's evidence (DESIGN.md §1.6), as everywhere
            evidence = self.record.feed(np.repeat(ids, G), rewards.ravel(),
                                        sum(len(c.token_ids) for g in groups for c in g),
                                        round=number)
        return Round(ids, prompts, groups, rewards, evidence)

    def _screened_round(self, step: int, phases: Phases) -> Screening:
        """A screening selector's step (SPEED, selection/speed.py): screening rounds of n0
        completions per candidate (round r samples with the seed of (seed, step, 0, r)), then the
        other G − n0 completions of each task of the batch (with the step's seed). A task's group
        is its screening completions followed by those and goes to the selector as one update;
        the screened-out candidates' completions are counted too (`record.spend`)."""
        G, n0 = self.settings.group_size, self.selector.screen_rollouts
        spent: list[tuple[list[Any], np.ndarray]] = []  # every candidate's screening, in order
        latest: dict[int, int] = {}  # task: its latest screening in `spent`
        calls = 0

        def select(n: int) -> np.ndarray:
            with phases("select"):
                return self.record.select(n)

        def rollout(ids: np.ndarray, n: int) -> np.ndarray:
            nonlocal calls
            calls += 1
            seed = derive_seed(self.sampling.seed, step, 0, calls)
            groups, rewards = self._generate(ids, n, seed, phases)
            for i, g, r in zip(ids, groups, rewards, strict=True):
                latest[int(i)] = len(spent)
                spent.append((g, r))
            return self.record.rule.successes(rewards)

        out = screen_rounds(self.selector, self.settings.batch_size, rollout, select=select)
        ids, first = out.ids, [latest[int(i)] for i in out.ids]
        rest, rest_rewards = self._generate(ids, G - n0, derive_seed(self.sampling.seed, step),
                                            phases)
        groups = [spent[k][0] + g for k, g in zip(first, rest, strict=True)]
        rewards = np.concatenate([np.stack([spent[k][1] for k in first]), rest_rewards], axis=1)
        kept = set(first)
        dropped = [spent[k] for k in range(len(spent)) if k not in kept]
        discarded = [c for g, _ in dropped for c in g]
        with phases("selector_update"):
            self.record.spend(len(discarded), sum(len(c.token_ids) for c in discarded))
            evidence = self.record.feed(np.repeat(ids, G), rewards.ravel(),
                                        sum(len(c.token_ids) for g in groups for c in g))
        prompts = [self.prompt(int(i)) for i in ids]
        return Screening(Round(ids, prompts, groups, rewards, evidence), discarded,
                         np.concatenate([r for _, r in dropped] or [np.zeros(0)]),
                         out.rollouts, out.rounds)

    def _generate(self, ids: np.ndarray, n: int, seed: int,
                  phases: Phases) -> tuple[list[list[Any]], np.ndarray]:
        """n completions of each task's prompt sampled with `seed`, and their (len(ids), n)
        rewards."""
        rows = [self.pool.iloc[int(i)] for i in ids]
        prompts = [self.prompt(int(i)) for i in ids]
        with phases("rollout"):
            groups = self.engine.generate([p for p, _ in prompts], n,
                                          dataclasses.replace(self.sampling, seed=seed))
        with phases("reward"):
            flat = self.domain.rewards([c.text for g in groups for c in g],
                                       [r for r in rows for _ in range(n)])
        return groups, np.asarray(flat, dtype=np.float64).reshape(len(ids), n)

    def _update(self, prompts: list[tuple[str, list[int]]], groups: list[list[Any]],
                rewards: np.ndarray) -> dict[str, float]:
        """Advantages, then the policy update on the groups that carry a signal."""
        import torch

        from bots_cli.train.grpo import batch_loss_scale, group_advantages, kept_update_sizes
        from bots_cli.train.update import pack, policy_update

        advantages = group_advantages(torch.tensor(rewards), self.settings.scale_by_std)  # (B, G)
        keep = [b for b in range(len(groups)) if np.ptp(rewards[b]) > 0]
        stats = {"loss": 0.0, "kl": 0.0, "grad_norm": 0.0, "clip_frac": 0.0}
        if not keep:  # no group carries a learning signal: nothing to update
            return stats
        rows = [(b, g) for b in keep for g in range(len(groups[b]))]
        packed = pack([prompts[b][1] for b, _ in rows],
                      [groups[b][g].token_ids for b, g in rows], self.pad_id)
        adv = torch.stack([advantages[b, g] for b, g in rows]).float()
        settings = self.settings
        mini, micro = kept_update_sizes(len(rows), settings.batch_size, settings.mini_batch_size,
                                        settings.update.micro_batch_size)
        scale = 1.0
        if self.settings.loss_norm == "batch":
            scale = batch_loss_scale([len(groups[b][g].token_ids) for b, g in rows],
                                     [len(c.token_ids) for g in groups for c in g],
                                     self.settings.update.loss_agg)
        cfg = dataclasses.replace(settings.update, mini_batch_size=mini, micro_batch_size=micro,
                                  loss_scale=scale)
        device = next(self.model.parameters()).device
        packed = type(packed)(packed.input_ids.to(device), packed.attention_mask.to(device),
                              packed.completion_mask.to(device))
        autocast = (torch.autocast(self.device_type, dtype=torch.bfloat16) if self.autocast
                    else nullcontext())
        with autocast:
            stats = policy_update(self.model, self.optimizer, self.scheduler, packed,
                                  adv.to(device), cfg, self.ref_model)
        self.model.eval()
        return stats

    # -- evaluation and checkpoints --------------------------------------------------------------

    def evaluate(self) -> tuple[dict[str, float], list[dict[str, Any]]]:
        assert self.held_out is not None
        self.engine.wake_up()
        result = self.held_out.evaluate(self.engine, self.settings.eval_n, self.sampling,
                                        self.settings.eval_seed)
        return result.metrics(), result.samples(self.settings.eval_samples)

    def save(self, step: int) -> None:
        from bots_cli.runs.checkpoints import checkpoint_dir, save_checkpoint

        def save_model(path: Path) -> None:
            self.model.save_pretrained(str(path))
            self.tokenizer.save_pretrained(str(path))

        # state.pt keeps its layout: the selector's state on its own, the record's counters with
        # the trainer's.
        selection = self.record.state_dict()
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "selector": selection.pop("selector"),
            "trainer": {**selection, "elapsed": self.elapsed},
        }
        save_checkpoint(self.run_dir, step, state, save_model)
        if self.settings.keep_last is not None:
            done = sorted(int(p.name.split("_")[1]) for p in
                          (self.run_dir / "checkpoints").glob("step_*") if p.is_dir())
            for old in done[: -self.settings.keep_last]:
                shutil.rmtree(checkpoint_dir(self.run_dir, old), ignore_errors=True)

    def close(self) -> None:
        """Release the engine and the model (a sweep's next job needs the memory)."""
        self.engine.close()
        self.model = self.ref_model = self.engine = self.optimizer = None  # type: ignore[assignment]
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
