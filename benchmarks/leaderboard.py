"""The leaderboard: every selector of the project on the simulator's worlds, 5 seeds each, ranked
by TTB and BSF against uniform on training steps and on rollouts, with the toolkit's noise test.

    python benchmarks/leaderboard.py [--seeds 5] [--steps 300] [--worlds good shuffled ...]
        [--out outputs/leaderboard] [--quick]

`make leaderboard` runs the defaults (7 worlds x 10 selectors x 5 seeds x 300 steps); BENCHMARKS.md
records a run with its wall time. `--quick` is the smoke test's size: 2 seeds, 40 steps, on the
worlds given (default: good).

Worlds (conf/simulate.yaml's `world`, one change each, fixed here before any run):
    good          the defaults: noisy but informative references, feedback at once (delay 0)
    shuffled      world.reference_shuffle=1: the (weak, strong) pass rates shuffled across tasks
    none          world.references=false: no reference model at all
    drift         world.drift_step=100, drift_factor=3: the learner's learning rate triples at
                  step 100 (as in benchmarks/selection_extensions.py)
    out-of-reach  world.difficulty_std=6: most of the pool starts at a pass rate near 0 or 1, as
                  in real pools. Why 6: the learner starts at ability 0 with discrimination 1.5,
                  so a task's pass rate is below 0.05 when its difficulty d > 1.96 and above 0.95
                  when d < -1.96; with d ~ N(1, 6) that is 44% + 31% = 75% of the pool (the
                  default N(1, 2): 38%). The script prints the share measured on seed 0's world.
    delay-2       world.feedback_delay=2: a step's outcomes reach the selector 2 batches later
    delay-8       world.feedback_delay=8

Selectors (conf/selector/<name>.yaml at its defaults unless said):
    uniform            the baseline of every ratio
    dynamic sampling   uniform with DAPO's dynamic sampling, max_rounds from conf/train.yaml
                       (train.dynamic_sampling). `bots simulate` has no dynamic-sampling option,
                       so this row runs the project's own rounds (selection/dynamic.py,
                       `sample_rounds`, as the native trainer does) in `run_dynamic` below, on
                       the simulator's World and Learner: every round's groups are drawn from the
                       learner, counted in train/rollouts and fed back to the selector; the
                       learner trains on the step's batch (the first informative groups)
    mopps              BOTS with explicit evidence only (ρ = 0)
    bots               the paper's BOTS (λ = ρ = 0.1)
    bots calibrated    selector=bots_calibrated: ρ0 = 1 with rho_schedule=calibrated, the
                       setting BENCHMARKS.md's extensions study found within noise of the best
                       fixed ρ in every world it measured (chosen as BOTS' variant before this
                       leaderboard ran)
    dps, greso, speed, learnability, adarft   the published rivals (docs/rivals.md); SPEED's
                       screening rollouts count in train/rollouts

Selectors that read reference pass rates (bots, bots calibrated, adarft) cannot run where there
are none: their rows say "n/a (needs references)". Axes: training steps (the paper's) and
rollouts (completions generated, screening and refill rounds included; the rollout budget is
uniform's). The simulator models no completion length, so there is no tokens axis.

Every selector runs on the same seeds of each world (its own copy of the same starting learner)
and is paired seed by seed with uniform on that seed: TTB(100%) and BSF(100%), mean ± sd over
seeds, '≈' where the per-seed ratios do not differ from 1 by `comparison.within_noise` (the
paired two-sided t-test at 95% of `bots report` and `bots simulate`; a "never" counts as 2). The
rank is noise-aware: 1 + the number of selectors whose per-seed TTB is lower beyond noise by the
same test, paired by seed, so selectors that noise cannot tell apart share a rank.

Size: 300 steps of batch 16 x 8 rollouts on the 1,000-task pool, held-out eval every 10 steps,
chosen before running so that the whole leaderboard fits in about 5 minutes on 2 CPU cores (one
process; measured: 133 s of CPU, BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from bots_cli.analysis.comparison import (
    AXES,
    SPREAD_NOTE,
    aggregate,
    curve_on_axis,
    format_metric,
    format_vs_baseline,
    noise_caption,
    per_seed_metrics,
    ranking_mean,
    within_noise,
)
from bots_cli.config import compose_selector, config_dir
from bots_cli.metrics import effective_task_ratio, zero_variance_share
from bots_cli.selection import Selector, build_selector
from bots_cli.selection.build import needs_references
from bots_cli.selection.dynamic import informative, sample_rounds
from bots_cli.simulate.run import SimParams, run_one
from bots_cli.simulate.world import Learner, World, WorldParams

WORLDS: dict[str, dict[str, Any]] = {
    "good": {},
    "shuffled": {"reference_shuffle": 1.0},
    "none": {"references": False},
    "drift": {"drift_step": 100, "drift_factor": 3.0},
    "out-of-reach": {"difficulty_std": 6.0},
    "delay-2": {"feedback_delay": 2},
    "delay-8": {"feedback_delay": 8},
}


@dataclass(frozen=True)
class Entry:
    """A leaderboard row: conf/selector/<conf>.yaml with `overrides`, run with or without
    dynamic sampling."""

    conf: str
    overrides: dict[str, Any]
    dynamic: bool = False


SELECTORS: dict[str, Entry] = {
    "uniform": Entry("uniform", {}),
    "dynamic sampling": Entry("uniform", {}, dynamic=True),
    "mopps": Entry("mopps", {}),
    "bots": Entry("bots", {}),
    "bots calibrated": Entry("bots_calibrated", {}),  # ρ0 = 1, rho_schedule=calibrated
    "dps": Entry("dps", {}),
    "greso": Entry("greso", {}),
    "speed": Entry("speed", {}),
    "learnability": Entry("learnability", {}),
    "adarft": Entry("adarft", {}),
}
BASELINE = "uniform"
AXES_RUN = ("steps", "rollouts")  # train/tokens: the simulator models no completion length
NEAR = 0.05  # "near 0 or 1": a starting pass rate below NEAR or above 1 − NEAR
QUICK: dict[str, Any] = {"worlds": ["good"], "seeds": 2, "steps": 40}  # the smoke test's size

Runs = dict[int, tuple[list[tuple[float, float]], list[dict[str, Any]]]]  # seed -> (curve, rows)


def run_dynamic(world: World, selector: Selector, sim: SimParams, seed: int,
                max_rounds: int) -> tuple[list[dict[str, Any]], list[tuple[float, float]]]:
    """`run_one` with dynamic sampling: each step's rounds by `sample_rounds` (the trainers'
    code), every round's groups drawn from the learner as it is, counted in train/rollouts and
    fed back to the selector (after `feedback_delay` more steps, as `run_one` does); the learner
    trains on the step's batch. Same rollout stream seeding as `run_one`."""
    delay = world.params.feedback_delay
    flight: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (step, ids, s, n)
    rng = np.random.default_rng([seed, 0x5EED])
    learner = Learner.start(world)
    explored = np.zeros(world.params.n_tasks, dtype=bool)
    rollouts = 0
    rows: list[dict[str, Any]] = []
    curve = [(0.0, learner.heldout_accuracy(world))]
    for step in range(1, sim.steps + 1):
        rounds: list[tuple[np.ndarray, np.ndarray]] = []  # (ids, rewards (n, G)) per round
        spent = [0.0, 0.0]  # time selecting, time feeding back

        def sample(n: int, step: int = step, rounds: list[Any] = rounds,
                   spent: list[float] = spent) -> np.ndarray:
            t0 = time.perf_counter()
            ids = selector.select(n)
            spent[0] += time.perf_counter() - t0
            p = learner.success_prob(world, ids)
            rewards = (rng.random((len(ids), sim.group_size)) < p[:, None]).astype(np.float64)
            rounds.append((ids, rewards))
            flight.append((step, ids, rewards.sum(axis=1), np.full(len(ids),
                                                                    float(sim.group_size))))
            t1 = time.perf_counter()
            while flight and flight[0][0] <= step - delay:  # delay 0: this round's, at once
                selector.update(*flight.pop(0)[1:])
            spent[1] += time.perf_counter() - t1
            return informative(list(rewards))

        batch = sample_rounds(sample, sim.batch_size, world.params.n_tasks, max_rounds)
        ids = np.array([rounds[r][0][j] for r, j in batch], dtype=np.int64)
        rewards = np.stack([rounds[r][1][j] for r, j in batch])
        learner.learn(world, ids, rewards, step)
        t1 = time.perf_counter()
        if step == sim.steps:  # the budget is spent: what is still in flight arrives
            for _, *feedback in flight:
                selector.update(*feedback)
            flight.clear()
        spent[1] += time.perf_counter() - t1
        every_ids = np.concatenate([r[0] for r in rounds])
        every = np.concatenate([r[1] for r in rounds])
        rollouts += every.size
        explored[every_ids] = True
        row = {
            "step": step,
            "train/etr": effective_task_ratio(every.sum(axis=1),
                                              np.full(len(every), float(sim.group_size))),
            "train/zero_variance_share": zero_variance_share(rewards),
            "train/rollouts": rollouts,
            "selector/explored_share": float(explored.mean()),
            "time/select": spent[0],
            "time/selector_update": spent[1],
        }
        if step % sim.eval_every == 0 or step == sim.steps:
            acc = learner.heldout_accuracy(world)
            curve.append((float(step), acc))
            row["eval/accuracy"] = acc
        rows.append(row)
    return rows, curve


