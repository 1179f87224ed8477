"""`bots train` end to end on a miniature world: one-digit sums and a 0.1M-parameter tiny model.

The world is built through the real config (a task table of our own, `model.build.*` shrunk) and
profiled with the real `bots profile-refs`, so the runs below exercise exactly what users run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from bots_cli.references.table import read_profile
from bots_cli.selection.build import build_selector
from tests.conftest import run_bots
from tests.trainworld import (
    STEP_KEYS,
    assert_same_run,
    kill_and_resume,
    metrics,
    run_dirs,
    train_args,
    train_tasks,
)

pytest.importorskip("transformers")


def test_smoke_run_learns_records_and_checkpoints(world: Path, tmp_path: Path) -> None:
    out = run_bots(*train_args(world, "train.steps=6", "train.eval_every=3",
                               "train.checkpoint_every=3"), cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(tmp_path)
    rows = metrics(run)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5, 6]
    assert "eval/accuracy" in rows[0] and "train/loss" not in rows[0]
    for row in rows[1:]:
        assert STEP_KEYS <= set(row), STEP_KEYS - set(row)
    assert {r["step"] for r in rows if "eval/accuracy" in r} == {0, 3, 6}
    assert all(0 <= r["eval/accuracy"] <= r["eval/pass@2"] <= 1 for r in rows if "eval/pass@2" in r)
    assert any(r["train/grad_norm"] > 0 for r in rows[1:]), "no step had a learning signal"

    selections = pd.read_parquet(run / "selections.parquet")
    assert len(selections) == 6 * 8 and set(selections["step"]) == set(range(1, 7))
    assert (selections["trials"] == 4).all()
    assert selections.groupby("step")["task_id"].nunique().eq(8).all()
    # The step's reward mean is the mean of the successes the selector was told.
    told = selections.groupby("step")["successes"].sum() / (8 * 4)
    assert np.allclose(told.to_numpy(), [r["train/reward_mean"] for r in rows[1:]])

    start = load_file(str(world / "models" / "arith" / "weak" / "model.safetensors"))
    end = load_file(str(run / "checkpoints" / "step_6" / "model" / "model.safetensors"))
    assert any(not torch.equal(start[k], end[k]) for k in start), "the weights did not change"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_3", "step_6"]
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {0, 3, 6} and "completion" in samples[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["eval_final"]["step"] == 6 and summary["selector"] == "bots"
    assert summary["checkpoint_seconds"] > 0  # two checkpoints were written and timed


def test_selector_was_told_exactly_each_batch(world: Path, tmp_path: Path) -> None:
    """Replaying selections.parquet into a fresh selector reproduces every batch and the final
    posterior of the run's checkpoint: the selector saw exactly these successes and trials."""
    out = run_bots(*train_args(world, "train.steps=5", "train.eval_every=0"), cwd=tmp_path,
                   timeout=600)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(tmp_path)
    cfg = OmegaConf.load(run / "config.yaml")
    ids = [t["task_id"] for t in train_tasks("train")]
    weak, _ = read_profile(world / "profiles" / "arith" / "tiny-weak.parquet")
    strong, _ = read_profile(world / "profiles" / "arith" / "tiny-strong.parquet")
    rates = [f.set_index("task_id")["pass_rate"].reindex(ids).to_numpy() for f in (weak, strong)]
    replay = build_selector(cfg.selector, n_tasks=len(ids), weak=rates[0], strong=rates[1],
                            seed=int(cfg.seed), group_size=4)
    selections = pd.read_parquet(run / "selections.parquet")
    for step, batch in selections.groupby("step", sort=True):
        picked = replay.select(8)
        assert [ids[i] for i in picked] == batch["task_id"].tolist(), f"step {step}"
        replay.update(picked, batch["successes"].to_numpy(), batch["trials"].to_numpy())
    saved = torch.load(run / "checkpoints" / "step_5" / "state.pt", weights_only=False)
    mine = replay.state_dict()
    assert np.array_equal(mine["alpha"], saved["selector"]["alpha"])
    assert np.array_equal(mine["beta"], saved["selector"]["beta"])


def test_sigkill_and_resume_equals_an_uninterrupted_run(world: Path, tmp_path: Path) -> None:
    a, b, _ = kill_and_resume(lambda *extra: train_args(world, *extra), tmp_path, 8,
                              "step_4/state.pt", "train.eval_every=4",
                              "train.checkpoint_every=2", "train.live=false")
    def selector(run: Path) -> dict:
        return torch.load(run / "checkpoints" / "step_8" / "state.pt",
                          weights_only=False)["selector"]

    assert_same_run(a, b, timing=lambda key: key.startswith("time/"), selector=selector,
                    weights="checkpoints/step_8/model/model.safetensors")


