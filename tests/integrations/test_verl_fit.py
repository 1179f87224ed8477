"""BOTS inside verl 0.9.1 as a user launches it: verl's `run_ppo` starts a local Ray, the task
runner is a real Ray actor, and verl's own `RayPPOTrainer.fit()` drives every step (its dataloader,
`_get_gen_batch`, agent loop, reward loop with the project's verl reward function, unions,
`balance_batch`, advantages, `_update_actor`, `_save_checkpoint` / `_load_checkpoint`). Only the
GPU parts are stood in: the actor worker and the rollout server (`verl_standins.py` says exactly
where verl stops on a CPU and what the stand-ins return).

`make verl-check` runs this file (`make test` too, in `.venv-verl`): seven verl runs of ~1.5 min
each, most of it Ray starting verl's actors (four without a feedback delay, three with one).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("verl")

import torch
from omegaconf import OmegaConf

from bots_cli.integrations.verl.sampler import BotsSampler
from bots_cli.integrations.verl.trainer import SAMPLER_STATE
from tests.conftest import REPO, run_bots
from tests.integrations.verl_fit import BATCH, GROUP

TASKS, STEPS = 24, 7  # 3 steps an epoch: a resume after step 3 is at an epoch boundary, 5 is not
BUILT = re.compile(r"bots: verl builds BotsSampler \(selector=bots, 24 tasks\) and "
                   r"BotsRayPPOTrainer")


@pytest.fixture(scope="module")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 24 arith tasks as `bots export format=verl` writes them (shipped references)."""
    root = tmp_path_factory.mktemp("verl_fit")
    out = run_bots("export", "domain=arith", "format=verl", "model=tiny",
                   f"export.out_dir={root / 'export'}", "export.splits=[train]", cwd=root,
                   timeout=300)
    assert out.returncode == 0, out.stderr
    frame = pd.read_parquet(root / "export" / "train.parquet").iloc[:TASKS]
    frame.to_parquet(root / "train.parquet")
    return root / "train.parquet"


def fit(data: Path, out: Path, steps: int, resume: bool = False, *extra: str) -> str:
    """One verl run (its own process and Ray) with verl overrides `extra`; returns what it
    printed."""
    args = [sys.executable, "-m", "tests.integrations.verl_fit", "--data", str(data),
            "--out", str(out), "--steps", str(steps), *(["--resume"] if resume else []), *extra]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    return done.stdout + done.stderr


