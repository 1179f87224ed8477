"""`bots inspect RUN ...`: what a training run's selector chose (chosen.py), as inspect.md + plots.

The runs given (run directories, or directories above runs, such as a multirun sweep) are grouped
as `bots report` groups them (runs.py): runs that differ only in their seed are pooled into one
section, runs with different selectors or settings (dynamic sampling, λ, ...) get a section each.
Everything is read and checked before anything is written, so a bad input is one line and leaves
nothing behind. The output goes to this command's own run directory
(outputs/inspect/<date>/<time>/), never into the runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bots_cli.checks import check_int
from bots_cli.errors import UserError


def _training_config(path: Path) -> dict[str, Any] | None:
    """A run directory's config.yaml if it is a `bots train` run's, else None."""
    import yaml

    try:
        cfg = yaml.safe_load((path / "config.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UserError(f"{path}: cannot read config.yaml ({type(err).__name__})") from None
    return cfg if isinstance(cfg, dict) and {"train", "selector"} <= set(cfg) else None


def find_training_runs(given: list[str]) -> list[tuple[Path, dict[str, Any]]]:
    """(run directory, its config) of every training run at or under the given directories."""
    from bots_cli.runs.groups import run_directories

    out = []
    for name, candidates in run_directories(given, "inspect"):
        runs = [(d, cfg) for d in candidates if (cfg := _training_config(d)) is not None]
        if not runs:
            raise UserError(f"{name}: not a training run (no config.yaml of `bots train` there "
                            "or under it)")
        out += runs
    unique = {d.resolve(): (d, cfg) for d, cfg in out}  # a run named twice counts once
    return list(unique.values())


def group_by_selector(runs: list[tuple[Path, dict[str, Any]]]) -> dict[str, list[Path]]:
    """Runs grouped as `bots report` groups them (runs.py): by selector and the settings that
    differ among that selector's runs (dynamic sampling on or off, λ, ...); seeds pooled."""
    from bots_cli.runs.groups import compared_settings, group_labels, selector_label

    labels = group_labels([(selector_label(path, cfg), compared_settings(cfg))
                           for path, cfg in runs])
    out: dict[str, list[Path]] = {}
    for (path, _), label in zip(runs, labels, strict=True):
        out.setdefault(label, []).append(path)
    return out


def headline(analysis: Any) -> dict[str, str]:
    """The few numbers printed per group (a `chosen.SelectionAnalysis`)."""
    from bots_cli.analysis.chosen import fmt

    r, a, c, cap = analysis.rates, analysis.again, analysis.calib, analysis.capability
    return {"selections": str(int(r["selections"])), "distinct": f"{a['distinct_tasks']:.0f}",
            "pool share": fmt(a["pool_share"], 3), "repeats": fmt(a["repeat_share"]),
            "|rate−p*|": fmt(r["mean_abs_gap"]), "rate 0": fmt(r["zero"]),
            "rate 1": fmt(r["one"]), "calib MAE": fmt(c["mae"], 3) if c["pairs"] else "n/a",
            "MAE again: sel/prev": f"{fmt(c['mae_selector'], 3)}/{fmt(c['mae_previous'], 3)}"
            if c["pairs"] else "n/a",
            "cap~acc r": fmt(cap["corr"]) if cap["pairs"] else "n/a"}


def _markdown(sections: list[str], groups: dict[str, list[Path]]) -> str:
    lines = ["# bots inspect", "", "What each selector chose, read from the runs' "
             "selections.parquet and task tables.", "", *sections, "Runs:", ""]
    lines += [f"- {label}: " + ", ".join(str(p) for p in paths) for label, paths in groups.items()]
    return "\n".join(lines) + "\n"


def _print(heads: dict[str, dict[str, str]], report: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"bots inspect: {len(heads)} group(s)",
                  caption="repeats: share of selections of a task seen before; |rate−p*|: mean "
                          "gap of observed pass rates to the target; calib MAE: posterior mean "
                          "at selection vs observed rate; MAE again: on re-selected tasks, the "
                          "selector's and the task's previous rate's; cap~acc r: capability "
                          "vs eval/accuracy.")
    columns = next(iter(heads.values()))
    table.add_column("group", no_wrap=True)
    for col in columns:
        table.add_column(col, justify="right", no_wrap=True)
    for label, head in heads.items():
        table.add_row(label, *head.values())
    console = Console()
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    console.width = max(console.width, min(natural, 300))  # never squeeze numbers (or labels)
    console.print(table)
    console.print(f"inspect: {report}", highlight=False, soft_wrap=True)


def inspect(cfg: Any) -> dict[str, Any]:
    """The `bots inspect` command."""
    from hydra.core.hydra_config import HydraConfig

    from bots_cli.analysis.chosen import TrainingPools, analyse, section_markdown, write_plots
    from bots_cli.atomic import write_text

    column = str(cfg.inspect.column)
    windows = check_int("inspect.windows", cfg.inspect.windows, lo=1)
    bins = check_int("inspect.bins", cfg.inspect.bins, lo=1)
    groups = group_by_selector(find_training_runs([str(p) for p in cfg.inspect.runs]))
    pools = TrainingPools()  # one pool per domain, not one per group
    analysed = [analyse(label, paths, column, windows, bins, pools=pools)
                for label, paths in groups.items()]
    out_dir = Path(HydraConfig.get().runtime.output_dir)  # written only once all is read
    sections = [section_markdown(a, write_plots(a, out_dir)) for a in analysed]
    report = out_dir / "inspect.md"
    write_text(report, _markdown(sections, groups))
    heads = {a.label: headline(a) for a in analysed}
    _print(heads, report)
    return {"report": str(report), "groups": heads}
