"""Selector overhead: median time of one BOTS step (select + update) against its floor.

The floor of exact Thompson sampling is drawing one Beta sample per task; everything else BOTS
does per step (the distance to the target, the top-k, the implicit estimates, the posterior
update) should add little to it. Next to both, a straightforward numpy implementation of the same
step (full sort, temporaries, np.where) shows what the vectorised in-place code saves.

    python benchmarks/selector_overhead.py [--sizes 10000 100000 1000000 10000000] [--batch 256]
        [--plugin-sizes 100000 1000000] [--k 10] [--rival-sizes 100000 1000000]

Prints three markdown tables (milliseconds, median over repeats): the step against its floor,
one BOTS step (ρ = 0.1) with each implicit plug-in (DESIGN.md §1.5.3): the interpolation of
two references, task groups (10 groups), and a k-NN graph (k neighbours per task), and one step
of each published rival (docs/rivals.md, their conf/selector/ defaults) against the same floor.
The knn plug-in's cost per step is O(N·k); its graph is built once before training and is not
timed here (this benchmark draws a random graph of the same shape). SPEED's step is its
selector's share of the screening rounds (select, screen, release) and the update; the
screening rollouts are drawn at random, a small part of the time at these sizes.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np

from bots_cli.config import compose_selector
from bots_cli.selection import BotsSelector, ScreeningSelector, build_selector, screen_rounds
from bots_cli.selection.pooled import GroupEvidence, NeighbourEvidence

LAM, RHO, M, GAMMA, TARGET = 0.1, 0.1, 16, 0.9, 0.5


def naive_step(state: dict, k: int, rng: np.random.Generator, outcome: Callable) -> None:
    """The same BOTS step written the obvious way (reference for the speed-up, not for use)."""
    alpha, beta, weak, strong = state["alpha"], state["beta"], state["weak"], state["strong"]
    p_hat = rng.beta(alpha, beta)
    ids = np.argsort(np.abs(p_hat - TARGET))[:k]
    succ, trials = outcome(ids)
    rate = succ / trials
    mu = (rate.mean() - weak[ids].mean()) / (strong[ids].mean() - weak[ids].mean() + 1e-6)
    state["mu"] = mu if state["mu"] is None else GAMMA * state["mu"] + (1 - GAMMA) * mu
    p_tilde = np.clip(state["mu"] * strong + (1 - state["mu"]) * weak, 0, 1)
    selected = np.zeros(alpha.shape[0], dtype=bool)
    selected[ids] = True
    obs_s, obs_n = np.zeros(alpha.shape[0]), np.zeros(alpha.shape[0])
    obs_s[ids], obs_n[ids] = succ, trials
    state["alpha"] = (1 - LAM) * alpha + LAM + np.where(selected, obs_s, RHO * M * p_tilde)
    state["beta"] = (1 - LAM) * beta + LAM + np.where(selected, obs_n - obs_s,
                                                       RHO * M * (1 - p_tilde))


def bench(n: int, batch: int, repeats: int, warmup: int = 10) -> dict[str, float]:
    """Median ms of the floor, the BOTS step and the naive step, timed back to back each repeat.

    The floor is timed on the posterior the BOTS step is about to sample from: numpy's Beta
    sampler is faster or slower depending on the parameters (a, b ≤ 1 take another algorithm),
    so both must see the same values. Warm-up steps move the posterior off the flat prior.
    """
    rng = np.random.default_rng(0)
    weak = rng.uniform(0.0, 0.7, n)
    strong = np.clip(weak + rng.uniform(0.0, 0.4, n), 0.0, 1.0)
    truth = np.clip(weak + 0.3 * (strong - weak), 0.0, 1.0)

    def outcome(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return rng.binomial(16, truth[ids]).astype(np.float64), np.full(len(ids), 16.0)

    sel = BotsSelector(n, weak=weak, strong=strong, lam=LAM, rho=RHO, m=M, gamma=GAMMA, seed=0)
    naive = {"alpha": np.ones(n), "beta": np.ones(n), "weak": weak, "strong": strong, "mu": None}
    times: dict[str, list[float]] = {"floor": [], "bots": [], "naive": []}
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        rng.beta(sel.alpha, sel.beta)
        t1 = time.perf_counter()
        ids = sel.select(batch)
        sel.update(ids, *outcome(ids))
        t2 = time.perf_counter()
        naive_step(naive, batch, rng, outcome)
        t3 = time.perf_counter()
        if i >= warmup:
            times["floor"].append(t1 - t0)
            times["bots"].append(t2 - t1)
            times["naive"].append(t3 - t2)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


def bench_plugins(n: int, batch: int, k: int, repeats: int, warmup: int = 5) -> dict[str, float]:
    """Median ms of one BOTS select+update with each implicit plug-in, on the same outcomes."""
    rng = np.random.default_rng(0)
    weak = rng.uniform(0.0, 0.7, n)
    strong = np.clip(weak + rng.uniform(0.0, 0.4, n), 0.0, 1.0)
    truth = np.clip(weak + 0.3 * (strong - weak), 0.0, 1.0)
    plugins = {
        "interpolation": None,
        "groups": GroupEvidence(rng.integers(0, 10, n)),
        "knn": NeighbourEvidence(rng.integers(0, n, (n, k)), rng.uniform(0, 1, (n, k))),
    }
    out = {}
    for name, plugin in plugins.items():
        sel = BotsSelector(n, weak=weak, strong=strong, lam=LAM, rho=RHO, m=M, seed=0,
                           implicit=plugin)
        times = []
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            ids = sel.select(batch)
            sel.update(ids, rng.binomial(16, truth[ids]).astype(np.float64),
                       np.full(batch, 16.0))
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        out[name] = 1e3 * float(np.median(times))
    return out


RIVALS = ("dps", "greso", "speed", "learnability", "adarft")


def bench_rivals(n: int, batch: int, repeats: int, warmup: int = 5) -> dict[str, float]:
    """Median ms of the Beta floor and of one select+update of each rival, back to back."""
    rng = np.random.default_rng(0)
    weak = rng.uniform(0.0, 0.7, n)
    strong = np.clip(weak + rng.uniform(0.0, 0.4, n), 0.0, 1.0)
    truth = np.clip(weak + 0.3 * (strong - weak), 0.0, 1.0)

    def outcome(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return rng.binomial(16, truth[ids]).astype(np.float64), np.full(len(ids), 16.0)

    def rollout(ids: np.ndarray, k: int) -> np.ndarray:
        return (rng.random((len(ids), k)) < truth[ids, None]).astype(np.float64)

    bots = BotsSelector(n, weak=weak, strong=strong, lam=LAM, rho=RHO, m=M, gamma=GAMMA, seed=0)
    rivals = {name: build_selector(compose_selector(name), n_tasks=n, weak=weak, strong=strong,
                                   seed=0, group_size=16, screening=True) for name in RIVALS}
    times: dict[str, list[float]] = {"floor": [], **{name: [] for name in RIVALS}}
    for i in range(warmup + repeats):
        ids = bots.select(batch)  # moves the floor's posterior off the flat prior
        bots.update(ids, *outcome(ids))
        t0 = time.perf_counter()
        rng.beta(bots.alpha, bots.beta)
        if i >= warmup:
            times["floor"].append(time.perf_counter() - t0)
        for name, sel in rivals.items():
            t0 = time.perf_counter()
            if isinstance(sel, ScreeningSelector):
                ids = screen_rounds(sel, batch, rollout).ids
            else:
                ids = sel.select(batch)
            sel.update(ids, *outcome(ids))
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**4, 10**5, 10**6, 10**7])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--plugin-sizes", type=int, nargs="+", default=[10**5, 10**6])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rival-sizes", type=int, nargs="+", default=[10**5, 10**6])
    args = parser.parse_args()
    print(f"# selector overhead: batch {args.batch}, numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print("| N tasks | Beta draws alone (floor) ms | BOTS select+update ms | BOTS / floor "
          "| naive numpy step ms | naive / floor |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.sizes:
        repeats = max(5, min(200, int(3e7 / n)))
        r = bench(n, args.batch, repeats)
        print(f"| {n:,} | {r['floor']:.2f} | {r['bots']:.2f} | {r['bots'] / r['floor']:.2f}x "
              f"| {r['naive']:.2f} | {r['naive'] / r['floor']:.2f}x |", flush=True)
    print(f"\n# one BOTS step by implicit plug-in: batch {args.batch}, k = {args.k}")
    print("| N tasks | interpolation ms | groups ms | knn ms | knn / interpolation |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n in args.plugin_sizes:
        r = bench_plugins(n, args.batch, args.k, repeats=max(5, min(50, int(1e7 / n))))
        print(f"| {n:,} | {r['interpolation']:.2f} | {r['groups']:.2f} | {r['knn']:.2f} "
              f"| {r['knn'] / r['interpolation']:.2f}x |", flush=True)
    print(f"\n# one step of each published rival (docs/rivals.md) against the Beta floor: batch "
          f"{args.batch}; in brackets: rival / floor")
    print("| N tasks | floor ms | " + " | ".join(f"{name} ms" for name in RIVALS) + " |")
    print("| ---: | ---: | " + " | ".join("---:" for _ in RIVALS) + " |")
    for n in args.rival_sizes:
        r = bench_rivals(n, args.batch, repeats=max(5, min(50, int(1e7 / n))))
        cells = " | ".join(f"{r[name]:.2f} ({r[name] / r['floor']:.2f}x)" for name in RIVALS)
        print(f"| {n:,} | {r['floor']:.2f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
