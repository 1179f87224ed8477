"""Comparing runs with a baseline: the paper's metrics per seed, their spread, tables and plots.

Shared by `bots simulate` (synthetic runs) and `bots report` (real training runs): both hand over
per-seed eval curves and per-step rows with the keys of a run's metrics.jsonl.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from bots_cli.atomic import atomic_path
from bots_cli.metrics import best_so_far_ratio, time_to_baseline

Curve = list[tuple[int, float]]  # (eval step, score), steps increasing
FRACTIONS = (25, 50, 100)  # TTB / BSF windows, in % of the step budget


def per_seed_metrics(
    curve: Curve, base: Curve | None, rows: list[dict[str, Any]], budget: int
) -> dict[str, float]:
    """The paper's metrics of one run (one seed) against the baseline's curve (None: no baseline,
    TTB and BSF undefined). `rows`: the run's per-step metrics."""
    steps, scores = (list(x) for x in zip(*curve, strict=True))
    out: dict[str, float] = {"final_accuracy": scores[-1], "best_accuracy": max(scores)}
    for pct in FRACTIONS:
        if base is None:
            out[f"ttb_{pct}"] = out[f"bsf_{pct}"] = math.nan
            continue
        bsteps, bscores = (list(x) for x in zip(*base, strict=True))
        out[f"ttb_{pct}"] = time_to_baseline(steps, scores, bsteps, bscores, budget, pct / 100)
        out[f"bsf_{pct}"] = best_so_far_ratio(steps, scores, bsteps, bscores, budget, pct / 100)
    out["etr"] = float(np.mean([r["train/etr"] for r in rows]))
    out["zero_variance_share"] = float(np.mean([r["train/zero_variance_share"] for r in rows]))
    out["explored_share"] = float(rows[-1]["selector/explored_share"])
    selector_s = [r["time/select"] + r["time/selector_update"] for r in rows]
    out["selector_ms_per_step"] = 1e3 * float(np.mean(selector_s))
    if all("time/step" in r for r in rows):  # real runs: the selector's share of step time
        out["selector_share"] = float(np.sum(selector_s) / np.sum([r["time/step"] for r in rows]))
    return out


def aggregate(values: list[float]) -> dict[str, Any]:
    """Mean and spread over seeds; runs that never reached the target are counted, not averaged."""
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    return {
        "mean": float(finite.mean()) if finite.size else math.nan,
        "std": float(finite.std()) if finite.size else math.nan,
        "never": int(np.isposinf(arr).sum()),
        "undefined": int(np.isnan(arr).sum()),
        "values": values,
    }


def json_safe(obj: Any) -> Any:
    """inf -> "never" (did not reach the target), nan -> null, so the file is standard JSON."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and math.isinf(obj):
        return "never"
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def _pyplot() -> Any:
    import logging

    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # no font-cache chatter in the log
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    _pyplot().close(fig)


def plot_curves(curves: dict[str, dict[int, Curve]], baseline: str | None, path: Path, *,
                title: str, ylabel: str = "held-out accuracy") -> None:
    """A score vs step per group: the mean over seeds (at the steps all seeds have) with a
    min-max band; the baseline dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, by_seed in curves.items():
        common = sorted(set.intersection(*({s for s, _ in c} for c in by_seed.values())))
        steps = np.array(common, dtype=float)
        scores = np.array([[dict(c)[s] for s in common] for c in by_seed.values()])
        style = "--" if name == baseline else "-"
        (line,) = ax.plot(steps, scores.mean(axis=0), style, label=name, linewidth=1.8)
        if len(by_seed) > 1:
            ax.fill_between(steps, scores.min(axis=0), scores.max(axis=0),
                            color=line.get_color(), alpha=0.15)
    seeds = max(len(v) for v in curves.values())
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}: mean over {seeds} seed(s)" + (" (band: min–max)" if seeds > 1 else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_points(xs: list[float], ys: list[float], path: Path, *, xlabel: str, ylabel: str,
                title: str) -> None:
    """One metric against a swept value (e.g. TTB(100%) against λ)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(xs, ys, "o-")
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _save(fig, path)


def format_metric(agg: dict[str, Any], digits: int = 2) -> str:
    """'0.52 ± 0.04', or 'never (2/3)' when some seeds never reached the target."""
    n = len(agg["values"])
    if agg["never"]:
        return f"never ({agg['never']}/{n})"
    if agg["undefined"] == n:
        return "n/a"
    text = f"{agg['mean']:.{digits}f}"
    if n > 1:
        text += f"±{agg['std']:.{digits}f}"
    return text


