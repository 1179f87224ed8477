"""Long checks (`make test-slow`): the demo at its full default size and the benchmark script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_bots

pytestmark = pytest.mark.slow


def test_demo_defaults_bots_beats_uniform_on_every_seed(scratch: Path) -> None:
    out = run_bots("simulate", "simulate.seeds=5", cwd=scratch, timeout=600)
    assert out.returncode == 0, out.stderr
    [summary_file] = (scratch / "outputs").rglob("summary.json")
    selectors = json.loads(summary_file.read_text())["selectors"]
    assert all(v < 0.85 for v in selectors["bots"]["ttb_100"]["values"])
    assert selectors["bots"]["etr"]["mean"] > 0.7 > selectors["uniform"]["etr"]["mean"]


def test_lambda_sweep_runs_every_value(scratch: Path) -> None:
    out = run_bots("simulate", "-m", "lambda=0,0.05,0.1,0.3,1", cwd=scratch, timeout=600)
    assert out.returncode == 0, out.stderr
    assert len(list((scratch / "outputs" / "multirun").rglob("summary.json"))) == 5


def test_selector_overhead_benchmark_prints_its_table() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "selector_overhead.py"), "--sizes", "10000",
         "100000"], capture_output=True, text=True, timeout=600, check=True,
    )
    rows = [line for line in out.stdout.splitlines() if line.startswith("| 10")]
    assert len(rows) == 2


def test_leaderboard_quick_ranks_every_selector(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "leaderboard.py"), "--quick", "--worlds",
         "good", "none", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    tables = out.stdout.split("#### ")
    good, none = (next(t for t in tables if t.startswith(f"World `{w}`")) for w in ("good", "none"))

    def row(table: str, name: str) -> list[str]:
        [line] = [ln for ln in table.splitlines() if ln.startswith("|")
                  and ln.split("|")[2].strip() == name]
        return [cell.strip() for cell in line.strip("|").split("|")]

    selectors = ("uniform", "dynamic sampling", "mopps", "bots", "bots calibrated", "dps",
                 "greso", "speed", "learnability", "adarft")
    rollouts_per_step = {name: float(row(good, name)[-1]) for name in selectors}
    assert rollouts_per_step["uniform"] == 16 * 8  # conf/simulate.yaml: batch 16 x group 8
    # screening (SPEED) and refill rounds (dynamic sampling) are counted as rollouts
    assert rollouts_per_step["speed"] > 128 and rollouts_per_step["dynamic sampling"] > 128
    for name in ("bots", "bots calibrated", "adarft"):  # they read references: none here
        assert "n/a (needs references)" in row(none, name)
    assert row(none, "dps")[0].isdigit()
    assert (tmp_path / "rank_by_world.png").stat().st_size > 0
