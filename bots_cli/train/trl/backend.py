"""`bots train trainer=trl`: TRL's GRPOTrainer runs the steps, BOTS (or a baseline) picks them.

The same config groups as the native loop drive it: `plan_steps` and `grpo_arguments` map `train.*`
and `sampling.*` onto a GRPOConfig (the table in docs/integrations.md), the domain's reward is TRL's
reward function, and `BotsGRPOTrainer` (bots_cli/integrations/trl) does the selecting. The run
directory gets the native records (train/trl/records.py), written by process 0 only: `config.yaml`,
`metrics.jsonl` with the native key names (TRL's other metrics under `trl/*`),
`selections.parquet`, `samples.jsonl`, `summary.json`, and TRL's checkpoints under
`checkpoints/checkpoint-N/` with the selector's state (`bots evaluate run=...` reads them;
`resume=<run>` continues from the latest).

One bots step is one generation batch (`train.batch_size` tasks × `train.group_size`
completions); with `train.mini_batch_size` < `train.batch_size` or `train.ppo_epochs` > 1 it is
several TRL optimizer steps, and `checkpoint-N` is named by TRL's optimizer step N.

Where it departs from the native loop:
- TRL normalises the loss over the whole generation batch (native `train.loss_norm=batch`);
  groups whose rewards are all equal are not dropped, they only carry zero advantage (with
  `train.dynamic_sampling`, only those that fill a batch the rounds could not).
- Sampling seeds follow TRL's per-process torch generator, not (seed, step): a resumed run is
  exact because TRL restores every random state from the checkpoint.
- Held-out evaluation (`train.eval_every`) runs on process 0 with transformers `generate` while
  the others wait; under DeepSpeed ZeRO-3 or FSDP set `train.eval_every=0` and run `bots evaluate`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bots_cli.errors import UserError
from bots_cli.train.settings import TrainSettings

# train.* keys whose TRL counterparts bots sets itself: +trainer.trl.args may not set these.
MAPPED_ARGS = {
    "per_device_train_batch_size": "train.micro_batch_size", "num_generations": "train.group_size",
    "gradient_accumulation_steps": "train.mini_batch_size", "generation_batch_size":
    "train.batch_size", "steps_per_generation": "trainer.trl.steps_per_generation",
    "max_steps": "train.steps", "num_train_epochs": "train.steps", "learning_rate": "train.lr",
    "warmup_steps": "train.warmup_steps", "warmup_ratio": "train.warmup_steps",
    "lr_scheduler_type": "train.warmup_steps", "weight_decay": "train.weight_decay",
    "adam_beta1": "train.betas", "adam_beta2": "train.betas", "max_grad_norm":
    "train.max_grad_norm", "num_iterations": "train.ppo_epochs", "epsilon": "train.clip_eps",
    "epsilon_high": "train.clip_eps_high", "beta": "train.kl_coef", "loss_type": "train.loss_agg",
    "scale_rewards": "train.scale_by_std", "bf16": "train.precision", "fp16": "train.precision",
    "gradient_checkpointing": "train.gradient_checkpointing", "max_completion_length":
    "sampling.max_new_tokens", "temperature": "sampling.temperature", "top_p": "sampling.top_p",
    "top_k": "sampling.top_p", "seed": "seed", "data_seed": "seed", "output_dir":
    "the run directory", "save_steps": "train.checkpoint_every", "save_total_limit":
    "train.keep_last", "logging_steps": "train.log_every", "eval_strategy": "train.eval_every",
    "use_vllm": "trainer.trl.use_vllm", "vllm_mode": "trainer.trl.vllm_mode", "report_to":
    "trainer.trl.report_to", "deepspeed": "trainer.trl.deepspeed",
}
LOSS_TYPES = {"token_mean": "dapo", "seq_mean_token_mean": "grpo",
              "seq_mean_token_sum_norm": "dr_grpo"}
TRL_KEYS = ("steps_per_generation", "use_vllm", "vllm_mode", "vllm_server_base_url",
            "vllm_gpu_memory_utilization", "vllm_tensor_parallel_size", "deepspeed", "report_to",
            "args")
@dataclass(frozen=True)
class StepPlan:
    """How one bots step (one selected batch) is laid out over TRL's processes and steps."""

    processes: int
    per_device_batch: int  # completions per forward/backward pass (per_device_train_batch_size)
    accumulation: int  # micro-batches per optimizer step (gradient_accumulation_steps)
    steps_per_generation: int  # micro-batches per process in one generation batch
    optimizer_steps: int  # TRL optimizer steps per bots step (mini-batches × ppo_epochs)


