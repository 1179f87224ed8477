"""`BotsGRPOTrainer` against TRL's real GRPOTrainer (CPU, a random tiny Qwen2, no download)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("trl")

from transformers import TrainerCallback

from bots_cli.errors import InvalidValue
from bots_cli.integrations.trl import (
    STATE_FILE,
    BotsGRPOTrainer,
    SlotSampler,
    UnsupportedVersion,
    check_trl_version,
)
from bots_cli.selection import BotsSelector
from tests.conftest import REPO
from tests.integrations.trl_world import (
    RecordingReward,
    dataset,
    make_trainer,
    selector,
)


def test_slot_sampler_has_repeat_samplers_layout() -> None:
    from trl.trainer.utils import RepeatSampler

    theirs = RepeatSampler(list(range(40)), mini_repeat_count=4, batch_size=6, repeat_count=3,
                           shuffle=False)
    ours = SlotSampler(40, n_slots=6, mini_repeat_count=4, repeat_count=3)
    # Unshuffled, RepeatSampler's k-th batch holds rows 6k..6k+5; ours always the slots 0..5.
    assert list(ours) == [i % 6 for i in theirs] and len(ours) == len(theirs)


class OrderedSelector(BotsSelector):
    """A BotsSelector that notes each select and update call, and what it knew then."""

    events: list[tuple[str, int]]

    def select(self, batch_size: int) -> np.ndarray:
        self.events.append(("select", self.step))
        return super().select(batch_size)

    def update(self, ids, successes, trials) -> None:  # type: ignore[no-untyped-def]
        super().update(ids, successes, trials)
        self.events.append(("update", self.step))


@pytest.mark.parametrize("accumulation", [1, 2])
def test_each_batch_is_selected_after_the_previous_feedback(tmp_path: Path,
                                                            accumulation: int) -> None:
    """With TRL's default steps_per_generation == gradient_accumulation_steps the dataloader
    fetches the next batch before the last one's rewards exist; selection must still see them."""
    sel = selector(cls=OrderedSelector)
    sel.events = []
    trainer = make_trainer(tmp_path, sel=sel, per_device_train_batch_size=8 // accumulation,
                           gradient_accumulation_steps=accumulation, max_steps=4)
    trainer.train()
    assert sel.events == [e for g in range(4) for e in (("select", g), ("update", g + 1))]
    assert all((fb.trials == 4).all() and len(fb.ids) == 2 for fb in trainer.feedback)


def test_selector_is_told_exactly_the_rewards_trl_computed(tmp_path: Path) -> None:
    reward = RecordingReward()
    trainer = make_trainer(tmp_path, reward=reward, per_device_train_batch_size=16,
                           steps_per_generation=2, gradient_accumulation_steps=1, max_steps=6)
    logs = LoggedRows()
    trainer.add_callback(logs)
    trainer.train()
    assert len(trainer.feedback) == len(reward.calls) == 3  # one generation per 2 steps
    replay = selector()
    for fb, (task_ids, rewards) in zip(trainer.feedback, reward.calls, strict=True):
        by_task: dict[str, list[float]] = {}
        for t, r in zip(task_ids, rewards, strict=True):
            by_task.setdefault(t, []).append(r)
        assert [f"t{i}" for i in fb.ids] == list(by_task)
        np.testing.assert_array_equal(fb.successes, [sum(v) for v in by_task.values()])
        np.testing.assert_array_equal(fb.trials, [len(v) for v in by_task.values()])
        np.testing.assert_array_equal(replay.select(len(fb.ids)), fb.ids)
        replay.update(fb.ids, fb.successes, fb.trials)
    np.testing.assert_array_equal(replay.alpha, trainer.selector.alpha)
    np.testing.assert_array_equal(replay.beta, trainer.selector.beta)
    # What TRL's logging hands its loggers, as wandb's callback names it (one `train/` prefix).
    from transformers.integrations.integration_utils import rewrite_logs

    wandb = [rewrite_logs(row) for row in logs.rows if "etr" in row]  # generation steps
    assert wandb and {"train/etr", "train/zero_variance_share", "train/sampling_rounds",
                      "train/rollouts", "train/tokens", "train/selector/capability",
                      "train/selector/explored_share"} <= set(wandb[-1])
    assert not [key for row in wandb for key in row if key.startswith("train/train/")]


