"""What a selector chose: a training run's selections.parquet read against its task table.

A selector that wins or loses on accuracy is only half explained by its curve. This module asks
the run's own records what it picked, each question a small pure function on pandas frames:

- `share_by_window`: the share of selections by a task-table column (level, by default) in equal
  windows of training steps, beside the pool's own share (a uniform selector reads as flat);
- `pass_rates`: the observed rates successes/trials of the selected tasks against the selector's
  target p* (0.5 for selectors without one): groups at rate 0 or 1 carry no GRPO signal;
- `reselection`: how often tasks came round again, and after how many steps;
- `calibration`: the selector's posterior mean at selection (`predicted`) against the rate then
  observed, beside a naive predictor (the task's previous observed rate) on the rows where both
  exist, so that an error of 0.2 means something;
- `capability_vs_accuracy`: BOTS' smoothed capability estimate μ̃ against held-out accuracy.

`analyse` reads the runs of one group (its seeds) into a `SelectionAnalysis`; `chosen_section`
turns that into a markdown section with plots. `bots report` writes one per group and `bots
inspect` (inspect.py) one per run group; both rebuild each distinct training pool once
(`TrainingPools`), not once per group. Selections are
every (step, round, task) the selector was told about, trained on or not (dynamic sampling drops
zero-variance groups after scoring). Files written before dynamic sampling lack `round`,
`trained` and `predicted`: they read as round 1, trained, and no prediction (NaN).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bots_cli.analysis.chosen_plots import write_plots
from bots_cli.errors import UserError

MAX_VALUES = 12  # heatmap rows: more distinct values are binned (numbers) or folded into "other"
DEFAULT_TARGET = 0.5  # the target of selectors that have none (uniform, curricula)


# ---- the records ------------------------------------------------------------------------------
def normalised_selections(frame: pd.DataFrame) -> pd.DataFrame:
    """A selections table with `round`, `trained` and `predicted` (filled in for older files and
    hand-made frames as records.read_selections fills them), ordered by (run, step, round) as the
    selector saw them; task ids as text, for the join."""
    from bots_cli.runs.records import with_selection_columns

    frame = with_selection_columns(frame)
    if "run" not in frame.columns:
        frame["run"] = 0
    return frame.sort_values(["run", "step", "round"], kind="stable").reset_index(drop=True)


def _rates(sel: pd.DataFrame) -> pd.Series:
    return sel["successes"] / sel["trials"]

def check_task_ids(sel: pd.DataFrame, pool: pd.DataFrame, where: str) -> None:
    """Every selected task is in the pool, or one line saying the task table changed."""
    missing = sorted(set(sel["task_id"]) - set(pool["task_id"].astype(str)))
    if missing:
        raise UserError(f"{where}: {len(missing)} selected task(s) are not in the training pool "
                        f"rebuilt from its config.yaml (e.g. {missing[0]!r}); has the task table "
                        "changed since the run?")


def check_column(pool: pd.DataFrame, column: str, key: str = "inspect.column") -> None:
    """One line when the task table lacks `column` (`key`: the setting that named it)."""
    if column not in pool.columns:
        raise UserError(f"{key}={column}: the task table has no such column "
                        f"(available: {', '.join(map(str, pool.columns))})")


# ---- 1. share of selections by a column, over training ----------------------------------------
def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.3g}"


def value_labels(values: pd.Series, max_values: int = MAX_VALUES) -> pd.Series:
    """Each task's value as a heatmap row label (an ordered categorical): numbers in numeric
    order, binned into `max_values` equal-width intervals when there are more distinct ones;
    text as is, the rarest beyond `max_values - 1` folded into "other"; NaN is "missing"."""
    present = values.dropna()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and present.nunique() > max_values:
        edges = np.linspace(float(present.min()), float(present.max()), max_values + 1)
        names = [f"[{_number(a)}, {_number(b)}{']' if i == max_values - 1 else ')'}"
                 for i, (a, b) in enumerate(itertools.pairwise(edges))]
        index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, max_values - 1)
        labels = pd.Series([names[i] for i in index], index=values.index)
    elif numeric:
        names = [_number(v) for v in sorted(present.unique())]
        labels = values.map(lambda v: _number(v) if pd.notna(v) else "missing")
    else:
        counts = present.astype(str).value_counts()
        kept = sorted(counts.index[: max_values - 1] if len(counts) > max_values else counts.index)
        names = [*kept, *(["other"] if len(counts) > max_values else [])]
        labels = values.map(lambda v: "missing" if pd.isna(v) else
                            str(v) if str(v) in kept else "other")
    if values.isna().any():
        names.append("missing")
    return labels.where(values.notna(), "missing").astype(
        pd.CategoricalDtype(list(dict.fromkeys(names)), ordered=True))


def step_windows(steps: pd.Series, windows: int) -> list[tuple[int, int]]:
    """(first, last) step of `windows` equal contiguous windows over the steps' range (fewer when
    there are fewer steps)."""
    lo, hi = int(steps.min()), int(steps.max())
    chunks = np.array_split(np.arange(lo, hi + 1), min(windows, hi - lo + 1))
    return [(int(c[0]), int(c[-1])) for c in chunks]


def share_by_window(sel: pd.DataFrame, pool: pd.DataFrame, column: str,
                    windows: int) -> pd.DataFrame:
    """Share of each window's selections per value of `column` (rows: values, as `value_labels`
    gives them; columns: "pool", the pool's own share, then "first-last" step windows; a
    window's shares sum to 1, an empty window is NaN)."""
    check_column(pool, column)
    labels = value_labels(pool[column])
    by_task = dict(zip(pool["task_id"].astype(str), labels, strict=True))
    selected_values = pd.Categorical(sel["task_id"].astype(str).map(by_task),
                                     categories=labels.cat.categories, ordered=True)
    out = {"pool": pd.Series(labels).value_counts(normalize=True, sort=False)}
    bounds = step_windows(sel["step"], windows)
    where = np.searchsorted([a for a, _ in bounds], sel["step"].to_numpy(), side="right") - 1
    for i, (a, b) in enumerate(bounds):
        counts = pd.Series(selected_values[where == i]).value_counts(sort=False)
        out[f"{a}-{b}" if a != b else str(a)] = counts / counts.sum() if counts.sum() else \
            counts * math.nan
    return pd.DataFrame(out).reindex(labels.cat.categories).astype(float)


