"""`bots profile-refs`: per-task pass rates of the weak and strong reference models.

For each reference, n rollouts per task with the training sampling settings, scored by the
domain's reward, written to `data/profiles/<domain>/<model>.parquet`. The table is rewritten
atomically after every chunk of tasks, so a crash loses at most one chunk; re-running skips the
tasks already profiled with the same settings. Each chunk samples with its own seed derived from
(sampling.seed, chunk index), so a resumed run produces exactly the table an uninterrupted one
would.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from bots_cli.atomic import atomic_path, write_json, write_text
from bots_cli.checks import check_choice, check_int
from bots_cli.errors import UserError
from bots_cli.profile.table import pass_rate_summary, profile_path, read_profile, write_profile
from bots_cli.seeds import derive_seed

ROLES = ("weak", "strong")


def reference_label(model_cfg: Any) -> str:
    """The file name of a model's profile: `tiny-weak`, `tiny-strong`, `qwen7b`, and
    `<name>-<directory name>` for a local checkpoint (`refs.weak.path=/ckpt/a` -> `tiny-a`), so
    two references of one model config never share a file."""
    name = str(model_cfg.get("name"))
    if model_cfg.get("path"):
        return f"{name}-{Path(str(model_cfg.get('path'))).expanduser().resolve().name}"
    if model_cfg.get("build") is not None:
        return f"{name}-{model_cfg.get('checkpoint') or 'weak'}"
    return name


def profiles_dir(cfg_dir: Any) -> Path:
    if cfg_dir:
        return Path(str(cfg_dir)).expanduser()
    from bots_cli.domains.base import repo_data_dir

    return repo_data_dir() / "profiles"


def model_source(model_cfg: Any, domain_cfg: Any = None) -> str:
    """Where a model's weights come from: its path, its hub id, or the tiny build's fingerprint
    (building it when needed), so a profile of other weights is never taken for this model's."""
    if model_cfg.get("path"):
        return str(model_cfg.get("path"))
    if model_cfg.get("hub_id"):
        return str(model_cfg.get("hub_id"))
    if model_cfg.get("build") is not None:
        from bots_cli.models.checkpoints import build_fingerprint
        from bots_cli.models.loading import model_dir

        return f"tiny build {build_fingerprint(model_dir(model_cfg, None, domain_cfg).parent)}"
    return "unknown"


def profile_settings(cfg: Any, model_cfg: Any, sampling: Any) -> dict[str, Any]:
    """What determines a profile's numbers; a resumed run must match it exactly."""
    return {
        "domain": str(cfg.domain.name),
        "split": str(cfg.profile.split),
        "model": reference_label(model_cfg),
        "model_source": model_source(model_cfg, cfg.domain),
        "engine": str(cfg.engine.name),
        "n": int(cfg.profile.n),
        "chunk_size": int(cfg.profile.chunk_size),
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_new_tokens": sampling.max_new_tokens,
        "stop": list(sampling.stop),
        "seed": sampling.seed,
    }


def _existing(path: Path, settings: dict[str, Any], overwrite: bool) -> Any:
    """The rows already profiled with these settings (an empty frame if none)."""
    import pandas as pd

    empty = pd.DataFrame(columns=["task_id", "model", "n", "successes", "pass_rate"])
    if not path.is_file():
        return empty
    frame, saved = read_profile(path)
    if saved != settings:
        if overwrite:
            return empty
        diff = [k for k in settings if saved.get(k) != settings[k]]
        k = diff[0] if diff else "settings"
        raise UserError(
            f"{path} was profiled with other settings ({k}: {saved.get(k)!r} there, "
            f"{settings.get(k)!r} now); set profile.overwrite=true to start afresh, or use the "
            "same settings to resume"
        )
    return frame


def profile_model(cfg: Any, role: str, tasks: Any, dom: Any, sampling: Any,
                  out_dir: Path, timings: dict[str, float] | None = None) -> Any:
    """Profile one reference on `tasks`; returns its complete profile table.

    `timings`, if given, accumulates seconds spent in `generate`, `reward`, `write` and `total`.
    """
    timings = {} if timings is None else timings
    started = time.perf_counter()
    import pandas as pd

    from bots_cli.engines import build_engine
    from bots_cli.models.loading import render_prompt_for_model

    model_cfg = cfg.refs[role]
    settings = profile_settings(cfg, model_cfg, sampling)
    path = profile_path(out_dir, settings["domain"], settings["model"], settings["split"])
    done = _existing(path, settings, bool(cfg.profile.overwrite))
    todo_mask = ~tasks["task_id"].isin(set(done["task_id"]))
    if not todo_mask.any():
        print(f"{settings['model']}: all {len(tasks)} tasks already profiled in {path}")
        return done

    def clock(key: str, since: float) -> float:
        now = time.perf_counter()
        timings[key] = timings.get(key, 0.0) + now - since
        return now

    n, size = settings["n"], settings["chunk_size"]
    frames = [done]
    with build_engine(cfg.engine, model_cfg, domain_cfg=cfg.domain) as engine, \
            TaskProgress(f"{role}: {settings['model']}", int(todo_mask.sum())) as advance:
        tokenizer = engine_tokenizer(engine, model_cfg, cfg.domain)
        for chunk, start in enumerate(range(0, len(tasks), size)):
            part = tasks.iloc[start:start + size]
            part = part[todo_mask.iloc[start:start + size].to_numpy()]
            if part.empty:
                continue
            rows = [row for _, row in part.iterrows()]
            prompts = [render_prompt_for_model(tokenizer, dom.render_messages(r)) for r in rows]
            params = dataclasses.replace(sampling, seed=derive_seed(sampling.seed, chunk))
            t = time.perf_counter()
            groups = engine.generate(prompts, n, params)
            t = clock("generate", t)
            rewards = dom.rewards([c.text for g in groups for c in g],
                                  [r for r in rows for _ in range(n)])
            t = clock("reward", t)
            successes = np.asarray(rewards, dtype=np.float64).reshape(len(rows), n).sum(axis=1)
            frames.append(pd.DataFrame({
                "task_id": part["task_id"].to_numpy(), "model": settings["model"], "n": n,
                "successes": successes, "pass_rate": successes / n,
            }))
            table = pd.concat(frames, ignore_index=True)
            write_profile(path, table, settings)  # the resume point
            clock("write", t)
            advance(len(rows))
    clock("total", started)
    return pd.concat(frames, ignore_index=True)


