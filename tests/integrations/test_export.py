"""`bots export` (verl's parquet, TRL's jsonl) and verl's reward module, without verl installed:
what verl and TRL read is checked by their own loaders in test_verl.py and below."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bots_cli.domains import load_domain
from bots_cli.integrations.verl.reward import compute_score
from tests.conftest import run_bots
from tests.trainworld import build, domain


def export_args(world: Path, out: Path, *extra: str) -> list[str]:
    return ["export", *domain(world), *build(world), f"export.out_dir={out}",
            f"export.profiles_dir={world / 'profiles'}", *extra]


def test_verl_export_has_verls_columns_and_the_pass_rates(world: Path, tmp_path: Path) -> None:
    out = run_bots(*export_args(world, tmp_path / "verl", "format=verl"), cwd=tmp_path,
                   timeout=600)
    assert out.returncode == 0, out.stderr
    train = pd.read_parquet(tmp_path / "verl" / "train.parquet")
    assert len(train) == 100
    assert {"data_source", "prompt", "ability", "reward_model", "extra_info"} <= set(train.columns)
    assert list(train["data_source"].unique()) == ["arith"]
    assert [int(e["index"]) for e in train["extra_info"]] == list(range(100))
    first = train.iloc[0]
    assert first["prompt"][0]["role"] == "user"
    assert first["reward_model"]["ground_truth"] == "0"  # "0+0="
    profile = pd.read_parquet(world / "profiles" / "arith" / "tiny-weak.parquet")
    expected = profile.set_index("task_id")["pass_rate"].reindex(train["task_id"]).to_numpy()
    assert (train["weak_pass_rate"].to_numpy() == expected).all()
    assert train["extra_info"].iloc[3]["weak_pass_rate"] == expected[3]
    # The eval split has no profile here: written without pass rates, and said so.
    evals = pd.read_parquet(tmp_path / "verl" / "eval.parquet")
    assert evals["weak_pass_rate"].isna().all() and "eval: 100 tasks" in out.stdout
    again = run_bots(*export_args(world, tmp_path / "verl"), cwd=tmp_path, timeout=600)
    assert again.returncode == 2 and "export.overwrite=true" in again.stderr


def test_trl_export_loads_with_datasets(world: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    out = run_bots(*export_args(world, tmp_path / "trl", "format=trl",
                                "export.splits=[train]"), cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    ds = datasets.load_dataset("json", data_files=str(tmp_path / "trl" / "train.jsonl"),
                               split="train")
    assert len(ds) == 100 and ds[0]["task_id"] == "train-00" and ds[0]["answer"] == "0"
    assert ds[0]["prompt"][0]["role"] == "user" and ds[0]["weak_pass_rate"] is not None


def test_export_refusals(world: Path, tmp_path: Path) -> None:
    out = run_bots("export", *domain(world), cwd=tmp_path)
    assert out.returncode == 2 and "export.out_dir is required" in out.stderr
    out = run_bots(*export_args(world, tmp_path / "x", "format=csv"), cwd=tmp_path)
    assert out.returncode == 2 and "format must be one of verl, trl" in out.stderr
    out = run_bots(*export_args(world, tmp_path / "y", "export.references=required",
                                "export.splits=[eval]"), cwd=tmp_path, timeout=600)
    assert out.returncode == 2 and "bots profile-refs domain=arith profile.split=eval" in \
        out.stderr
    assert not (tmp_path / "y").exists()


def _first(name: str) -> dict[str, str]:
    tasks = load_domain(name).load()
    return {k: str(v) for k, v in tasks.iloc[0].items()}


@pytest.mark.parametrize(("name", "right", "wrong"), [
    ("arith", lambda a: a, lambda a: str(int(a) + 1)),
    ("math", lambda a: f"So the answer is \\boxed{{{a}}}.", lambda a: "\\boxed{-1}"),
    ("logic", lambda a: ". ".join(f"{p} is a {r}" for p, r in json.loads(a).items()) + ".",
     lambda a: ". ".join(f"{p} is a knight" for p in json.loads(a)) + "."),
    ("code", lambda a: "```python\ndef is_multiple(n):\n    return n % 5 == 0\n```",
     lambda a: "```python\ndef is_multiple(n):\n    return False\n```"),
])
def test_reward_module_scores_a_right_and_a_wrong_completion(name: str, right, wrong) -> None:  # type: ignore[no-untyped-def]
    task = _first(name)
    if name == "code":
        assert json.loads(task["answer"])["entry_point"] == "is_multiple"
    if name == "logic":
        assert len(set(json.loads(task["answer"]).values())) == 2  # flipping all is wrong
    info = {"index": 0, "task_id": task["task_id"]}
    assert compute_score(name, right(task["answer"]), task["answer"], info) == 1.0
    assert compute_score(name, wrong(task["answer"]), task["answer"], info) == 0.0
