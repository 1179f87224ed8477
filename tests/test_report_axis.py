"""`bots report` on a cost axis (report.x=rollouts|tokens) and the noise marks every comparison
table uses (≈, ?, vs best, the 1-seed note), on hand-made curves and hand-made run directories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from bots_cli.analysis.comparison import (
    aggregate,
    format_metric,
    interpolate_curves,
    mean_curve,
    more_seeds_commands,
    t_quantile,
    versus_best,
    within_noise,
)
from bots_cli.analysis.report import Run, _cells, _markdown, _seeds_note, compare, group_runs
from tests.conftest import run_bots

STEPS = [0, 10, 20, 30]


def _run(selector: str, seed: int, scores: list[float], per_step: float = 100.0,
         overrides: tuple[str, ...] | None = None) -> Run:
    """A run evaluated at STEPS, spending `per_step` rollouts (and 7× as many tokens) a step."""
    rows = [{"step": s, "train/etr": 0.5, "train/zero_variance_share": 0.5,
             "selector/explored_share": 1.0, "time/select": 0.01, "time/selector_update": 0.01,
             "time/step": 1.0, "train/rollouts": per_step * s, "train/tokens": 7 * per_step * s}
            for s in STEPS[1:]]
    return Run(path=Path(f"/runs/{selector}/{seed}"), selector=selector, seed=seed, budget=30,
               settings={"selector.name": selector}, rows=rows,
               curve=list(zip(STEPS, scores, strict=True)), overrides=overrides)


UNIFORM = [0.1, 0.2, 0.3, 0.4]  # its best, 0.4, at step 30 = 3000 rollouts
DYNAMIC = [0.1, 0.3, 0.4, 0.5]  # 0.4 at step 20: fewer steps, but 3x the rollouts per step


def test_a_run_faster_in_steps_but_dearer_in_rollouts_loses_on_rollouts() -> None:
    groups = group_runs([_run("uniform", 0, UNIFORM), _run("dynamic", 0, DYNAMIC, 300.0)])
    steps = compare(groups, "uniform")
    assert steps["x"] == "steps" and steps["budget"] == 30
    assert steps["groups"]["dynamic"]["ttb_100"]["values"] == pytest.approx([20 / 30])
    rollouts = compare(groups, "uniform", "rollouts")
    assert rollouts["x"] == "rollouts" and rollouts["budget"] == 3000  # uniform's final cost
    dynamic = rollouts["groups"]["dynamic"]
    assert dynamic["ttb_100"]["values"] == pytest.approx([6000 / 3000])
    # The budget window truncates it: within 3000 rollouts it saw steps 0 and 10 only.
    assert dynamic["bsf_100"]["values"] == pytest.approx([0.3 / 0.4])
    tokens = compare(groups, "uniform", "tokens")
    assert tokens["budget"] == 21000
    assert tokens["groups"]["dynamic"]["ttb_100"]["values"] == pytest.approx([2.0])


def test_the_cost_budget_is_the_baselines_mean_final_cost() -> None:
    runs = [_run("uniform", 0, UNIFORM, 100.0), _run("uniform", 1, UNIFORM, 200.0),
            _run("dynamic", 0, DYNAMIC, 300.0)]
    assert compare(group_runs(runs), "uniform", "rollouts")["budget"] == 4500
    # No baseline: the smallest of the groups' mean final costs.
    assert compare(group_runs(runs), None, "rollouts")["budget"] == 4500
    assert compare(group_runs(runs[2:]), None, "rollouts")["budget"] == 9000


def test_interpolation_onto_a_common_axis() -> None:
    same = [[(0, 0.1), (10, 0.3)], [(0, 0.2), (10, 0.5)]]
    grid, scores = interpolate_curves(same)
    np.testing.assert_array_equal(grid, [0, 10])
    np.testing.assert_array_equal(scores, [[0.1, 0.3], [0.2, 0.5]])
    # Seeds that spend differently: each onto the union of their x, up to the smallest last x.
    a = [(0.0, 0.0), (100.0, 1.0), (200.0, 2.0)]
    b = [(0.0, 0.0), (150.0, 3.0)]
    grid, scores = interpolate_curves([a, b])
    np.testing.assert_allclose(grid, [0, 100, 150])  # not 200: b would be extrapolated there
    np.testing.assert_allclose(scores, [[0, 1, 1.5], [0, 2, 3]])
    np.testing.assert_allclose(mean_curve([a, b]), [(0, 0), (100, 1.5), (150, 2.25)])


def test_within_noise() -> None:
    assert within_noise([0.6, 1.4, 0.9, 1.1], 1.0) is True  # clear noise
    assert within_noise([0.50, 0.52, 0.48], 1.0) is False  # clear difference
    assert within_noise([1.0, 1.0], 1.0) is True  # no spread and no difference
    # n = 3, |mean - 1| = 2.5 sd/√n: beyond 1.96 but within t_{0.975, 2} = 4.303.
    sd = 0.1
    values = [1.0 + 2.5 * sd / math.sqrt(3) + d for d in (-sd, 0.0, sd)]
    assert np.std(values, ddof=1) == pytest.approx(sd)
    assert within_noise(values, 1.0) is True
    assert t_quantile(2) == pytest.approx(4.303) and t_quantile(100) == 1.96
    # "never" counts as 2.0: three nevers are clearly worse than 1, three near 2 are not.
    assert within_noise([math.inf] * 3, 1.0) is False
    assert within_noise([math.inf, 1.9, 2.1], 2.0) is True
    # NaN is left out; fewer than 2 usable values cannot be decided.
    assert within_noise([0.5], 1.0) is None
    assert within_noise([0.5, math.nan], 1.0) is None
    assert within_noise([0.50, 0.52, math.nan, 0.48], 1.0) is False
    # Paired against per-seed values: the differences against 0.
    assert within_noise([0.5, 0.7, 0.9], [0.6, 0.8, 1.0]) is False  # always 0.1 lower
    assert within_noise([0.5, 0.9, 0.7], [0.9, 0.5, 0.7]) is True
    assert within_noise([math.inf, math.inf], [math.inf, math.inf]) is True


def test_spread_is_the_sample_sd_the_noise_test_uses() -> None:
    agg = aggregate([1.0, 2.0, 3.0])
    assert agg["std"] == pytest.approx(1.0)  # ddof=1; the population sd would be 0.816
    assert format_metric(agg) == "2.00±1.00"
    # One finite value among several: a mean but no spread (not a spread of 0).
    one = aggregate([0.5, math.nan])
    assert math.isnan(one["std"]) and format_metric(one) == "0.50"


def test_versus_best_pairs_by_seed() -> None:
    marks = versus_best({
        "bots": {0: 0.50, 1: 0.60, 2: 0.55},
        "dynamic": {0: 0.90, 1: 0.95, 2: 0.92},  # worse on every seed
        "mopps": {0: 0.60, 1: 0.50, 2: 0.58},  # as good, within noise
        "one seed": {0: 0.80},
        "never": {0: math.inf, 1: math.inf, 2: math.inf},
    })
    assert marks == {"bots": "*", "dynamic": "worse", "mopps": "≈", "one seed": "n/a",
                     "never": "worse"}
    assert versus_best({"a": {0: math.nan}}) == {"a": "n/a"}


def _three_seeds() -> dict[str, list[Run]]:
    runs = []
    for seed in range(3):
        runs.append(_run("uniform", seed, UNIFORM))
        runs.append(_run("bots", seed, [0.1, 0.4, 0.5, 0.5]))  # TTB 1/3 on every seed
        # dynamic: 0.4 at step 20 on seed 0 only, at step 30 else: TTB 2/3, 1, 1 — noise.
        runs.append(_run("dynamic", seed, [0.1, 0.2, 0.4, 0.5] if seed == 0 else
                         [0.1, 0.2, 0.3, 0.5]))
    return group_runs(runs)


def test_report_md_marks_noise_and_ranks_against_the_best() -> None:
    summary = compare(_three_seeds(), "uniform")
    assert list(summary["groups"]) == ["uniform", "bots", "dynamic"]  # baseline, then by TTB100
    text = _markdown(summary, "eval/accuracy", [], _seeds_note(summary, _three_seeds()), [])
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| group"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    rows = {c[0]: c for c in ([x.strip() for x in line.strip("|").split("|")]
                              for line in lines if line.startswith("| ") and line != header)}
    ttb, vs = cols.index("TTB100"), cols.index("vs best")
    assert rows["bots"][ttb] == "0.33±0.00" and rows["bots"][vs] == "*"
    # TTB 2/3, 1, 1: sample sd (ddof=1, as the noise test) 0.19, not the population's 0.16.
    assert rows["dynamic"][ttb] == "≈0.89±0.19" and rows["dynamic"][vs] == "worse"
    assert rows["uniform*"][ttb] == "1.00±0.00" and rows["uniform*"][vs] == "worse"
    assert "≈: within noise" in text
    assert "vs best: each group, uniform included, against the one of lowest" in text
    assert "no spread" not in text
    assert "TTB on the steps axis: training steps; budget: 30 steps" in text
    assert summary["groups"]["dynamic"]["ttb_100"]["within_noise"] is True
    assert summary["groups"]["bots"]["ttb_100"]["within_noise"] is False


def test_a_group_slower_than_the_baseline_is_not_the_best() -> None:
    """The baseline competes in `vs best`: with uniform ahead, the only other group is not '*'."""
    runs = [r for seed in range(3) for r in (
        _run("uniform", seed, UNIFORM),
        _run("bots", seed, [0.1, 0.2, 0.3, 0.35 + 0.01 * seed]))]  # never reaches 0.4
    for x in ("steps", "rollouts"):
        groups = compare(group_runs(runs), "uniform", x)["groups"]
        assert groups["uniform"]["vs_best"] == "*" and groups["bots"]["vs_best"] == "worse"


def test_one_seed_cells_are_single_draws() -> None:
    one = compare(group_runs([_run("uniform", 0, UNIFORM), _run("bots", 0, DYNAMIC)]), "uniform")
    header, rows = _cells(one)
    assert rows[1][header.index("TTB100")] == "0.67?"  # a draw, not a 33% speed-up
    assert rows[1][header.index("vs best")] == "*"


def _write_run(path: Path, selector: str, seed: int, scores: list[float],
               per_step: float | None = 100.0, overrides: list[str] | None = None) -> Path:
    """A run directory as `bots train` leaves it: config.yaml, metrics.jsonl, .hydra/."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(
        {"seed": seed, "train": {"steps": 30}, "selector": {"name": selector}}))
    rows: list[dict] = [{"step": 0, "eval/accuracy": scores[0]}]
    for step, score in zip(STEPS[1:], scores[1:], strict=True):
        rows.append({"step": step, "train/etr": 0.5, "train/zero_variance_share": 0.5,
                     "selector/explored_share": 1.0, "time/select": 0.01,
                     "time/selector_update": 0.01, "time/step": 1.0, "eval/accuracy": score})
        if per_step is not None:
            rows[-1] |= {"train/rollouts": per_step * step, "train/tokens": 7 * per_step * step}
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if overrides is not None:
        (path / ".hydra").mkdir()
        (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return path


def _report(tmp_path: Path, *args: str) -> tuple[dict, str, str]:
    # hand-made runs: no selections.parquet for a "What was chosen" section
    out = run_bots("report", str(tmp_path / "runs"), "report.plot=false", "report.chosen=false",
                   *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    [where] = [line.removeprefix("report: ") for line in out.stdout.splitlines()
               if line.startswith("report: ")]
    report_dir = Path(where).parent
    return (json.loads((report_dir / "summary.json").read_text()),
            (report_dir / "report.md").read_text(), out.stdout + out.stderr)


def test_report_on_the_rollouts_axis_skips_runs_without_the_count(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed in (0, 1):
        _write_run(runs / f"u{seed}", "uniform", seed, UNIFORM)
        _write_run(runs / f"d{seed}", "dynamic", seed, DYNAMIC, 300.0)
    old = _write_run(runs / "old", "bots", 0, DYNAMIC, per_step=None)
    summary, md, out = _report(tmp_path, "report.x=rollouts")
    assert summary["x"] == "rollouts" and summary["budget"] == 3000
    assert set(summary["groups"]) == {"uniform", "dynamic"}
    assert summary["groups"]["dynamic"]["ttb_100"]["values"] == [2.0, 2.0]
    assert ("TTB on the rollouts axis: completions generated (all dynamic-sampling rounds "
            "included); budget: 3000 rollouts (uniform's final cost, mean over its 2 seeds)") in md
    assert "of the 3000-rollout budget" in md
    assert f"warning: skipping {old}: no `train/rollouts` in its metrics.jsonl (a run made " \
           "before bots counted it); use report.x=steps" in out
    # On steps (the default) the old run counts, and dynamic wins per step.
    summary, _, out = _report(tmp_path)
    assert summary["x"] == "steps" and "warning" not in out
    assert summary["groups"]["dynamic"]["ttb_100"]["values"] == [20 / 30, 20 / 30]


def test_one_seed_report_prints_the_command_for_more_seeds(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _write_run(runs / "u", "uniform", 0, UNIFORM,
               overrides=["selector=uniform", "train.steps=30", "seed=0", "hydra.job.name=x"])
    _write_run(runs / "b", "bots", 0, DYNAMIC, overrides=["selector=bots", "train.steps=30"])
    _, md, out = _report(tmp_path)
    command = "bots train -m seed=0,1,2 selector=uniform,bots train.steps=30"
    assert ("note: 1 seed per group: no spread, so no difference here can be told from noise; "
            f"run more seeds:\n  {command}\n") in out
    assert "1 seed per group: no spread" in md and f"\n{command}\n" in md
    assert "0.67?" in md


def test_more_seeds_commands_from_saved_overrides() -> None:
    assert more_seeds_commands(None) == ["bots train -m seed=0,1,2 <the same overrides>"]
    sweep = [("selector=bots", "lambda=0.1", "seed=0"), ("selector=bots", "lambda=0.5", "seed=1"),
             ("selector=uniform", "seed=0")]
    assert more_seeds_commands(sweep) == ["bots train -m seed=0,1,2 selector=bots lambda=0.1,0.5",
                                          "bots train -m seed=0,1,2 selector=uniform"]
    # Not a grid: merging would run combinations nobody ran.
    assert more_seeds_commands([("a=1", "b=2"), ("a=2", "b=1")]) == [
        "bots train -m seed=0,1,2 a=1 b=2", "bots train -m seed=0,1,2 a=2 b=1"]
    assert more_seeds_commands([("train.levels=[1,2]", "hydra.run.dir=x", "+seed=3")]) == [
        "bots train -m seed=0,1,2 'train.levels=[1,2]'"]


def test_a_bad_axis_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _write_run(tmp_path / "runs" / "u", "uniform", 0, UNIFORM)
    out = run_bots("report", str(tmp_path / "runs"), "report.x=token", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr == "error: report.x must be one of steps, rollouts, tokens, got 'token'\n"
    assert not list(tmp_path.rglob("summary.json"))
