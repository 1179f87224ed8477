"""`bots profile-refs` end to end on a small arith subset with miniature tiny references."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bots_cli.references.table import read_profile, write_profile
from tests.conftest import run_bots

pytest.importorskip("transformers")


def overrides(tmp: Path, profiles: Path, *extra: str) -> list[str]:
    """A miniature tiny build (seconds) shared by the tests, and a private profiles dir."""
    return [
        f"refs.weak.build.dir={tmp / 'models'}", "refs.weak.build.weak_steps=20",
        "refs.weak.build.strong_steps=40", "refs.weak.build.batch_size=16",
        "profile.max_tasks=24", "profile.n=4", "profile.chunk_size=6",
        f"profile.dir={profiles}", *extra,
    ]


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("profile_refs")


def test_profiles_both_references(shared: Path) -> None:
    out = run_bots("profile-refs", *overrides(shared, shared / "a"), cwd=shared, timeout=600)
    assert out.returncode == 0, out.stderr
    for model in ("tiny-weak", "tiny-strong"):
        frame, settings = read_profile(shared / "a" / "arith" / f"{model}.parquet")
        assert len(frame) == 24 and frame["task_id"].is_unique
        assert (frame["n"] == 4).all() and frame["pass_rate"].between(0, 1).all()
        assert settings["n"] == 4 and settings["model"] == model and settings["chunk_size"] == 6
    [run] = [p.parent for p in (shared / "outputs" / "profile-refs").rglob("summary.json")]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["weak"]["tasks"] == 24 and "mean_by_level" in summary["strong"]
    assert (run / "pass_rates.png").read_bytes()[:4] == b"\x89PNG"
    assert "reference pass rates" in out.stdout


def test_resumed_run_equals_an_uninterrupted_one(shared: Path) -> None:
    full_dir, cut_dir = shared / "a", shared / "b"
    if not (full_dir / "arith" / "tiny-weak.parquet").exists():
        test_profiles_both_references(shared)
    # What a run killed after two chunks of the weak model leaves behind: the atomic writes
    # mean the file holds whole chunks only, and the strong profile does not exist yet.
    frame, settings = read_profile(full_dir / "arith" / "tiny-weak.parquet")
    write_profile(cut_dir / "arith" / "tiny-weak.parquet", frame.iloc[:12], settings)
    out = run_bots("profile-refs", *overrides(shared, cut_dir), cwd=shared, timeout=600)
    assert out.returncode == 0, out.stderr
    for model in ("tiny-weak", "tiny-strong"):
        a, _ = read_profile(full_dir / "arith" / f"{model}.parquet")
        b, _ = read_profile(cut_dir / "arith" / f"{model}.parquet")
        pd.testing.assert_frame_equal(a, b)
    again = run_bots("profile-refs", *overrides(shared, cut_dir), cwd=shared, timeout=600)
    assert "already profiled" in again.stdout  # nothing left to do


def test_other_settings_are_refused_without_overwrite(shared: Path) -> None:
    if not (shared / "a" / "arith" / "tiny-weak.parquet").exists():
        test_profiles_both_references(shared)
    out = run_bots("profile-refs", *overrides(shared, shared / "a", "profile.n=2"), cwd=shared,
                   timeout=600)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "profile.overwrite=true" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("profile.n=0", "error: profile.n must be ≥ 1, got 0"),
        ("profile.split=test", "error: profile.split must be one of train, eval"),
        ("refs.weak.path=/no/such/model", "error: model.path=/no/such/model: no such directory"),
        ("domain.data.train=/no/such.jsonl", "error: "),
    ],
)
def test_bad_inputs_give_one_line(tmp_path: Path, override: str, message: str) -> None:
    out = run_bots("profile-refs", override, f"profile.dir={tmp_path}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(message), out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_table(shared: Path) -> None:
    """SIGKILL a real run as soon as its first chunk is on disk, then run the command again."""
    import os
    import signal
    import subprocess
    import time

    from tests.conftest import BOTS

    if not (shared / "a" / "arith" / "tiny-weak.parquet").exists():
        test_profiles_both_references(shared)
    killed = shared / "killed"
    args = overrides(shared, killed, "profile.chunk_size=2")
    reference = shared / "uncut"
    assert run_bots("profile-refs", *overrides(shared, reference, "profile.chunk_size=2"),
                    cwd=shared, timeout=600).returncode == 0
    proc = subprocess.Popen([str(BOTS), "profile-refs", *args], cwd=shared,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ})
    target = killed / "arith" / "tiny-weak.parquet"
    deadline = time.monotonic() + 300
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial, _ = read_profile(target)
    assert len(partial) < 24  # killed mid-way, with whole chunks on disk
    out = run_bots("profile-refs", *args, cwd=shared, timeout=600)
    assert out.returncode == 0, out.stderr
    for model in ("tiny-weak", "tiny-strong"):
        a, _ = read_profile(reference / "arith" / f"{model}.parquet")
        b, _ = read_profile(killed / "arith" / f"{model}.parquet")
        pd.testing.assert_frame_equal(a, b)