def run_world(world_name: str, seeds: int, steps: int) -> tuple[dict[str, Runs | None], float]:
    """Every selector on `seeds` worlds of this kind; None for a selector that needs references
    where there are none. Also the share of seed 0's pool starting near 0 or 1."""
    cfg = OmegaConf.load(config_dir() / "simulate.yaml")
    params = WorldParams.from_config(OmegaConf.merge(cfg.world, WORLDS[world_name]))
    sim = SimParams.from_config({**cfg.simulate, "steps": steps, "plot": False}, params)
    train = OmegaConf.load(config_dir() / "train.yaml")
    max_rounds = int(train.train.dynamic_sampling.max_rounds)
    configs = {label: compose_selector(e.conf, e.overrides) for label, e in SELECTORS.items()}
    out: dict[str, Runs | None] = {
        label: None if not params.references and needs_references(c) else {}
        for label, c in configs.items()}
    near = math.nan
    for seed in range(seeds):
        world = World.generate(params, seed)
        if seed == 0:
            p0 = Learner.start(world).success_prob(world, np.arange(params.n_tasks))
            near = float(np.mean((p0 < NEAR) | (p0 > 1 - NEAR)))
        for label, runs in out.items():
            if runs is None:
                continue
            sel = build_selector(configs[label], n_tasks=params.n_tasks, weak=world.weak,
                                 strong=world.strong, seed=seed, group_size=sim.group_size,
                                 columns=world.columns, screening=True)
            if SELECTORS[label].dynamic:
                rows, curve = run_dynamic(world, sel, sim, seed, max_rounds)
            else:
                rows, curve = run_one(world, sel, sim, seed)
            runs[seed] = ([(float(x), y) for x, y in curve], rows)
    return out, near


