"""`bots profile-refs`: per-task pass rates of the weak and strong reference models.

For each reference, n rollouts per task with the training sampling settings, scored by the
domain's reward, written to `data/profiles/<domain>/<model>.parquet`. The table is rewritten
atomically after every chunk of tasks, so a crash loses at most one chunk; re-running skips the
tasks already profiled with the same settings. Each chunk samples with its own seed derived from
(sampling.seed, chunk index), so a resumed run produces exactly the table an uninterrupted one
would.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bots_cli.atomic import atomic_path, writable_dir, write_json, write_text
from bots_cli.references.table import pass_rate_summary, profile_path, read_profile, write_profile

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


def profile_model(cfg: Any, role: str, tasks: Any, domain: Any, sampling: Any,
                  out_dir: Path, timings: dict[str, float] | None = None) -> Any:
    """Profile one reference on `tasks`; returns its complete profile table.

    `timings`, if given, accumulates seconds spent in `generate`, `reward`, `write` and `total`.
    """
    timings = {} if timings is None else timings
    started = time.perf_counter()
    import pandas as pd

    from bots_cli.engines import build_engine
    from bots_cli.evaluation.scoring import HeldOut, resume_table, score_in_chunks

    model_cfg = cfg.refs[role]
    settings = profile_settings(cfg, model_cfg, sampling)
    path = profile_path(out_dir, settings["domain"], settings["model"], settings["split"])
    empty = pd.DataFrame(columns=["task_id", "model", "n", "successes", "pass_rate"])
    done = resume_table(path, settings, read_profile, empty, "profile.overwrite",
                        bool(cfg.profile.overwrite), made="profiled")
    pending = (~tasks["task_id"].isin(set(done["task_id"]))).to_list()
    if not any(pending):
        print(f"{settings['model']}: all {len(tasks)} tasks already profiled in {path}")
        return done

    n = settings["n"]
    frames = [done]
    with build_engine(cfg.engine, model_cfg, domain_cfg=cfg.domain) as engine:
        held = HeldOut(domain, tasks, engine_tokenizer(engine, model_cfg, cfg.domain))

        def score(idx: list[int], seed: int) -> Any:
            result = held.evaluate(engine, n, sampling, seed, idx, timings)
            successes = result.rewards.sum(axis=1)
            return pd.DataFrame({"task_id": tasks["task_id"].iloc[idx].to_numpy(),
                                 "model": settings["model"], "n": n, "successes": successes,
                                 "pass_rate": successes / n})

        def save(rows: Any) -> None:
            t = time.perf_counter()
            frames.append(rows)
            write_profile(path, pd.concat(frames, ignore_index=True), settings)
            timings["write"] = timings.get("write", 0.0) + time.perf_counter() - t

        score_in_chunks(f"{role}: {settings['model']}", pending, settings["chunk_size"],
                        sampling.seed, score, save, path)
    timings["total"] = timings.get("total", 0.0) + time.perf_counter() - started
    return pd.concat(frames, ignore_index=True)


def engine_tokenizer(engine: Any, model_cfg: Any, domain_cfg: Any) -> Any:
    """The tokenizer an engine renders prompts for (the engine's own, else the model's)."""
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None:
        from bots_cli.models.loading import load_tokenizer, model_dir

        tokenizer = load_tokenizer(model_dir(model_cfg, None, domain_cfg))
    return tokenizer


def profile_refs(cfg: Any) -> dict[str, Any]:
    """Profile the weak and strong references of `cfg.refs` on the domain's tasks."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from bots_cli.domains import load_domain
    from bots_cli.engines import SamplingParams
    from bots_cli.evaluation.scoring import check_chunked_job

    check_chunked_job(cfg.profile, "profile")
    sampling = SamplingParams.from_config(cfg.sampling)
    domain = load_domain(str(cfg.domain.name), cfg.domain)
    tasks = domain.load(cfg.domain, split=str(cfg.profile.split), max_tasks=cfg.profile.max_tasks,
                     key="profile.max_tasks")
    out_dir = writable_dir(profiles_dir(cfg.profile.dir), "profile.dir")
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    levels = tasks["level"].to_numpy() if "level" in tasks.columns else None
    summary: dict[str, Any] = {}
    tables = {}
    for role in ROLES:
        timings: dict[str, float] = {}
        table = profile_model(cfg, role, tasks, domain, sampling, out_dir, timings)
        rates = table.set_index("task_id")["pass_rate"].reindex(tasks["task_id"]).to_numpy()
        tables[role] = rates
        label = reference_label(cfg.refs[role])
        summary[role] = {"model": label, "path": str(profile_path(out_dir, domain.name, label,
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
