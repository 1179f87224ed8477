"""How well each selector predicts the tasks it picks, in the simulator's worlds: the success
probability a selector states at selection against the rate its rollouts then show, beside two
naive predictors (issue 22, item 3).

For every pick (a task selected at step t) the script records, before the rollouts:
    own            the selector's prediction, where it has one:
                   bots, mopps, implicit_only   the posterior mean α/(α+β) (`posterior_means`)
                   dps            π[solved] + ½·π[partial] of its belief about the next step: a
                                  solved group is rate 1, an unsolved one 0, a partial one is
                                  taken at the midpoint ½ (the three-state belief says no more;
                                  computed here from the selector's public `belief`)
                   learnability   its recent pass rate p_k (`rate`; p0 = 0.5 when never seen)
                   the others (uniform, offline_band, easy2hard, greso, speed, adarft) state no
                   success probability of a task: no `own` prediction
    previous       the task's observed rate at its previous pick in this run (re-selected only)
    interpolation  p̃_k of the reference interpolation alone (implicit.py, γ = 0.9), fed the same
                   batches as the selector (defined from step 2)
    oracle         the learner's true success probability at selection (the floor: even it
                   misses the observed rate of 8 rollouts by their binomial noise)
and after them the observed rate r = s/n. MAE = mean |prediction − r| (the issue's score); MSE =
mean (prediction − r)², beside it because a posterior mean is the Bayes estimate under squared
loss, not absolute loss (which the median minimises); calibration: the OLS
line r ≈ a + b·prediction (b > 1: under-confident, predictions pulled towards the middle; b < 1:
over-confident) and a binned reliability table. Every predictor is scored on the same picks:
the re-selected picks (all four defined) and, where defined, all picks.

Worlds (conf/simulate.yaml's world with one change each, fixed before any run):
    default   the configured world: noisy but informative references
    shuffled  references shuffled across tasks (world.reference_shuffle=1)
    hard      mean task difficulty 3 instead of 1 on the logit scale (the learner starts at
              ability 0): about 70% of the tasks start below a 5% success chance, against 31%

The BOTS grid (fixed before any run): λ ∈ {0.3, 0.1, 0.03, 0.01, 0.003} × ρ ∈ {0, 0.1, 0.3, 1}
× prior ∈ {flat Beta(1, 1), from the strong reference (prior_from=strong, c = 4)}, Thompson
sampling, plus the paper's λ = ρ = 0.1 with greedy selection. m is left at the group size: with
a constant ρ the update reads ρ and m only as the product ρ·m, so the ρ axis is the m axis too.
Each setting's paired per-seed MAE difference to the previous-rate predictor (on that run's
re-selected picks) is marked better / ≈ / worse by the toolkit's noise test
(`bots_cli.analysis.comparison.within_noise`, two-sided paired t at 95%); TTB(100%) against
uniform is printed beside it, so a setting that predicts well is also seen to select well or not.

The loop is `bots_cli.simulate.run.run_one`'s at world.feedback_delay = 0 (select, draw the
rollouts with the same random stream, learn, update), with the recording added between select
and the rollouts.

    python benchmarks/predictions.py [--seeds 5] [--steps 300] [--worlds default hard]

Prints markdown tables; BENCHMARKS.md records a run with its command.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from bots_cli.analysis.comparison import within_noise
from bots_cli.config import compose_selector, config_dir
from bots_cli.metrics import time_to_baseline
from bots_cli.selection import build_selector
from bots_cli.selection.base import Selector
from bots_cli.selection.dps import PARTIAL, SOLVED, DpsSelector
from bots_cli.selection.dynamic import posterior_means
from bots_cli.selection.implicit import InterpolationEvidence
from bots_cli.selection.learnability import LearnabilitySelector
from bots_cli.simulate.run import SimParams
from bots_cli.simulate.world import Learner, World, WorldParams

WORLDS: dict[str, dict[str, Any]] = {
    "default": {},
    "shuffled": {"reference_shuffle": 1.0},
    "hard": {"difficulty_mean": 3.0},
}
# Named selectors: (conf/selector/<name>.yaml, overrides). uniform has no prediction; it is the
# TTB baseline and shows the naive predictors on a stream no prediction steered.
SELECTORS: dict[str, tuple[str, dict[str, Any]]] = {
    "uniform": ("uniform", {}),
    "bots": ("bots", {}),
    "mopps": ("mopps", {}),
    "implicit_only": ("implicit_only", {}),
    "dps": ("dps", {}),
    "learnability": ("learnability", {}),
}
NO_PREDICTION = ["offline_band", "easy2hard", "greso", "speed", "adarft"]
LAMS = [0.3, 0.1, 0.03, 0.01, 0.003]
RHOS = [0.0, 0.1, 0.3, 1.0]
PRIORS = {"flat": {"prior_from": None}, "strong": {"prior_from": "strong"}}


def grid() -> dict[str, dict[str, Any]]:
    """BOTS settings of the grid by label -> overrides of conf/selector/bots.yaml."""
    out = {f"lam={lam} rho={rho} prior={p}": {"lam": lam, "rho": rho, **PRIORS[p]}
           for p in PRIORS for lam in LAMS for rho in RHOS}
    out["lam=0.1 rho=0.1 prior=flat greedy"] = {"lam": 0.1, "rho": 0.1, "mode": "greedy"}
    return out


PREDICTORS = ("own", "previous", "interpolation", "oracle")
BINS = np.linspace(0.0, 1.0, 11)


def stated_prediction(sel: Selector, ids: np.ndarray) -> np.ndarray:
    """The success probability `sel` states for each of `ids` at selection (NaN: none)."""
    if isinstance(sel, DpsSelector):
        return sel.belief[SOLVED, ids] + 0.5 * sel.belief[PARTIAL, ids]
    if isinstance(sel, LearnabilitySelector):
        return sel.rate[ids].copy()
    return posterior_means(sel, ids)


@dataclass
class Run:
    picks: dict[str, np.ndarray]  # predictor or "observed" -> (picks,) values, NaN undefined
    curve: list[tuple[int, float]]  # (step, held-out accuracy)


def run_recorded(world: World, sel: Selector, sim: SimParams, seed: int) -> Run:
    """`run_one`'s loop (no feedback delay, no screening) with each pick's predictions recorded."""
    rng = np.random.default_rng([seed, 0x5EED])  # run_one's stream: the same rollouts
    learner = Learner.start(world)
    plugin = InterpolationEvidence(world.weak, world.strong, gamma=0.9)
    last = np.full(world.params.n_tasks, np.nan)  # observed rate at each task's previous pick
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (*PREDICTORS, "observed")}
    curve = [(0, learner.heldout_accuracy(world))]
    for step in range(1, sim.steps + 1):
        ids = sel.select(sim.batch_size)
        p = learner.success_prob(world, ids)
        cols["own"].append(stated_prediction(sel, ids))
        cols["previous"].append(last[ids])
        cols["interpolation"].append(plugin.estimate()[ids] if plugin.mu is not None
                                     else np.full(len(ids), np.nan))
        cols["oracle"].append(p)
        rewards = (rng.random((len(ids), sim.group_size)) < p[:, None]).astype(np.float64)
        successes = rewards.sum(axis=1)
        trials = np.full(len(ids), float(sim.group_size))
        learner.learn(world, ids, rewards, step)
        sel.update(ids, successes, trials)
        plugin.observe(ids, successes / trials, trials)
        last[ids] = successes / trials
        cols["observed"].append(successes / trials)
        if step % sim.eval_every == 0 or step == sim.steps:
            curve.append((step, learner.heldout_accuracy(world)))
    return Run({k: np.concatenate(v) for k, v in cols.items()}, curve)


def line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(intercept a, slope b) of the OLS line y ≈ a + b·x (NaN when x does not vary)."""
    if x.size < 2 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def scores(run: Run) -> dict[str, float]:
    """Per-run MAE, calibration line and share of picks, on the re-selected picks ("re") and on
    all picks where the predictor is defined ("all")."""
    pk, r = run.picks, run.picks["observed"]
    re = ~np.isnan(pk["previous"]) & ~np.isnan(pk["interpolation"])
    out = {"reselected_share": float(re.mean())}
    for name in PREDICTORS:
        x = pk[name]
        for subset, mask in (("re", re), ("all", ~np.isnan(x))):
            mask = mask & ~np.isnan(x)
            if not mask.any():
                continue
            out[f"{subset}/{name}/mae"] = float(np.abs(x[mask] - r[mask]).mean())
            out[f"{subset}/{name}/mse"] = float(np.square(x[mask] - r[mask]).mean())
            a, b = line(x[mask], r[mask])
            out[f"{subset}/{name}/a"], out[f"{subset}/{name}/b"] = a, b
    return out