def plan_steps(settings: TrainSettings, steps_per_generation: int | None,
               processes: int) -> StepPlan:
    """The batch layout, or one line saying which setting does not divide."""
    B, G, mini = settings.batch_size, settings.group_size, settings.mini_batch_size
    if (B * G) % processes:
        raise UserError(f"train.batch_size × train.group_size ({B} × {G} = {B * G} completions) "
                        f"must split evenly over the {processes} processes")
    chunks = B // mini  # optimizer steps per pass over the batch
    per_process_mini = mini * G // processes if (mini * G) % processes == 0 else 0
    if not per_process_mini:
        raise UserError(f"train.mini_batch_size × train.group_size ({mini} × {G}) must split "
                        f"evenly over the {processes} processes")
    micro = settings.update.micro_batch_size or per_process_mini
    if steps_per_generation is not None:
        spg = steps_per_generation
        if spg < 1 or spg % chunks or (B * G) % (processes * spg):
            raise UserError(f"trainer.trl.steps_per_generation ({spg}) must be a multiple of "
                            f"train.batch_size / train.mini_batch_size ({chunks}) that splits "
                            f"the {B * G // processes} completions per process evenly")
        from_spg = B * G // (processes * spg)
        if settings.update.micro_batch_size and settings.update.micro_batch_size != from_spg:
            raise UserError(f"trainer.trl.steps_per_generation={spg} means {from_spg} completions "
                            f"per micro-batch, but train.micro_batch_size is "
                            f"{settings.update.micro_batch_size}; set one of them")
        micro = from_spg
    if per_process_mini % micro:
        raise UserError(f"train.micro_batch_size ({micro}) must divide the {per_process_mini} "
                        "completions each process takes per optimizer step")
    accumulation = per_process_mini // micro
    return StepPlan(processes=processes, per_device_batch=micro, accumulation=accumulation,
                    steps_per_generation=accumulation * chunks,
                    optimizer_steps=chunks * settings.update.ppo_epochs)


def check_trl_options(trl_cfg: Any) -> dict[str, Any]:
    """trainer.trl as a plain dict; unknown keys and GRPOConfig fields bots maps are refused."""
    from omegaconf import OmegaConf

    tree = OmegaConf.to_container(trl_cfg, resolve=True) if trl_cfg is not None else {}
    assert isinstance(tree, dict)
    opts: dict[str, Any] = {str(k): v for k, v in tree.items()}
    for key in opts:
        if key not in TRL_KEYS:
            raise UserError(f"trainer.trl.{key} is not a trainer=trl option (known: "
                            f"{', '.join(TRL_KEYS)}); other GRPOConfig fields go under "
                            f"trainer.trl.args")
    missing = [key for key in TRL_KEYS if key not in opts]
    if missing:
        raise UserError(f"trainer.trl.{missing[0]} is missing: its value comes from "
                        "conf/trainer/trl.yaml (trainer=trl); set it or compose that file")
    for key in opts["args"] or {}:
        if key in MAPPED_ARGS:
            raise UserError(f"trainer.trl.args.{key} is set by bots from {MAPPED_ARGS[key]}; "
                            "set that instead")
    if "dtype" in ((opts["args"] or {}).get("model_init_kwargs") or {}):
        raise UserError("trainer.trl.args.model_init_kwargs.dtype is set by bots from "
                        "train.precision; set that instead")
    if opts["vllm_mode"] not in ("colocate", "server"):
        raise UserError(f"trainer.trl.vllm_mode must be colocate or server, got "
                        f"{opts['vllm_mode']!r}")
    _check_trl_environment(opts)
    return opts