def score(runs: dict[str, Runs | None], steps: int, x: str) -> dict[str, dict[str, Any] | None]:
    """Per selector on axis `x`: per-seed metrics against uniform's same seed, aggregated."""
    base = runs[BASELINE]
    assert base is not None
    if x == "steps":
        budget = float(steps)
    else:  # a cost axis: what uniform spent (mean over its seeds), as `bots report` does
        budget = float(np.mean([rows[-1][f"train/{x}"] for _, rows in base.values()]))
    out: dict[str, dict[str, Any] | None] = {}
    for label, by_seed in runs.items():
        if by_seed is None:
            out[label] = None
            continue
        per = {seed: per_seed_metrics(curve_on_axis(curve, rows, x),
                                      curve_on_axis(*base[seed], x), rows, budget)
               for seed, (curve, rows) in by_seed.items()}
        seeds = sorted(per)
        metrics: dict[str, Any] = {key: aggregate([per[s][key] for s in seeds])
                                   for key in per[seeds[0]]}
        metrics["rollouts_per_step"] = float(np.mean(
            [rows[-1]["train/rollouts"] / rows[-1]["step"] for _, rows in by_seed.values()]))
        out[label] = metrics
    return out


def noise_ranks(scored: dict[str, dict[str, Any] | None]) -> dict[str, int]:
    """1 + the number of selectors with a lower TTB(100%) beyond noise (paired by seed through
    `within_noise`); selectors that noise cannot tell apart share a rank."""
    ttb = {label: m["ttb_100"]["values"] for label, m in scored.items() if m is not None}
    ranks = {}
    for label, mine in ttb.items():
        ahead = [other for other, theirs in ttb.items() if other != label
                 and ranking_mean(theirs) < ranking_mean(mine)
                 and within_noise(mine, theirs) is False]
        ranks[label] = 1 + len(ahead)
    return ranks


