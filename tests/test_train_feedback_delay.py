"""Feedback that arrives late in `bots train`, native and TRL (`train.feedback_delay`, DESIGN.md
§1.8): step t's evidence reaches the selector after step t + k's batch was selected, as in
asynchronous RL. Checked on the miniature world of tests/trainworld.py: a fresh selector fed the
recorded evidence k steps late reproduces every pick, no task is selected while its feedback is
pending, and a run killed with SIGKILL resumes with what was in flight.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from bots_cli.references.table import read_profile
from bots_cli.selection.build import build_selector
from tests.conftest import run_bots
from tests.trainworld import assert_same_run, kill_and_resume, metrics, run_dirs, train_args

B, G = 8, 4  # trainworld's train.batch_size and train.group_size
QUIET = ("train.eval_every=0", "train.live=false")


def _replay(run: Path, world: Path, delay: int) -> None:
    """Every step's picks (and predictions) are what a fresh selector picks when step t's
    recorded evidence reaches it after step t + delay's batch was selected."""
    cfg = OmegaConf.load(run / "config.yaml")
    ids = pd.read_json(world / "train.jsonl", lines=True)["task_id"].tolist()
    rates = []
    for name in ("tiny-weak", "tiny-strong"):
        table, _ = read_profile(world / "profiles" / "arith" / f"{name}.parquet")
        rates.append(table.set_index("task_id")["pass_rate"].reindex(ids).to_numpy())
    replay = build_selector(cfg.selector, n_tasks=len(ids), weak=rates[0], strong=rates[1],
                            seed=int(cfg.seed), group_size=int(cfg.train.group_size))
    index = {t: i for i, t in enumerate(ids)}
    steps = [frame for _, frame in pd.read_parquet(run / "selections.parquet").groupby("step")]
    for t, batch in enumerate(steps):
        picked = replay.select(B)
        assert [ids[i] for i in picked] == batch["task_id"].tolist(), f"step {t + 1}"
        mean = replay.alpha[picked] / (replay.alpha[picked] + replay.beta[picked])
        assert np.allclose(mean, batch["predicted"].to_numpy()), f"step {t + 1}: predictions"
        if t >= delay:  # step t − k's evidence arrives
            late = steps[t - delay]
            replay.update(np.array([index[x] for x in late["task_id"]]),
                          late["successes"].to_numpy(), late["trials"].to_numpy())


def _args(world: Path, trainer: str, *extra: str) -> list[str]:
    if trainer == "trl":
        pytest.importorskip("trl")
    return train_args(world, f"trainer={trainer}", *QUIET, *extra)


@pytest.mark.parametrize("trainer", ["native", "trl"])
def test_late_feedback_reaches_the_selector_k_steps_later(world: Path, tmp_path: Path,
                                                          trainer: str) -> None:
    out = run_bots(*_args(world, trainer, "train.steps=5", "train.feedback_delay=2"),
                   cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(tmp_path)
    rows = [r for r in metrics(run) if "train/rollouts" in r]
    assert [r.get("selector/fed_back_step") for r in rows] == [None, None, 1, 2, 3]
    selections = pd.read_parquet(run / "selections.parquet")
    tasks = [set(f["task_id"]) for _, f in selections.groupby("step")]
    for t in range(len(tasks)):  # a task whose feedback is pending is not selected again
        for earlier in tasks[max(0, t - 2):t]:
            assert not tasks[t] & earlier, f"step {t + 1} re-selected a task in flight"
    _replay(run, world, delay=2)
    for wrong in (0, 1, 3):  # the replay tells delays apart: any other one picks otherwise
        with pytest.raises(AssertionError, match="step"):
            _replay(run, world, delay=wrong)


@pytest.mark.parametrize(("trainer", "marker", "last"), [
    ("native", "step_3/state.pt", "step_6/state.pt"),
    ("trl", "checkpoint-3/bots_selector.pt", "checkpoint-6/bots_selector.pt"),
])
def test_a_killed_run_resumes_with_what_was_in_flight(world: Path, tmp_path: Path, trainer: str,
                                                       marker: str, last: str) -> None:
    """Killed with SIGKILL once its step-3 checkpoint is written (steps 2 and 3 in flight) and
    resumed to step 6, a run equals one that ran 6 steps: the evidence in flight is in the
    checkpoint, and arrives when it would have."""
    a, b, _ = kill_and_resume(lambda *extra: _args(world, trainer, *extra), tmp_path, 6, marker,
                              "train.feedback_delay=2", "train.checkpoint_every=3")

    def selector(run: Path) -> dict:
        state = torch.load(run / "checkpoints" / last, weights_only=False)
        held = state.get("trainer", state)["feedback_in_flight"]  # native: with the trainer's
        assert [step for step, _ in held] == [5, 6]
        return state["selector"]

    weights = ("checkpoints/step_6/model/model.safetensors" if trainer == "native"
               else "checkpoints/checkpoint-6/model.safetensors")
    assert_same_run(a, b, timing=lambda key: "time" in key, selector=selector, weights=weights)
    assert [r.get("selector/fed_back_step") for r in metrics(b)
            if "train/rollouts" in r] == [None, None, 1, 2, 3, 4]


def test_speed_screens_around_the_batches_in_flight(world: Path, tmp_path: Path) -> None:
    out = run_bots(*train_args(world, *QUIET, "train.steps=3", "train.feedback_delay=1",
                               "selector=speed", "selector.screen_rollouts=2"),
                   cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(tmp_path)
    rows = [r for r in metrics(run) if "train/rollouts" in r]
    assert [r.get("selector/fed_back_step") for r in rows] == [None, 1, 2]
    tasks = [set(f["task_id"]) for _, f in
             pd.read_parquet(run / "selections.parquet").groupby("step")]
    assert not tasks[1] & tasks[0] and not tasks[2] & tasks[1]
    spent = np.cumsum([r["train/screening_rollouts"] + (G - 2) * B for r in rows])
    assert [r["train/rollouts"] for r in rows] == spent.tolist()
