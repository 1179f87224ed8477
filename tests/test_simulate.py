"""`bots simulate`: the synthetic world behaves as documented and BOTS beats uniform on it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bots_cli.config import compose_selector
from bots_cli.selection import build_selector
from bots_cli.selection.base import Selector
from bots_cli.simulate.run import SimParams, run_one
from bots_cli.simulate.world import Learner, World, WorldParams
from tests.conftest import run_bots
from tests.test_bad_inputs import one_line_error

PARAMS = WorldParams(n_tasks=300, n_eval=500, n_skills=3, difficulty_mean=1.0,
                     difficulty_std=2.0, discrimination=1.5, learning_rate=0.05, transfer=0.25,
                     memorization=0.3, weak_ability=-0.5, strong_ability=2.0,
                     reference_noise=0.5, profile_rollouts=16, reference_shuffle=0.0,
                     references=True, drift_step=None, drift_factor=1.0, n_levels=5,
                     level_noise=0.5, embedding_noise=0.5, feedback_delay=0)


def test_world_is_deterministic_and_references_are_ordered() -> None:
    a, b = World.generate(PARAMS, 3), World.generate(PARAMS, 3)
    np.testing.assert_array_equal(a.difficulty, b.difficulty)
    np.testing.assert_array_equal(a.weak, b.weak)
    assert not np.array_equal(a.difficulty, World.generate(PARAMS, 4).difficulty)
    assert a.strong.mean() > a.weak.mean()
    assert np.all((a.weak >= 0) & (a.weak <= 1))


def test_groups_without_reward_variance_teach_nothing() -> None:
    world = World.generate(PARAMS, 0)
    learner = Learner.start(world)
    ids = np.arange(4)
    learner.learn(world, ids, np.array([[1.0] * 8, [0.0] * 8, [1.0] * 8, [0.0] * 8]))
    assert np.all(learner.ability == 0) and np.all(learner.memory == 0)
    learner.learn(world, ids, np.array([[1.0, 0.0] * 4] * 4))
    assert np.all(learner.ability > 0)
    assert np.all(learner.memory[ids] > 0) and np.all(learner.memory[4:] == 0)
    before = learner.heldout_accuracy(world)
    learner.ability += 1.0
    assert learner.heldout_accuracy(world) > before


def test_bots_beats_uniform_on_time_to_baseline(scratch: Path) -> None:
    out = run_bots("simulate", "simulate.seeds=3", "simulate.steps=200", "world.n_tasks=500",
                   "world.n_eval=500", cwd=scratch)
    assert out.returncode == 0, out.stderr
    [run] = [p.parent for p in (scratch / "outputs").rglob("summary.json")]
    summary = json.loads((run / "summary.json").read_text())
    bots = summary["selectors"]["bots"]
    # Every seed reaches uniform's best accuracy in clearly fewer steps.
    assert all(v < 0.9 for v in bots["ttb_100"]["values"]), bots["ttb_100"]
    assert summary["selectors"]["uniform"]["ttb_100"]["mean"] == 1.0
    assert bots["etr"]["mean"] > summary["selectors"]["uniform"]["etr"]["mean"]
    assert bots["bsf_100"]["mean"] > 1.0

    curves = pd.read_parquet(run / "curves.parquet")
    assert set(curves["selector"]) == {"bots", "uniform", "mopps", "implicit_only"}
    assert {"train/etr", "train/zero_variance_share", "eval/accuracy", "time/select",
            "selector/capability", "selector/explored_share"} <= set(curves.columns)
    per_run = curves.groupby(["selector", "seed"])["step"].agg(["min", "max", "count"])
    assert (per_run["min"] == 0).all() and (per_run["max"] == 200).all()
    assert (per_run["count"] == 201).all()
    assert (run / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_table_fits_an_80_column_terminal(scratch: Path) -> None:
    out = run_bots("simulate", "simulate.seeds=2", "simulate.steps=40", "world.n_tasks=200",
                   "world.n_eval=200", cwd=scratch, env={"COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines()
             if not line.startswith("run directory:")]  # a path is printed whole
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert "…" not in out.stdout  # split in two halves, never squeezed
    assert sum("selector" in line and "final acc" in line for line in lines) == 1
    assert sum("selector" in line and "BSF100" in line for line in lines) == 1
    assert "≈: within noise" in out.stdout  # what the marks mean


def test_groups_beat_explicit_only_without_references(scratch: Path) -> None:
    """No reference model: BOTS with implicit evidence from task levels against MoPPS-style
    explicit-only BOTS; the selectors that read references are left out, saying so."""
    out = run_bots("simulate", "world.references=false", "selector.implicit.name=groups",
                   "selector.implicit.column=level", "simulate.seeds=3", "simulate.steps=200",
                   cwd=scratch)
    assert out.returncode == 0, out.stderr
    assert "not comparing implicit_only" in out.stdout
    [run] = [p.parent for p in (scratch / "outputs").rglob("summary.json")]
    selectors = json.loads((run / "summary.json").read_text())["selectors"]
    assert set(selectors) == {"bots", "uniform", "mopps"}
    groups, mopps = selectors["bots"]["ttb_100"]["values"], selectors["mopps"]["ttb_100"]["values"]
    assert all(g < m for g, m in zip(groups, mopps, strict=True)), (groups, mopps)


def test_one_seed_says_there_is_no_spread(scratch: Path) -> None:
    out = run_bots("simulate", "simulate.seeds=1", "simulate.steps=20", "world.n_tasks=100",
                   "world.n_eval=100", cwd=scratch)
    assert out.returncode == 0, out.stderr
    assert "1 seed: single values, no spread" in out.stdout and "mean±std" not in out.stdout
    assert "±" not in out.stdout
    assert ("1 seed: no spread, so no difference here can be told from noise; run more seeds: "
            "bots simulate simulate.seeds=5 simulate.steps=20 world.n_tasks=100 "
            "world.n_eval=100\n") in out.stdout
    bots = [c for line in out.stdout.splitlines() if line.strip().startswith("bots ")
            for c in line.split()]
    assert any(c.endswith("?") for c in bots), bots  # its TTB/BSF: single draws


# -- late feedback (world.feedback_delay, DESIGN.md §1.8) ------------------------------------------
SIM = SimParams(seeds=1, steps=30, batch_size=16, group_size=8, eval_every=10, baseline="uniform",
                plot=False)


def delayed_run(name: str, delay: int) -> tuple[list[dict], list, Selector]:
    world = World.generate(dataclasses.replace(PARAMS, feedback_delay=delay), 0)
    sel = build_selector(compose_selector(name), n_tasks=PARAMS.n_tasks, weak=world.weak,
                         strong=world.strong, seed=0, group_size=SIM.group_size)
    rows, curve = run_one(world, sel, SIM, 0)
    return rows, curve, sel


def test_no_delay_runs_as_before() -> None:
    """Delay 0: the held-out curve recorded from run_one before the delay existed (commit
    d025dd7), BOTS on PARAMS' world, seed 0."""
    rows, curve, sel = delayed_run("bots", 0)
    assert [step for step, _ in curve] == [0, 10, 20, 30]
    assert [acc for _, acc in curve] == pytest.approx(
        [0.3492204620089453, 0.3616730590648769, 0.37697934326029897, 0.3920626586304759],
        rel=1e-12)
    assert "selector/fed_back_step" not in rows[0] and sel.step == 30


