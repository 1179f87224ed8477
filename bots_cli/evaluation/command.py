"""`bots evaluate`: a training run's checkpoints (or a plain model) on held-out task sets.

For every (checkpoint, domain): k completions per task at the configured temperature, scored by
the domain's reward; avg@k and pass@k (unbiased) per task, per level and overall.

- Per-task results go to `<out>/evaluations/<domain>.parquet` (step, task_id, level, n,
  successes, correct, avg_at_k, pass_at_k), rewritten atomically after every chunk of tasks with
  the settings in its metadata: a killed evaluation resumes where it stopped, and a re-run with
  other settings is refused unless `evaluate.overwrite=true`.
- Per-step summaries go to `<out>/evaluations.jsonl` (`eval/<domain>/accuracy`, `pass@k`,
  `level_L`), which `bots report` reads (`report.metric=eval/<domain>/accuracy`).

`<out>` is the run directory with `run=<dir>`, else this command's own run directory. Chunk c
samples with a seed derived from (evaluate.seed, c), the same for every checkpoint: differences
between checkpoints come from the weights, not from different draws.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from bots_cli.atomic import write_text
from bots_cli.checks import check_int, check_range
from bots_cli.errors import UserError
from bots_cli.evaluation.scoring import EvalResult, HeldOut, resume_table, score_in_chunks

COLUMNS = ["step", "task_id", "level", "n", "successes", "correct", "avg_at_k", "pass_at_k"]


def checkpoints(run: Path) -> dict[int, Path]:
    """Step -> model directory of every complete checkpoint of a training run."""
    from bots_cli.runs.checkpoints import latest_checkpoint, trl_checkpoints

    root = run / "checkpoints"
    found = trl_checkpoints(run)  # a `trainer=trl` run: the model files are the checkpoint's own
    if latest_checkpoint(run) is not None:
        found.update({int(p.name.split("_")[1]): p / "model" for p in root.glob("step_*")
                      if (p / "state.pt").is_file() and (p / "model").is_dir()})
    return found


# Config groups a run brings itself: with run=<dir>, its saved model, domain and sampling are
# evaluated, so overriding them would be ignored (what changes instead, after the colon).
RUN_OWNS = {"model": "evaluate a model without run=", "domain": "evaluate.domains=[...]",
            "sampling": "evaluate.temperature=..."}


def check_run_overrides(overrides: list[str]) -> None:
    """With run=<dir>, an override of what the run brings itself (its model, domain, sampling)
    would be ignored: one line naming it and what changes the evaluation instead."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        group = key.split(".")[0].split("@")[0]
        if group in RUN_OWNS:
            raise UserError(f"{override}: with run=<dir> the run's own {group} is evaluated, so "
                            f"this would be ignored; drop it (use {RUN_OWNS[group]})")


