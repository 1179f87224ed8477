"""`bots evaluate` and `bots report` on miniature training runs, and the report's comparison on
hand-made curves (including a run that never reaches the baseline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bots_cli.analysis.comparison import format_metric
from bots_cli.analysis.report import Run, _cells, compare, group_runs
from bots_cli.errors import UserError
from bots_cli.references.table import write_with_settings
from tests.conftest import run_bots
from tests.trainworld import run_dirs, train_args

pytest.importorskip("transformers")


def _train(world: Path, cwd: Path, *extra: str) -> Path:
    out = run_bots(*train_args(world, "train.steps=4", "train.checkpoint_every=2", *extra),
                   cwd=cwd, timeout=600)
    assert out.returncode == 0, out.stderr
    return run_dirs(cwd)[-1]


def test_evaluate_checkpoints_resumes_and_refuses_other_settings(world: Path,
                                                                  tmp_path: Path) -> None:
    run = _train(world, tmp_path, "train.eval_every=0")
    args = ("evaluate", f"run={run}", "evaluate.n=2", "evaluate.max_tasks=20",
            "evaluate.chunk_size=8")
    out = run_bots(*args, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "arith avg@2" in out.stdout
    assert not (tmp_path / "outputs" / "evaluate").exists()  # the results went into the run
    table = pd.read_parquet(run / "evaluations" / "arith.parquet")
    assert sorted(table["step"].unique()) == [0, 2, 4]
    assert len(table) == 3 * 20 and (table["n"] == 2).all()
    rows = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 2, 4]
    for row in rows:
        part = table[table["step"] == row["step"]]
        assert row["eval/arith/accuracy"] == pytest.approx(part["avg_at_k"].mean())
        assert row["eval/arith/accuracy"] <= row["eval/arith/pass@2"] <= 1
        assert {"eval/arith/level_1", "eval/arith/level_2"} <= set(row)

    # A run killed in the last chunk of step 4: the table holds whole chunks only.
    import pyarrow.parquet as pq

    from bots_cli.references.table import settings_of

    settings = settings_of(pq.read_table(run / "evaluations" / "arith.parquet"))
    write_with_settings(run / "evaluations" / "arith.parquet", table.iloc[:-4], settings)
    again = run_bots(*args, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr
    resumed = pd.read_parquet(run / "evaluations" / "arith.parquet")
    pd.testing.assert_frame_equal(table, resumed)

    other = run_bots(*args, "evaluate.n=4", cwd=tmp_path)
    assert other.returncode == 2 and "evaluated with other settings (n: 2 there, 4 now)" in \
        other.stderr
    missing = run_bots(*args, "evaluate.steps=[3]", cwd=tmp_path)
    assert missing.returncode == 2 and "no checkpoint at step 3 (checkpoints: 2, 4)" in \
        missing.stderr


def test_training_evals_and_bots_evaluate_agree_on_the_same_weights(world: Path,
                                                                     tmp_path: Path) -> None:
    """Issue 23: the same weights, n, seed and tasks give the same accuracy in the training
    run's eval/accuracy and in `bots evaluate` (both sample the set in chunks of 256 tasks, chunk
    c with a seed from (seed, c)); samples.jsonl shows the prompt and the answer too."""
    run = _train(world, tmp_path, "train.eval_every=4", "train.eval_tasks=40", "train.eval_n=2",
                 "train.eval_seed=77")
    out = run_bots("evaluate", f"run={run}", "evaluate.steps=[0,4]", "evaluate.n=2",
                   "evaluate.max_tasks=40", "evaluate.seed=77", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    trained = {r["step"]: r["eval/accuracy"] for r in map(json.loads,
               (run / "metrics.jsonl").read_text().splitlines()) if "eval/accuracy" in r}
    evaluated = {r["step"]: r["eval/arith/accuracy"] for r in map(json.loads,
                 (run / "evaluations.jsonl").read_text().splitlines())}
    assert trained == evaluated and set(trained) == {0, 4}
    sample = json.loads((run / "samples.jsonl").read_text().splitlines()[0])
    assert {"prompt", "answer", "completion", "reward"} <= set(sample)
    assert sample["prompt"].endswith("=") and sample["answer"].isdigit()


def test_report_compares_two_runs(world: Path, tmp_path: Path) -> None:
    a = _train(world, tmp_path, "train.eval_every=2")
    b = _train(world, tmp_path, "train.eval_every=2", "selector=uniform")
    out = run_bots("report", str(a), str(b), cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    [report_dir] = [p.parent for p in (tmp_path / "outputs" / "report").rglob("report.md")]
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["baseline"] == "uniform" and set(summary["groups"]) == {"bots", "uniform"}
    assert summary["groups"]["uniform"]["ttb_100"]["values"] in ([1.0], [None])
    text = (report_dir / "report.md").read_text()
    assert "| uniform* |" in text and "| bots |" in text
    for png in ("accuracy.png", "etr.png", "chosen-bots-by-level.png",
                "chosen-uniform-pass-rates.png", "chosen-bots-calibration.png"):
        assert (report_dir / png).read_bytes()[:4] == b"\x89PNG"
    # what each selector chose, in the table's order; uniform has no posterior to calibrate
    assert text.index("## What was chosen: uniform") < text.index("## What was chosen: bots")
    uniform_part = text[text.index("## What was chosen: uniform"):
                        text.index("## What was chosen: bots")]
    assert "No posterior: n/a" in uniform_part
    assert "No posterior: n/a" not in text[text.index("## What was chosen: bots"):]

    alone = run_bots("report", str(a), cwd=tmp_path, timeout=600)
    assert alone.returncode == 0 and "no uniform run among these" in alone.stderr
    # a column the task table lacks leaves the sections out, saying which setting named it
    other = run_bots("report", str(a), "report.column=topic", "report.plot=false", cwd=tmp_path,
                     timeout=600)
    assert other.returncode == 0
    assert "warning: no 'what was chosen' section for bots: report.column=topic: the task " \
        "table has no such column" in other.stderr


def test_report_on_a_sweep_groups_by_the_swept_value(world: Path, tmp_path: Path) -> None:
    out = run_bots(*train_args(world, "train.steps=2", "train.eval_every=1"), "-m",
                   "lambda=0.1,0.5", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    [sweep] = list((tmp_path / "outputs" / "multirun" / "train").glob("*/*"))
    report = run_bots("report", str(sweep), "report.baseline='bots lam=0.1'", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    [summary] = list((tmp_path / "outputs" / "report").rglob("summary.json"))
    groups = json.loads(summary.read_text())["groups"]
    assert set(groups) == {"bots lam=0.1", "bots lam=0.5"}


def _run(selector: str, seed: int, scores: list[float], settings: dict | None = None) -> Run:
    steps = [0, 10, 20, 30]
    rows = [{"step": s, "train/etr": 0.5, "train/zero_variance_share": 0.5,
             "selector/explored_share": 1.0, "time/select": 0.01, "time/selector_update": 0.01,
             "time/step": 1.0} for s in steps[1:]]
    return Run(path=Path(f"/runs/{selector}/{seed}"), selector=selector, seed=seed, budget=30,
               settings={"selector.name": selector, **(settings or {})}, rows=rows,
               curve=list(zip(steps, scores, strict=True)))


def test_report_metrics_on_hand_made_curves() -> None:
    runs = [
        _run("uniform", 0, [0.1, 0.2, 0.3, 0.4]), _run("uniform", 1, [0.1, 0.2, 0.3, 0.4]),
        _run("bots", 0, [0.1, 0.4, 0.5, 0.5]), _run("bots", 1, [0.1, 0.3, 0.4, 0.45]),
        _run("mopps", 0, [0.1, 0.1, 0.2, 0.3]),  # never reaches uniform's best (0.4)
    ]
    summary = compare(group_runs(runs), "uniform")
    bots = summary["groups"]["bots"]
    # uniform reaches its best 0.4 at step 30; bots at 10 (seed 0) and 20 (seed 1).
    assert bots["ttb_100"]["values"] == pytest.approx([1 / 3, 2 / 3])
    assert bots["bsf_100"]["values"] == pytest.approx([1.25, 1.125])
    assert bots["selector_share"]["mean"] == pytest.approx(0.02)
    mopps = summary["groups"]["mopps"]
    assert np.isinf(mopps["ttb_100"]["values"][0])
    assert format_metric(mopps["ttb_100"]) == "never (1/1)"
    _, rows = _cells(summary)
    assert [r[0] for r in rows] == ["uniform*", "bots", "mopps"]
    assert "never (1/1)?" in rows[2]  # one seed: a single draw


def test_the_baseline_of_several_groups_is_the_one_at_the_shipped_settings(capsys) -> None:
    from bots_cli.analysis.report import pick_baseline

    key, ds = "train.dynamic_sampling.enabled", "dynamic_sampling.enabled"
    runs = [_run("uniform", 0, [0, 1, 1, 1], {key: False}),
            _run("uniform", 0, [0, 1, 1, 1], {key: True}),
            _run("bots", 0, [0, 1, 1, 1], {key: True})]
    groups = group_runs(runs)
    assert sorted(groups) == ["bots", f"uniform {ds}=False", f"uniform {ds}=True"]
    assert pick_baseline(groups, "uniform") == f"uniform {ds}=False"
    assert "the baseline is 'uniform dynamic_sampling.enabled=False'" in \
        capsys.readouterr().err
    # when the shipped settings do not single one out, the user names it
    lams = group_runs([_run("uniform", 0, [0, 1, 1, 1], {"selector.lam": 0.3}),
                       _run("uniform", 0, [0, 1, 1, 1], {"selector.lam": 0.5})])
    with pytest.raises(UserError, match="matches several groups"):
        pick_baseline(lams, "uniform")


def test_groups_split_by_settings_that_vary_within_a_selector() -> None:
    runs = [_run("bots", 0, [0, 1, 1, 1], {"selector.lam": 0.1}),
            _run("bots", 1, [0, 1, 1, 1], {"selector.lam": 0.1}),
            _run("bots", 0, [0, 1, 1, 1], {"selector.lam": 0.3}),
            _run("uniform", 0, [0, 1, 1, 1])]
    groups = group_runs(runs)
    assert sorted(groups) == ["bots lam=0.1", "bots lam=0.3", "uniform"]
    assert len(groups["bots lam=0.1"]) == 2


def _write_run(path: Path, selector: str = "uniform", choice: str | None = None,
               seed: int = 0) -> Path:
    """A hand-made training run directory: config.yaml, metrics.jsonl, and Hydra's choices."""
    import yaml

    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(
        {"seed": seed, "train": {"steps": 30}, "selector": {"name": selector}}))
    rows = [{"step": 0, "eval/accuracy": 0.1}]
    rows += [{"step": s, "train/etr": 0.5, "train/zero_variance_share": 0.5,
              "selector/explored_share": 1.0, "time/select": 0.01, "time/selector_update": 0.01,
              "time/step": 1.0, "eval/accuracy": 0.1 + s / 100} for s in (10, 20, 30)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if choice is not None:
        (path / ".hydra").mkdir()
        (path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(
            {"hydra": {"runtime": {"choices": {"selector": choice, "model": "tiny"}}}}))
    return path


def test_report_warns_once_for_each_run_it_skips(tmp_path: Path, capsys) -> None:
    from bots_cli.analysis.report import find_runs

    good = _write_run(tmp_path / "sweep" / "0")
    no_metrics = _write_run(tmp_path / "sweep" / "1")
    (no_metrics / "metrics.jsonl").unlink()
    corrupt = _write_run(tmp_path / "sweep" / "2")
    (corrupt / "config.yaml").write_text("train: [steps: 30\n")
    damaged = _write_run(tmp_path / "sweep" / "3")
    lines = (damaged / "metrics.jsonl").read_text().splitlines()
    (damaged / "metrics.jsonl").write_text("\n".join([lines[0], "{torn", *lines[1:]]) + "\n")
    no_eval = _write_run(tmp_path / "sweep" / "4")
    (no_eval / "metrics.jsonl").write_text(json.dumps({"step": 1, "train/etr": 0.5}) + "\n")
    report_dir = tmp_path / "sweep" / "report"  # not a training run: no word about it
    report_dir.mkdir()
    (report_dir / "config.yaml").write_text("report: {runs: []}\n")

    runs = find_runs([str(tmp_path / "sweep")], "eval/accuracy")
    assert [r.path for r in runs] == [good]
    warnings = capsys.readouterr().err.strip().splitlines()
    assert warnings == [
        f"warning: skipping {no_metrics}: no metrics.jsonl (the run never finished a step)",
        f"warning: skipping {corrupt}: config.yaml is not valid YAML (expected ',' or ']', "
        "but got '<stream end>' at line 2)",
        f"warning: skipping {damaged}: {damaged / 'metrics.jsonl'} line 2 is not JSON: the "
        "run's records are damaged; restore the file or start a new run",
        f"warning: skipping {no_eval}: no `eval/accuracy` values (set report.metric, or run "
        f"`bots evaluate run={no_eval}`)",
    ]


def test_a_selector_variant_is_named_by_its_config_choice(tmp_path: Path) -> None:
    from bots_cli.analysis.report import find_runs

    _write_run(tmp_path / "a", selector="bots", choice="my_bots")
    _write_run(tmp_path / "b", selector="bots", choice="bots")
    _write_run(tmp_path / "c", selector="uniform")  # no .hydra/: its name
    runs = find_runs([str(tmp_path)], "eval/accuracy")
    assert [r.selector for r in runs] == ["my_bots", "bots", "uniform"]
    assert set(group_runs(runs)) == {"my_bots", "bots", "uniform"}


def test_one_seed_prints_single_values_and_the_caption_says_so() -> None:
    from bots_cli.analysis.report import _caption

    one = compare(group_runs([_run("uniform", 0, [0.1, 0.2, 0.3, 0.4]),
                              _run("bots", 0, [0.1, 0.4, 0.5, 0.5])]), "uniform")
    header, rows = _cells(one)
    assert not any("±" in cell for row in rows for cell in row)
    assert rows[1][header.index("TTB100")] == "0.33?"  # a single draw, not a 67% speed-up
    caption = _caption(one)
    assert "1 seed per group: single values" in caption and "Mean±sd" not in caption
    assert "n/a: undefined (uniform did not improve on its step-0 score" in caption
    two = compare(group_runs([_run("uniform", 0, [0.1, 0.2, 0.3, 0.4]),
                              _run("uniform", 1, [0.1, 0.2, 0.3, 0.4])]), "uniform")
    assert "Mean±sd over seeds" in _caption(two)
    assert "sample standard deviation over seeds (n−1 in the denominator" in _caption(two)
    flat = compare(group_runs([_run("uniform", 0, [0.4, 0.3, 0.3, 0.3]),
                               _run("bots", 0, [0.1, 0.4, 0.5, 0.5])]), "uniform")
    _, rows = _cells(flat)
    assert rows[1][header.index("TTB100")] == "n/a"  # uniform was best at step 0
