"""What a selector chose (bots_cli/analysis/chosen.py) on hand-made selections, with
hand-computed values, and `bots inspect` end to end on a tiny run directory written here, with
its refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from bots_cli.analysis.chosen import (
    TrainingPools,
    analyse,
    calibration,
    capability_vs_accuracy,
    chosen_section,
    normalised_selections,
    pass_rates,
    reselection,
    share_by_window,
    value_labels,
)
from bots_cli.analysis.chosen_plots import slug
from bots_cli.errors import UserError
from tests.conftest import run_bots

POOL = pd.DataFrame({"task_id": ["a", "b", "c", "d"], "level": [1, 1, 2, 3],
                     "skill": ["add", "mul", "add", "sub"]})


def _sel(rows: list[tuple]) -> pd.DataFrame:
    """(step, task_id, successes, trials[, predicted]) rows as a selections table."""
    cols = ["step", "task_id", "successes", "trials", "predicted"][: len(rows[0])]
    return pd.DataFrame(rows, columns=cols)


def test_share_by_level_per_window_and_the_pools_own_share() -> None:
    sel = _sel([(1, "a", 0, 2), (1, "c", 0, 2), (2, "a", 0, 2), (2, "b", 0, 2),
                (3, "c", 0, 2), (3, "d", 0, 2), (4, "d", 0, 2), (4, "b", 0, 2)])
    shares = share_by_window(sel, POOL, "level", windows=2)
    # steps 1-2: a a b (level 1), c (2); steps 3-4: b (1), c (2), d d (3).
    expected = pd.DataFrame({"pool": [0.5, 0.25, 0.25], "1-2": [0.75, 0.25, 0.0],
                             "3-4": [0.25, 0.25, 0.5]}, index=["1", "2", "3"])
    pd.testing.assert_frame_equal(shares, expected, check_index_type=False)
    one = share_by_window(sel, POOL, "level", windows=1)
    assert list(one.columns) == ["pool", "1-4"] and one["1-4"].tolist() == [0.5, 0.25, 0.25]
    # More windows than steps: one window per step.
    assert list(share_by_window(sel, POOL, "level", 20).columns) == ["pool", "1", "2", "3", "4"]


def test_share_by_a_text_column_and_an_unknown_column() -> None:
    sel = _sel([(1, "a", 0, 2), (1, "b", 0, 2), (2, "c", 0, 2), (2, "d", 0, 2)])
    shares = share_by_window(sel, POOL, "skill", windows=2)
    assert list(shares.index) == ["add", "mul", "sub"]
    assert shares["pool"].tolist() == [0.5, 0.25, 0.25]
    assert shares["1"].tolist() == [0.5, 0.5, 0.0] and shares["2"].tolist() == [0.5, 0.0, 0.5]
    with pytest.raises(UserError, match=r"^inspect.column=topic: the task table has no such "
                                        r"column \(available: task_id, level, skill\)$"):
        share_by_window(sel, POOL, "topic", windows=2)


def test_value_labels_bin_many_numbers_and_fold_rare_text() -> None:
    numbers = value_labels(pd.Series([0.0, 0.1, 0.2, 0.3, 0.4, 1.0]), max_values=2)
    assert list(numbers.cat.categories) == ["[0, 0.5)", "[0.5, 1]"]
    assert numbers.tolist() == ["[0, 0.5)"] * 5 + ["[0.5, 1]"]
    text = value_labels(pd.Series(["x", "x", "y", "z", None]), max_values=2)
    assert list(text.cat.categories) == ["x", "other", "missing"]
    assert text.tolist() == ["x", "x", "other", "other", "missing"]


def test_pass_rates_against_the_target() -> None:
    sel = _sel([(1, "a", 1, 2), (1, "b", 0, 2), (2, "c", 2, 2), (2, "d", 1, 4)])
    sel["trained"] = [True, False, True, True]
    out = pass_rates(normalised_selections(sel), target=0.5)
    assert out == {"selections": 4.0, "mean_rate": 0.4375, "mean_abs_gap": 0.3125, "zero": 0.25,
                   "one": 0.25, "mixed": 0.5, "trained": 0.75}
    assert pass_rates(normalised_selections(sel), target=0.25)["mean_abs_gap"] == 0.3125


def test_reselection_counts_repeats_within_each_run() -> None:
    sel = pd.concat([
        _sel([(1, "a", 0, 2), (1, "b", 0, 2), (2, "a", 0, 2), (2, "c", 0, 2), (4, "a", 0, 2),
              (4, "b", 0, 2)]).assign(run=0),
        _sel([(1, "a", 0, 2), (3, "a", 0, 2)]).assign(run=1)])
    out = reselection(sel, pool_size=4)
    # (run 0) a×3 b×2 c×1, (run 1) a×2: 4 (run, task) pairs, 8 selections, gaps 1,2 / 3 / 2.
    assert out == {"distinct_tasks": 2.0, "pool_share": 0.5, "mean_per_task": 2.0,
                   "max_per_task": 3.0, "repeat_share": 0.5, "median_gap": 2.0}
    once = reselection(_sel([(1, "a", 0, 2), (1, "b", 0, 2)]), pool_size=4)
    assert once["repeat_share"] == 0.0 and math.isnan(once["median_gap"])


def test_calibration_against_the_previous_observed_rate() -> None:
    sel = _sel([(1, "a", 1, 2, 0.5), (1, "b", 0, 2, 0.2), (2, "a", 2, 2, 0.55),
                (3, "b", 1, 2, 0.1), (3, "c", 2, 2, np.nan)])
    out = calibration(sel, bins=5)
    # errors |p − rate|: 0, 0.2, 0.45, 0.4 (c has no prediction)
    assert out["pairs"] == 4
    assert out["mae"] == pytest.approx(1.05 / 4)
    assert out["mse"] == pytest.approx((0.04 + 0.2025 + 0.16) / 4)
    # predictions 0.5 0.2 0.55 0.1 (mean 0.3375), rates 0.5 0 1 0.5 (mean 0.5)
    assert out["corr"] == pytest.approx(0.175 / math.sqrt(0.146875 * 0.5))
    # a@2 (previous rate 0.5, observed 1) and b@3 (previous 0, observed 0.5)
    assert out["overlap"] == 2
    assert out["mae_selector"] == pytest.approx(0.425)
    assert out["mae_previous"] == pytest.approx(0.5)
    assert out["mse_selector"] == pytest.approx(0.18125)
    assert out["mse_previous"] == pytest.approx(0.25)
    table = out["table"]
    assert list(table.index) == ["[0.00, 0.20)", "[0.20, 0.40)", "[0.40, 0.60)"]
    assert table["count"].tolist() == [1, 1, 2]
    assert table["mean_predicted"].tolist() == pytest.approx([0.1, 0.2, 0.525])
    assert table["mean_observed"].tolist() == pytest.approx([0.5, 0.0, 0.75])


def test_rounds_of_one_step_are_in_order_and_older_files_read_as_round_one() -> None:
    sel = _sel([(1, "a", 2, 2, 0.9), (1, "a", 0, 2, 0.3)])
    sel["round"] = [2, 1]  # recorded out of order: round 1 (rate 0) came first
    out = calibration(sel)
    assert out["overlap"] == 1 and out["mae_previous"] == 1.0
    assert out["mae_selector"] == pytest.approx(0.1)  # round 2 (0.9 for rate 1), not round 1
    assert reselection(sel, 1)["median_gap"] == 0.0
    old = normalised_selections(_sel([(1, 7, 1, 2)]))
    assert old[["round", "trained"]].iloc[0].tolist() == [1, True]
    assert math.isnan(old["predicted"].iloc[0]) and old["task_id"].iloc[0] == "7"
    assert calibration(old) == {"pairs": 0}


def test_capability_against_accuracy_at_eval_steps() -> None:
    rows = [{"step": 0, "eval/accuracy": 0.05}, {"step": 1, "selector/capability": 0.9},
            {"step": 2, "selector/capability": 0.2, "eval/accuracy": 0.1},
            {"step": 4, "selector/capability": 0.4, "eval/accuracy": 0.3},
            {"step": 6, "selector/capability": 0.6, "eval/accuracy": 0.2}]
    out = capability_vs_accuracy([rows])
    assert out["pairs"] == 3 and out["corr"] == pytest.approx(0.5)
    # Each run is correlated on its own, then averaged: levels that differ between runs (here
    # run b's capability sits far above a's) do not make a correlation of their own.
    up = [{"step": s, "selector/capability": c, "eval/accuracy": a}
          for s, c, a in ((1, 0.1, 0.1), (2, 0.2, 0.2), (3, 0.3, 0.4))]
    down = [{"step": s, "selector/capability": c, "eval/accuracy": a}
            for s, c, a in ((1, 0.9, 0.1), (2, 0.8, 0.2), (3, 0.7, 0.4))]
    both = capability_vs_accuracy([up, down])
    r_up = capability_vs_accuracy([up])["corr"]
    assert both["correlated"] == 2 and both["pairs"] == 6
    assert both["corr"] == pytest.approx(0.0) and r_up > 0.9
    assert [run["corr"] for run in both["runs"]] == pytest.approx([r_up, -r_up])
    uniform = [{"step": 1, "selector/capability": None, "eval/accuracy": 0.3}]
    none = capability_vs_accuracy([uniform])
    assert none["pairs"] == 0 and math.isnan(none["corr"])


def test_slugs_are_unique_per_label() -> None:
    assert slug("uniform") == "uniform"
    assert slug("bots lam=0.3") != slug("bots_lam_0.3")
    assert slug("bots lam=0.3").startswith("bots_lam_0.3-")


# ---- a tiny run directory --------------------------------------------------------------------
TASKS = [{"task_id": f"t{i}", "prompt": f"{i}+1=", "answer": str(i + 1), "level": 1 + i // 2}
         for i in range(6)]  # levels 1, 1, 2, 2, 3, 3


def write_run(root: Path, *, selector: str = "bots", new_columns: bool = True,
              name: str = "run", overrides: tuple[str, ...] = ()) -> Path:
    """A training run directory `root/name` as `bots train` leaves it: config.yaml composed from
    conf/train.yaml (plus `overrides`) over a 6-task pool in `root/data`, metrics.jsonl and
    selections.parquet of 4 steps of 2 tasks."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bots_cli.config import config_dir

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split in ("train", "eval"):
        pd.DataFrame(TASKS).to_json(data / f"{split}.jsonl", orient="records", lines=True)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[
            f"selector={selector}", f"domain.data.train={data / 'train.jsonl'}",
            f"domain.data.eval={data / 'eval.jsonl'}", "train.batch_size=2",
            "train.group_size=2", "train.steps=4", *overrides])
    run = root / name
    run.mkdir()
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    sel = _sel([(1, "t0", 1, 2, 0.5), (1, "t2", 0, 2, 0.5), (2, "t0", 2, 2, 0.6),
                (2, "t4", 1, 2, 0.45), (3, "t1", 0, 2, 0.2), (3, "t0", 2, 2, 0.8),
                (4, "t5", 2, 2, 0.5), (4, "t3", 1, 2, 0.5)])
    if new_columns:
        sel = sel.assign(round=1, trained=True)
    else:
        sel = sel.drop(columns="predicted")
    sel.to_parquet(run / "selections.parquet", index=False)
    rows = [{"step": 0, "eval/accuracy": 0.1}]
    rows += [{"step": s, "train/etr": 0.5, "selector/capability": c,
              **({"eval/accuracy": a} if a is not None else {})}
             for s, c, a in [(1, 0.1, None), (2, 0.3, 0.2), (3, 0.2, 0.1), (4, 0.5, 0.4)]]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_section_of_an_older_run_without_the_new_columns(tmp_path: Path) -> None:
    run = write_run(tmp_path, new_columns=False)
    analysis = analyse("bots", [run], "level", windows=2)
    # steps 1-2: t0 t2 t0 t4 -> levels 1 2 1 3; steps 3-4: t1 t0 t5 t3 -> 1 1 3 2
    assert analysis.shares["1-2"].tolist() == [0.5, 0.25, 0.25]
    assert analysis.shares["3-4"].tolist() == [0.5, 0.25, 0.25]
    assert analysis.shares["pool"].tolist() == pytest.approx([1 / 3] * 3)
    assert analysis.again["repeat_share"] == 0.25 and analysis.again["median_gap"] == 1.0
    text, plots = chosen_section("bots", [run], tmp_path / "out", "level", windows=2)
    assert text.startswith("## What was chosen: bots\n")
    assert "No posterior: n/a" in text
    assert sorted(plots) == ["chosen-bots-by-level.png", "chosen-bots-capability.png",
                             "chosen-bots-pass-rates.png"]
    assert all((tmp_path / "out" / p).stat().st_size > 0 for p in plots)
    assert all(f"]({p})" in text for p in plots)


