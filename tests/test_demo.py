"""`make demo`'s recipe (build, profile, train BOTS and uniform, evaluate, report) at a reduced
budget on the miniature world: the same Makefile lines a user runs, with smaller overrides."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.trainworld import build, domain

pytest.importorskip("transformers")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_demo_steps_run_the_whole_pipeline(world: Path, tmp_path: Path) -> None:
    data = domain(world)
    demo = tmp_path / "demo"
    variables = {
        "BIN": str(Path(sys.executable).parent),
        "DEMO_DIR": str(demo),
        "DEMO_STEPS": "4",
        "DEMO_BUILD": " ".join([*build(world), "build.eval_pairs=0"]),
        "DEMO_PROFILE": " ".join(data + build(world, "refs.weak.build") +
                                 [f"profile.dir={tmp_path / 'profiles'}", "profile.n=4"]),
        "DEMO_TRAIN": " ".join(data + build(world) + [
            f"train.profiles_dir={tmp_path / 'profiles'}", "train.batch_size=8",
            "train.group_size=4", "train.eval_every=2", "train.eval_tasks=20",
            "train.checkpoint_every=2"]),
        "DEMO_EVALUATE": "evaluate.n=2 evaluate.max_tasks=20",
    }
    out = subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "demo-steps",
                          *(f"{k}={v}" for k, v in variables.items())],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "bots report: 2 group(s)" in out.stdout and "uniform*" in out.stdout
    import yaml

    for job, selector in (("0", "bots"), ("1", "uniform")):  # conf/experiment/demo.yaml's sweep
        assert (demo / job / "evaluations.jsonl").is_file()
        cfg = yaml.safe_load((demo / job / "config.yaml").read_text())
        assert (cfg["selector"]["name"], cfg["seed"], cfg["train"]["steps"]) == (selector, 0, 4)
    [report] = list((tmp_path / "outputs" / "report").rglob("report.md"))
    assert (report.parent / "accuracy.png").is_file()
