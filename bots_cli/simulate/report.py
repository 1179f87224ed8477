"""Summaries of a `bots simulate` run: paired metrics against the baseline, files, table, plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bots_cli.atomic import atomic_path, write_json
from bots_cli.comparison import (
    Curve,
    aggregate,
    format_metric,
    json_safe,
    per_seed_metrics,
    plot_curves,
)

if TYPE_CHECKING:
    from bots_cli.simulate.run import SimParams



def summarise(
    curves: dict[str, dict[int, Curve]], rows: list[dict[str, Any]], sim: SimParams
) -> dict[str, Any]:
    base = curves[sim.baseline]
    selectors: dict[str, Any] = {}
    for name, by_seed in curves.items():
        per_seed = []
        for seed, curve in by_seed.items():
            run_rows = [r for r in rows if r["selector"] == name and r["seed"] == seed]
            per_seed.append(per_seed_metrics(curve, base[seed], run_rows, sim.steps))
        selectors[name] = {key: aggregate([m[key] for m in per_seed]) for key in per_seed[0]}
    return {"baseline": sim.baseline, "budget": sim.steps, "seeds": sim.seeds,
            "selectors": selectors}


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
    write_json(run_dir / "summary.json", json_safe(summary))
    if plot:
        plot_curves(curves, summary["baseline"], run_dir / "accuracy.png",
                      title="bots simulate")


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