def vs_uniform(agg: dict[str, Any]) -> str:
    """'better' / '≈' / 'worse' than uniform on TTB(100%), by the noise test against 1."""
    same = within_noise(agg["values"], 1.0)
    if same is None:
        return "?"
    return "≈" if same else "better" if ranking_mean(agg["values"]) < 1.0 else "worse"


def print_world(name: str, near: float, by_axis: dict[str, dict[str, Any]], seeds: int,
                steps: int) -> None:
    steps_scores, cost_scores = by_axis["steps"], by_axis["rollouts"]
    ranks = {x: noise_ranks(by_axis[x]) for x in AXES_RUN}
    order = sorted(steps_scores, key=lambda label: (
        math.inf if steps_scores[label] is None else ranks["steps"][label],
        math.inf if steps_scores[label] is None
        else ranking_mean(steps_scores[label]["ttb_100"]["values"])))
    changes = ", ".join(f"{k}={v}" for k, v in WORLDS[name].items()) or "the defaults"
    print(f"\n#### World `{name}` ({changes}; {seeds} seeds, {steps} steps; "
          f"{near:.0%} of seed 0's pool starts below {NEAR} or above {1 - NEAR})\n")
    print("| rank (steps) | selector | TTB(100%) steps | BSF(100%) steps | rank (rollouts) | "
          "TTB(100%) rollouts | BSF(100%) rollouts | final acc | rollouts / step |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label in order:
        m, c = steps_scores[label], cost_scores[label]
        if m is None or c is None:
            print(f"| - | {label} | n/a (needs references) | | | | | | |")
            continue

        def ratio(agg: dict[str, Any], label: str = label) -> str:
            return format_metric(agg) if label == BASELINE else format_vs_baseline(agg)

        print(f"| {ranks['steps'][label]} | {label} | {ratio(m['ttb_100'])} | "
              f"{ratio(m['bsf_100'])} | {ranks['rollouts'][label]} | {ratio(c['ttb_100'])} | "
              f"{ratio(c['bsf_100'])} | {format_metric(m['final_accuracy'], 3)} | "
              f"{m['rollouts_per_step']:.0f} |")
    for x in AXES_RUN:
        better = [label for label in order if by_axis[x][label] is not None
                  and label != BASELINE and vs_uniform(by_axis[x][label]["ttb_100"]) == "better"]
        print(f"\nBeyond noise faster than uniform on {x}: "
              f"{', '.join(better) if better else 'none'}.", end="")
    print()


def print_overall(results: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Mean noise-aware rank over the worlds a selector runs in, and its count of worlds better
    than / within noise of / worse than uniform on TTB(100%), per axis."""
    worlds = list(results)
    ranks = {x: {w: noise_ranks(results[w][x]) for w in worlds} for x in AXES_RUN}
    print("\n#### Overall (noise-aware rank per world, then its mean over the worlds the "
          "selector runs in)\n")
    print("| selector | worlds | mean rank (steps) | ranked 1 (steps) | vs uniform on steps "
          "(better / ≈ / worse) | mean rank (rollouts) | ranked 1 (rollouts) | vs uniform on "
          "rollouts (better / ≈ / worse) |")
    print("| --- | ---: | ---: | ---: | :---: | ---: | ---: | :---: |")
    rows = []
    for label in SELECTORS:
        ran = [w for w in worlds if results[w]["steps"][label] is not None]
        cells = []
        for x in AXES_RUN:
            r = [ranks[x][w][label] for w in ran]
            marks = [vs_uniform(results[w][x][label]["ttb_100"]) for w in ran]
            tally = ("-" if label == BASELINE else
                     f"{marks.count('better')} / {marks.count('≈')} / {marks.count('worse')}")
            cells.append((float(np.mean(r)) if r else math.inf, sum(v == 1 for v in r), tally))
        rows.append((cells[0][0], label, len(ran), cells))
    for _, label, n, cells in sorted(rows, key=lambda row: (row[0], row[1])):
        (rs, ones, ts), (rc, onec, tc) = cells
        print(f"| {label} | {n} | {rs:.1f} | {ones} | {ts} | {rc:.1f} | {onec} | {tc} |")


def print_rank_matrix(results: dict[str, dict[str, dict[str, Any]]]) -> None:
    """The plot as a table: each selector's noise-aware rank in each world, steps / rollouts."""
    worlds = list(results)
    ranks = {x: {w: noise_ranks(results[w][x]) for w in worlds} for x in AXES_RUN}
    print("\n#### Rank by world (steps / rollouts; 1 best, ties share a rank; - needs "
          "references)\n")
    print("| selector | " + " | ".join(f"`{w}`" for w in worlds) + " |")
    print("| --- | " + " | ".join(":---:" for _ in worlds) + " |")
    for label in SELECTORS:
        cells = [" / ".join(str(ranks[x][w][label]) for x in AXES_RUN)
                 if label in ranks["steps"][w] else "-" for w in worlds]
        print(f"| {label} | " + " | ".join(cells) + " |")


def plot_ranks(results: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """Noise-aware rank by world, one line per selector, one panel per axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = list(results)
    fig, axes = plt.subplots(1, len(AXES_RUN), figsize=(13, 5), dpi=120, sharey=True)
    for ax, x in zip(axes, AXES_RUN, strict=True):
        ranks = {w: noise_ranks(results[w][x]) for w in worlds}
        for i, label in enumerate(SELECTORS):
            ys = [ranks[w].get(label, math.nan) for w in worlds]
            jitter = (i - len(SELECTORS) / 2) * 0.03  # shared ranks stay readable
            ax.plot(np.arange(len(worlds)), np.asarray(ys, dtype=float) + jitter,
                    marker="o", label=label, linewidth=1.4,
                    linestyle="--" if label == BASELINE else "-")
        ax.set_xticks(np.arange(len(worlds)), worlds, rotation=30)
        ax.set_title(f"TTB(100%) on {x}")
        ax.set_xlabel("world")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("noise-aware rank (1 best; ties share a rank)")
    axes[0].invert_yaxis()
    axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle("Leaderboard: rank by world (a missing point: the selector needs references)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--worlds", nargs="+", choices=list(WORLDS),
                        help="default: every world (--quick: good)")
    parser.add_argument("--out", type=Path, default=Path("outputs/leaderboard"),
                        help="folder for rank_by_world.png")
    parser.add_argument("--quick", action="store_true",
                        help=f"the smoke test's size: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.steps = QUICK["seeds"], QUICK["steps"]
    args.worlds = args.worlds or (QUICK["worlds"] if args.quick else list(WORLDS))
    if args.seeds < 2:
        parser.error("--seeds must be ≥ 2: the noise test needs a spread")
    started = time.perf_counter()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in args.worlds:
        runs, near = run_world(name, args.seeds, args.steps)
        results[name] = {x: score(runs, args.steps, x) for x in AXES_RUN}
        print_world(name, near, results[name], args.seeds, args.steps)
    print_overall(results)
    print_rank_matrix(results)
    print(f"\nTTB(100%) and BSF(100%) against {BASELINE} (seed by seed), mean ± sd over seeds; "
          f"on rollouts the budget is {BASELINE}'s ({AXES['rollouts']}). {noise_caption(BASELINE)} "
          f"{SPREAD_NOTE} Rank: 1 + the selectors with a lower TTB(100%) beyond noise on that "
          "axis. No tokens axis: the simulator models no completion length.")
    path = args.out / "rank_by_world.png"
    plot_ranks(results, path)
    print(f"\nplot: {path}\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
