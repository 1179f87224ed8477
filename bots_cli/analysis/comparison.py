"""Comparing runs with a baseline: the paper's metrics per seed, their spread, tables and plots.

Shared by `bots simulate` (synthetic runs) and `bots report` (real training runs): both hand over
per-seed eval curves and per-step rows with the keys of a run's metrics.jsonl.

A curve's x is training steps or a cost (rollouts, tokens generated so far): TTB and BSF do not
care which. Curves are averaged over seeds only on a common x (`interpolate_curves`), since seeds
that spend different costs per step have no common eval points.

Noise: with a handful of seeds, a TTB of 0.9 may be a draw, not a speed-up. `within_noise` is the
one test every table uses to say so: a two-sided paired t-test at 95% on the per-seed values
(each seed already paired with the baseline's same seed). A "never" counts as 2.0 (twice the
baseline's cost) in the test and in rankings, where a number is needed.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from bots_cli.atomic import atomic_path
from bots_cli.metrics import best_so_far_ratio, time_to_baseline

Curve = list[tuple[float, float]]  # (x, score), x increasing: the eval step or the cost at it
FRACTIONS = (25, 50, 100)  # TTB / BSF windows, in % of the budget
NEVER_SCORED_AS = 2.0  # a TTB of "never", where a number is needed: twice the baseline's cost
# report.x -> what its cost counts (named in captions, report.md and the plots' x label); a
# training row records the cost so far as train/<x> (cumulative), except for steps.
AXES = {"steps": "training steps",
        "rollouts": "completions generated (all dynamic-sampling rounds included)",
        "tokens": "completion tokens generated"}
# Student t quantiles t_{0.975, df} for df = 1..30; beyond, the normal's 1.96.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def step_costs(rows: list[dict[str, Any]], x: str) -> dict[int, float]:
    """Step -> what training had spent on axis `x` by the end of it (0 at step 0), from a run's
    training rows; a ValueError (saying to use steps) when the rows do not record it."""
    if x == "steps":
        return {int(r["step"]): float(r["step"]) for r in rows} | {0: 0.0}
    key = f"train/{x}"
    if any(r.get(key) is None for r in rows):
        raise ValueError(f"no `{key}` in its metrics.jsonl (a run made before bots counted it); "
                         "use report.x=steps")
    return {int(r["step"]): float(r[key]) for r in rows} | {0: 0.0}


def curve_on_axis(curve: Curve, rows: list[dict[str, Any]], x: str) -> Curve:
    """An eval curve (step, score) as (cost on axis `x` at that step, score)."""
    if x == "steps":
        return curve
    costs = step_costs(rows, x)
    missing = [int(s) for s, _ in curve if int(s) not in costs]
    if missing:
        raise ValueError(f"no training row at eval step {missing[0]}, so no `train/{x}` there; "
                         "use report.x=steps")
    return [(costs[int(s)], v) for s, v in curve]


def trailing_mean_curve(rows: list[dict[str, Any]], key: str, x: str, window: int = 10) -> Curve:
    """A per-step metric (e.g. train/etr) at each step's cost on axis `x`, smoothed by a trailing
    mean over `window` steps."""
    costs = step_costs(rows, x)
    values = np.array([r[key] for r in rows], dtype=np.float64)
    smooth = np.convolve(values, np.ones(window), "full")[: len(values)] / np.minimum(
        np.arange(1, len(values) + 1), window)
    return [(costs[int(r["step"])], float(v)) for r, v in zip(rows, smooth, strict=True)]


def amount(value: float, x: str, adjective: bool = False) -> str:
    """'3000 rollouts', or as an adjective ('the 3000-rollout budget')."""
    unit, n = x.removesuffix("s"), round(value)
    return f"{n}-{unit}" if adjective else f"{n} {unit}{'s' if n != 1 else ''}"


def per_seed_metrics(
    curve: Curve, base: Curve | None, rows: list[dict[str, Any]], budget: float
) -> dict[str, float]:
    """The paper's metrics of one run (one seed) against the baseline's curve (None: no baseline,
    TTB and BSF undefined). `rows`: the run's per-step metrics."""
    steps, scores = (list(x) for x in zip(*curve, strict=True))
    out: dict[str, float] = {"final_accuracy": scores[-1], "best_accuracy": max(scores)}
    for pct in FRACTIONS:
        if base is None:
            out[f"ttb_{pct}"] = out[f"bsf_{pct}"] = math.nan
            continue
        bsteps, bscores = (list(x) for x in zip(*base, strict=True))
        out[f"ttb_{pct}"] = time_to_baseline(steps, scores, bsteps, bscores, budget, pct / 100)
        out[f"bsf_{pct}"] = best_so_far_ratio(steps, scores, bsteps, bscores, budget, pct / 100)
    out["etr"] = float(np.mean([r["train/etr"] for r in rows]))
    out["zero_variance_share"] = float(np.mean([r["train/zero_variance_share"] for r in rows]))
    out["explored_share"] = float(rows[-1]["selector/explored_share"])
    selector_s = [r["time/select"] + r["time/selector_update"] for r in rows]
    out["selector_ms_per_step"] = 1e3 * float(np.mean(selector_s))
    if all("time/step" in r for r in rows):  # real runs: the selector's share of step time
        out["selector_share"] = float(np.sum(selector_s) / np.sum([r["time/step"] for r in rows]))
    return out


