"""SPEED's screening (`selector=speed`, bots_cli/selection/speed.py) in the native `bots train`.

Each step screens candidates with n0 completions each, keeps the intermediate ones, and samples
the other G − n0 completions of the batch; every completion generated, screened out or not, is
counted in `train/rollouts` and `train/tokens`, and a killed run resumes where the uninterrupted
one would be. The miniature world of tests/trainworld.py trains it; TRL and verl refuse it
(test_bad_inputs.py, test_rivals.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tests.conftest import run_bots
from tests.trainworld import (
    assert_same_records,
    kill_and_resume,
    metrics,
    run_dirs,
    train_args,
)

B, G = 8, 4  # trainworld's train.batch_size and train.group_size
N0, RATIO = 2, 2.0  # screening rollouts per candidate; candidates per round over B
SPEED = ("selector=speed", f"selector.screen_rollouts={N0}", f"selector.screen_ratio={RATIO}",
         "train.eval_every=0", "train.live=false")


def _rows(run: Path) -> list[dict[str, float]]:
    return [r for r in metrics(run) if "train/rollouts" in r]  # training steps, not step 0


def test_native_screens_then_trains_and_counts_every_rollout(world: Path,
                                                            tmp_path: Path) -> None:
    out = run_bots(*train_args(world, *SPEED, "train.steps=3", "train.checkpoint_every=3"),
                   cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(tmp_path)
    rows = _rows(run)
    assert len(rows) == 3
    candidates = int(RATIO * B)
    spent, screened = 0, 0
    for row in rows:
        rounds, screening = row["train/screening_rounds"], row["train/screening_rollouts"]
        assert 1 <= rounds <= 10 and screening == rounds * candidates * N0
        spent += screening + (G - N0) * B  # screening, then the batch's continuations
        screened += screening // N0
        assert row["train/rollouts"] == spent
        assert row["train/sampling_rounds"] == 1  # one batch, after its screening
        assert 0.0 <= row["selector/screen_kept_share"] <= 1.0
    tokens = [r["train/tokens"] for r in rows]
    assert tokens == sorted(tokens) and tokens[-1] >= rows[-1]["train/rollouts"]
    # each task of the batch is one whole group of G completions, all trained on
    selections = pd.read_parquet(run / "selections.parquet")
    assert (selections["trials"] == G).all() and selections["trained"].all()
    assert selections.groupby("step").size().tolist() == [B, B, B]
    assert not selections.duplicated(["step", "task_id"]).any()
    # a step whose rounds filled the batch trained on kept candidates only: each group's first
    # n0 completions were neither all right nor all wrong, so the whole group is informative
    full = [i + 1 for i, r in enumerate(rows) if r["train/screening_rounds"] < 10]
    assert full, "no step filled its batch by screening: the pool is wrong for this test"
    kept = selections[selections["step"].isin(full)]
    assert ((kept["successes"] > 0) & (kept["successes"] < G)).all()
    assert all(rows[s - 1]["train/zero_variance_share"] == 0.0 for s in full)
    saved = torch.load(run / "checkpoints" / "step_3" / "state.pt", weights_only=False)
    assert saved["trainer"]["rollouts"] == spent
    assert saved["selector"]["screened"] == screened  # every candidate screened, kept or not
    assert saved["selector"]["in_flight"] == []  # nothing in flight between steps


def test_a_killed_speed_run_resumes_as_the_uninterrupted_one(world: Path,
                                                             tmp_path: Path) -> None:
    """Killed with SIGKILL once its step-2 checkpoint is written and resumed to step 4, a run
    equals one that ran 4 steps: screening rounds draw from (seed, step, 0, round), the walk
    and the counters are in the checkpoint."""
    a, b, _ = kill_and_resume(lambda *extra: train_args(world, *SPEED, *extra), tmp_path, 4,
                              "step_2/state.pt", "train.checkpoint_every=2")
    assert len(_rows(a)) == 4
    assert_same_records(a, b)
    sa, sb = (torch.load(run / "checkpoints" / "step_4" / "state.pt", weights_only=False)
              for run in (a, b))
    wa, wb = sa["selector"]["walk"], sb["selector"]["walk"]
    assert np.array_equal(wa["order"], wb["order"]) and (wa["pos"], wa["epoch"]) == \
        (wb["pos"], wb["epoch"])
    assert sa["selector"]["rng"] == sb["selector"]["rng"]
    assert (sa["trainer"]["rollouts"], sa["trainer"]["tokens"]) == \
        (sb["trainer"]["rollouts"], sb["trainer"]["tokens"])
