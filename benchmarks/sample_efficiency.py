"""Sample efficiency of selectors in the tiny world: real GRPO runs, compared as the paper does,
on training steps and on compute (rollouts generated).

Runs an experiment file of conf/experiment/ as one Hydra multirun (`bots train -m
experiment=<name>`: every configuration and seed with the same budget and pool), then compares
the runs with `bots report`'s functions against uniform (at the shipped settings) on each axis:
TTB(100%) and BSF(100%) mean ± std over seeds ("≈": within seed noise by the report's paired
t-test), the ranking against the best group (`vs best`), final accuracy, ETR (of every task
selected, refills included), the zero-variance share of the batches trained on (0 when dynamic
sampling filled them), and the rollouts a step cost.

    python benchmarks/sample_efficiency.py [--experiment sample_efficiency | dynamic_sampling |
        leaderboard_tiny]
        [--selectors bots uniform] [--seeds 0 1] [--steps 200]
        [--out outputs/bench/<experiment>] [--axes steps rollouts]
        [-- extra overrides for every run, e.g. train.max_tasks=400 train.lr=5e-5]

`dynamic_sampling` runs uniform and BOTS, each without and with dynamic sampling
(train.dynamic_sampling.enabled), 3 seeds. `leaderboard_tiny` is the leaderboard's second
stage: uniform and the four selectors benchmarks/leaderboard.py ranks best on rollouts, 3 seeds
(run it with --axes steps rollouts tokens). --selectors, --seeds and --steps replace the
experiment file's values when given. Needs the tiny references' profiles (shipped in
data/profiles/arith). When --out already holds runs, they are only compared again (delete the
directory to train afresh).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bots_cli.analysis.comparison import AXES, format_metric, format_vs_baseline, json_safe
from bots_cli.analysis.report import compare, find_runs, group_runs, pick_baseline


def per_seed(values: list[float]) -> str:
    return ", ".join("never" if math.isinf(v) else "n/a" if math.isnan(v) else f"{v:.2f}"
                     for v in values)


def table(summary: dict[str, Any], groups: dict[str, Any], x: str) -> list[str]:
    """One markdown table of the comparison on axis `x` (rows in the report's order)."""
    lines = [f"\n#### On {x} ({AXES[x]}); budget {summary['budget']:g}, baseline "
             f"{summary['baseline']}\n",
             "| group | final acc | TTB(100%) | TTB per seed | vs best | BSF(100%) | ETR | "
             "zero-var trained | rollouts / step |",
             "| --- | ---: | ---: | --- | :---: | ---: | ---: | ---: | ---: |"]
    for label, g in summary["groups"].items():
        base = label == summary["baseline"]
        ratio = format_metric if base else format_vs_baseline
        cost = np.mean([r.rows[-1]["train/rollouts"] / r.rows[-1]["step"] for r in groups[label]])
        lines.append(f"| {label}{'*' if base else ''} | {format_metric(g['final_accuracy'], 3)} "
                     f"| {ratio(g['ttb_100'])} | {per_seed(g['ttb_100']['values'])} | "
                     f"{g.get('vs_best', '')} | {ratio(g['bsf_100'])} | "
                     f"{format_metric(g['etr'])} | {format_metric(g['zero_variance_share'])} | "
                     f"{cost:.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="sample_efficiency")
    parser.add_argument("--selectors", nargs="+", help="default: the experiment file's")
    parser.add_argument("--seeds", nargs="+", type=int, help="default: the experiment file's")
    parser.add_argument("--steps", type=int, help="default: the experiment file's")
    parser.add_argument("--out", help="default: outputs/bench/<experiment>")
    parser.add_argument("--metric", default="eval/accuracy")
    parser.add_argument("--axes", nargs="+", default=["steps", "rollouts"], choices=list(AXES))
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()

    out = Path(args.out or f"outputs/bench/{args.experiment}")
    started = time.perf_counter()
    if not list(out.rglob("summary.json")):
        bots = Path(sys.executable).with_name("bots")
        cmd = [str(bots), "train", "-m", f"experiment={args.experiment}",
               f"hydra.sweep.dir={out}"]
        if args.selectors:
            cmd.append(f"selector={','.join(args.selectors)}")
        if args.seeds:
            cmd.append(f"seed={','.join(str(s) for s in args.seeds)}")
        if args.steps:
            cmd.append(f"train.steps={args.steps}")
        cmd += args.overrides
        print("$ bots " + " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
    minutes = (time.perf_counter() - started) / 60

    runs = find_runs([str(out)], args.metric, "rollouts" if "rollouts" in args.axes else "steps")
    groups = group_runs(runs)
    baseline = pick_baseline(groups, "uniform")
    seeds = sorted({r.seed for r in runs})
    print(f"\n{len(runs)} runs in {out}, seeds {seeds}; {minutes:.1f} min of training here. "
          "Mean ± std over seeds; ≈: within seed noise (paired t-test at 95%).")
    results = {}
    for x in args.axes:
        summary = compare(groups, baseline, x)
        print("\n".join(table(summary, groups, x)))
        results[x] = summary
    (out / "benchmark.json").write_text(json.dumps(json_safe(results), default=str, indent=1))


if __name__ == "__main__":
    main()
