"""Run records: files first, truncated on resume; wandb through its real client, offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bots_cli.runs.records import RunLog, read_selections, recorded_costs, wandb_mode


def test_metrics_selections_and_samples(tmp_path: Path) -> None:
    log = RunLog(tmp_path)
    for step in (1, 2):
        log.log(step, {"train/reward_mean": np.float64(0.5) * step, "train/etr": 0.25})
        log.add_selections(step, ["a", "b"], np.array([1, 2]), np.array([4, 4]))
    log.log_samples(2, [{"prompt": "1+1=", "completion": "2", "reward": 1.0}])
    log.close()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "train/reward_mean": 0.5, "train/etr": 0.25},
                    {"step": 2, "train/reward_mean": 1.0, "train/etr": 0.25}]
    sel = pd.read_parquet(tmp_path / "selections.parquet")
    assert sel.columns.tolist() == ["step", "task_id", "successes", "trials", "round", "trained",
                                    "predicted"]
    assert sel["step"].tolist() == [1, 1, 2, 2] and sel["successes"].tolist() == [1, 2, 1, 2]
    assert sel["round"].tolist() == [1] * 4 and sel["trained"].all()  # the defaults
    assert sel["predicted"].isna().all()
    assert json.loads((tmp_path / "samples.jsonl").read_text())["completion"] == "2"


def test_resume_drops_everything_after_the_checkpoint(tmp_path: Path) -> None:
    log = RunLog(tmp_path)
    for step in (1, 2, 3):
        log.log(step, {"x": step})
        log.add_selections(step, ["a"], np.array([1]), np.array([2]))
        if step == 2:
            log.flush()  # the checkpoint of step 2 flushes the selections
    log.log_samples(3, [{"completion": "late"}])
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "x": ')  # torn by a kill mid-write
    resumed = RunLog(tmp_path, resume_step=2)
    resumed.log(3, {"x": 33})
    resumed.add_selections(3, ["b"], np.array([0]), np.array([2]))
    resumed.close()
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    sel = pd.read_parquet(tmp_path / "selections.parquet")
    assert sel["task_id"].tolist() == ["a", "a", "b"]
    assert (tmp_path / "samples.jsonl").read_text() == ""


def test_dynamic_sampling_rounds_are_recorded_and_old_files_read(tmp_path: Path) -> None:
    log = RunLog(tmp_path)
    log.add_selections(1, ["a", "b"], np.array([0, 2]), np.array([4, 4]), round=1,
                       trained=[False, True], predicted=[0.2, 0.6])
    log.add_selections(1, ["c"], np.array([1]), np.array([4]), round=2, trained=[True],
                       predicted=[0.4])
    log.close()
    sel = read_selections(tmp_path / "selections.parquet")
    assert sel["round"].tolist() == [1, 1, 2] and sel["trained"].tolist() == [False, True, True]
    assert sel["predicted"].tolist() == [0.2, 0.6, 0.4]
    # A file written before the three columns existed reads with their defaults.
    old = tmp_path / "old.parquet"
    pd.DataFrame({"step": [1], "task_id": ["a"], "successes": [1.0],
                  "trials": [4.0]}).to_parquet(old)
    sel = read_selections(old)
    assert sel["round"].tolist() == [1] and sel["trained"].tolist() == [True]
    assert sel["predicted"].isna().all()


def test_recorded_costs_read_or_rebuild_the_counts(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 0, "eval/accuracy": 0.1},
            {"step": 1, "train/response_len": 2.0, "train/rollouts": 40, "train/tokens": 90},
            {"step": 2, "train/response_len": 3.0, "train/rollouts": 72, "train/tokens": 170}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert recorded_costs(path, 2, per_step=32) == (72, 170)
    assert recorded_costs(path, 1, per_step=32) == (40, 90)
    # Rows from before the counts: 32 completions a step, each step's mean length × 32.
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if "train/r" not in k
                                        or k == "train/response_len"}) + "\n" for r in rows))
    assert recorded_costs(path, 2, per_step=32) == (64, 160)


def test_wandb_mirrors_metrics_offline(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    logger = {"name": "wandb", "mode": "offline", "project": "bots-test", "entity": None,
              "tags": ["ablation", "bots"]}
    log = RunLog(tmp_path, logger=logger, run_name="r", group="sweep-1",
                 config={"lambda": 0.1}, tags=["bots"])
    assert tuple(log.wandb_run.tags) == ("bots", "ablation")  # the config's tags, no repeats
    log.log(1, {"train/loss": 0.5})
    log.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    run_id = (tmp_path / "wandb_id.txt").read_text().strip()
    assert runs[0].name.endswith(run_id)


def test_auto_mode_is_offline_without_credentials(tmp_path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode("auto") == "offline"
    assert wandb_mode("disabled") == "disabled"
    with pytest.raises(ValueError, match=r"logger\.mode must be one of"):
        wandb_mode("cloud")


def test_a_broken_line_before_the_end_is_an_error_not_dropped(tmp_path: Path) -> None:
    from bots_cli.errors import UserError

    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": \n{"step": 2}\n')
    with pytest.raises(UserError, match="line 2 is not JSON"):
        RunLog(tmp_path, resume_step=2)
