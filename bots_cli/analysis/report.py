"""`bots report`: training runs compared with a baseline, as the paper does (DESIGN.md §2).

Runs are found under the given directories (a run directory, or any directory above runs, such as
a multirun sweep), grouped by selector and by the hyperparameters that differ between runs of the
same selector, with seeds averaged. Each run is compared with the baseline run of the same seed
(or, without one, with the baseline's mean curve) by the pure functions `bots simulate` uses:
TTB and BSF at 25/50/100% of the budget, mean ETR, zero-variance share and the selector's share of
step time. A run that never reaches the baseline's target is reported as "never", never as a
number.

`report.x` picks the axis TTB and BSF count on: training steps (the paper's), or what the steps
cost, rollouts or tokens generated (`train/rollouts`, `train/tokens` in metrics.jsonl). Dynamic
sampling buys informative batches with extra rollouts; per step it looks cheaper than it is, and
on the cost axis the budget (what the baseline spent) truncates its curve: a compute-fair
comparison. Differences that seeds cannot tell from noise are marked (`comparison.within_noise`),
and the groups are ranked against the best one by the same test, so that two selectors (BOTS and
dynamic sampling, say) can be told apart, or said not to be.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bots_cli.analysis.comparison import (
    AXES,
    FRACTIONS,
    SPREAD_NOTE,
    Curve,
    aggregate,
    amount,
    curve_on_axis,
    format_metric,
    format_vs_baseline,
    json_safe,
    mean_curve,
    more_seeds_commands,
    noise_caption,
    per_seed_metrics,
    plot_curves,
    plot_points,
    ranking_mean,
    trailing_mean_curve,
    versus_best,
    within_noise,
)
from bots_cli.atomic import write_json, write_text
from bots_cli.checks import check_choice
from bots_cli.errors import UserError
from bots_cli.runs.groups import (
    compared_settings,
    group_labels,
    run_directories,
    saved_overrides,
    selector_label,
    shipped_defaults,
    short,
)


@dataclass
class Run:
    path: Path
    selector: str
    seed: int
    budget: int
    settings: dict[str, Any]  # the compared config keys, flattened
    rows: list[dict[str, Any]]  # per-step training metrics
    curve: Curve  # (step, score) of the report's metric
    overrides: tuple[str, ...] | None = None  # the command line's overrides (.hydra/), if saved

    def axis_curve(self, x: str) -> Curve:
        """The eval curve as (cost on axis `x` at the eval step, score); `SkippedRun` when the
        run did not record that cost."""
        try:
            return curve_on_axis(self.curve, self.rows, x)
        except ValueError as why:
            raise SkippedRun(str(why)) from None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a run's jsonl file; only a torn last line (a killed run) is skipped."""
    from bots_cli.runs.records import read_jsonl_upto

    return [json.loads(line) for line in read_jsonl_upto(path, math.inf)]


class SkippedRun(Exception):
    """A run directory `bots report` cannot use, and why (reported as one warning line)."""


