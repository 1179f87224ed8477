"""Summaries of a `bots simulate` run: paired metrics against the baseline, files, table, plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bots_cli.atomic import atomic_path, write_json
from bots_cli.metrics import best_so_far_ratio, time_to_baseline

if TYPE_CHECKING:
    from bots_cli.simulate.run import SimParams

Curve = list[tuple[int, float]]
FRACTIONS = (25, 50, 100)  # TTB / BSF windows, in % of the step budget


def _per_seed(
    curve: Curve, base: Curve, rows: list[dict[str, Any]], budget: int
) -> dict[str, float]:
    steps, scores = (list(x) for x in zip(*curve, strict=True))
    bsteps, bscores = (list(x) for x in zip(*base, strict=True))
    out: dict[str, float] = {"final_accuracy": scores[-1], "best_accuracy": max(scores)}
    for pct in FRACTIONS:
        out[f"ttb_{pct}"] = time_to_baseline(steps, scores, bsteps, bscores, budget, pct / 100)
        out[f"bsf_{pct}"] = best_so_far_ratio(steps, scores, bsteps, bscores, budget, pct / 100)
    out["etr"] = float(np.mean([r["train/etr"] for r in rows]))
    out["zero_variance_share"] = float(np.mean([r["train/zero_variance_share"] for r in rows]))
    out["explored_share"] = float(rows[-1]["selector/explored_share"])
    out["selector_ms_per_step"] = 1e3 * float(
        np.mean([r["time/select"] + r["time/selector_update"] for r in rows])
    )
    return out


def _aggregate(values: list[float]) -> dict[str, Any]:
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


def summarise(
    curves: dict[str, dict[int, Curve]], rows: list[dict[str, Any]], sim: SimParams
) -> dict[str, Any]:
    base = curves[sim.baseline]
    selectors: dict[str, Any] = {}
    for name, by_seed in curves.items():
        per_seed = []
        for seed, curve in by_seed.items():
            run_rows = [r for r in rows if r["selector"] == name and r["seed"] == seed]
            per_seed.append(_per_seed(curve, base[seed], run_rows, sim.steps))
        selectors[name] = {key: _aggregate([m[key] for m in per_seed]) for key in per_seed[0]}
    return {"baseline": sim.baseline, "budget": sim.steps, "seeds": sim.seeds,
            "selectors": selectors}


def _json_safe(obj: Any) -> Any:
    """inf -> "never" (did not reach the target), nan -> null, so the file is standard JSON."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and math.isinf(obj):
        return "never"
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def write_outputs(
    run_dir: Path,
    rows: list[dict[str, Any]],
    curves: dict[str, dict[int, Curve]],
    summary: dict[str, Any],
    *,
    plot: bool,
) -> None:
    """curves.parquet (one row per selector, seed and step), summary.json, accuracy.png."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    start = pd.DataFrame(
        [{"selector": name, "seed": seed, "step": 0, "eval/accuracy": curve[0][1]}
         for name, by_seed in curves.items() for seed, curve in by_seed.items()]
    )
    frame = pd.concat([start, frame], ignore_index=True).sort_values(["selector", "seed", "step"])
    with atomic_path(run_dir / "curves.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    write_json(run_dir / "summary.json", _json_safe(summary))
    if plot:
        plot_accuracy(curves, summary["baseline"], run_dir / "accuracy.png")


def plot_accuracy(curves: dict[str, dict[int, Curve]], baseline: str, path: Path) -> None:
    """Held-out accuracy vs step: the mean over seeds with a min-max band."""
    import logging

    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # no font-cache chatter in the log
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, by_seed in curves.items():
        steps = np.array([s for s, _ in next(iter(by_seed.values()))])
        scores = np.array([[v for _, v in curve] for curve in by_seed.values()])
        style = "--" if name == baseline else "-"
        (line,) = ax.plot(steps, scores.mean(axis=0), style, label=name, linewidth=1.8)
        if len(by_seed) > 1:
            ax.fill_between(steps, scores.min(axis=0), scores.max(axis=0),
                            color=line.get_color(), alpha=0.15)
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(f"bots simulate: mean over {len(next(iter(curves.values())))} seeds "
                 "(band: min–max)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


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


def print_table(summary: dict[str, Any], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    base = summary["baseline"]
    table = Table(
        title=f"{summary['budget']} steps, {summary['seeds']} seed(s), mean±std over seeds",
        caption=f"* baseline. TTBx: steps to reach {base}'s best score of the first x% of the "
        f"budget, relative to {base} (lower is better). BSF: best score relative to {base}. "
        "ETR: share of selected tasks with 0 < successes < trials. ms: selector time per step.",
    )
    for col in ("selector", "final acc", "TTB25", "TTB50", "TTB100", "BSF100", "ETR",
                "explored", "ms"):
        table.add_column(col, justify="left" if col == "selector" else "right", no_wrap=True)
    for name, m in summary["selectors"].items():
        table.add_row(
            name + ("*" if name == base else ""),
            format_metric(m["final_accuracy"], 3),
            format_metric(m["ttb_25"]),
            format_metric(m["ttb_50"]),
            format_metric(m["ttb_100"]),
            format_metric(m["bsf_100"]),
            format_metric(m["etr"]),
            format_metric(m["explored_share"]),
            format_metric(m["selector_ms_per_step"], 2),
        )
    console = Console()
    console.width = max(console.width, 130)  # the table's natural width: never squeeze the numbers
    console.print(table)
    console.print(f"run directory: {run_dir}")
