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

pytest.importorskip("trl")

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
    logged = [row for row in trainer.state.log_history if "train/etr" in row]
    assert logged and {"train/zero_variance_share", "selector/capability",
                       "selector/explored_share"} <= set(logged[-1])


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


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no column 'task_id'"):
        make_trainer(tmp_path, ds=dataset().rename_column("task_id", "id"))
    with pytest.raises(ValueError, match="repeats 't0'"):
        make_trainer(tmp_path, ds=dataset(ids=["t0"] * 40))
    with pytest.raises(ValueError, match="built for 30 tasks"):
        make_trainer(tmp_path, sel=selector(n=30))
    with pytest.raises(ValueError, match=r"save_steps \(3\) must be a multiple of the 2"):
        make_trainer(tmp_path, steps_per_generation=2, save_strategy="steps", save_steps=3)
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