def engine_tokenizer(engine: Any, model_cfg: Any, domain_cfg: Any) -> Any:
    """The tokenizer an engine renders prompts for (the engine's own, else the model's)."""
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None:
        from bots_cli.models.loading import load_tokenizer, model_dir

        tokenizer = load_tokenizer(model_dir(model_cfg, None, domain_cfg))
    return tokenizer


class TaskProgress:
    """A rich progress bar with throughput and ETA, advanced by tasks done."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total

    def __enter__(self) -> Any:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"),
                            TimeRemainingColumn())
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=self.total, rate="")
        self.started = time.perf_counter()
        self.count = 0

        def advance(k: int) -> None:
            self.count += k
            rate = self.count / max(time.perf_counter() - self.started, 1e-9)
            self.bar.update(self.task, advance=k, rate=f"{rate:.1f} tasks/s")

        return advance

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def check_chunked_job(section: Any, key: str) -> None:
    """The options `profile-refs` and `evaluate` share: n, chunk_size, split, max_tasks."""
    check_int(f"{key}.n", section.n, lo=1)
    check_int(f"{key}.chunk_size", section.chunk_size, lo=1)
    check_choice(f"{key}.split", section.split, ("train", "eval"))
    if section.max_tasks is not None:
        check_int(f"{key}.max_tasks", section.max_tasks, lo=1)


def profile_refs(cfg: Any) -> dict[str, Any]:
    """Profile the weak and strong references of `cfg.refs` on the domain's tasks."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from bots_cli.domains import load_domain
    from bots_cli.engines import SamplingParams

    check_chunked_job(cfg.profile, "profile")
    sampling = SamplingParams.from_config(cfg.sampling)
    dom = load_domain(str(cfg.domain.name), cfg.domain)
    tasks = dom.load(cfg.domain, split=str(cfg.profile.split), max_tasks=cfg.profile.max_tasks,
                     key="profile.max_tasks")
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    out_dir = profiles_dir(cfg.profile.dir)

    levels = tasks["level"].to_numpy() if "level" in tasks.columns else None
    summary: dict[str, Any] = {}
    tables = {}
    for role in ROLES:
        timings: dict[str, float] = {}
        table = profile_model(cfg, role, tasks, dom, sampling, out_dir, timings)
        rates = table.set_index("task_id")["pass_rate"].reindex(tasks["task_id"]).to_numpy()
        tables[role] = rates
        label = reference_label(cfg.refs[role])
        summary[role] = {"model": label, "path": str(profile_path(out_dir, dom.name, label,
                                                                       str(cfg.profile.split))),
                         **pass_rate_summary(rates, levels),
                         # Wall time of this run (model loading included); 0 when nothing was left.
                         "time": {k: round(v, 3) for k, v in timings.items()},
                         "outside_generation_share": (
                             1.0 - timings["generate"] / timings["total"]
                             if timings.get("total") else None)}
    write_json(run_dir / "summary.json", summary)
    if cfg.profile.plot:
        _plot(tables, summary, run_dir / "pass_rates.png")
    _print(summary, run_dir)
    return summary


def _plot(tables: dict[str, np.ndarray], summary: dict[str, Any], path: Path) -> None:
    import logging

    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120)
    bins = [float(x) for x in np.linspace(0, 1, 18)]
    for role, rates in tables.items():
        ax.hist(rates, bins=bins, alpha=0.55, label=f"{role}: {summary[role]['model']}")
    ax.set_xlabel("pass rate")
    ax.set_ylabel("tasks")
    ax.set_title("reference pass rates")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _print(summary: dict[str, Any], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="reference pass rates")
    for col in ("reference", "model", "tasks", "mean", "at 0", "in (0, 1)", "at 1",
                "mean by level"):
        table.add_column(col, justify="left" if col in ("reference", "model") else "right")
    for role, s in summary.items():
        by_level = " ".join(f"{lv}:{v:.2f}" for lv, v in s.get("mean_by_level", {}).items())
        table.add_row(role, s["model"], str(s["tasks"]), f"{s['mean']:.3f}",
                      f"{s['share_zero']:.2f}", f"{s['share_between']:.2f}",
                      f"{s['share_one']:.2f}", by_level)
    console = Console()
    console.width = max(console.width, 120)
    console.print(table)
    console.print(f"profiles: {', '.join(s['path'] for s in summary.values())}")
    console.print(f"run directory: {run_dir}")