SPREAD_NOTE = ("±: the sample standard deviation over seeds (n−1 in the denominator, as in the "
               "noise test).")


def aggregate(values: list[float]) -> dict[str, Any]:
    """Mean and spread over seeds; runs that never reached the target are counted, not averaged.

    The spread is the sample standard deviation (ddof=1), the one `within_noise` tests with
    (`SPREAD_NOTE` says so under every table); NaN where fewer than 2 values are finite.
    """
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    return {
        "mean": float(finite.mean()) if finite.size else math.nan,
        "std": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
        "never": int(np.isposinf(arr).sum()),
        "undefined": int(np.isnan(arr).sum()),
        "values": values,
    }


def t_quantile(df: int) -> float:
    """t_{0.975, df}: the two-sided 95% critical value of Student's t (1.96 beyond df 30)."""
    return _T975[df - 1] if df <= len(_T975) else 1.96


def _scored(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return np.where(np.isposinf(arr), NEVER_SCORED_AS, arr)


def within_noise(values: Any, reference: Any) -> bool | None:
    """Whether the per-seed `values` do not differ from `reference` beyond noise; None when that
    cannot be decided (fewer than 2 usable values).

    `reference` is a number (e.g. 1.0, the baseline's own TTB) or per-seed values aligned with
    `values` (paired: the differences are tested against 0). The test is two-sided at 95%:
    |mean - ref| <= t_{0.975, n-1} * sd / sqrt(n), sd with ddof=1. "never" (inf) counts as
    NEVER_SCORED_AS; NaN (undefined) values, or pairs with one, are left out.
    """
    a = _scored(values)
    if np.ndim(reference) == 0:
        d = a - float(reference)
    else:
        d = a - _scored(reference)
    d = d[~np.isnan(d)]
    if d.size < 2:
        return None
    half_width = t_quantile(d.size - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return bool(abs(float(d.mean())) <= half_width + 1e-12)  # equal values: within, not beyond


def ranking_mean(values: Any) -> float:
    """The mean a ranking uses: "never" counted as NEVER_SCORED_AS, NaN left out (inf when none
    is left: ranked last)."""
    a = _scored(values)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else math.inf


def interpolate_curves(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray]:
    """Seeds' curves on one x axis, for averaging: (x (P,), scores (S, P)).

    Curves that share their x values are returned as they are. Otherwise each is interpolated
    linearly (np.interp) onto the union of their x values within the range they all cover (the
    largest first x to the smallest last x): no curve is extrapolated.
    """
    xs = [np.array([x for x, _ in c], dtype=np.float64) for c in curves]
    ys = [np.array([y for _, y in c], dtype=np.float64) for c in curves]
    if all(x.shape == xs[0].shape and np.array_equal(x, xs[0]) for x in xs):
        return xs[0], np.stack(ys)
    lo, hi = max(float(x[0]) for x in xs), min(float(x[-1]) for x in xs)
    grid = np.unique(np.concatenate(xs))
    grid = grid[(grid >= lo) & (grid <= hi)]
    return grid, np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys, strict=True)])


def mean_curve(curves: list[Curve]) -> Curve:
    """The mean over seeds of their curves, on the common axis of `interpolate_curves`."""
    grid, scores = interpolate_curves(curves)
    return [(float(x), float(y)) for x, y in zip(grid, scores.mean(axis=0), strict=True)]