def ttb(run: Run, base: Run, steps: int) -> float:
    sa, va = zip(*run.curve, strict=True)
    su, vu = zip(*base.curve, strict=True)
    return time_to_baseline(sa, va, su, vu, steps)


def run_world(world_name: str, configs: dict[str, dict[str, Any]], seeds: int,
              steps: int) -> tuple[dict[str, list[dict[str, float]]], dict[str, list[Run]], float]:
    """Every config on seeds 0..seeds-1 of one world: per-seed scores (TTB against uniform
    included) and the runs; plus the share of tasks out of reach (p < 0.05) at the start."""
    cfg = OmegaConf.load(config_dir() / "simulate.yaml")
    params = WorldParams.from_config(OmegaConf.merge(cfg.world, WORLDS[world_name]))
    sim = SimParams.from_config({**cfg.simulate, "steps": steps, "plot": False}, params)
    per: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    runs: dict[str, list[Run]] = {name: [] for name in configs}
    reach = []
    for seed in range(seeds):
        world = World.generate(params, seed)
        start = Learner.start(world).success_prob(world, np.arange(params.n_tasks))
        reach.append(float((start < 0.05).mean()))
        for name, sel_cfg in configs.items():
            sel = build_selector(sel_cfg, n_tasks=params.n_tasks, weak=world.weak,
                                 strong=world.strong, seed=seed, group_size=sim.group_size,
                                 columns=world.columns)
            runs[name].append(run_recorded(world, sel, sim, seed))
    for name in configs:
        for s, run in enumerate(runs[name]):
            per[name].append({**scores(run), "ttb": ttb(run, runs["uniform"][s], steps)})
    return per, runs, float(np.mean(reach))


