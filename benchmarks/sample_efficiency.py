"""Sample efficiency of selectors in the tiny world: real GRPO runs, compared as the paper does.

Runs conf/experiment/sample_efficiency.yaml as one Hydra multirun (`bots train -m
experiment=sample_efficiency`: every selector and seed with the same budget and pool), then
compares the runs with `bots report`'s functions against uniform: TTB(100%), BSF(100%), ETR and
zero-variance share, mean ± std over seeds, and the per-seed TTB values.

    python benchmarks/sample_efficiency.py [--selectors bots uniform] [--seeds 0 1]
        [--steps 200] [--out outputs/bench/sample_efficiency]
        [-- extra overrides for every run, e.g. train.max_tasks=400 train.lr=5e-5]

--selectors, --seeds and --steps replace the experiment file's values when given. Needs the tiny
references' profiles (shipped in data/profiles/arith). When --out already holds runs, they are
only compared again (delete the directory to train afresh).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from bots_cli.comparison import format_metric
from bots_cli.report import compare, find_runs, group_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--selectors", nargs="+", help="default: the experiment file's")
    parser.add_argument("--seeds", nargs="+", type=int, help="default: the experiment file's")
    parser.add_argument("--steps", type=int, help="default: the experiment file's")
    parser.add_argument("--out", default="outputs/bench/sample_efficiency")
    parser.add_argument("--metric", default="eval/accuracy")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = parser.parse_args()

    out = Path(args.out)
    started = time.perf_counter()
    if not list(out.rglob("summary.json")):
        bots = Path(sys.executable).with_name("bots")
        cmd = [str(bots), "train", "-m", "experiment=sample_efficiency", f"hydra.sweep.dir={out}"]
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

    runs = find_runs([str(out)], args.metric)
    summary = compare(group_runs(runs), "uniform")
    seeds = sorted({r.seed for r in runs})
    print(f"\n{len(runs)} runs in {out}, seeds {seeds}; {minutes:.1f} min of training here. "
          "Baseline: uniform. Mean ± std over seeds.\n")
    print("| selector | final acc | best acc | TTB(100%) | TTB per seed | BSF(100%) | ETR | "
          "zero-var |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for label, g in summary["groups"].items():
        per_seed = ", ".join("never" if math.isinf(v) else "n/a" if math.isnan(v) else f"{v:.2f}"
                             for v in g["ttb_100"]["values"])
        print(f"| {label} | {format_metric(g['final_accuracy'], 3)} | "
              f"{format_metric(g['best_accuracy'], 3)} | {format_metric(g['ttb_100'])} | "
              f"{per_seed} | {format_metric(g['bsf_100'])} | {format_metric(g['etr'])} | "
              f"{format_metric(g['zero_variance_share'])} |")
    (out / "benchmark.json").write_text(json.dumps(
        {k: {m: v for m, v in g.items() if isinstance(v, dict)}
         for k, g in summary["groups"].items()}, default=str, indent=1))


if __name__ == "__main__":
    main()