def _check_trl_environment(opts: dict[str, Any]) -> None:
    """What TRL and transformers would otherwise refuse mid-start with a long traceback: a
    GRPOConfig field that does not exist, vLLM or DeepSpeed asked for but not installed, a
    DeepSpeed config that is not a JSON file, a logger transformers does not know (or that is
    not installed). Each is one line naming the setting."""
    import importlib.util
    import json

    args = opts.get("args") or {}
    if args and importlib.util.find_spec("trl") is not None:
        import dataclasses
        import difflib

        from trl import GRPOConfig

        fields = [f.name for f in dataclasses.fields(GRPOConfig)]
        for key in args:
            if key not in fields:
                close = difflib.get_close_matches(str(key), fields, n=1)
                raise UserError(f"trainer.trl.args.{key} is not a field of TRL's GRPOConfig"
                                + (f" (did you mean {close[0]}?)" if close else "")
                                + "; see `help(trl.GRPOConfig)` for its fields")
    if opts.get("use_vllm") and importlib.util.find_spec("vllm") is None:
        raise UserError("trainer.trl.use_vllm=true needs vLLM, which is not installed (pip "
                        "install vllm, NVIDIA GPUs); or set trainer.trl.use_vllm=false")
    deepspeed = opts.get("deepspeed")
    if deepspeed is not None:
        path = Path(str(deepspeed)).expanduser()
        if not path.is_file():
            raise UserError(f"trainer.trl.deepspeed={deepspeed}: no such file; give a DeepSpeed "
                            "JSON config file (or null)")
        try:
            json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise UserError(f"trainer.trl.deepspeed={deepspeed}: not a JSON file "
                            f"({type(err).__name__}: {err})") from None
        if importlib.util.find_spec("deepspeed") is None:
            raise UserError("trainer.trl.deepspeed needs DeepSpeed, which is not installed "
                            "(pip install deepspeed)")
    report_to = opts.get("report_to") or []
    wanted = [str(r) for r in ([report_to] if isinstance(report_to, str) else report_to)]
    alone = [r for r in wanted if r in ("all", "none")]
    if alone and len(wanted) > 1:
        raise UserError(f"trainer.trl.report_to: {alone[0]} stands alone "
                        f"(trainer.trl.report_to={alone[0]}), not in a list with others")
    if wanted and not alone:
        from transformers.integrations import integration_utils

        known = sorted(integration_utils.INTEGRATION_TO_CALLBACK)
        installed = integration_utils.get_available_reporting_integrations()
        for name in wanted:
            if name in installed:
                continue
            if name in known:
                raise UserError(f"trainer.trl.report_to: {name} is not installed (pip install "
                                f"{name}), or drop it from the list")
            raise UserError(f"trainer.trl.report_to: {name!r} is not a logger transformers "
                            f"knows; known: {', '.join(known)}, all, none")