def load_run(path: Path, metric: str, x: str = "steps") -> Run | None:
    """A finished or partial training run; None when the directory is not a training run (a
    report, a simulation); `SkippedRun` when it is one that cannot be compared yet (on axis `x`)
    or is torn."""
    import yaml

    try:
        cfg = yaml.safe_load((path / "config.yaml").read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SkippedRun(f"config.yaml is not valid YAML ({getattr(err, 'problem', None) or err}"
                         f"{where})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SkippedRun(f"config.yaml cannot be read ({err})") from None
    if not isinstance(cfg, dict) or "train" not in cfg or "selector" not in cfg:
        return None
    if not (path / "metrics.jsonl").is_file():
        raise SkippedRun("no metrics.jsonl (the run never finished a step)")
    try:
        rows = _jsonl(path / "metrics.jsonl")
        evaluated = _jsonl(path / "evaluations.jsonl")
        scores = {int(r["step"]): float(r[metric]) for r in rows if metric in r}
        # `bots evaluate` appends its own rows; they complete (or refine) the training-time ones.
        scores.update({int(r["step"]): float(r[metric]) for r in evaluated if metric in r})
        train_rows = [r for r in rows if "train/etr" in r]
        budget = int(cfg["train"]["steps"])
        selector = selector_label(path, cfg)
    except UserError as err:
        raise SkippedRun(str(err)) from None
    except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError) as err:
        raise SkippedRun(f"a damaged record ({type(err).__name__}: {err})") from None
    if not train_rows:
        raise SkippedRun("no training step in metrics.jsonl yet")
    if not scores:
        raise SkippedRun(f"no `{metric}` values (set report.metric, or run `bots evaluate "
                         f"run={path}`)")
    run = Run(path=path, selector=selector, seed=int(cfg.get("seed", 0)), budget=budget,
              settings=compared_settings(cfg), rows=train_rows, curve=sorted(scores.items()),
              overrides=saved_overrides(path))
    run.axis_curve(x)  # a run without the axis' costs is skipped here, saying so
    return run


def find_runs(paths: list[str], metric: str, x: str = "steps") -> list[Run]:
    """Every training run at or under `paths` (directories holding a training config.yaml); a
    training run that cannot be used is skipped with one warning line naming it and why, and
    the others are reported. A directory with no training run at all is one error line, and so
    is a report whose every run was skipped."""
    runs = []
    skipped = 0
    for given, dirs in run_directories(paths, "report"):
        found, warned = [], 0
        for d in dirs:
            try:
                run = load_run(d, metric, x)
            except SkippedRun as why:
                print(f"warning: skipping {d}: {why}", file=sys.stderr)
                warned += 1
                continue
            if run is not None:
                found.append(run)
        if not found and not warned:
            if any((d / "curves.parquet").is_file() for d in dirs):
                raise UserError(f"{given}: bots simulate runs, not training runs: each one's "
                                "table and summary.json are its report, and a `bots simulate "
                                "-m` sweep's jobs side by side are in its sweep_summary.json")
            raise UserError(f"{given}: no training run with `{metric}` values under it (a run "
                            "directory holds config.yaml and metrics.jsonl)")
        runs += found
        skipped += warned
    if not runs:
        raise UserError(f"no run to report: every training run found ({skipped}) was "
                        "skipped (the warnings above say why)")
    return runs


def group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs grouped by selector and the settings that differ among that selector's runs."""
    groups: dict[str, list[Run]] = {}
    for run, label in zip(runs, group_labels([(r.selector, r.settings) for r in runs]),
                          strict=True):
        groups.setdefault(label, []).append(run)
    return groups


def pick_baseline(groups: dict[str, list[Run]], baseline: str) -> str | None:
    """The group `report.baseline` names: a label, or a selector with one group; of a
    selector's several groups, the one at the shipped settings (e.g. uniform without dynamic
    sampling beside uniform with it), said on stderr."""
    if baseline in groups:
        return baseline
    named = [label for label, runs in groups.items() if runs[0].selector == baseline]
    if len(named) > 1:
        defaults, settings = shipped_defaults(baseline), [groups[n][0].settings for n in named]
        varying = {k for s in settings for k in s if len({repr(o.get(k)) for o in settings}) > 1}
        shipped = [label for label, s in zip(named, settings, strict=True)
                   if all(k in defaults and s.get(k) == defaults[k] for k in varying)]
        if len(shipped) != 1:
            raise UserError(f"report.baseline={baseline} matches several groups "
                            f"({'; '.join(named)}); set report.baseline to one of them")
        print(f"note: report.baseline={baseline}: the baseline is {shipped[0]!r}, the one at "
              "the shipped settings (set report.baseline to a group label for another)",
              file=sys.stderr)
        return shipped[0]
    return named[0] if named else None


def _budget(groups: dict[str, list[Run]], baseline: str | None, x: str) -> float:
    """The budget the windows are fractions of: on steps, the baseline's train.steps; on a cost
    axis, the baseline's final cost (mean over its seeds). Without a baseline, the largest
    train.steps, or the smallest of the groups' mean final costs."""
    pool = [groups[baseline]] if baseline else list(groups.values())
    if x == "steps":
        return float(max(r.budget for runs in pool for r in runs))
    return min(float(np.mean([r.rows[-1][f"train/{x}"] for r in runs])) for runs in pool)


def compare(groups: dict[str, list[Run]], baseline: str | None,
            x: str = "steps") -> dict[str, Any]:
    """Per group: each metric's mean and spread over seeds (`aggregate`), on axis `x`; TTB and
    BSF marked within noise or not; `vs_best` against the group of lowest mean TTB100, the
    baseline included. Groups come baseline first, then by mean TTB100 (a "never" as 2;
    undefined last)."""
    base_runs = groups[baseline] if baseline else []
    base_by_seed = {r.seed: r.axis_curve(x) for r in base_runs}
    base_mean = mean_curve(list(base_by_seed.values())) if base_runs else None
    budget = _budget(groups, baseline, x)
    out: dict[str, Any] = {}
    ttb_by_seed: dict[str, dict[int, float]] = {}
    for label, runs in groups.items():
        per = [per_seed_metrics(r.axis_curve(x), base_by_seed.get(r.seed, base_mean), r.rows,
                                budget) for r in runs]
        out[label] = {"seeds": sorted(r.seed for r in runs),
                      "runs": [str(r.path) for r in runs],
                      **{k: aggregate([p.get(k, math.nan) for p in per]) for k in per[0]}}
        for key in _RATIOS:  # recorded in summary.json too; the baseline is the reference
            agg = out[label][key]
            agg["within_noise"] = None if label == baseline else within_noise(agg["values"], 1.0)
        # The baseline competes for best too (its TTB is 1 on every seed): a group slower than
        # the baseline is never marked the best.
        ttb_by_seed[label] = {r.seed: p["ttb_100"] for r, p in zip(runs, per, strict=True)}
    for label, mark in versus_best(ttb_by_seed).items():
        out[label]["vs_best"] = mark
    order = [baseline] if baseline else []
    order += sorted((g for g in ttb_by_seed if g != baseline),
                    key=lambda g: ranking_mean(list(ttb_by_seed[g].values())))
    return {"baseline": baseline, "x": x, "budget": int(budget) if budget.is_integer() else budget,
            "groups": {label: out[label] for label in order}}


_RATIOS = tuple(f"{m}_{p}" for m in ("ttb", "bsf") for p in FRACTIONS)
# (header, metric key, decimals, shown in the terminal table too; report.md has every column)
COLUMNS = [("final acc", "final_accuracy", 3, True), ("best acc", "best_accuracy", 3, True),
           *((f"TTB{p}", f"ttb_{p}", 2, True) for p in FRACTIONS),
           ("vs best", "vs_best", 0, True),
           *((f"BSF{p}", f"bsf_{p}", 2, p == 100) for p in FRACTIONS),
           ("ETR", "etr", 2, True), ("zero-var", "zero_variance_share", 2, True),
           ("selector time", "selector_share", 4, True)]


def _cell(group: dict[str, Any], key: str, digits: int, is_baseline: bool) -> str:
    if key == "vs_best":
        return group.get(key, "")
    if key not in group:
        return "n/a"
    if key in _RATIOS and not is_baseline:
        return format_vs_baseline(group[key], digits)
    return format_metric(group[key], digits)


def _cells(summary: dict[str, Any], console: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table."""
    cols = [c for c in COLUMNS if c[3] or not console]
    rows = []
    for label, g in summary["groups"].items():
        base = label == summary["baseline"]
        rows.append([label + ("*" if base else ""), str(len(g["seeds"])),
                     *(_cell(g, key, digits, base) for _, key, digits, _ in cols)])
    return ["group", "seeds", *(c[0] for c in cols)], rows


def _axis_line(summary: dict[str, Any]) -> str:
    """`TTB on the rollouts axis: ...; budget: ...` (report.md's second line)."""
    x, base, budget = summary["x"], summary["baseline"], summary["budget"]
    if x == "steps":
        source = f"{base}'s train.steps" if base else "the largest train.steps"
    elif base:
        n = len(summary["groups"][base]["seeds"])
        source = f"{base}'s final cost, mean over its {n} seed{'s' if n > 1 else ''}"
    else:
        source = "the smallest group's final cost (no baseline)"
    return f"TTB on the {x} axis: {AXES[x]}; budget: {amount(budget, x)} ({source})."


def _caption(summary: dict[str, Any]) -> str:
    base = summary["baseline"]
    if base is None:
        return "No baseline run: TTB and BSF are n/a (set report.baseline)."
    x = summary["x"]
    seeds = {len(g["seeds"]) for g in summary["groups"].values()}
    spread = "1 seed per group: single values, no spread." if seeds == {1} else \
        f"Mean±sd over seeds (a group of 1 seed: its single value); {SPREAD_NOTE}"
    return (f"* baseline. {spread} {noise_caption(base)} TTBx: {AXES[x]} to reach {base}'s best "
            f"score of the first x% of the {amount(summary['budget'], x, adjective=True)} "
            f"budget, relative to {base} (lower is better; 'never (k/n)': k of n seeds never "
            f"reached it). vs best: each group, {base} included, against the one of lowest mean "
            f"TTB100 (rows sorted by it, {base} first) by the same test on their paired "
            "per-seed TTB100s: * the best, ≈ within noise, worse beyond it, n/a fewer than 2 "
            "paired seeds. BSFx: "
            f"best score in the first x% relative to {base}. n/a: undefined ({base} did not "
            "improve on its step-0 score within x%, or has no eval there; selector time: the "
            "runs do not record step times). ETR: share of selected tasks with 0 < successes < "
            "trials. selector time: share of step time spent selecting and updating the "
            "selector.")


Note = tuple[str, list[str]]  # a sentence, and the commands it names


def _seeds_note(summary: dict[str, Any], groups: dict[str, list[Run]]) -> Note | None:
    """Where groups have a single seed: that no spread is available, and the commands for more."""
    single = [label for label, g in summary["groups"].items() if len(g["seeds"]) == 1]
    if not single:
        return None
    runs = [r for label in single for r in groups[label]]
    known = [r.overrides for r in runs if r.overrides is not None]
    saved = known if len(known) == len(runs) else None
    where = "1 seed per group" if len(single) == len(groups) else f"1 seed in {', '.join(single)}"
    return (f"{where}: no spread, so no difference here can be told from noise; run more seeds:",
            more_seeds_commands(saved))


def _markdown(summary: dict[str, Any], metric: str, plots: list[str], note: Note | None,
              sections: list[str]) -> str:
    header, rows = _cells(summary)
    lines = ["# bots report", "", f"Score: `{metric}`; baseline: {summary['baseline']}.", "",
             _axis_line(summary), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", _caption(summary), ""]
    lines += [f"**{note[0]}**", "", "```text", *note[1], "```", ""] if note else []
    lines += [f"![{p}]({p})" for p in plots]
    lines += ["", *sections, "Runs:", ""]  # sections: "What was chosen", one per group
    lines += [f"- {label}: " + ", ".join(g["runs"]) for label, g in summary["groups"].items()]
    return "\n".join(lines) + "\n"


def _print(summary: dict[str, Any], out_dir: Path, plots: list[str], note: Note | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"bots report: {len(summary['groups'])} group(s), on the {summary['x']} "
                  "axis", caption=_caption(summary))
    header, rows = _cells(summary, console=True)
    for col in header:
        table.add_column(col, justify="left" if col == "group" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console = Console()
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    console.width = max(console.width, min(natural, 300))  # never squeeze numbers (or labels)
    console.print(_axis_line(summary), highlight=False, soft_wrap=True)
    console.print(table)
    if note:
        console.print("\n".join([f"note: {note[0]}", *(f"  {c}" for c in note[1])]),
                      highlight=False, soft_wrap=True, markup=False)
    for p in plots:
        console.print(f"plot: {out_dir / p}", highlight=False, soft_wrap=True)
    console.print(f"report: {out_dir / 'report.md'}", highlight=False, soft_wrap=True)


def _sweep(groups: dict[str, list[Run]], summary: dict[str, Any]) -> tuple[str, list[Any]] | None:
    """The one numeric setting swept among a selector's groups (e.g. lam), if there is one."""
    by_selector: dict[str, list[str]] = defaultdict(list)
    for label, runs in groups.items():
        by_selector[runs[0].selector].append(label)
    for labels in by_selector.values():
        if len(labels) < 2:
            continue
        settings = [groups[label][0].settings for label in labels]
        keys = sorted({k for s in settings for k in s})
        varying = [k for k in keys if len({repr(s.get(k)) for s in settings}) > 1]
        if len(varying) == 1 and all(isinstance(s.get(varying[0]), int | float)
                                     and not isinstance(s.get(varying[0]), bool)
                                     for s in settings):
            return varying[0], [(s[varying[0]], summary["groups"][label]["ttb_100"]["mean"])
                                for s, label in zip(settings, labels, strict=True)]
    return None


# What makes a training run's held-out score (eval/accuracy): its tasks, k and sampling seed.
TRAINING_EVAL_KEYS = ("domain.name", "train.eval_tasks", "train.eval_n", "train.eval_seed",
                      "sampling.temperature", "sampling.max_new_tokens")


def held_out_warning(runs: list[Run], metric: str) -> str | None:
    """One warning line when the runs' scores were measured on different held-out sets (other
    tasks, k, seed or temperature): their accuracies do not compare. For `bots evaluate`'s
    metrics (eval/<domain>/accuracy) the settings saved with each run's evaluations count."""
    signatures = {}
    for run in runs:
        if metric == "eval/accuracy":
            signatures[run.path] = {k: run.settings.get(k) for k in TRAINING_EVAL_KEYS}
        elif metric.startswith("eval/") and metric.count("/") == 2:
            signatures[run.path] = _evaluation_settings(run.path, metric.split("/")[1])
    if len({repr(sorted(s.items())) for s in signatures.values()}) <= 1:
        return None
    key = next(k for k in sorted({k for s in signatures.values() for k in s})
               if len({repr(s.get(k)) for s in signatures.values()}) > 1)
    values = sorted({repr(s.get(key)) for s in signatures.values()})
    line = (f"warning: the runs' {metric} were measured on different held-out sets ({key}: "
            f"{', '.join(values)}): their scores do not compare; evaluate them alike with `bots "
            "evaluate run=<run>` and report.metric=eval/<domain>/accuracy")
    print(line, file=sys.stderr)
    return line


def _evaluation_settings(run_dir: Path, domain: str) -> dict[str, Any]:
    """The settings `bots evaluate` saved with a run's evaluations of `domain` (none: {})."""
    path = run_dir / "evaluations" / f"{domain}.parquet"
    if not path.is_file():
        return {}
    import pyarrow.parquet as pq

    from bots_cli.references.table import settings_of

    try:
        return {k: v for k, v in settings_of(pq.read_table(path)).items() if k != "chunk_size"}
    except (OSError, ValueError):
        return {"unreadable": str(path)}


def _chosen_sections(settings: Any, groups: dict[str, list[Run]], summary: dict[str, Any],
                     out_dir: Path) -> list[str]:
    """report.md's "What was chosen" section of each group (chosen.py), in the table's order; a
    group whose runs cannot say (no selections.parquet, no such column) is one warning line."""
    if not settings.chosen:
        return []
    from bots_cli.analysis.chosen import TrainingPools, chosen_section

    sections, pools = [], TrainingPools()  # one pool per domain, not one per group
    for label in summary["groups"]:
        try:
            text, _ = chosen_section(label, [r.path for r in groups[label]], out_dir,
                                     column=str(settings.column), column_key="report.column",
                                     pools=pools)
        except UserError as why:
            print(f"warning: no 'what was chosen' section for {label}: {why}", file=sys.stderr)
            continue
        sections.append(text)
    return sections


def report(cfg: Any) -> dict[str, Any]:
    """The `bots report` command."""
    from hydra.core.hydra_config import HydraConfig

    x = check_choice("report.x", cfg.report.x, tuple(AXES))
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    metric = str(cfg.report.metric)
    runs = find_runs([str(p) for p in cfg.report.runs], metric, x)
    groups = group_runs(runs)
    baseline = pick_baseline(groups, str(cfg.report.baseline))
    if baseline is None:
        print(f"warning: no {cfg.report.baseline} run among these; TTB and BSF are n/a "
              "(set report.baseline to one of the groups)", file=sys.stderr)
    summary = compare(groups, baseline, x)
    held_out_warning(runs, metric)
    note = _seeds_note(summary, groups)
    plots: list[str] = []
    if cfg.report.plot:
        xlabel = f"{x}: {AXES[x]}"
        curves = {label: {r.seed: r.axis_curve(x) for r in rs} for label, rs in groups.items()}
        plot_curves(curves, baseline, out_dir / "accuracy.png", title="bots report",
                    ylabel=metric, xlabel=xlabel)
        etr = {label: {r.seed: trailing_mean_curve(r.rows, "train/etr", x) for r in rs}
               for label, rs in groups.items()}
        plot_curves(etr, baseline, out_dir / "etr.png",
                    title="ETR (10-step mean)", ylabel="effective task ratio", xlabel=xlabel)
        plots += ["accuracy.png", "etr.png"]
        sweep = _sweep(groups, summary)
        if sweep is not None and baseline is not None:
            key, points = sweep
            points = sorted(p for p in points if math.isfinite(p[1]))
            if points:
                name = f"ttb_vs_{short(key)}.png"
                plot_points([p[0] for p in points], [p[1] for p in points], out_dir / name,
                            xlabel=key, ylabel=f"TTB(100%) on {x} (lower is better)",
                            title=f"TTB(100%) against {key}")
                plots.append(name)
    sections = _chosen_sections(cfg.report, groups, summary, out_dir)
    write_json(out_dir / "summary.json", json_safe(summary))
    write_text(out_dir / "report.md", _markdown(summary, metric, plots, note, sections))
    _print(summary, out_dir, plots, note)
    return summary