def test_report_builds_each_training_pool_once(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups on one domain share its pool (other settings may differ); another task table
    gets its own. The real `training_pool` runs; the wrapper only counts our calls of it."""
    import bots_cli.train.pool as pool_module
    from bots_cli.analysis.report import Run, _chosen_sections

    built: list[str] = []
    real = pool_module.training_pool

    def counted(cfg: object, *args: object, **kwargs: object) -> object:
        built.append(str(cfg.domain.data.train))  # type: ignore[attr-defined]
        return real(cfg, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pool_module, "training_pool", counted)
    paths = {"bots": write_run(tmp_path / "a", name="bots"),
             "uniform": write_run(tmp_path / "a", selector="uniform", name="uniform",
                                  overrides=("train.steps=5", "train.lr=0.001")),
             "mopps": write_run(tmp_path / "a", selector="mopps", name="mopps"),
             "other": write_run(tmp_path / "b", name="other")}  # another task table
    groups = {label: [Run(path=p, selector=label, seed=0, budget=4, settings={}, rows=[],
                          curve=[], overrides=None)] for label, p in paths.items()}
    settings = OmegaConf.create({"chosen": True, "column": "level"})
    sections = _chosen_sections(settings, groups, {"groups": dict.fromkeys(groups)},
                                tmp_path / "out")
    assert [s.splitlines()[0] for s in sections] == [f"## What was chosen: {g}" for g in groups]
    assert built == [str(tmp_path / "a" / "data" / "train.jsonl"),
                     str(tmp_path / "b" / "data" / "train.jsonl")]
    # A cache shared by direct calls too; different pool-defining settings are another pool.
    pools = TrainingPools()
    analyse("bots", [paths["bots"]], pools=pools)
    analyse("mopps", [paths["mopps"]], pools=pools)
    assert len(built) == 3
    fewer = write_run(tmp_path / "a", name="fewer", overrides=("train.max_tasks=5",))
    with pytest.raises(UserError, match=r"1 selected task\(s\) are not in the training pool"):
        analyse("fewer", [fewer], pools=pools)  # t5 is not in its own 5-task pool
    assert len(built) == 4


def test_a_run_config_without_a_domain_is_one_line(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    cfg = OmegaConf.load(run / "config.yaml")
    del cfg["domain"]
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    with pytest.raises(UserError, match=rf"^{run}/config.yaml: no domain section \(not a "
                                        r"training run's config; `bots train` writes them\)$"):
        analyse("bots", [run])


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_bots_inspect_writes_its_report_in_its_own_directory(tmp_path: Path) -> None:
    run = write_run(tmp_path / "world")
    before = _listing(run)
    out = run_bots("inspect", str(run), "inspect.windows=2", "inspect.bins=5", cwd=tmp_path,
                   timeout=300)
    assert out.returncode == 0, out.stderr
    assert _listing(run) == before  # nothing written into the run
    [report] = (tmp_path / "outputs" / "inspect").rglob("inspect.md")
    assert f"inspect: {report}" in " ".join(out.stdout.split())
    assert "bots inspect: 1 group(s)" in out.stdout
    text = report.read_text()
    assert "## What was chosen: bots" in text
    assert "| 1 | 0.33 | 0.50 | 0.50 | 0.50 |" in text  # level 1: pool, steps 1-2, 3-4, all
    assert "| 8 | 0.231 |" in text  # calibration: errors 0 .5 .4 .05 .2 .2 .5 0, MAE 0.23125
    assert "Pearson r = 1.00 between `selector/capability` and `eval/accuracy` over each run's " \
        "eval steps (3 in all)" in text  # capability 0.3 0.2 0.5 against accuracy 0.2 0.1 0.4
    for name in ("by-level", "pass-rates", "calibration", "capability"):
        assert (report.parent / f"chosen-bots-{name}.png").is_file()


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "error: {root}/nowhere: no such directory"),
    ("empty", "error: {root}/empty: not a training run"),
    ("simulation", "error: {root}/sim: not a training run"),
    ("no selections", "error: {root}/world/run: no selections.parquet"),
    ("column", "error: inspect.column=topic: the task table has no such column (available: "),
    ("no domain", "error: {root}/world/run/config.yaml: no domain section (not a training run"),
    ("none", "error: no runs given: bots inspect <run or multirun directory>"),
])
def test_bots_inspect_refuses_bad_input_in_one_line(tmp_path: Path, case: str,
                                                    message: str) -> None:
    run = write_run(tmp_path / "world")
    (tmp_path / "empty").mkdir()
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "config.yaml").write_text("simulate: {steps: 3}\nselector: {}\n")
    args = {"missing": [str(tmp_path / "nowhere")], "empty": [str(tmp_path / "empty")],
            "simulation": [str(tmp_path / "sim")], "no selections": [str(run)],
            "column": [str(run), "inspect.column=topic"], "none": [],
            "no domain": [str(run)]}[case]
    if case == "no selections":
        (run / "selections.parquet").unlink()
    if case == "no domain":  # a config with train and selector, as `bots inspect` looks for
        cfg = OmegaConf.load(run / "config.yaml")
        del cfg["domain"]
        (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    out = run_bots("inspect", *args, cwd=tmp_path, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(message.format(root=tmp_path)), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "outputs").exists()
