"""The selection core's extensions (DESIGN.md §1.5) against the paper's fixed-ρ BOTS, in the
simulator's worlds: which ρ schedule, λ schedule and implicit plug-in helps where.

Worlds (conf/simulate.yaml's world with one change each):
    good      the default: noisy but informative references
    bad       references shuffled across tasks (world.reference_shuffle=1)
    none      no reference model at all (world.references=false)
    drift     the learner's learning rate triples at step 100 (world.drift_step=100, drift_factor=3)

Every variant runs on the same seeds of every world it applies to (a variant that needs
references is skipped where there are none) and is compared, seed by seed, with uniform on the
same world: TTB(100%) and BSF(100%), mean ± std over seeds. A difference between two variants
counts as one only when the toolkit's noise test (`bots_cli.analysis.comparison.within_noise`, as in
`bots report` and `bots simulate`) finds it: a two-sided paired t-test at 95% on the per-seed
TTB differences, |mean| > t_{0.975, n-1} · sd / √n (a run that never reaches uniform's best
counts as TTB 2). Each variant is marked against the world's best variant, its best fixed ρ,
and the paper's BOTS (ρ = 0.1): better, ≈ (within noise) or worse; * is the reference itself;
n/a with fewer than 2 seeds (no spread, nothing to test).

    python benchmarks/selection_extensions.py [--seeds 5] [--steps 300] [--worlds good bad]
        [--variants rho=0.1 calibrated]

Prints one markdown table per world; BENCHMARKS.md records a run with its command.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from bots_cli.analysis.comparison import per_seed_metrics, ranking_mean, within_noise
from bots_cli.config import compose_selector, config_dir
from bots_cli.selection import build_selector
from bots_cli.selection.build import needs_references
from bots_cli.simulate.run import SimParams, run_one
from bots_cli.simulate.world import World, WorldParams

WORLDS: dict[str, dict[str, Any]] = {
    "good": {},
    "bad": {"reference_shuffle": 1.0},
    "none": {"references": False},
    "drift": {"drift_step": 100, "drift_factor": 3.0},
}
# variant -> overrides of conf/selector/bots.yaml (None: the uniform baseline)
VARIANTS: dict[str, dict[str, Any] | None] = {
    "uniform": None,
    "rho=0 (mopps)": {"rho": 0.0},
    "rho=0.1": {"rho": 0.1},
    "rho=0.5": {"rho": 0.5},
    "rho=1": {"rho": 1.0},
    "halving": {"rho": 0.1, "rho_schedule": "halving"},
    "calibrated (rho=0.1)": {"rho": 0.1, "rho_schedule": "calibrated"},
    "calibrated (rho=0.5)": {"rho": 0.5, "rho_schedule": "calibrated"},
    "calibrated (rho=1)": {"rho": 1.0, "rho_schedule": "calibrated"},
    "rho=0.1, lam=0.02": {"rho": 0.1, "lam": 0.02},
    "rho=0.1, lam=0.3": {"rho": 0.1, "lam": 0.3},
    "rho=0.1, adaptive lam": {"rho": 0.1, "lam_schedule": "adaptive"},
    "rho=0, adaptive lam": {"rho": 0.0, "lam_schedule": "adaptive"},
    "groups (level)": {"rho": 0.1, "implicit": {"name": "groups", "column": "level"}},
    "groups (skill)": {"rho": 0.1, "implicit": {"name": "groups", "column": "skill"}},
    "knn (embedding)": {"rho": 0.1, "implicit": {"name": "knn", "column": "embedding"}},
}
BASELINE = "uniform"
PAPER = "rho=0.1"  # the paper's fixed-ρ BOTS
FIXED_RHO = ["rho=0 (mopps)", "rho=0.1", "rho=0.5", "rho=1"]


def run_world(world_name: str, variants: list[str], seeds: int, steps: int) -> dict[str, Any]:
    cfg = OmegaConf.load(config_dir() / "simulate.yaml")
    params = WorldParams.from_config(OmegaConf.merge(cfg.world, WORLDS[world_name]))
    sim = SimParams.from_config({**cfg.simulate, "steps": steps, "plot": False}, params)
    out: dict[str, dict[str, list[float]]] = {}
    curves: dict[str, dict[int, Any]] = {v: {} for v in variants}
    rows_of: dict[str, dict[int, Any]] = {v: {} for v in variants}
    configs = {name: compose_selector("uniform" if VARIANTS[name] is None else "bots",
                                      VARIANTS[name]) for name in variants}
    for seed in range(seeds):
        world = World.generate(params, seed)
        for name in variants:
            if not params.references and needs_references(configs[name]):
                continue
            sel = build_selector(configs[name], n_tasks=params.n_tasks,
                                 weak=world.weak, strong=world.strong, seed=seed,
                                 group_size=sim.group_size, columns=world.columns)
            rows, curve = run_one(world, sel, sim, seed)
            curves[name][seed], rows_of[name][seed] = curve, rows
    for name in variants:
        if not curves[name]:
            continue
        per = [per_seed_metrics(curves[name][s], curves[BASELINE][s], rows_of[name][s], steps)
               for s in sorted(curves[name])]
        out[name] = {k: [m[k] for m in per] for k in ("ttb_100", "bsf_100", "final_accuracy")}
        rho = [r.get("selector/rho") for s in curves[name] for r in rows_of[name][s][-1:]]
        out[name]["final_rho"] = [float(v) for v in rho if v is not None]
    return out


def fmt(values: list[float]) -> str:
    arr = np.asarray(values, dtype=np.float64)
    never = int(np.isinf(arr).sum())
    fin = arr[np.isfinite(arr)]
    text = f"{fin.mean():.2f} ± {fin.std():.2f}" if fin.size else "-"
    return text + (f" (never {never}/{arr.size})" if never else "")


def _mark(a: list[float], b: list[float]) -> str:
    """'better' / 'worse' when the paired TTB difference is beyond noise, '≈' within it, 'n/a'
    when it cannot be told (fewer than 2 seeds)."""
    same = within_noise(a, b)
    if same is None:
        return "n/a"
    if same:
        return "≈"
    return "better" if ranking_mean(a) < ranking_mean(b) else "worse"


def print_world(world: str, results: dict[str, Any], seeds: int, steps: int) -> None:
    def best_of(names: list[str]) -> str | None:
        names = [n for n in names if n in results]
        return min(names, key=lambda n: ranking_mean(results[n]["ttb_100"])) if names else None

    best = best_of([n for n in results if n != BASELINE])
    fixed = best_of(FIXED_RHO)
    print(f"\n### world `{world}` ({seeds} seeds, {steps} steps; TTB lower is better)\n")
    print(f"| variant | TTB(100%) | BSF(100%) | final acc | final ρ | vs best | "
          f"vs best fixed ρ ({fixed}) | vs {PAPER} |")
    print("| --- | ---: | ---: | ---: | ---: | :---: | :---: | :---: |")
    def vs(name: str, other: str | None) -> str:
        if other is None or other not in results or name in (BASELINE, other):
            return "*" if name == other else ""
        return _mark(results[name]["ttb_100"], results[other]["ttb_100"])

    for name, r in results.items():
        rho = f"{np.mean(r['final_rho']):.3f}" if r["final_rho"] else "-"
        print(f"| {name} | {fmt(r['ttb_100'])} | {fmt(r['bsf_100'])} | "
              f"{np.mean(r['final_accuracy']):.3f} | {rho} | {vs(name, best)} | "
              f"{vs(name, fixed)} | {vs(name, PAPER)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = parser.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    variants = list(dict.fromkeys([BASELINE, *args.variants]))
    started = time.perf_counter()
    for world in args.worlds:
        print_world(world, run_world(world, variants, args.seeds, args.steps), args.seeds,
                    args.steps)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
