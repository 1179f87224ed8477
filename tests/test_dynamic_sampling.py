"""Dynamic sampling (`train.dynamic_sampling`, bots_cli/selection/dynamic.py) in both trainers.

Two pools of the miniature world make the two regimes certain: one of tasks the policy solves
sometimes (the batch fills with informative groups), one whose answers it can never give (no
group is informative, so every step runs `max_rounds` rounds). The counts are checked against
selections.parquet, and a replay of it into a fresh selector reproduces every round's choice:
every round's evidence went to the selector.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from bots_cli.references.table import read_profile
from bots_cli.selection.build import build_selector
from bots_cli.selection.dynamic import batch_groups, informative, refill_size
from tests.conftest import run_bots
from tests.trainworld import (
    assert_same_records,
    metrics,
    run_dirs,
    train_args,
    train_tasks,
)

B, G = 8, 4  # trainworld's train.batch_size and train.group_size
NEVER = "sampling.max_new_tokens=4"  # with the 6-digit answers of the unsolvable pool


def test_refill_asks_for_what_is_missing_over_the_share_seen() -> None:
    assert refill_size(missing=3, kept=13, generated=16, batch_size=16, pool=100) == 4
    assert refill_size(missing=9, kept=7, generated=16, batch_size=16, pool=100) == 16  # capped
    assert refill_size(missing=16, kept=0, generated=16, batch_size=16, pool=100) == 16
    assert refill_size(missing=2, kept=14, generated=16, batch_size=16, pool=100) == 3
    assert refill_size(missing=9, kept=7, generated=16, batch_size=16, pool=10) == 10
    # whole rows per process: a multiple of `multiple`, never past the batch
    assert refill_size(missing=3, kept=13, generated=16, batch_size=16, pool=100,
                       multiple=3) == 6
    assert refill_size(missing=16, kept=0, generated=16, batch_size=16, pool=100,
                       multiple=3) == 15


def test_the_batch_takes_informative_groups_first_then_the_earliest_others() -> None:
    flags = [False, True, False, True, True]
    assert batch_groups(flags, 2).tolist() == [1, 3]
    assert batch_groups(flags, 4).tolist() == [0, 1, 3, 4]
    assert batch_groups([False] * 5, 3).tolist() == [0, 1, 2]
    groups = [np.array([1.0, 1.0]), np.array([0.0, 1.0]), np.array([np.nan, 1.0]),
              np.array([0.5, np.nan, 0.0])]
    assert informative(groups).tolist() == [False, True, False, True]


def _pool(world: Path, name: str, solvable: bool) -> Path:
    """A train split: the tasks the weak policy (the run's start) solved sometimes when profiled
    (about 1 in 8 samples: a group of 4 is informative ~40% of the time), or tasks whose answer
    (6 digits) no completion can hold (`NEVER`: at most 4 tokens)."""
    weak, _ = read_profile(world / "profiles" / "arith" / "tiny-weak.parquet")
    rates = weak.set_index("task_id")["pass_rate"]
    tasks = train_tasks("train")
    if solvable:
        tasks = [t for t in tasks if 0 < rates[t["task_id"]] < 1]
        assert len(tasks) >= 2 * B, f"only {len(tasks)} tasks the policy sometimes solves"
    else:
        tasks = [{**t, "answer": "123456"} for t in tasks]
    path = world / f"{name}.jsonl"
    pd.DataFrame(tasks).to_json(path, orient="records", lines=True)
    return path


def _args(world: Path, pool: Path, *extra: str) -> list[str]:
    return [*train_args(world, "train.dynamic_sampling.enabled=true", "train.eval_every=0",
                        "train.live=false"), f"domain.data.train={pool}", *extra]


def _replay(run: Path, world: Path, pool: Path) -> object:
    """Every round's picks are what a fresh selector fed the recorded evidence would pick."""
    cfg = OmegaConf.load(run / "config.yaml")
    ids = pd.read_json(pool, lines=True)["task_id"].tolist()
    weak, _ = read_profile(world / "profiles" / "arith" / "tiny-weak.parquet")
    strong, _ = read_profile(world / "profiles" / "arith" / "tiny-strong.parquet")
    rates = [f.set_index("task_id")["pass_rate"].reindex(ids).to_numpy() for f in (weak, strong)]
    replay = build_selector(cfg.selector, n_tasks=len(ids), weak=rates[0], strong=rates[1],
                            seed=int(cfg.seed), group_size=int(cfg.train.group_size))
    selections = pd.read_parquet(run / "selections.parquet")
    for (step, rnd), batch in selections.groupby(["step", "round"], sort=True):
        picked = replay.select(len(batch))
        assert [ids[i] for i in picked] == batch["task_id"].tolist(), f"step {step} round {rnd}"
        mean = replay.alpha[picked] / (replay.alpha[picked] + replay.beta[picked])
        assert np.allclose(mean, batch["predicted"].to_numpy())
        replay.update(picked, batch["successes"].to_numpy(), batch["trials"].to_numpy())
    return replay


def _check_counts(run: Path, rounds_cap: int, group: int = G) -> pd.DataFrame:
    rows = [r for r in metrics(run) if "train/rollouts" in r]  # training steps, not step 0
    selections = pd.read_parquet(run / "selections.parquet")
    assert (selections["trials"] == group).all()
    per_step = selections.groupby("step")
    assert per_step["trained"].sum().tolist() == [B] * len(rows)  # always a full batch
    rounds = per_step["round"].max()
    assert rounds.tolist() == [r["train/sampling_rounds"] for r in rows]
    assert (rounds <= rounds_cap).all()
    for step, frame in per_step:  # rounds numbered 1..R, none larger than the first
        assert sorted(set(frame["round"])) == list(range(1, rounds[step] + 1))
        assert frame.groupby("round").size().max() <= B
    # cumulative completions: every round's, trained on or not
    assert [r["train/rollouts"] for r in rows] == (per_step["trials"].sum().cumsum()).tolist()
    tokens = [r["train/tokens"] for r in rows]
    assert tokens == sorted(tokens) and tokens[-1] >= rows[-1]["train/rollouts"]
    return selections


def test_native_fills_the_batch_with_informative_groups(world: Path, tmp_path: Path) -> None:
    pool = _pool(world, "mid", solvable=True)
    out = run_bots(*_args(world, pool, "train.steps=3", "train.dynamic_sampling.max_rounds=30",
                          "train.checkpoint_every=3"), cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(tmp_path)
    selections = _check_counts(run, rounds_cap=30)
    trained = selections[selections["trained"]]
    assert ((trained["successes"] > 0) & (trained["successes"] < G)).all()
    assert all(r["train/zero_variance_share"] == 0.0 for r in metrics(run))
    # ETR is of every task selected, the refills' equal-reward groups included
    informative = (selections["successes"] > 0) & (selections["successes"] < G)
    assert [r["train/etr"] for r in metrics(run)] == pytest.approx(
        informative.groupby(selections["step"]).mean().tolist())
    replay = _replay(run, world, pool)
    saved = torch.load(run / "checkpoints" / "step_3" / "state.pt", weights_only=False)
    assert np.array_equal(replay.alpha, saved["selector"]["alpha"])
    assert saved["trainer"]["rollouts"] == metrics(run)[-1]["train/rollouts"]


def test_native_stops_at_max_rounds_when_no_group_can_be_informative(world: Path,
                                                                     tmp_path: Path) -> None:
    pool = _pool(world, "never", solvable=False)
    out = run_bots(*_args(world, pool, "train.steps=2", "train.dynamic_sampling.max_rounds=3",
                          NEVER), cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(tmp_path)
    selections = _check_counts(run, rounds_cap=3)
    rows = metrics(run)
    assert [r["train/sampling_rounds"] for r in rows] == [3, 3]
    assert [r["train/rollouts"] for r in rows] == [3 * B * G, 6 * B * G]  # full refills
    assert (selections["successes"] == 0).all()
    # the batch is round 1's groups (the earliest), and nothing carried a signal to train on
    assert (selections[selections["trained"]]["round"] == 1).all()
    assert all(r["train/etr"] == 0.0 and r["train/zero_variance_share"] == 1.0
               and r["train/grad_norm"] == 0.0 for r in rows)
    _replay(run, world, pool)


def test_a_resumed_run_continues_the_rounds_and_the_counts(world: Path, tmp_path: Path) -> None:
    """Stopped at its step-2 checkpoint and resumed to step 4, a run equals one that ran 4 steps:
    refill rounds draw from (seed, step, round), the counters are in the checkpoint."""
    pool = _pool(world, "mid", solvable=True)
    common = ("train.dynamic_sampling.max_rounds=30", "train.checkpoint_every=2")
    out = run_bots(*_args(world, pool, "train.steps=4", *common), "hydra.run.dir=whole",
                   cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    out = run_bots(*_args(world, pool, "train.steps=2", *common), "hydra.run.dir=cut",
                   cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    out = run_bots("train", f"resume={tmp_path / 'cut'}", "train.steps=4", cwd=tmp_path,
                   timeout=600)
    assert out.returncode == 0, out.stderr

    assert_same_records(tmp_path / "whole", tmp_path / "cut")


def test_without_dynamic_sampling_every_step_costs_one_batch(world: Path,
                                                             tmp_path: Path) -> None:
    out = run_bots(*train_args(world, "train.steps=3", "train.eval_every=0"), cwd=tmp_path,
                   timeout=600)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(tmp_path)
    rows = metrics(run)
    assert [r["train/rollouts"] for r in rows] == [B * G, 2 * B * G, 3 * B * G]
    assert [r["train/sampling_rounds"] for r in rows] == [1, 1, 1]
    selections = pd.read_parquet(run / "selections.parquet")
    assert (selections["round"] == 1).all() and selections["trained"].all()
    # the mean completion length times the completions of each step adds up to the tokens
    tokens = np.cumsum([r["train/response_len"] * B * G for r in rows])
    assert np.allclose(tokens, [r["train/tokens"] for r in rows])


def test_trl_fills_the_batch_and_stops_at_max_rounds(world: Path, tmp_path: Path) -> None:
    pytest.importorskip("trl")
    mid, never = _pool(world, "mid", solvable=True), _pool(world, "never", solvable=False)
    for name, pool, cap, extra in (("mid", mid, 30, ()), ("never", never, 2, (NEVER,))):
        out = run_bots(*_args(world, pool, "trainer=trl", "train.steps=2",
                              f"train.dynamic_sampling.max_rounds={cap}", *extra),
                       f"hydra.run.dir=runs/{name}", cwd=tmp_path, timeout=600)
        assert out.returncode == 0, out.stderr
        selections = _check_counts(tmp_path / "runs" / name, rounds_cap=cap)
        _replay(tmp_path / "runs" / name, world, pool)
        trained = selections[selections["trained"]]
        if name == "mid":
            assert ((trained["successes"] > 0) & (trained["successes"] < G)).all()
        else:
            assert (selections.groupby("step")["round"].max() == 2).all()
            assert (trained["round"] == 1).all()


def test_trl_two_processes_share_the_rounds(world: Path, tmp_path: Path) -> None:
    """Two processes, an odd group size (3 completions: a refill round must hold an even number
    of tasks so each process gets whole rows), the same selections and selector state."""
    pytest.importorskip("trl")
    from tests.test_train_trl import _launcher, selector_state

    pool = _pool(world, "mid", solvable=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([_launcher("torchrun"), "--standalone", "--nproc_per_node", "2", "-m",
                          "bots_cli", *_args(world, pool, "trainer=trl", "train.steps=2",
                                             "train.group_size=3",
                                             "train.dynamic_sampling.max_rounds=30",
                                             "train.checkpoint_every=2")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    [run] = run_dirs(tmp_path)
    selections = _check_counts(run, rounds_cap=30, group=3)
    later = selections[selections["round"] > 1].groupby(["step", "round"]).size()
    assert (later % 2 == 0).all(), "a refill round split a group's rows between processes"
    trained = selections[selections["trained"]]
    assert ((trained["successes"] > 0) & (trained["successes"] < 3)).all()
    digests = selector_state(run / "checkpoints" / "checkpoint-2")["process_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    _replay(run, world, pool)


def test_bad_max_rounds_is_one_line(world: Path, tmp_path: Path) -> None:
    out = run_bots(*train_args(world, "train.dynamic_sampling.max_rounds=0"), cwd=tmp_path,
                   timeout=600)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith(
        "error: train.dynamic_sampling.max_rounds must be")
    assert not (tmp_path / "outputs").exists() or not run_dirs(tmp_path)