# ---- 2. observed pass rates against the target -----------------------------------------------
def pass_rates(sel: pd.DataFrame, target: float) -> dict[str, float]:
    """Observed rates of the selected groups: their mean, mean |rate − target|, and the shares
    at 0, at 1 (zero-variance for binary rewards) and in between; the share trained on."""
    sel = normalised_selections(sel)
    rate = _rates(sel)
    return {"selections": float(len(sel)), "mean_rate": float(rate.mean()),
            "mean_abs_gap": float((rate - target).abs().mean()),
            "zero": float((rate == 0).mean()), "one": float((rate == 1).mean()),
            "mixed": float(((rate > 0) & (rate < 1)).mean()),
            "trained": float(sel["trained"].mean())}


# ---- 3. reselection --------------------------------------------------------------------------
def reselection(sel: pd.DataFrame, pool_size: int) -> dict[str, float]:
    """How often tasks came round again, per run (pooled runs: a task repeats only within its
    own run). `distinct_tasks` is the mean per run; gaps are in steps between consecutive
    selections of a task (0: two rounds of one step)."""
    sel = normalised_selections(sel)
    counts = sel.groupby(["run", "task_id"]).size()
    runs = sel["run"].nunique()
    gaps = sel.groupby(["run", "task_id"])["step"].diff().dropna()
    return {"distinct_tasks": len(counts) / runs, "pool_share": len(counts) / runs / pool_size,
            "mean_per_task": float(counts.mean()), "max_per_task": float(counts.max()),
            "repeat_share": 1.0 - len(counts) / len(sel),
            "median_gap": float(gaps.median()) if len(gaps) else math.nan}