def targets(cfg: Any) -> tuple[Path | None, Any, list[tuple[int, Any]]]:
    """(run dir or None, the run's saved config or None, [(step, model config)])."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if cfg.get("run") is None:
        if cfg.evaluate.steps is not None:
            raise UserError(f"evaluate.steps={list(cfg.evaluate.steps)} picks checkpoints of a "
                            "training run, and no run=<dir> is given; give one, or drop "
                            "evaluate.steps to evaluate the model as it is")
        return None, None, [(0, cfg.model)]
    check_run_overrides(list(HydraConfig.get().overrides.task))
    run = Path(str(cfg.run)).expanduser()
    if not (run / "config.yaml").is_file():
        raise UserError(f"run={cfg.run}: not a `bots train` run directory (no config.yaml)")
    saved = OmegaConf.load(run / "config.yaml")
    found = checkpoints(run)
    wanted = cfg.evaluate.steps
    if wanted is None:
        steps = [0, *sorted(found)]
    else:
        steps = sorted({check_int("evaluate.steps[]", s, lo=0) for s in wanted})
        missing = [s for s in steps if s and s not in found]
        if missing:
            have = ", ".join(str(s) for s in sorted(found)) or "none"
            raise UserError(f"run {run} has no checkpoint at step {missing[0]} (checkpoints: "
                            f"{have}); step 0 is the starting model")
    _check_intact(found, steps)
    out = []
    for step in steps:
        model_cfg = OmegaConf.to_container(saved.model, resolve=True)
        assert isinstance(model_cfg, dict)
        if step:
            model_cfg.update(path=str(found[step]), hub_id=None, build=None)
        out.append((step, model_cfg))
    return run, saved, out


def _check_intact(found: dict[int, Path], steps: list[int]) -> None:
    """Refuse a checkpoint whose model files are damaged, naming the file and the intact
    checkpoints (before any model is loaded)."""
    from bots_cli.runs.checkpoints import damage

    for step in steps:
        why = damage(found[step]) if step else None
        if why is not None:
            intact = [s for s in sorted(found) if s != step and damage(found[s]) is None]
            have = ", ".join(str(s) for s in intact) or "none"
            raise UserError(f"{why}; leave step {step} out of evaluate.steps (intact "
                            f"checkpoints: {have}; step 0 is the starting model)")


def domains(cfg: Any, saved: Any) -> list[Any]:
    """The domain configs to evaluate on: the run's (or `domain`), or those `evaluate.domains`
    names (loaded from conf/domain/<name>.yaml)."""
    from omegaconf import OmegaConf

    from bots_cli.config import config_dir

    own = saved.domain if saved is not None else cfg.domain
    names = cfg.evaluate.domains
    if names is None:
        return [own]
    out = []
    for name in names:
        if str(name) == str(own.name):
            out.append(own)
            continue
        path = config_dir() / "domain" / f"{name}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
            raise UserError(f"evaluate.domains: no domain {name!r} (known: {known})")
        out.append(OmegaConf.load(path))
    return out


def eval_settings(cfg: Any, domain_cfg: Any, sampling: Any) -> dict[str, Any]:
    return {"domain": str(domain_cfg.name), "split": str(cfg.evaluate.split),
            "max_tasks": cfg.evaluate.max_tasks, "n": int(cfg.evaluate.n),
            "chunk_size": int(cfg.evaluate.chunk_size), "temperature": sampling.temperature,
            "top_p": sampling.top_p, "max_new_tokens": sampling.max_new_tokens,
            "stop": list(sampling.stop), "seed": int(cfg.evaluate.seed)}


def _read(path: Path) -> tuple[Any, dict[str, Any]]:
    import pyarrow.parquet as pq

    from bots_cli.references.table import settings_of

    table = pq.read_table(path)
    return table.to_pandas(), settings_of(table)


def _existing(path: Path, settings: dict[str, Any], overwrite: bool) -> Any:
    """The results already in `path` (made with these settings), or an empty table."""
    import pandas as pd

    return resume_table(path, settings, _read, pd.DataFrame(columns=COLUMNS),
                        "evaluate.overwrite", overwrite, made="evaluated")


def _rows(step: int, result: EvalResult) -> Any:
    import pandas as pd

    per = result.per_task()
    return pd.DataFrame({
        "step": step, "task_id": result.task_ids,
        "level": (result.levels if result.levels is not None
                  else np.full(len(result.task_ids), -1)).astype(np.int64),
        "n": result.k, "successes": result.rewards.sum(axis=1),
        "correct": (result.rewards >= 1.0).sum(axis=1), "avg_at_k": per["avg_at_k"],
        "pass_at_k": per["pass_at_k"],
    })


def _tasks(cfg: Any, domain_cfg: Any) -> tuple[Any, Any]:
    from bots_cli.domains import load_domain

    domain = load_domain(str(domain_cfg.name), domain_cfg)
    tasks = domain.load(domain_cfg, split=str(cfg.evaluate.split), max_tasks=cfg.evaluate.max_tasks,
                     key="evaluate.max_tasks")
    return domain, tasks


def evaluate_domain(cfg: Any, step: int, engine: Any, tokenizer: Any, domain_cfg: Any,
                    sampling: Any, path: Path) -> Any:
    """Evaluate one model on one domain's held-out tasks, chunk by chunk; the full table."""
    import pandas as pd

    from bots_cli.references.table import write_with_settings

    domain, tasks = _tasks(cfg, domain_cfg)
    settings = eval_settings(cfg, domain_cfg, sampling)
    tables = [_existing(path, settings, bool(cfg.evaluate.overwrite))]
    done = set(tables[0].loc[tables[0]["step"] == step, "task_id"].astype(str))
    held = HeldOut(domain, tasks, tokenizer)

    def score(idx: list[int], seed: int) -> Any:
        return _rows(step, held.evaluate(engine, settings["n"], sampling, seed, idx))

    def save(rows: Any) -> None:
        tables[:] = [pd.concat([*tables, rows], ignore_index=True)]
        write_with_settings(path, tables[0][COLUMNS], settings)

    score_in_chunks(f"step {step}: {domain.name}", [t not in done for t in held.task_ids],
                    settings["chunk_size"], settings["seed"], score, save, path)
    return tables[0]


def check_prompts_fit(cfg: Any, engine: Any, model_cfg: Any, tokenizer: Any, doms: list[Any],
                      sampling: Any) -> None:
    """Refuse, before anything is generated, a held-out prompt that leaves less than
    `max_new_tokens` of the model's context (it would be cut and score 0), as `bots train`
    refuses it."""
    from bots_cli.models.context import check_prompt_lengths, context_length, prompt_lengths

    model = getattr(engine, "model", None)
    context = context_length(model) if model is not None else None
    if context is None and model_cfg.get("path"):
        context = context_length(str(model_cfg["path"]))
    if context is None:
        return
    for domain_cfg in doms:
        domain, tasks = _tasks(cfg, domain_cfg)
        held = HeldOut(domain, tasks, tokenizer)
        check_prompt_lengths(held.task_ids, prompt_lengths(held.prompts, tokenizer), context,
                             sampling.max_new_tokens, f"{domain.name} {cfg.evaluate.split}")