def test_two_value_sweep_runs_each_job_in_its_own_directory(world: Path, tmp_path: Path) -> None:
    out = run_bots(*train_args(world, "train.steps=2", "train.eval_every=0"), "-m",
                   "selector=bots,uniform", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    runs = run_dirs(tmp_path)
    assert [r.name for r in runs] == ["0", "1"]
    assert [json.loads((r / "summary.json").read_text())["selector"] for r in runs] == \
        ["bots", "uniform"]


@pytest.mark.parametrize(("override", "message"), [
    ("train.group_size=1", "train.group_size must be ≥ 2"),
    ("train.batch_size=101", "train.batch_size (101) exceeds the training pool (100 tasks)"),
    ("train.mini_batch_size=3", "train.mini_batch_size (3) must divide train.batch_size (8)"),
    ("train.steps=0", "train.steps must be ≥ 1"),
    ("train.lr=0", "train.lr"),
])
def test_invalid_settings_fail_in_one_line(world: Path, tmp_path: Path, override: str,
                                           message: str) -> None:
    out = run_bots(*train_args(world, override), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and message in out.stderr, out.stderr
    assert not list((tmp_path / "outputs").rglob("checkpoints"))


def test_missing_profiles_name_the_command_to_run(world: Path, tmp_path: Path) -> None:
    out = run_bots(*train_args(world), f"train.profiles_dir={tmp_path / 'none'}", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "bots profile-refs domain=arith" in out.stderr
    ok = run_bots(*train_args(world, "train.steps=1", "train.eval_every=0", "selector=uniform"),
                  f"train.profiles_dir={tmp_path / 'none'}", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr  # uniform reads no references


def test_resume_refuses_to_change_the_run(world: Path, tmp_path: Path) -> None:
    out = run_bots(*train_args(world, "train.steps=2", "train.eval_every=0"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(tmp_path)
    changed = run_bots("train", f"resume={run}", "selector=uniform", cwd=tmp_path)
    assert changed.returncode == 2 and "selector cannot change when resuming" in changed.stderr
    done = run_bots("train", f"resume={run}", cwd=tmp_path)
    assert done.returncode == 2 and "already finished its 2 steps" in done.stderr
    more = run_bots("train", f"resume={run}", "train.steps=3", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert [r["step"] for r in metrics(run)][-1] == 3
    empty = tmp_path / "empty"
    (empty).mkdir()
    (empty / "config.yaml").write_text((run / "config.yaml").read_text())
    none = run_bots("train", f"resume={empty}", cwd=tmp_path)
    assert none.returncode == 2 and "no complete checkpoint" in none.stderr


def test_ppo_epochs_minibatches_kl_and_bf16_weights_run(world: Path, tmp_path: Path) -> None:
    """The less travelled options: two PPO epochs over 2 mini-batches of 3-completion micro-
    batches, a KL penalty to the initial policy, bf16 weights, gradient checkpointing, the loss
    normalised over the whole batch."""
    out = run_bots(*train_args(world, "train.steps=4", "train.eval_every=0",
                               "train.ppo_epochs=2", "train.mini_batch_size=4",
                               "train.micro_batch_size=3", "train.kl_coef=0.1",
                               "train.precision=bf16", "train.gradient_checkpointing=true",
                               "train.loss_norm=batch"),
                   cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(tmp_path)
    rows = metrics(run)  # eval_every=0: training steps only
    assert any(r["train/grad_norm"] > 0 for r in rows)
    assert any(r["train/kl"] > 0 for r in rows), "the policy never moved away from its start"
    weights = load_file(str(run / "checkpoints" / "step_4" / "model" / "model.safetensors"))
    assert next(iter(weights.values())).dtype == torch.bfloat16


def test_profiles_of_another_build_are_refused(world: Path, tmp_path: Path) -> None:
    """A tiny world rebuilt with other settings makes the old profiles stale: never used."""
    out = run_bots(*train_args(world, "model.build.seed=1", f"model.build.dir={tmp_path}"),
                   cwd=tmp_path, timeout=600)
    last = out.stderr.strip().splitlines()[-1]  # after the new build's progress lines
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert last.startswith("error: the weak profile") and "was made from tiny build" in last
    assert last.endswith("profile.overwrite=true`")


@pytest.mark.parametrize("plugin", [
    ["selector.implicit.name=groups", "selector.implicit.column=level"],
    ["selector.implicit.name=knn", "selector.implicit.k=5"],  # TF-IDF of the prompts
], ids=["groups", "knn"])
def test_plug_ins_train_without_reference_profiles(world: Path, tmp_path: Path,
                                                    plugin: list[str]) -> None:
    """BOTS with implicit evidence from task groups or prompt neighbours: no profile on disk is
    needed or read."""
    empty = tmp_path / "no-profiles"
    empty.mkdir()
    args = [a if not a.startswith("train.profiles_dir=") else f"train.profiles_dir={empty}"
            for a in train_args(world, "train.steps=3", "train.eval_every=0", *plugin,
                                "selector.rho_schedule=calibrated",
                                "selector.lam_schedule=adaptive")]
    out = run_bots(*args, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = metrics(run_dirs(tmp_path)[0])
    for row in rows:
        assert {"selector/rho", "selector/lam", "selector/implicit_error"} <= set(row)
        assert 0 <= row["selector/rho"] <= 0.1 and row["selector/implicit_error"] >= 0
    assert not list(empty.iterdir())