# ---- 4. calibration of the selector's predictions --------------------------------------------
def _pearson(x: pd.Series, y: pd.Series) -> float:
    if len(x) < 3 or x.std() == 0 or y.std() == 0:  # two points always correlate ±1
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def calibration(sel: pd.DataFrame, bins: int = 10) -> dict[str, Any]:
    """The posterior mean at selection against the observed rate: `pairs`, `mae`, `mse`
    (Brier-like), `corr`; the same errors of the naive predictor "the task's previous observed
    rate" and of the selector on the rows where both exist (`overlap`, `mae_selector`,
    `mae_previous`, `mse_selector`, `mse_previous`); and `table`, a reliability table over
    `bins` equal-width bins of the prediction. `pairs` is 0 when nothing was predicted."""
    sel = normalised_selections(sel)
    rate = _rates(sel)
    previous = rate.groupby([sel["run"], sel["task_id"]]).shift(1)
    has = sel["predicted"].notna()
    if not has.any():
        return {"pairs": 0}
    pred, obs = sel.loc[has, "predicted"], rate[has]
    both = has & previous.notna()
    index = np.minimum((pred * bins).astype(int), bins - 1)
    table = pd.DataFrame({"bin": index, "predicted": pred, "observed": obs}).groupby("bin").agg(
        mean_predicted=("predicted", "mean"), mean_observed=("observed", "mean"),
        count=("observed", "size"))
    table.index = [f"[{i / bins:.2f}, {(i + 1) / bins:.2f}{']' if i == bins - 1 else ')'}"
                   for i in table.index]
    (mae, mse), (mae_s, mse_s), (mae_p, mse_p) = (
        _errors(pred, obs), _errors(sel.loc[both, "predicted"], rate[both]),
        _errors(previous[both], rate[both]))
    return {"pairs": int(has.sum()), "mae": mae, "mse": mse, "corr": _pearson(pred, obs),
            "overlap": int(both.sum()), "mae_selector": mae_s, "mae_previous": mae_p,
            "mse_selector": mse_s, "mse_previous": mse_p, "table": table}


def _errors(predicted: pd.Series, observed: pd.Series) -> tuple[float, float]:
    """(mean absolute error, mean squared error); NaN for no rows."""
    d = predicted - observed
    return (float(d.abs().mean()), float((d**2).mean())) if len(d) else (math.nan, math.nan)