def grpo_arguments(cfg: Any, settings: TrainSettings, plan: StepPlan, opts: dict[str, Any],
                   output_dir: Path, on_gpu: bool) -> dict[str, Any]:
    """GRPOConfig's keyword arguments for this run (the mapping table in docs/integrations.md)."""
    from bots_cli.engines import SamplingParams

    sampling = SamplingParams.from_config(cfg.sampling)
    # sampling.temperature=0 is refused for both trainers by train.command.check_config.
    if sampling.stop:
        raise UserError("sampling.stop is not supported by trainer=trl (TRL stops at EOS and "
                        "max_completion_length); set sampling.stop=[] or use trainer=native")
    k, update = plan.optimizer_steps, settings.update
    bf16 = settings.precision in ("bf16", "bf16-mixed") or (settings.precision == "auto"
                                                             and on_gpu)
    args: dict[str, Any] = dict(
        output_dir=str(output_dir), per_device_train_batch_size=plan.per_device_batch,
        gradient_accumulation_steps=plan.accumulation,
        steps_per_generation=plan.steps_per_generation, num_generations=settings.group_size,
        num_iterations=settings.update.ppo_epochs, max_steps=settings.steps * k,
        learning_rate=settings.lr, warmup_steps=settings.warmup_steps,
        lr_scheduler_type="constant_with_warmup", weight_decay=settings.weight_decay,
        adam_beta1=settings.betas[0], adam_beta2=settings.betas[1],
        max_grad_norm=update.max_grad_norm, epsilon=update.clip_eps,
        epsilon_high=update.clip_eps_high or update.clip_eps, beta=update.kl_coef,
        loss_type=LOSS_TYPES[update.loss_agg],
        scale_rewards="group" if settings.scale_by_std else "none", bf16=bf16, fp16=False,
        use_cpu=not on_gpu, gradient_checkpointing=settings.gradient_checkpointing,
        max_completion_length=sampling.max_new_tokens, temperature=sampling.temperature,
        top_p=sampling.top_p, top_k=0, seed=int(cfg.seed), data_seed=int(cfg.seed),
        save_strategy="steps", save_steps=settings.checkpoint_every * k,
        save_total_limit=settings.keep_last,
        logging_strategy="steps", logging_steps=k, eval_strategy="no", report_to=list(
            opts["report_to"] or []), disable_tqdm=True, log_completions=False,
        remove_unused_columns=False, dataloader_num_workers=0,
        use_vllm=bool(opts["use_vllm"]), vllm_mode=opts["vllm_mode"],
        vllm_gpu_memory_utilization=opts["vllm_gpu_memory_utilization"],
        vllm_tensor_parallel_size=opts["vllm_tensor_parallel_size"],
    )
    if opts["vllm_server_base_url"]:
        args["vllm_server_base_url"] = opts["vllm_server_base_url"]
    if opts["deepspeed"]:
        args["deepspeed"] = str(opts["deepspeed"])
    args.update(opts["args"] or {})
    # `bf16` keeps the weights (and AdamW's state) in bf16; otherwise fp32 weights.
    args["model_init_kwargs"] = {"dtype": "bfloat16" if settings.precision == "bf16" else "float32",
                                 **(args.get("model_init_kwargs") or {})}
    return args


def training_dataset(pool: Any, domain: Any, tokenizer: Any) -> Any:
    """The pool as TRL's dataset: `task_id` and the prompt text the native loop renders (the
    chat template applied; the trainer tokenizes it without adding special tokens)."""
    from datasets import Dataset

    from bots_cli.models.loading import render_prompt_for_model

    return Dataset.from_dict({
        "task_id": [str(t) for t in pool["task_id"]],
        "prompt": [render_prompt_for_model(tokenizer, domain.render_messages(row))
                   for _, row in pool.iterrows()],
    })


def domain_reward(domain: Any, pool: Any) -> Any:
    """TRL's reward function for the domain: the domain's own reward of each completion."""
    rows = {str(t): row for t, (_, row) in zip(pool["task_id"], pool.iterrows(), strict=True)}

    def reward(completions: list[str], task_id: list[str], **_: Any) -> list[float]:
        return domain.rewards(list(completions), [rows[str(t)] for t in task_id])

    reward.__name__ = f"{domain.name}_reward"  # TRL logs rewards/<name>/mean
    return reward


def latest_trl_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    """(directory, bots step) of the newest complete TRL checkpoint, or None."""
    from bots_cli.runs.checkpoints import trl_checkpoints

    found = trl_checkpoints(run_dir)
    if not found:
        return None
    step = max(found)
    return found[step], step