class LoggedRows(TrainerCallback):
    """Every row TRL's logging hands the loggers (wandb, tensorboard, ...)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_log(self, args: object, state: object, control: object, logs: dict | None = None,
               **kw: object) -> None:
        self.rows.append(dict(logs or {}))


def test_checkpoints_hold_the_selector_and_resume_continues_it(tmp_path: Path) -> None:
    first = make_trainer(tmp_path / "a", max_steps=4, save_strategy="steps", save_steps=2)
    first.train()
    checkpoint = tmp_path / "a" / "checkpoint-2"
    assert (checkpoint / STATE_FILE).is_file()
    resumed = make_trainer(tmp_path / "a", max_steps=4, save_strategy="steps", save_steps=2)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert [fb.ids.tolist() for fb in resumed.feedback] == \
        [fb.ids.tolist() for fb in first.feedback[2:]]
    a, b = first.selector.state_dict(), resumed.selector.state_dict()
    np.testing.assert_array_equal(a["alpha"], b["alpha"])
    assert a["rng"] == b["rng"] and first.selector.capability == resumed.selector.capability

    os.remove(checkpoint / STATE_FILE)
    again = make_trainer(tmp_path / "a", max_steps=4, save_strategy="steps", save_steps=2)
    with pytest.raises(ValueError, match=r"bots_selector\.pt is missing"):
        again.train(resume_from_checkpoint=str(checkpoint))


def test_checkpoints_end_generation_batches_whatever_the_accumulation(tmp_path: Path) -> None:
    """A generation batch of 3 micro-batches under gradient accumulation 2 is used up only
    every 3 optimizer steps (micro-batch 6); a checkpoint between would resume mid-batch."""
    odd = dict(per_device_train_batch_size=4, steps_per_generation=3,
               gradient_accumulation_steps=2, save_strategy="steps")
    for steps in (1, 2):
        with pytest.raises(ValueError, match=rf"save_steps \({steps}\) must be a multiple of 3"):
            make_trainer(tmp_path / "refused", save_steps=steps, **odd)
    trainer = make_trainer(tmp_path / "ok", save_steps=3, max_steps=3, **odd)
    trainer.train()
    saved = torch.load(tmp_path / "ok" / "checkpoint-3" / STATE_FILE, weights_only=False)
    assert saved["generations"] == len(trainer.feedback) == 2  # both batches used up


def test_keep_last_never_leaves_the_run_without_a_complete_checkpoint(tmp_path: Path) -> None:
    """With save_total_limit=1 the older checkpoint goes only once the new one holds the
    selector: here writing checkpoint-4's selector fails (once checkpoint-2 is saved, a
    directory is put in its way), and checkpoint-2 is still there, complete."""
    from bots_cli.runs.checkpoints import trl_checkpoints

    out = tmp_path / "checkpoints"

    class InTheWay(TrainerCallback):
        def on_save(self, args: object, state: object, control: object, **kw: object) -> None:
            (out / "checkpoint-4" / STATE_FILE / "in-the-way").mkdir(parents=True, exist_ok=True)

    trainer = make_trainer(out, max_steps=4, save_strategy="steps", save_steps=2,
                           save_total_limit=1)
    trainer.add_callback(InTheWay())
    with pytest.raises(IsADirectoryError):
        trainer.train()
    assert trl_checkpoints(tmp_path) == {2: out / "checkpoint-2"}
    for name in ("model.safetensors", "optimizer.pt", "trainer_state.json", "rng_state.pth"):
        assert (out / "checkpoint-2" / name).is_file(), name


def test_rewards_outside_the_unit_interval_need_a_rule(tmp_path: Path) -> None:
    with pytest.raises(InvalidValue, match="reward of 2 is outside"):
        make_trainer(tmp_path / "a", reward=RecordingReward(2.0), max_steps=1).train()
    ok = make_trainer(tmp_path / "b", reward=RecordingReward(2.0), max_steps=1,
                      trainer_cls=_with(success_threshold=1.5))
    ok.train()
    assert (ok.feedback[0].successes == ok.feedback[0].trials).all()


def _with(**kwargs: object) -> type:
    class Configured(BotsGRPOTrainer):
        def __init__(self, *args: object, **kw: object) -> None:
            super().__init__(*args, **kw, **kwargs)

    return Configured


class FirstTaskUnscorable(RecordingReward):
    """No reward (None, as TRL allows) for every completion of the first task of each call."""

    def __call__(self, completions: list[str], task_id: list[str], **kw: object) -> list:
        rewards = super().__call__(completions, task_id, **kw)
        return [None if t == task_id[0] else r for t, r in zip(task_id, rewards, strict=True)]


def test_dynamic_sampling_trains_the_informative_groups_when_one_is_unscorable(
        tmp_path: Path) -> None:
    """A group without a single reward is not evidence (task_evidence drops it), so the
    rounds' feedback is shorter than their rows; the groups trained on are still exactly the
    ones flagged `trained` (selections.parquet's column), told apart by the prompts TRL's loss
    received."""
    from collections import Counter

    from bots_cli.models.tiny import build_tokenizer

    task_of = dict(zip(dataset()["prompt"], dataset()["task_id"], strict=True))
    decode = build_tokenizer().decode
    seen: list[tuple[int, str]] = []  # (generation batch, task) of every row the loss received

    class LossRows(_with(dynamic_sampling=True, max_rounds=8)):  # type: ignore[misc]
        def _compute_loss(self, model: object, inputs: dict) -> object:
            for ids, mask in zip(inputs["prompt_ids"].tolist(), inputs["prompt_mask"].tolist(),
                                 strict=True):
                text = decode([t for t, k in zip(ids, mask, strict=True) if k])
                seen.append((self.generations, task_of[text]))
            return super()._compute_loss(model, inputs)

    reward = FirstTaskUnscorable()
    trainer = make_trainer(tmp_path, reward=reward, trainer_cls=LossRows,
                           per_device_train_batch_size=16, max_steps=2)
    trainer.train()
    unscorable = {task_ids[0] for task_ids, _ in reward.calls}
    for generation in (1, 2):
        rounds = [fb for fb in trainer.feedback if fb.generation == generation]
        trained = [f"t{i}" for fb in rounds for i in fb.ids[fb.trained]]
        assert len(trained) == 4 and all(fb.informative[fb.trained].all() for fb in rounds)
        assert not unscorable & set(trained)
        rows = Counter(task for g, task in seen if g == generation)
        assert rows == Counter(trained * 4), generation  # a task may be drawn in two rounds


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no column 'task_id'"):
        make_trainer(tmp_path, ds=dataset().rename_column("task_id", "id"))
    with pytest.raises(ValueError, match="repeats 't0'"):
        make_trainer(tmp_path, ds=dataset(ids=["t0"] * 40))
    with pytest.raises(ValueError, match="built for 30 tasks"):
        make_trainer(tmp_path, sel=selector(n=30))
    with pytest.raises(ValueError, match=r"save_steps \(3\) must be a multiple of 2: "):
        make_trainer(tmp_path, steps_per_generation=2, save_strategy="steps", save_steps=3)
    with pytest.raises(ValueError, match=r"remove_unused_columns=False"):
        make_trainer(tmp_path, remove_unused_columns=True).train()
    with pytest.raises(ValueError, match="map-style"):
        make_trainer(tmp_path, ds=dataset().to_iterable_dataset())
    with pytest.raises(UnsupportedVersion,
                       match=r"TRL 1\.15\.0 is installed.*trl>=1\.16\.0,<1\.17"):
        check_trl_version("1.15.0")


def _torchrun(tmp_path: Path, seed_mode: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun is not None
    return subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2",
                           str(REPO / "tests" / "integrations" / "trl_world.py"), str(tmp_path),
                           seed_mode], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)


def test_two_processes_select_alike_and_end_with_the_same_state(tmp_path: Path) -> None:
    out = _torchrun(tmp_path, "same")
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["processes"] == 2
    assert ranks[0] == ranks[1]  # selections, posterior and random state
    assert len(ranks[0]["selections"]) == 3


def test_two_processes_with_differently_seeded_selectors_stop(tmp_path: Path) -> None:
    out = _torchrun(tmp_path, "rank")
    assert out.returncode != 0
    assert "the processes' selectors chose different tasks" in out.stderr