# ---- 5. capability against held-out accuracy -------------------------------------------------
def capability_vs_accuracy(rows: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Per run, (step, capability) and (step, eval/accuracy) from its metrics rows, and the
    Pearson correlation of the two over that run's eval steps; `corr`: the mean of the runs'
    correlations (each run on its own: pooling runs would mix their levels), `pairs`: the eval
    steps with both, `correlated`: the runs with a correlation (≥ 3 such steps)."""
    def series(run: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
        return [(int(r["step"]), float(r[key])) for r in run if r.get(key) is not None]

    runs, each, pairs = [], [], 0
    for rows_of_run in rows:
        run: dict[str, Any] = {"capability": series(rows_of_run, "selector/capability"),
                               "accuracy": series(rows_of_run, "eval/accuracy")}
        cap = dict(run["capability"])
        both = [(cap[s], a) for s, a in run["accuracy"] if s in cap]
        pairs += len(both)
        r = _pearson(pd.Series([c for c, _ in both], dtype=float),
                     pd.Series([a for _, a in both], dtype=float))
        run["corr"] = r
        each += [r] if math.isfinite(r) else []
        runs.append(run)
    return {"runs": runs, "pairs": pairs, "correlated": len(each),
            "corr": float(np.mean(each)) if each else math.nan}


# ---- one group of runs -----------------------------------------------------------------------
@dataclass
class SelectionAnalysis:
    """Everything a "What was chosen" section shows, for one group of runs (pooled over its
    seeds)."""

    label: str
    runs: list[Path]
    column: str
    pool_size: int
    target: float
    own_target: bool  # False: the selector has no target and DEFAULT_TARGET stands in
    shares: pd.DataFrame  # share_by_window
    overall: pd.Series  # the share by value over all steps
    rates: dict[str, float]  # pass_rates
    again: dict[str, float]  # reselection
    calib: dict[str, Any]  # calibration
    capability: dict[str, Any]  # capability_vs_accuracy
    selections: pd.DataFrame = field(repr=False)  # every run's, with a `run` column


def _train_section(cfg: Any) -> Any:
    """The run's `train` settings read over today's defaults: a run recorded before a setting
    existed (train.dynamic_sampling, say) still has a pool."""
    from omegaconf import OmegaConf

    from bots_cli.config import config_dir

    return OmegaConf.merge(OmegaConf.load(config_dir() / "train.yaml").train, cfg.train)


def training_pool_of(cfg: Any) -> pd.DataFrame:
    """The run's training pool, rebuilt from its config as `bots train` built it."""
    from bots_cli.domains import load_domain
    from bots_cli.train.pool import training_pool
    from bots_cli.train.settings import TrainSettings

    domain = load_domain(str(cfg.domain.name), cfg.domain)
    return training_pool(cfg, TrainSettings.from_config(_train_section(cfg)), domain)


class TrainingPools:
    """Training pools rebuilt from run configs, each built once per distinct domain config and
    pool-defining settings (train.levels, train.max_tasks, train.batch_size): the groups of a
    report that train on one domain share one pool, however else their settings differ."""

    def __init__(self) -> None:
        self._built: dict[str, pd.DataFrame] = {}

    @staticmethod
    def key(cfg: Any) -> str:
        """What the pool depends on, as text."""
        from omegaconf import OmegaConf

        train = OmegaConf.to_container(_train_section(cfg), resolve=True)
        assert isinstance(train, dict)
        return repr((OmegaConf.to_container(cfg.domain, resolve=True),
                     *(train.get(k) for k in ("levels", "max_tasks", "batch_size"))))

    def of(self, cfg: Any) -> pd.DataFrame:
        """The run's training pool (`training_pool_of`), built on the first ask for its key."""
        key = self.key(cfg)
        if key not in self._built:
            self._built[key] = training_pool_of(cfg)
        return self._built[key]


def run_config(run: Path) -> Any:
    """A training run's config.yaml, or one line saying why it is not one."""
    import yaml
    from omegaconf import DictConfig, OmegaConf

    path = run / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run}: no config.yaml (not a training run directory)")
    try:
        cfg = OmegaConf.load(path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UserError(f"{path}: cannot read it ({type(err).__name__})") from None
    if not isinstance(cfg, DictConfig):
        raise UserError(f"{path}: not a training run's config (not a mapping)")
    missing = [k for k in ("domain", "train", "selector") if not OmegaConf.is_dict(cfg.get(k))]
    if missing:
        raise UserError(f"{path}: no {', '.join(missing)} section (not a training run's "
                        "config; `bots train` writes them)")
    if cfg.domain.get("name") is None:
        raise UserError(f"{path}: domain.name is missing (not a training run's config)")
    return cfg


def analyse(label: str, run_dirs: list[Path], column: str = "level", windows: int = 20,
            bins: int = 10, column_key: str = "inspect.column",
            pools: TrainingPools | None = None) -> SelectionAnalysis:
    """Read the runs and compute every number of the section (nothing is written): a
    `UserError` when a run cannot be read or the column (set by `column_key`) is not in the task
    table. `pools`: training pools shared with other groups' calls (built here when None)."""
    from bots_cli.runs.records import read_jsonl_upto, read_selections

    pools = TrainingPools() if pools is None else pools
    frames, used, rows, targets = [], {}, [], []
    for i, run in enumerate(run_dirs):
        run = Path(run)
        if not (run / "selections.parquet").is_file():
            raise UserError(f"{run}: no selections.parquet (the run has not saved a step yet)")
        cfg = run_config(run)
        key = pools.key(cfg)
        if key not in used:
            used[key] = pools.of(cfg)
            check_column(used[key], column, column_key)
        sel = normalised_selections(read_selections(run / "selections.parquet").assign(run=i))
        if sel.empty:
            raise UserError(f"{run}: selections.parquet has no rows yet")
        check_task_ids(sel, used[key], str(run))
        frames.append(sel)
        rows.append([json.loads(x) for x in read_jsonl_upto(run / "metrics.jsonl", math.inf)])
        targets.append(cfg.selector.get("target"))  # None: the selector has no target
    pool = pd.concat(list(used.values())).drop_duplicates("task_id").reset_index(drop=True)
    pool["task_id"] = pool["task_id"].astype(str)
    sel = pd.concat(frames, ignore_index=True)
    target = float(targets[0]) if targets[0] is not None else DEFAULT_TARGET
    return SelectionAnalysis(
        label=label, runs=[Path(r) for r in run_dirs], column=column, pool_size=len(pool),
        target=target, own_target=targets[0] is not None,
        shares=share_by_window(sel, pool, column, windows),
        overall=share_by_window(sel, pool, column, 1).iloc[:, 1],
        rates=pass_rates(sel, target), again=reselection(sel, len(pool)),
        calib=calibration(sel, bins), capability=capability_vs_accuracy(rows), selections=sel)


def chosen_section(label: str, run_dirs: list[Path], out_dir: Path, column: str = "level",
                   windows: int = 20, bins: int = 10, column_key: str = "inspect.column",
                   pools: TrainingPools | None = None) -> tuple[str, list[str]]:
    """The "What was chosen: <label>" markdown section of a group of runs (pooled over its
    seeds) and the PNG files it wrote into `out_dir` (names unique per label)."""
    analysis = analyse(label, run_dirs, column, windows, bins, column_key, pools)
    plots = write_plots(analysis, Path(out_dir))
    return section_markdown(analysis, plots), list(plots.values())


# ---- markdown --------------------------------------------------------------------------------
def fmt(x: float | None, digits: int = 2) -> str:
    """A number as the tables show it; NaN (undefined) is n/a."""
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def section_markdown(analysis: SelectionAnalysis, plots: dict[str, str]) -> str:
    """The "## What was chosen: <label>" section: small tables and links to `plots`."""
    ch, col, sel = analysis, analysis.column, analysis.selections
    r, a, c = ch.rates, ch.again, ch.calib
    lines = [f"## What was chosen: {ch.label}", "",
             f"{len(ch.runs)} run(s), {int(r['selections'])} selections (steps "
             f"{sel['step'].min()}–{sel['step'].max()}) from a training pool of {ch.pool_size} "
             "tasks; every group the selector was told about, trained on or not.", "",
             f"### Share of selections by `{col}`", "", f"![share by {col}]({plots['share']})", ""]
    first, last = ch.shares.columns[1], ch.shares.columns[-1]
    lines += _table([col, "pool", f"first window ({first})", f"last window ({last})",
                     "all steps"],
                    [[str(v), *(fmt(float(x)) for x in (*ch.shares.loc[v, ["pool", first, last]],
                                                         ch.overall[v]))]
                     for v in ch.shares.index])
    source = "selector.target" if ch.own_target else "the selector has no target of its own"
    lines += ["### Observed pass rates against the target", "",
              f"Target p* = {ch.target:g} ({source}). Rate = successes / trials of a selected "
              "task at that step; rate 0 or 1: all rewards equal (no GRPO signal for binary "
              "rewards).", ""]
    lines += _table(["selections", "mean rate", "mean abs. gap to p*", "rate 0", "rate 1",
                     "0 < rate < 1", "trained on"],
                    [[str(int(r["selections"])), *(fmt(r[k]) for k in
                      ("mean_rate", "mean_abs_gap", "zero", "one", "mixed", "trained"))]])
    lines += [f"![pass rates]({plots['rates']})", "", "### How often tasks came round again", ""]
    lines += _table(["distinct tasks per run", "share of pool", "selections per task (mean)",
                     "(max)", "repeats", "median gap (steps)"],
                    [[f"{a['distinct_tasks']:.1f}", fmt(a["pool_share"], 3),
                      fmt(a["mean_per_task"]), str(int(a["max_per_task"])),
                      fmt(a["repeat_share"]), fmt(a["median_gap"], 1)]])
    lines += ["Repeats: share of selections of a task its run had selected before.", "",
              "### Calibration of the selector's predictions", ""]
    if not c["pairs"]:
        lines += ["No posterior: n/a (selections.parquet has no `predicted` posterior mean: "
                  "a selector without one, or a run recorded before it was kept).", ""]
    else:
        lines += _table(["pairs", "MAE", "MSE (Brier-like)", "correlation"],
                        [[str(c["pairs"]), fmt(c["mae"], 3), fmt(c["mse"], 3), fmt(c["corr"])]])
        lines += [f"Against a naive predictor, the task's previous observed rate, on the "
                  f"{c['overlap']} selections of a task seen before:", ""]
        lines += _table(["predictor", "MAE", "MSE"],
                        [["posterior mean at selection", fmt(c["mae_selector"], 3),
                          fmt(c["mse_selector"], 3)],
                         ["previous observed rate", fmt(c["mae_previous"], 3),
                          fmt(c["mse_previous"], 3)]])
        lines += ["Reliability: the observed rate per bin of the prediction (calibrated: equal "
                  "means).", ""]
        lines += _table(["predicted", "mean predicted", "mean observed", "count"],
                        [[str(t.Index), fmt(t.mean_predicted), fmt(t.mean_observed),
                          str(t.count)] for t in c["table"].itertuples()])
        lines += [f"![calibration]({plots['calibration']})", ""]
    cap = ch.capability
    lines += ["### Capability vs held-out accuracy", ""]
    if cap["pairs"]:
        lines += [f"Pearson r = {fmt(cap['corr'])} between `selector/capability` and "
                  f"`eval/accuracy` over each run's eval steps ({cap['pairs']} in all), mean "
                  f"over the {cap['correlated']} run(s) with at least 3.", ""]
    else:
        lines += ["n/a: no eval step with both `selector/capability` and `eval/accuracy` (the "
                  "capability estimate is BOTS' interpolation plug-in's).", ""]
    if "capability" in plots:
        lines += [f"![capability]({plots['capability']})", ""]
    return "\n".join(lines)