def updates(out: Path) -> list[dict[str, Any]]:
    """What verl handed the actor update at each step, in order (runs of a resumed dir append)."""
    lines = (out / "actor_updates.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def per_task(update: dict[str, Any]) -> dict[int, tuple[float, int]]:
    """Each task of a step's batch: (sum of its responses' rewards, responses)."""
    out: dict[int, tuple[float, int]] = {}
    for task, score in zip(update["task"], update["score"], strict=True):
        s, n = out.get(task, (0.0, 0))
        out[task] = (s + score, n + 1)
    return out


def saved_state(out: Path, step: int) -> dict[str, Any]:
    path = out / "ckpt" / f"global_step_{step}" / SAMPLER_STATE
    return torch.load(path, weights_only=False)


def replay_sampler(data: Path) -> BotsSampler:
    """A BotsSampler built as the run's own (the same data and data.sampler settings)."""
    config = OmegaConf.create({"train_batch_size": BATCH, "dataloader_num_workers": 0,
                               "sampler": {"selector": {"name": "bots", "lam": 0.2},
                                           "group_size": GROUP, "seed": 3}})
    return BotsSampler(data_source=pd.read_parquet(data), data_config=config)


@pytest.fixture(scope="module")
def uninterrupted(train_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("uninterrupted")
    return out, fit(train_data, out, STEPS)


def test_verl_builds_bots_in_its_ray_actor(uninterrupted: tuple[Path, str]) -> None:
    """The line comes from the TaskRunner actor (Ray prefixes its pid), once."""
    _, printed = uninterrupted
    lines = [line for line in printed.splitlines() if BUILT.search(line)]
    assert len(lines) == 1 and re.match(r"\S*\(CpuTaskRunner pid=\d+\)", lines[0]), lines


def test_every_batch_is_botss_and_the_selector_gets_verls_rewards(
        train_data: Path, uninterrupted: tuple[Path, str]) -> None:
    """A fresh selector, told each step what verl's reward loop scored, picks every batch the
    run trained on, in turn (no lag: a batch is chosen after the previous step's feedback) and
    ends at the posterior the run saved."""
    out, _ = uninterrupted
    steps = updates(out)
    assert [u["step"] for u in steps] == list(range(1, STEPS + 1))
    replay = replay_sampler(train_data)
    for update in steps:
        rows = replay.select_batch()
        tasks = per_task(update)
        assert sorted(int(replay.task_index[r]) for r in rows) == sorted(tasks), update["step"]
        assert all(n == GROUP for _, n in tasks.values())
        ids = np.asarray(rows, dtype=np.int64)
        replay.selector.update(ids, np.asarray([tasks[int(replay.task_index[r])][0] for r in rows]),
                               np.full(len(rows), GROUP))
        saved = saved_state(out, update["step"])["selector"]
        np.testing.assert_array_equal(saved["alpha"], replay.selector.alpha)
        np.testing.assert_array_equal(saved["beta"], replay.selector.beta)
    # The selection metrics reach verl's logger with the step's own numbers.
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for update, row in zip(steps, logged, strict=True):
        tasks = per_task(update).values()
        assert row["data"]["train/etr"] == np.mean([0 < s < n for s, n in tasks])
        assert row["data"]["train/rollouts"] == update["step"] * BATCH * GROUP


def test_a_resume_at_an_epoch_boundary_and_mid_epoch_continues_the_same_run(
        train_data: Path, uninterrupted: tuple[Path, str],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Stopped after step 3 (an epoch boundary: verl skips its dataloader state there), resumed,
    stopped after step 5 (mid-epoch), resumed to the end: the same batches, the same rewards and
    the same posterior, random generator included, as the run that was never stopped."""
    full, _ = uninterrupted
    out = tmp_path_factory.mktemp("interrupted")
    fit(train_data, out, 3)
    printed = fit(train_data, out, 5, resume=True)
    assert "Skipping dataloader state restore: global_steps=3 is at an epoch boundary" in printed
    printed = fit(train_data, out, STEPS, resume=True)
    assert "Skipping dataloader state restore" not in printed  # step 5: verl restored it
    assert [u["step"] for u in updates(out)] == list(range(1, STEPS + 1))
    for mine, theirs in zip(updates(out), updates(full), strict=True):
        assert per_task(mine) == per_task(theirs), mine["step"]
    final, expected = saved_state(out, STEPS), saved_state(full, STEPS)
    for key in ("alpha", "beta"):
        np.testing.assert_array_equal(final["selector"][key], expected["selector"][key])
    assert final["selector"]["rng"] == expected["selector"]["rng"]
    assert (final["rollouts"], final["tokens"]) == (expected["rollouts"], expected["tokens"])


DELAY = "+data.sampler.feedback_delay=2"  # two batches in flight: 3 batches = the 24 tasks


@pytest.fixture(scope="module")
def delayed(train_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("delayed")
    fit(train_data, out, 5, False, DELAY)
    return out


def test_late_feedback_under_ray_reaches_the_selector_two_steps_later(
        train_data: Path, delayed: Path) -> None:
    """With data.sampler.feedback_delay=2, step t's rewards reach the selector after step t+2's
    batch was chosen: no batch holds a task of the two before it, a fresh selector told each
    step's rewards two steps late picks every batch and ends at each saved posterior, and verl's
    logger gets `selector/fed_back_step`."""
    steps = updates(delayed)
    assert [u["step"] for u in steps] == [1, 2, 3, 4, 5]
    batches = [set(per_task(u)) for u in steps]
    for t in range(2, len(batches)):  # with 24 tasks, each batch is the 8 not in flight
        assert not batches[t] & (batches[t - 1] | batches[t - 2]), t + 1
    replay = replay_sampler(train_data)
    for t, update in enumerate(steps):
        rows = replay.select_batch()
        assert sorted(int(replay.task_index[r]) for r in rows) == sorted(batches[t]), t + 1
        if t >= 2:
            late = per_task(steps[t - 2])
            back = [replay.row_of[task] for task in late]
            replay.selector.update(np.asarray(back, dtype=np.int64),
                                   np.asarray([late[task][0] for task in late]),
                                   np.asarray([late[task][1] for task in late]))
        saved = saved_state(delayed, update["step"])
        np.testing.assert_array_equal(saved["selector"]["alpha"], replay.selector.alpha)
        assert [s for s, _ in saved["feedback_in_flight"]] == list(range(max(1, t), t + 2))
    logged = [json.loads(line) for line in (delayed / "metrics.jsonl").read_text().splitlines()]
    assert [row["data"].get("selector/fed_back_step") for row in logged] == [None, None, 1, 2, 3]


def test_a_delayed_run_resumed_mid_epoch_keeps_what_was_in_flight(
        train_data: Path, delayed: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Stopped after step 4 (mid-epoch: verl restores the sampler through its dataloader state)
    with steps 3 and 4 in flight, resumed to 5: the same batches and the same posterior."""
    out = tmp_path_factory.mktemp("delayed_resumed")
    fit(train_data, out, 4, False, DELAY)
    fit(train_data, out, 5, True, DELAY)
    assert [per_task(u) for u in updates(out)] == [per_task(u) for u in updates(delayed)]
    final, expected = saved_state(out, 5), saved_state(delayed, 5)
    for key in ("alpha", "beta"):
        np.testing.assert_array_equal(final["selector"][key], expected["selector"][key])
    assert final["selector"]["rng"] == expected["selector"]["rng"]
    assert [s for s, _ in final["feedback_in_flight"]] == [4, 5]


def test_the_launcher_builds_bots_in_verls_actor_then_stops_where_a_cpu_does(
        train_data: Path, tmp_path: Path) -> None:
    """`python -m bots_cli.integrations.verl.main` as a user runs it, nothing stood in: verl's
    TaskRunner actor builds BOTS' sampler and trainer (its line), then verl's real actor worker
    stops this CPU machine where verl_standins.py says (torch.distributed without NCCL)."""
    from tests.integrations.verl_fit import overrides

    args = [a for a in overrides(train_data, tmp_path, 1, False, [])
            if not a.startswith(("actor_rollout_ref.rollout.name=", "trainer.logger="))]
    done = subprocess.run([sys.executable, "-m", "bots_cli.integrations.verl.main", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    printed = done.stdout + done.stderr
    assert done.returncode != 0 and BUILT.search(printed), printed[-6000:]
    assert "Distributed package doesn't have NCCL built in" in printed, printed[-6000:]