def summarise(table: Any, domain: str, k: int) -> dict[int, dict[str, float]]:
    """Per step: eval/<domain>/accuracy, pass@k and per-level accuracy."""
    out: dict[int, dict[str, float]] = {}
    for step, part in table.groupby("step", sort=True):
        row = {f"eval/{domain}/accuracy": float(part["avg_at_k"].mean()),
               f"eval/{domain}/pass@{k}": float(part["pass_at_k"].mean())}
        for level, lv in part.groupby("level", sort=True):
            if int(level) >= 0:
                row[f"eval/{domain}/level_{int(level)}"] = float(lv["avg_at_k"].mean())
        out[int(step)] = row
    return out


def write_summaries(out_dir: Path, per_domain: dict[str, dict[int, dict[str, float]]]) -> None:
    """evaluations.jsonl: one row per step with every domain's metrics (rewritten atomically)."""
    path = out_dir / "evaluations.jsonl"
    rows: dict[int, dict[str, Any]] = {}
    if path.is_file():  # keep other domains' rows from earlier evaluations
        for line in path.read_text().splitlines():
            old = json.loads(line)
            rows[int(old["step"])] = old
    for metrics in per_domain.values():
        for step, values in metrics.items():
            rows.setdefault(step, {"step": step}).update(values)
    write_text(path, "".join(json.dumps(rows[s]) + "\n" for s in sorted(rows)))


def evaluate(cfg: Any) -> dict[str, Any]:
    """The `bots evaluate` command."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from bots_cli.engines import SamplingParams, build_engine
    from bots_cli.evaluation.scoring import check_chunked_job
    from bots_cli.references.profile import engine_tokenizer

    check_chunked_job(cfg.evaluate, "evaluate")
    run, saved, models = targets(cfg)
    out_dir = run if run is not None else Path(HydraConfig.get().runtime.output_dir)
    if run is None:
        write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    base = SamplingParams.from_config(saved.sampling if saved is not None else cfg.sampling)
    temperature = cfg.evaluate.temperature
    sampling = dataclasses.replace(base, temperature=base.temperature if temperature is None
                                   else check_range("evaluate.temperature", temperature, 0.0))
    doms = domains(cfg, saved)
    engine_cfg = cfg.engine
    k = int(cfg.evaluate.n)
    paths = {str(d.name): out_dir / "evaluations" / f"{d.name}.parquet" for d in doms}
    for domain_cfg in doms:  # settings are checked before any model is loaded
        _existing(paths[str(domain_cfg.name)], eval_settings(cfg, domain_cfg, sampling),
                  bool(cfg.evaluate.overwrite))
    tables: dict[str, Any] = {}
    for number, (step, model_cfg) in enumerate(models):
        with build_engine(engine_cfg, model_cfg, domain_cfg=doms[0]) as engine:
            tokenizer = engine_tokenizer(engine, model_cfg, doms[0])
            if number == 0:  # every checkpoint of a run has the same context
                check_prompts_fit(cfg, engine, model_cfg, tokenizer, doms, sampling)
            for domain_cfg in doms:
                name = str(domain_cfg.name)
                tables[name] = evaluate_domain(cfg, step, engine, tokenizer, domain_cfg,
                                               sampling, paths[name])
    per_domain = {name: summarise(t, name, k) for name, t in tables.items()}
    write_summaries(out_dir, per_domain)
    _print(per_domain, k, out_dir)
    return {name: {str(s): v for s, v in m.items()} for name, m in per_domain.items()}


def _print(per_domain: dict[str, dict[int, dict[str, float]]], k: int, out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"held-out avg@{k} / pass@{k} by checkpoint step")
    table.add_column("step", justify="right")
    for name in per_domain:
        table.add_column(f"{name} avg@{k}", justify="right")
        table.add_column(f"{name} pass@{k}", justify="right")
        table.add_column(f"{name} by level", justify="left")
    steps = sorted({s for m in per_domain.values() for s in m})
    for step in steps:
        cells = [str(step)]
        for name, metrics in per_domain.items():
            row = metrics.get(step, {})
            levels = " ".join(f"{key.rsplit('_', 1)[1]}:{v:.2f}" for key, v in row.items()
                              if "/level_" in key)
            cells += [f"{row.get(f'eval/{name}/accuracy', float('nan')):.4f}",
                      f"{row.get(f'eval/{name}/pass@{k}', float('nan')):.4f}", levels]
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(f"results: {out_dir / 'evaluations'} and {out_dir / 'evaluations.jsonl'}",
                  highlight=False, soft_wrap=True)
