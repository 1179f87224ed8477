"""The native loop against TRL's GRPOTrainer on the same work: step time and held-out curves.

Runs `bots train -m trainer=native,trl` as one Hydra multirun (the same selector, pool, batch,
group, steps and seed for both), then prints, per trainer, the median time of a step and of each
phase (from metrics.jsonl), the native/TRL ratio of the medians, and the held-out comparison that
`bots report` makes with the native run as the baseline.

    python benchmarks/trainers.py [--steps 100] [--selector bots] [--seed 0]
        [--out outputs/bench/trainers] [-- extra overrides for both runs]

Needs the tiny world (built on first use) and its references' profiles (shipped). When --out
already holds both runs they are only compared again (delete the directory to train afresh).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bots_cli.analysis.comparison import format_metric
from bots_cli.analysis.report import compare, find_runs, group_runs

PHASES = ("select", "rollout", "reward", "update", "selector_update")


def medians(run: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "time/step" in r]
    return {k: statistics.median(r.get(f"time/{k}", 0.0) for r in steps)
            for k in ("step", *PHASES)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--selector", default="bots")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/bench/trainers")
    parser.add_argument("overrides", nargs="*", help="extra overrides for both runs")
    args = parser.parse_args()

    out = Path(args.out)
    started = time.perf_counter()
    cmd = ["train", "-m", "trainer=native,trl", f"selector={args.selector}",
           f"seed={args.seed}", f"train.steps={args.steps}", "train.live=false",
           "train.log_every=1000", f"hydra.sweep.dir={out}", *args.overrides]
    print("$ bots " + " ".join(cmd), flush=True)
    if len(list(out.rglob("summary.json"))) < 2:
        subprocess.run([str(Path(sys.executable).with_name("bots")), *cmd], check=True)
    minutes = (time.perf_counter() - started) / 60

    runs = find_runs([str(out)], "eval/accuracy")
    by_trainer = {json.loads((r.path / "config.yaml").with_name("summary.json").read_text())
                  .get("trainer", "native"): r for r in runs}
    times = {name: medians(run.path) for name, run in by_trainer.items()}
    print(f"\n{args.steps} steps of {args.selector}, seed {args.seed}, one process on this "
          f"machine; {minutes:.1f} min in all. Median seconds per step and per phase:\n")
    print("| trainer | step | " + " | ".join(PHASES) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in PHASES) + " |")
    for name, t in times.items():
        print(f"| {name} | {t['step']:.4f} | " + " | ".join(f"{t[p]:.4f}" for p in PHASES) + " |")
    if {"native", "trl"} <= set(times):
        ratio = times["native"]["step"] / times["trl"]["step"]
        print(f"\nnative / TRL median step time: {ratio:.2f}x (goal: at most 0.8x)")

    groups = group_runs(runs)
    baseline = next((label for label in groups if label.endswith("trainer.name=native")), None)
    summary = compare(groups, baseline)
    print(f"\nHeld-out accuracy (eval/accuracy), baseline: {baseline}\n")
    print("| run | first acc | final acc | best acc | TTB(100%) | BSF(100%) | ETR | zero-var |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, g in summary["groups"].items():
        run = next(r for r in runs if str(r.path) in g["runs"])
        print(f"| {label} | {run.curve[0][1]:.3f} | {format_metric(g['final_accuracy'], 3)} | "
              f"{format_metric(g['best_accuracy'], 3)} | {format_metric(g['ttb_100'])} | "
              f"{format_metric(g['bsf_100'])} | {format_metric(g['etr'])} | "
              f"{format_metric(g['zero_variance_share'])} |")
    print(f"\nCurves side by side: bots report {out} "
          f"\"report.baseline='{baseline}'\" (accuracy.png)")


if __name__ == "__main__":
    main()