def json_safe(obj: Any) -> Any:
    """inf -> "never" (did not reach the target), nan -> null, so the file is standard JSON."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and math.isinf(obj):
        return "never"
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def _pyplot() -> Any:
    import logging

    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # no font-cache chatter in the log
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    _pyplot().close(fig)


def plot_curves(curves: dict[str, dict[int, Curve]], baseline: str | None, path: Path, *,
                title: str, ylabel: str = "held-out accuracy",
                xlabel: str = "training step") -> None:
    """A score vs x per group: the mean over seeds (on their common axis, `interpolate_curves`)
    with a min-max band; the baseline dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, by_seed in curves.items():
        steps, scores = interpolate_curves(list(by_seed.values()))
        style = "--" if name == baseline else "-"
        (line,) = ax.plot(steps, scores.mean(axis=0), style, label=name, linewidth=1.8)
        if len(by_seed) > 1:
            ax.fill_between(steps, scores.min(axis=0), scores.max(axis=0),
                            color=line.get_color(), alpha=0.15)
    seeds = max(len(v) for v in curves.values())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}: mean over {seeds} seed(s)" + (" (band: min–max)" if seeds > 1 else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_points(xs: list[float], ys: list[float], path: Path, *, xlabel: str, ylabel: str,
                title: str) -> None:
    """One metric against a swept value (e.g. TTB(100%) against λ)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(xs, ys, "o-")
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _save(fig, path)


def format_metric(agg: dict[str, Any], digits: int = 2) -> str:
    """'0.52 ± 0.04', or 'never (2/3)' when some seeds never reached the target."""
    n = len(agg["values"])
    if agg["never"]:
        return f"never ({agg['never']}/{n})"
    if agg["undefined"] == n:
        return "n/a"
    text = f"{agg['mean']:.{digits}f}"
    if n > 1 and math.isfinite(agg["std"]):  # a spread needs 2 finite values (ddof=1)
        text += f"±{agg['std']:.{digits}f}"
    return text


def format_vs_baseline(agg: dict[str, Any], digits: int = 2) -> str:
    """A ratio to the baseline (TTB, BSF) as `format_metric` writes it, marked '≈' when its
    per-seed values do not differ from 1.0 beyond noise, and '?' when that cannot be decided
    (fewer than 2 seeds: a single draw)."""
    text = format_metric(agg, digits)
    if text == "n/a":
        return text
    same = agg["within_noise"] if "within_noise" in agg else within_noise(agg["values"], 1.0)
    return text + "?" if same is None else ("≈" + text if same else text)


def noise_caption(baseline: str) -> str:
    """What '≈' and '?' in a TTB or BSF cell mean (`format_vs_baseline`), for a table's caption."""
    return (f"≈: within noise: the per-seed ratios (each seed against {baseline}'s same seed) do "
            "not differ from 1 by a two-sided paired t-test at 95% (a never counts as 2). ?: a "
            "single draw (one seed), which cannot be told from noise.")


def versus_best(ttb_by_seed: dict[str, dict[int, float]]) -> dict[str, str]:
    """Each group's per-seed TTB against the group of lowest mean TTB (`ranking_mean`), paired by
    seed (seeds both have) through `within_noise`: '*' the best itself, '≈' within noise, 'worse'
    (or 'better', when the seeds both have say so) beyond it, 'n/a' fewer than 2 paired seeds."""
    means = {g: ranking_mean(list(v.values())) for g, v in ttb_by_seed.items()}
    ranked = [g for g in means if math.isfinite(means[g])]
    if not ranked:
        return {g: "n/a" for g in ttb_by_seed}
    best = min(ranked, key=lambda g: means[g])
    out = {best: "*"}
    for group, by_seed in ttb_by_seed.items():
        seeds = sorted(set(by_seed) & set(ttb_by_seed[best]))
        a, b = [by_seed[s] for s in seeds], [ttb_by_seed[best][s] for s in seeds]
        same = None if group == best else within_noise(a, b)
        if group != best:
            out[group] = "n/a" if same is None else "≈" if same else \
                "worse" if ranking_mean(a) > ranking_mean(b) else "better"
    return {g: out[g] for g in ttb_by_seed}


def more_seeds_commands(saved: list[tuple[str, ...]] | None, seeds: str = "0,1,2") -> list[str]:
    """`bots train -m seed=0,1,2 <overrides>` that reruns these runs on more seeds, from each
    run's saved overrides (seed and hydra.* ones dropped); one command per distinct set, or one
    sweep for sets that form a grid (lambda=0.1 and lambda=0.5: lambda=0.1,0.5). None: the
    overrides are not known, so the generic form."""
    prefix = f"bots train -m seed={seeds}"
    if saved is None:
        return [f"{prefix} <the same overrides>"]

    def kept(override: str) -> bool:
        key = override.split("=", 1)[0].lstrip("+~")
        return key != "seed" and key != "hydra" and not key.startswith("hydra.")

    sets = list(dict.fromkeys(tuple(o for o in s if kept(o)) for s in saved))
    by_keys: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for s in sets:
        by_keys.setdefault(tuple(o.split("=", 1)[0] for o in s), []).append(s)
    lines = []
    for keys, members in by_keys.items():
        if not all("=" in o for s in members for o in s):  # a deletion (~key): as it is
            lines += [" ".join([prefix, *(shlex.quote(o) for o in s)]) for s in members]
            continue
        values = [list(dict.fromkeys(o.split("=", 1)[1] for o in column))
                  for column in zip(*members, strict=True)]
        plain = all(not any(c in v for c in ",[]{}()'\" ") for vs in values for v in vs)
        if plain and len(members) > 1 and math.prod(len(v) for v in values) == len(members):
            members = [tuple(f"{k}={','.join(v)}" for k, v in zip(keys, values, strict=True))]
        lines += [" ".join([prefix, *(shlex.quote(o) for o in s)]) for s in members]
    return lines