def _trainer_class() -> Any:
    """BotsGRPOTrainer with the native loop's phase timers (time/rollout, time/reward) and run
    records (`records`, a RunRecords callback), fed the prompts as `training_dataset` renders
    them."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from bots_cli.integrations.trl import BotsGRPOTrainer

    class TimedBotsGRPOTrainer(BotsGRPOTrainer):
        def __init__(self, *args: Any, records: Any, **kwargs: Any) -> None:
            super().__init__(*args, callbacks=[records], **kwargs)
            self.records = records
            self.phase_seconds: dict[str, float] = {}
            for printer in (PrinterCallback, ProgressCallback):  # the run's display shows it
                self.remove_callback(printer)
            records.attach(self)

        def _tokenize_prompts(self, prompts: list[Any]) -> Any:
            """The prompt text is already the model's chat template (which writes any BOS
            itself), so it is tokenized without special tokens, as the evaluation and the
            prompt-length check tokenize it: TRL 1.16 would add a second BOS (Llama, Gemma,
            Mistral tokenizers)."""
            if not prompts or not isinstance(prompts[0], str):
                return super()._tokenize_prompts(prompts)
            tokenizer: Any = self.processing_class  # a tokenizer: text prompts, no images
            ids = tokenizer(text=prompts, add_special_tokens=False)["input_ids"]
            return ids, None, {}  # (prompt ids, images, multimodal fields), as TRL's text path

        def _issue_warnings_after_load(self, load_result: Any) -> None:
            """A checkpoint of a model with tied embeddings holds no `lm_head.weight`
            (safetensors stores a tied tensor once), and transformers 5 warns "missing keys"
            on resume although the weight is there. Keys tied to a loaded one are left out of
            the warning; any other missing key is still reported."""
            tied = set(getattr(self.model, "all_tied_weights_keys", None) or {})
            missing = [k for k in load_result.missing_keys if k not in tied]
            if len(missing) < len(load_result.missing_keys):
                self.model.tie_weights()
                load_result = load_result._replace(missing_keys=missing)
            super()._issue_warnings_after_load(load_result)

        def _timed(self, name: str, call: Any, *args: Any) -> Any:
            start = time.perf_counter()
            try:
                return call(*args)
            finally:
                self.phase_seconds[name] = (self.phase_seconds.get(name, 0.0)
                                            + time.perf_counter() - start)

        def _generate(self, prompts: Any) -> Any:
            return self._timed("rollout", super()._generate, prompts)

        def _calculate_rewards(self, *args: Any) -> Any:
            return self._timed("reward", super()._calculate_rewards, *args)

    return TimedBotsGRPOTrainer


def _import_trl() -> None:
    """TRL, checked and quietened, before anything imports it or accelerate."""
    # TRL 1.16 still calls transformers' gradient_checkpointing names that transformers 5 has
    # deprecated; the warning is TRL's to fix, not the user's, and it repeats every step.
    warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed in v6",
                            category=FutureWarning)
    from bots_cli.integrations.trl import check_trl_version

    check_trl_version()  # one line if TRL or accelerate is off
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the run's own display is the one the user watches


def resume_point(run_dir: Path, resuming: bool, steps: int) -> tuple[Path, int] | None:
    """The checkpoint a resumed run continues from (None for a new run), or one line why not."""
    if not resuming:
        return None
    latest = latest_trl_checkpoint(run_dir)
    if latest is None:
        raise UserError(f"{run_dir} has no complete checkpoint to resume from; start a new run")
    if latest[1] >= steps:
        raise UserError(f"{run_dir} already finished its {steps} steps (checkpoint step "
                        f"{latest[1]}); raise train.steps to train further")
    return latest


def build_trainer(cfg: Any, settings: TrainSettings, plan: StepPlan, opts: dict[str, Any],
                  run_dir: Path, latest: tuple[Path, int] | None, state: Any) -> Any:
    """The run's TimedBotsGRPOTrainer with its RunRecords (`trainer.records`): the pool, its
    selector and success rule, the model's weights and tokenizer, TRL's GRPOConfig."""
    import torch
    from trl import GRPOConfig

    from bots_cli.domains import load_domain
    from bots_cli.models.context import check_pool_prompts, context_length
    from bots_cli.models.loading import load_tokenizer, model_dir
    from bots_cli.runs.records import recorded_costs
    from bots_cli.selection.feedback import SuccessRule
    from bots_cli.train.pool import pool_selector, training_pool
    from bots_cli.train.trl.records import RunRecords

    domain = load_domain(str(cfg.domain.name), cfg.domain)
    pool = training_pool(cfg, settings, domain)
    selector = pool_selector(cfg, settings, pool, domain)
    on_gpu = torch.cuda.is_available() and str(cfg.model.get("device", "auto")) != "cpu"
    # TRL loads the weights from their directory itself, so that DeepSpeed ZeRO-3 can shard them
    # as they load; the tiny model is built (or a hub model found in the cache) first.
    where = model_dir(cfg.model, None, cfg.domain) if state.is_main_process else None
    state.wait_for_everyone()
    where = where or model_dir(cfg.model, None, cfg.domain)
    tokenizer = load_tokenizer(where)
    check_pool_prompts(pool, domain, tokenizer, context_length(where),
                       int(cfg.sampling.max_new_tokens))  # before TRL loads the model

    args = GRPOConfig(**grpo_arguments(cfg, settings, plan, opts, run_dir / "checkpoints",
                                       on_gpu))
    records = RunRecords(cfg, settings, run_dir, pool, domain, tokenizer, plan.processes,
                         plan.optimizer_steps, resume_step=None if latest is None else latest[1],
                         main=state.is_main_process)
    per_step = settings.batch_size * settings.group_size
    return _trainer_class()(
        model=str(where), reward_funcs=domain_reward(domain, pool), args=args,
        train_dataset=training_dataset(pool, domain, tokenizer), processing_class=tokenizer,
        selector=selector, task_id_column="task_id", records=records,
        success_rule=SuccessRule.from_config(cfg.selector.success),  # errors name the key
        dynamic_sampling=settings.dynamic_sampling.enabled,
        max_rounds=settings.dynamic_sampling.max_rounds,
        feedback_delay=settings.feedback_delay,
        # the counts of a checkpoint written before they were saved in it, from metrics.jsonl
        recorded_costs=None if latest is None else (
            lambda: recorded_costs(run_dir / "metrics.jsonl", latest[1], per_step)))


def check_sharding(trainer: Any, settings: TrainSettings) -> None:
    """The in-training evaluation needs the whole model on process 0."""
    ds_plugin = (trainer.accelerator.state.deepspeed_plugin if trainer.is_deepspeed_enabled
                 else None)
    sharded = trainer.is_fsdp_enabled or (ds_plugin is not None and ds_plugin.zero_stage == 3)
    if sharded and settings.eval_every:
        raise UserError("train.eval_every needs the whole model on process 0, but it is sharded "
                        "(DeepSpeed ZeRO-3 or FSDP): set train.eval_every=0 and evaluate the "
                        "checkpoints with `bots evaluate run=<run>`")


def train_trl(cfg: Any, run_dir: Path, resuming: bool) -> dict[str, Any]:
    """Run (or resume) `bots train trainer=trl` in `run_dir`; every process calls this."""
    from omegaconf import OmegaConf

    from bots_cli.train.processes import distributed_state

    _import_trl()
    state = distributed_state()
    settings = TrainSettings.from_config(cfg.train)
    opts = check_trl_options(OmegaConf.select(cfg, "trainer.trl"))
    if cfg.engine.name != "hf":
        raise UserError("trainer=trl generates with TRL's own engines: set "
                        "trainer.trl.use_vllm=true for vLLM (engine=vllm is the native loop's)")
    plan = plan_steps(settings, opts["steps_per_generation"], state.num_processes)
    latest = resume_point(run_dir, resuming, settings.steps)
    trainer = build_trainer(cfg, settings, plan, opts, run_dir, latest, state)
    try:
        check_sharding(trainer, settings)
        trainer.train(resume_from_checkpoint=None if latest is None else str(latest[0]))
    finally:
        trainer.records.close()
    summary: dict[str, Any] = {}
    if state.is_main_process:
        from bots_cli.atomic import write_json
        from bots_cli.runs.records import run_summary

        summary = run_summary(run_dir, cfg, settings.steps, trainer.records.elapsed)
        summary.update(trainer="trl", processes=state.num_processes)
        write_json(run_dir / "summary.json", summary)
        trainer.records.display.message(f"run directory: {run_dir}")
    state.wait_for_everyone()
    return summary