def test_a_delay_keeps_batches_in_flight_and_its_evidence_arrives_late() -> None:
    """Delay 2: three batches in flight are always distinct tasks (the explored share grows by a
    whole batch at each of the first three steps), the selector hears of step t at step t+2
    (nothing before: no capability estimate yet), and the budget's end delivers the rest."""
    rows, _, sel = delayed_run("bots", 2)
    explored = [r["selector/explored_share"] for r in rows[:3]]
    assert explored == pytest.approx([16 / 300, 32 / 300, 48 / 300])
    assert [r["selector/fed_back_step"] for r in rows] == [None, None, *range(1, 29)]
    assert rows[0]["selector/capability"] is None and rows[1]["selector/capability"] is None
    assert rows[2]["selector/capability"] is not None
    assert sel.step == 30 and sel.n_pending == 0  # steps 29 and 30 arrived after the last step
    undelayed, _, _ = delayed_run("bots", 0)
    assert undelayed[0]["selector/capability"] is not None


def test_feedback_delay_runs_from_the_command_line(scratch: Path) -> None:
    out = run_bots("simulate", "world.feedback_delay=3", "simulate.seeds=1", "simulate.steps=20",
                   "world.n_tasks=100", "world.n_eval=100", "simulate.plot=false", cwd=scratch)
    assert out.returncode == 0, out.stderr
    [run] = [p.parent for p in (scratch / "outputs").rglob("summary.json")]
    curves = pd.read_parquet(run / "curves.parquet")
    fed = curves[(curves["selector"] == "bots") & (curves["step"] >= 1)]["selector/fed_back_step"]
    assert fed.isna().sum() == 3 and fed.dropna().tolist() == list(range(1, 18))


@pytest.mark.parametrize(("value", "message"), [
    ("-1", "world.feedback_delay must be ≥ 0, got -1"),
    ("1.5", "world.feedback_delay must be an integer, got 1.5"),
    ("9", "simulate.batch_size (16) × (world.feedback_delay (9) + 1) must be ≤ world.n_tasks "
          "(100): 9 batches await their feedback while the next one is selected"),
])
def test_bad_feedback_delay_is_one_line(scratch: Path, value: str, message: str) -> None:
    out = run_bots("simulate", f"world.feedback_delay={value}", "world.n_tasks=100",
                   cwd=scratch)
    one_line_error(out, message)


def test_a_band_too_small_for_the_batches_in_flight_is_refused_before_running(
        scratch: Path) -> None:
    """offline_band's pool is the tasks inside its band: four batches of 16 in flight at once
    need 64 of them, checked before anything runs."""
    out = run_bots("simulate", "world.feedback_delay=3", "world.n_tasks=100",
                   "selector=offline_band", "selector.lo=0.4", "selector.hi=0.6",
                   "simulate.baseline=offline_band", cwd=scratch)
    one_line_error(out, "selector: batch_size (16) is larger than the")
    assert not (scratch / "outputs").exists()
