"""Summaries of a `bots simulate` run: paired metrics against the baseline, files, table, plot.

TTB and BSF cells say when they cannot be told from noise (`comparison.within_noise`, the test
`bots report` uses): '≈' within noise, '?' a single seed's draw; one seed also prints the command
that runs more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bots_cli.analysis.comparison import (
    SPREAD_NOTE,
    Curve,
    aggregate,
    format_metric,
    format_vs_baseline,
    json_safe,
    noise_caption,
    per_seed_metrics,
    plot_curves,
    within_noise,
)
from bots_cli.atomic import atomic_path, write_json

COLUMNS = {  # header -> (summary key, digits)
    "final acc": ("final_accuracy", 3), "TTB25": ("ttb_25", 2), "TTB50": ("ttb_50", 2),
    "TTB100": ("ttb_100", 2), "BSF100": ("bsf_100", 2), "ETR": ("etr", 2),
    "explored": ("explored_share", 2), "ms": ("selector_ms_per_step", 2),
}


def summarise(curves: dict[str, dict[int, Curve]], rows: list[dict[str, Any]], *,
              baseline: str, steps: int, seeds: int) -> dict[str, Any]:
    """Every selector's metrics over seeds, each seed paired with the baseline's same seed."""
    base = curves[baseline]
    selectors: dict[str, Any] = {}
    for name, by_seed in curves.items():
        per_seed = []
        for seed, curve in by_seed.items():
            run_rows = [r for r in rows if r["selector"] == name and r["seed"] == seed]
            per_seed.append(per_seed_metrics(curve, base[seed], run_rows, steps))
        selectors[name] = {key: aggregate([m[key] for m in per_seed]) for key in per_seed[0]}
        for key, agg in selectors[name].items():
            if key.startswith(("ttb_", "bsf_")):  # the baseline is the reference: no test
                agg["within_noise"] = None if name == baseline else within_noise(agg["values"],
                                                                                 1.0)
    return {"baseline": baseline, "budget": steps, "seeds": seeds, "selectors": selectors}


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
    """The comparison table; on a terminal too narrow for it, in two halves (never squeezed)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    base = summary["baseline"]
    console = Console()

    def table(headers: list[str], title: str | None) -> Table:
        t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ["selector", *headers]:
            t.add_column(col, justify="left" if col == "selector" else "right", no_wrap=True)
        for name, m in summary["selectors"].items():
            t.add_row(name + ("*" if name == base else ""), *(cell(name, m, h) for h in headers))
        return t

    def cell(name: str, metrics: dict[str, Any], header: str) -> str:
        key, digits = COLUMNS[header]
        if name != base and key.startswith(("ttb_", "bsf_")):
            return format_vs_baseline(metrics[key], digits)
        return format_metric(metrics[key], digits)

    seeds = summary["seeds"]
    title = (f"{summary['budget']} steps, {seeds} seeds, mean±sd over seeds" if seeds > 1 else
             f"{summary['budget']} steps, 1 seed: single values, no spread (?: a single draw)")
    whole = table(list(COLUMNS), title)
    natural = console.measure(whole, options=console.options.update_width(10_000)).maximum
    if natural <= console.width:
        console.print(whole)
    else:
        headers = list(COLUMNS)
        console.print(table(headers[:4], title))
        console.print(table(headers[4:], None))
    console.print(f"* baseline. TTBx: steps to reach {base}'s best score of the first x% of the "
                  f"budget, relative to {base} (lower is better). BSF: best score relative to "
                  f"{base}. {noise_caption(base)} ETR: share of selected tasks with 0 < "
                  "successes < trials. ms: selector time per step."
                  + (f" {SPREAD_NOTE}" if seeds > 1 else ""), highlight=False)
    if seeds == 1:
        console.print("1 seed: no spread, so no difference here can be told from noise; run more "
                      f"seeds: {more_seeds_command()}", highlight=False, soft_wrap=True,
                      markup=False)
    console.print(f"run directory: {run_dir}", highlight=False, soft_wrap=True)


def more_seeds_command(seeds: int = 5) -> str:
    """`bots simulate simulate.seeds=5` with this run's other overrides (when Hydra runs it)."""
    import shlex

    from hydra.core.hydra_config import HydraConfig

    try:
        given = list(HydraConfig.get().overrides.task)
    except ValueError:  # not under Hydra (a test calling print_table): no overrides to repeat
        given = []
    kept = [o for o in given if o.split("=", 1)[0].lstrip("+~") != "simulate.seeds"]
    return " ".join(["bots simulate", f"simulate.seeds={seeds}", *map(shlex.quote, kept)])


SWEEP_COLUMNS = ("final acc", "TTB50", "TTB100", "BSF100", "ETR")


def sweep_summary(sweep_dir: Path) -> dict[str, Any] | None:
    """After a `bots simulate -m` sweep: one table of every job's selectors, the jobs told apart
    by the values swept (their overrides that differ), printed and written as the sweep's
    `sweep_summary.json`. None when no job of the sweep finished."""
    import json

    import yaml
    from rich import box
    from rich.console import Console
    from rich.table import Table

    jobs = []
    for summary_path in sorted(Path(sweep_dir).glob("*/summary.json"),
                               key=lambda p: (not p.parent.name.isdigit(),
                                              int(p.parent.name) if p.parent.name.isdigit()
                                              else 0, p.parent.name)):
        overrides_path = summary_path.parent / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_path.read_text()) if overrides_path.is_file() else []
        jobs.append((summary_path.parent.name, [str(o) for o in overrides or []],
                     json.loads(summary_path.read_text())))
    if not jobs:
        return None
    shared = set.intersection(*(set(o) for _, o, _ in jobs))
    table = Table(title=f"bots simulate sweep: {len(jobs)} jobs (mean±sd over each job's seeds)",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("job", "swept", "selector", *SWEEP_COLUMNS):
        table.add_column(col, justify="left" if col in ("job", "swept", "selector") else "right",
                         no_wrap=True)
    out: dict[str, Any] = {"jobs": []}
    for name, overrides, summary in jobs:
        swept = " ".join(o for o in overrides if o not in shared) or "-"
        base = summary["baseline"]
        out["jobs"].append({"job": name, "swept": swept, "summary": summary})
        for selector, m in summary["selectors"].items():
            cells = []
            for header in SWEEP_COLUMNS:
                key, digits = COLUMNS[header]
                vs = selector != base and key.startswith(("ttb_", "bsf_"))
                cells.append(format_vs_baseline(m[key], digits) if vs
                             else format_metric(m[key], digits))
            table.add_row(name, swept, selector + ("*" if selector == base else ""), *cells)
        table.add_section()
    console = Console()
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    console.width = max(console.width, natural)  # never squeezed into ellipses
    console.print(table)
    write_json(Path(sweep_dir) / "sweep_summary.json", json_safe(out))
    console.print(f"* each job's baseline. {noise_caption(jobs[0][2]['baseline'])} "
                  f"{SPREAD_NOTE} sweep summary: {Path(sweep_dir) / 'sweep_summary.json'}",
                  highlight=False, soft_wrap=True)
    return out
