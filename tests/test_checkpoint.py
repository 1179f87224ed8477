"""Checkpoints: atomic, discoverable, and restoring every random state."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from bots_cli.runs.checkpoints import (
    checkpoint_dir,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from bots_cli.selection import BotsSelector


def save_linear(model: torch.nn.Module) -> object:
    return lambda d: (d.mkdir(), torch.save(model.state_dict(), d / "weights.pt"))


def draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))  # noqa: NPY002


def test_round_trip_restores_model_optimizer_selector_and_rng(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sel = BotsSelector(10, rho=0.0)
    sel.update([1, 2], [1, 0], [2, 2])
    save_checkpoint(tmp_path, 5, {"optimizer": opt.state_dict(), "selector": sel.state_dict(),
                                  "trainer": {"step": 5}}, save_linear(model))
    expected = draws()

    state = load_checkpoint(checkpoint_dir(tmp_path, 5))
    assert draws() == expected  # every generator continues where it was saved
    restored = BotsSelector(10, rho=0.0)
    restored.load_state_dict(state["selector"])
    np.testing.assert_array_equal(restored.alpha, sel.alpha)
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 1).parameters(), lr=0.1)
    opt2.load_state_dict(state["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    weights = torch.load(checkpoint_dir(tmp_path, 5) / "model" / "weights.pt")
    torch.testing.assert_close(weights["weight"], model.weight.detach())
    assert state["trainer"] == {"step": 5} and state["step"] == 5


def test_latest_ignores_incomplete_and_temporary_dirs(tmp_path: Path) -> None:
    model = torch.nn.Linear(1, 1)
    assert latest_checkpoint(tmp_path) is None
    for step in (2, 10):
        save_checkpoint(tmp_path, step, {}, save_linear(model))
    (tmp_path / "checkpoints" / ".tmp-step_20").mkdir()  # killed while writing
    (tmp_path / "checkpoints" / "step_30").mkdir()  # no state.pt: not a checkpoint
    assert latest_checkpoint(tmp_path) == checkpoint_dir(tmp_path, 10)


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    model = torch.nn.Linear(1, 1)
    save_checkpoint(tmp_path, 1, {"x": 1}, save_linear(model))

    def crash(_: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        save_checkpoint(tmp_path, 2, {"x": 2}, crash)
    assert latest_checkpoint(tmp_path) == checkpoint_dir(tmp_path, 1)
    save_checkpoint(tmp_path, 1, {"x": 3}, save_linear(model))  # re-saving replaces whole
    assert load_checkpoint(checkpoint_dir(tmp_path, 1))["x"] == 3
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_1"]