def ms(values: list[float], digits: int = 3) -> str:
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    if not a.size:
        return "-"
    return f"{a.mean():.{digits}f} ± {a.std():.{digits}f}"


def fmt_ttb(values: list[float]) -> str:
    a = np.asarray(values, dtype=np.float64)
    never = int(np.isinf(a).sum())
    fin = a[np.isfinite(a)]
    text = f"{fin.mean():.2f} ± {fin.std():.2f}" if fin.size else "-"
    return text + (f" (never {never}/{a.size})" if never else "")


def vs_previous(per: list[dict[str, float]], score: str = "mae") -> tuple[list[float], str]:
    """Per-seed own − previous of `score` (mae, mse) on the re-selected picks and its mark."""
    d = [p.get(f"re/own/{score}", np.nan) - p.get(f"re/previous/{score}", np.nan) for p in per]
    same = within_noise(d, 0.0)
    if same is None:
        return d, "n/a"
    return d, "≈" if same else ("better" if np.nanmean(d) < 0 else "worse")


def col(per: list[dict[str, float]], key: str) -> list[float]:
    return [p.get(key, np.nan) for p in per]


def print_selectors(per: dict[str, list[dict[str, float]]]) -> None:
    print("\nRe-selected picks (every predictor defined; each selector's own picks). MAE and the "
          "calibration slope b of r ≈ a + b·prediction, mean ± sd over seeds.\n")
    print("| selector | re-selected share | MAE own | MAE previous | MAE interpolation | "
          "MAE oracle | own − previous | MSE own | MSE previous | MSE interpolation | "
          "MSE oracle | b own | b previous | b interpolation |")
    print("| --- |" + " ---: |" * 13)
    for name in SELECTORS:
        p = per[name]
        d, mark = vs_previous(p)
        diff = "-" if name == "uniform" else f"{ms(d)} {mark}"
        print(f"| {name} | {ms(col(p, 'reselected_share'), 2)} | {ms(col(p, 're/own/mae'))} | "
              f"{ms(col(p, 're/previous/mae'))} | {ms(col(p, 're/interpolation/mae'))} | "
              f"{ms(col(p, 're/oracle/mae'))} | {diff} | {ms(col(p, 're/own/mse'))} | "
              f"{ms(col(p, 're/previous/mse'))} | {ms(col(p, 're/interpolation/mse'))} | "
              f"{ms(col(p, 're/oracle/mse'))} | {ms(col(p, 're/own/b'), 2)} | "
              f"{ms(col(p, 're/previous/b'), 2)} | {ms(col(p, 're/interpolation/b'), 2)} |")
    print("\nAll picks where the predictor is defined (own: every pick; interpolation: from "
          "step 2).\n")
    print("| selector | MAE own | MAE interpolation | MAE oracle | a own | b own | "
          "b interpolation | TTB(100%) vs uniform |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in SELECTORS:
        p = per[name]
        print(f"| {name} | {ms(col(p, 'all/own/mae'))} | {ms(col(p, 'all/interpolation/mae'))} | "
              f"{ms(col(p, 'all/oracle/mae'))} | {ms(col(p, 'all/own/a'), 2)} | "
              f"{ms(col(p, 'all/own/b'), 2)} | {ms(col(p, 'all/interpolation/b'), 2)} | "
              f"{fmt_ttb(col(p, 'ttb'))} |")


def print_reliability(runs: dict[str, list[Run]]) -> None:
    """Binned reliability, pooled over seeds: mean observed rate of the picks whose prediction
    fell in each tenth, and (below it) the share of picks there."""
    rows = [("bots: own", "bots", "own", True), ("bots: previous", "bots", "previous", True),
            ("bots: interpolation", "bots", "interpolation", True),
            ("bots: oracle", "bots", "oracle", True)]
    rows += [(f"{n}: own", n, "own", False) for n in ("mopps", "implicit_only", "dps",
                                                      "learnability")]
    print("\nReliability (re-selected picks, pooled over seeds): mean observed rate per bin of "
          "the prediction, share of the picks in brackets.\n")
    head = " | ".join(f"{lo:.1f}-{lo + 0.1:.1f}" for lo in BINS[:-1])
    print(f"| predictor | {head} |")
    print("| --- |" + " ---: |" * (len(BINS) - 1))
    for label, name, pred, _ in rows:
        x = np.concatenate([r.picks[pred] for r in runs[name]])
        y = np.concatenate([r.picks["observed"] for r in runs[name]])
        re = np.concatenate([~np.isnan(r.picks["previous"]) & ~np.isnan(r.picks["interpolation"])
                             for r in runs[name]])
        x, y = x[re], y[re]
        b = np.clip(np.digitize(x, BINS) - 1, 0, len(BINS) - 2)
        cells = []
        for i in range(len(BINS) - 1):
            hit = b == i
            cells.append(f"{y[hit].mean():.2f} ({hit.mean():.0%})" if hit.any() else "-")
        print(f"| {label} | " + " | ".join(cells) + " |")


def print_grid(per: dict[str, list[dict[str, float]]], labels: dict[str, dict[str, Any]]) -> None:
    print("\nBOTS grid (Thompson unless marked): MAE on re-selected picks against the previous "
          "rate's on the same picks; own − previous paired by seed (better / ≈ / worse: the "
          "noise test); b own the calibration slope; TTB(100%) against uniform.\n")
    print("| λ | ρ | prior | re-selected share | MAE own | MAE previous | own − previous | "
          "MSE own | MSE previous | own − previous (MSE) | b own | MAE own, all picks | "
          "TTB(100%) |")
    print("| ---: | ---: | --- |" + " ---: |" * 10)
    for label, o in labels.items():
        p = per[label]
        d, mark = vs_previous(p)
        d2, mark2 = vs_previous(p, "mse")
        prior = (o.get("prior_from") or "flat") + (" greedy" if o.get("mode") else "")
        print(f"| {o['lam']} | {o['rho']} | {prior} | {ms(col(p, 'reselected_share'), 2)} | "
              f"{ms(col(p, 're/own/mae'))} | {ms(col(p, 're/previous/mae'))} | {ms(d)} {mark} | "
              f"{ms(col(p, 're/own/mse'))} | {ms(col(p, 're/previous/mse'))} | {ms(d2)} {mark2} | "
              f"{ms(col(p, 're/own/b'), 2)} | {ms(col(p, 'all/own/mae'))} | "
              f"{fmt_ttb(col(p, 'ttb'))} |")


def print_summary(results: dict[str, dict[str, list[dict[str, float]]]],
                  labels: dict[str, dict[str, Any]]) -> None:
    """Every grid setting in every world: own − previous (MAE, MSE; re-selected picks) with its
    mark, and TTB(100%); then the settings no worse (better or ≈) than the previous rate in
    every world, by each score."""
    worlds = list(results)
    print("\nThe grid across worlds: own − previous on the re-selected picks, by MAE and by MSE "
          "(mean ± sd over seeds, marked by the paired noise test), and TTB(100%) against "
          "uniform.\n")
    print("| setting | " + " | ".join(f"{w}: ΔMAE | {w}: ΔMSE | {w}: TTB" for w in worlds)
          + " |")
    print("| --- |" + " ---: | ---: | ---: |" * len(worlds))
    for label in labels:
        cells = []
        for w in worlds:
            per = results[w][label]
            (d1, m1), (d2, m2) = vs_previous(per), vs_previous(per, "mse")
            cells.append(f"{ms(d1)} {m1} | {ms(d2)} {m2} | {fmt_ttb(col(per, 'ttb'))}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    for score in ("mae", "mse"):
        ok = [label for label in labels
              if all(vs_previous(results[w][label], score)[1] in ("better", "≈") for w in worlds)]
        print(f"\nNo worse than the previous rate by {score.upper()} in every world "
              f"({', '.join(worlds)}): {', '.join(ok) if ok else 'none'}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    args = parser.parse_args()
    started = time.perf_counter()
    labels = grid()
    configs = {name: compose_selector(conf, over) for name, (conf, over) in SELECTORS.items()}
    # compose_selector's merge of overrides onto the composed file, without composing it again
    configs.update({label: {**configs["bots"], **o} for label, o in labels.items()})
    print(f"No success probability stated (not measured): {', '.join(NO_PREDICTION)}.")
    results = {}
    for world in args.worlds:
        per, runs, reach = run_world(world, configs, args.seeds, args.steps)
        results[world] = per
        print(f"\n### world `{world}` ({args.seeds} seeds, {args.steps} steps; {reach:.0%} of "
              "the tasks start below a 5% success chance)")
        print_selectors(per)
        print_reliability(runs)
        print_grid(per, labels)
    print_summary(results, labels)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
