"""A miniature training world shared by the train, evaluate and report tests: one-digit sums,
a 0.1M-parameter tiny model built through the real config, and real reference profiles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import BOTS, run_bots

BUILD = {"weak_steps": 40, "strong_steps": 120, "batch_size": 32, "lr": 0.01, "warmup_steps": 5,
         "hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128,
         "max_positions": 64}
STEP_KEYS = {
    "train/reward_mean", "train/etr", "train/zero_variance_share", "train/loss", "train/kl",
    "train/grad_norm", "train/response_len", "train/reward_timeouts", "selector/capability",
    "selector/posterior_mean_of_selected", "selector/explored_share", "time/select",
    "time/rollout", "time/reward", "time/update", "time/selector_update",
}


def train_tasks(split: str) -> list[dict[str, object]]:
    return [{"task_id": f"{split}-{a}{b}", "prompt": f"{a}+{b}=", "answer": str(a + b),
             "level": 1 + (a + b >= 10)} for a in range(10) for b in range(10)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch dir holding the task tables, the miniature build and both reference profiles."""
    root = tmp_path_factory.mktemp("train")
    for split in ("train", "eval"):
        pd.DataFrame(train_tasks(split)).to_json(root / f"{split}.jsonl", orient="records",
                                            lines=True)
    out = run_bots("profile-refs", *domain(root), *build(root, "refs.weak.build"),
                   "profile.n=8", f"profile.dir={root / 'profiles'}", "profile.plot=false",
                   cwd=root, timeout=600)
    assert out.returncode == 0, out.stderr
    return root


def domain(root: Path) -> list[str]:
    return [f"domain.data.train={root / 'train.jsonl'}", f"domain.data.eval={root / 'eval.jsonl'}"]


def build(root: Path, prefix: str = "model.build") -> list[str]:
    return [f"{prefix}.dir={root / 'models'}", *(f"{prefix}.{k}={v}" for k, v in BUILD.items())]


def train_args(root: Path, *extra: str) -> list[str]:
    return ["train", *domain(root), *build(root), f"train.profiles_dir={root / 'profiles'}",
            "train.batch_size=8", "train.group_size=4", "train.eval_tasks=40", "train.eval_n=2",
            "train.lr=1e-3", "train.warmup_steps=0", *extra]


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "outputs").rglob("config.yaml")
                  if p.parent.name != ".hydra")


def metrics(run: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def kill_once_saved(args: list[str], cwd: Path, marker: str, timeout: float = 300) -> None:
    """Run `bots *args` in `cwd` and SIGKILL it as soon as a file matching `marker` (a glob
    under outputs/, e.g. a checkpoint's last-written file) exists."""
    proc = subprocess.Popen([str(BOTS), *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + timeout
    while not list((cwd / "outputs").rglob(marker)):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, f"no {marker} within {timeout:.0f} s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def kill_and_resume(args: Callable[..., list[str]], root: Path, steps: int, marker: str,
                    *common: str) -> tuple[Path, Path, str]:
    """The same run twice: once uninterrupted for `steps`, once with a budget it cannot finish,
    killed with SIGKILL as soon as `marker` (a checkpoint's last-written file) exists and resumed
    to `steps`. `args(*overrides)` is the `bots` command line. Returns (the uninterrupted run, the
    resumed run, the resume's output)."""
    whole, cut = root / "whole", root / "cut"
    whole.mkdir(), cut.mkdir()
    out = run_bots(*args(f"train.steps={steps}", *common), cwd=whole, timeout=600)
    assert out.returncode == 0, out.stderr
    [a] = run_dirs(whole)
    kill_once_saved(args("train.steps=100000", *common), cut, marker)
    [b] = run_dirs(cut)
    out = run_bots("train", f"resume={b}", f"train.steps={steps}", cwd=cut, timeout=600)
    assert out.returncode == 0, out.stderr
    assert run_dirs(cut) == [b], "the resumed run must continue in its own directory"
    return a, b, out.stdout + out.stderr


def assert_same_records(a: Path, b: Path,
                        timing: Callable[[str], bool] = lambda key: key.startswith("time/")
                        ) -> None:
    """Runs a and b wrote the same records: metrics.jsonl but for `timing` keys, and
    selections.parquet."""

    def comparable(run: Path) -> list[dict[str, float]]:
        return [{k: v for k, v in r.items() if not timing(k)} for r in metrics(run)]

    assert comparable(a) == comparable(b)
    pd.testing.assert_frame_equal(pd.read_parquet(a / "selections.parquet"),
                                  pd.read_parquet(b / "selections.parquet"))


def assert_same_run(a: Path, b: Path, *, timing: Callable[[str], bool],
                    selector: Callable[[Path], dict[str, Any]], weights: str) -> None:
    """Runs a and b wrote the same records (`assert_same_records`), the same selector state
    (`selector(run)`: the last checkpoint's) and the same weights (`weights`: the model file
    under the run's directory)."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    assert_same_records(a, b, timing)
    sa, sb = selector(a), selector(b)
    for key in ("alpha", "beta"):
        assert np.array_equal(sa[key], sb[key])
    assert sa["rng"] == sb["rng"]
    wa, wb = load_file(str(a / weights)), load_file(str(b / weights))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
