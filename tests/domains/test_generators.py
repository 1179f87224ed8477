"""Generators: seeded and deterministic, disjoint splits, unique K&K solutions, solvable code
tasks; the shipped files are exactly what `bots make-data` writes."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bots_cli.domains import DOMAINS, load_domain
from bots_cli.domains.code import run_reference
from bots_cli.domains.logic import NAMES, _statement, solutions
from bots_cli.domains.table import write_task_table
from bots_cli.errors import InvalidValue

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(DOMAINS))
def test_generation_is_deterministic_and_seeded(name: str) -> None:
    domain = load_domain(name)
    a, b = domain.generate(40, seed=7), domain.generate(40, seed=7)
    pd.testing.assert_frame_equal(a, b)
    c = domain.generate(40, seed=8)
    assert a["prompt"].tolist() != c["prompt"].tolist()
    assert a["prompt"].is_unique and a["task_id"].is_unique
    assert set(a["level"]) == set(domain.levels)


@pytest.mark.parametrize("name", list(DOMAINS))
def test_shipped_data_loads_and_splits_are_disjoint(name: str) -> None:
    domain = load_domain(name)
    train, ev = domain.load(), domain.load(split="eval")
    sizes = domain.cfg["generate"]
    assert len(train) == sizes["n_train"] and len(ev) == sizes["n_eval"]
    assert not set(train["prompt"]) & set(ev["prompt"])
    assert set(train["domain"]) == {name}
    assert all(p.isascii() for p in train["prompt"])


@pytest.mark.parametrize("name", ["arith", "logic", "math", "code"])
def test_shipped_files_are_what_the_generator_writes(name: str, tmp_path: Path) -> None:
    domain = load_domain(name)
    for split, df in domain.make_splits().items():
        write_task_table(df, tmp_path / f"{split}.jsonl")
        assert (tmp_path / f"{split}.jsonl").read_bytes() == domain.data_path(split).read_bytes(), (
            f"data/{name}/{split}.jsonl is stale: run `make data`")


def test_arith_is_short_ascii_with_exact_answers() -> None:
    df = load_domain("arith").load()
    assert df["prompt"].str.len().max() <= 16 and df["answer"].str.len().max() <= 10
    assert df["prompt"].str.endswith("=").all()
    for prompt, answer in zip(df["prompt"].head(300), df["answer"].head(300), strict=True):
        assert str(eval(prompt[:-1])) == answer  # our own generated expressions: safe to eval


def test_logic_puzzles_have_exactly_one_solution() -> None:
    df = load_domain("logic").load(split="eval")
    assert sorted(set(df["level"])) == list(range(1, 8))
    for answer in df["answer"]:
        roles = json.loads(answer)
        assert 2 <= len(roles) <= 8 and set(roles.values()) <= {"knight", "knave"}
    # Re-solve generated puzzles from their statements: exactly one assignment survives.
    domain = load_domain("logic")
    rng = random.Random(3)
    for level in domain.levels:
        task = domain.generate_task(random.Random(level), level)
        names = list(json.loads(task["answer"]))
        n = len(names)
        assert n == level + 1
        # the solver agrees with a brute force over random statement sets
        statements = [_statement(rng, i, names) for i in range(n)]
        brute = [a for a in range(1 << n) if all(
            bool(a >> i & 1) == says(a) for i, (_, says) in enumerate(statements))]
        assert solutions(statements, n) == brute
    assert len(NAMES) >= 8


def test_solver_on_a_hand_made_puzzle() -> None:
    # Alice: "Bob is a knave."  Bob: "Alice and I are the same kind."  -> Alice knight, Bob knave
    statements = [("", lambda a: not a >> 1 & 1), ("", lambda a: bool(a & 1) == bool(a >> 1 & 1))]
    assert solutions(statements, 2) == [0b01]


def test_code_reference_solutions_pass_their_hidden_tests_in_process() -> None:
    df = pd.concat([load_domain("code").load(), load_domain("code").load(split="eval")])
    for ref, answer in zip(df["reference"], df["answer"], strict=True):
        spec = json.loads(answer)
        assert len(spec["tests"]) >= 3
        for t in spec["tests"]:
            assert run_reference(ref, spec["entry_point"], t["args"]) == t["expected"]


def test_code_reference_solutions_score_one_through_the_sandbox() -> None:
    domain = load_domain("code")
    df = domain.load(split="eval")
    sample = df.groupby("level").head(6)
    completions = [f"Here it is:\n```python\n{ref}```\nDone." for ref in sample["reference"]]
    assert domain.rewards(completions, [row for _, row in sample.iterrows()]) == [1.0] * len(sample)


def test_too_many_tasks_for_the_levels_is_a_clear_error() -> None:
    # level 1 (three one-digit operands, + -) has 4,000 prompts; the last few are rarely drawn
    with pytest.raises(InvalidValue, match=r"only 3\d\d\d distinct arith tasks exist at levels"):
        load_domain("arith").generate(4500, seed=0, levels=[1])
    with pytest.raises(InvalidValue, match="levels for arith"):
        load_domain("arith").generate(5, seed=0, levels=[9])


def test_make_data_command_writes_loadable_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "bots_cli", "make-data", "domain=logic",
         "domain.generate.n_train=30", "domain.generate.n_eval=10",
         f"make_data.out_dir={out}", "make_data.format=parquet",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    domain = load_domain("logic")
    cols = domain.cfg["columns"]
    assert len(domain.load({"data": {"train": str(out / "train.parquet")}, "columns": cols})) == 30
    assert len(domain.load({"data": {"eval": str(out / "eval.parquet")}, "columns": cols},
                        split="eval")) == 10
    bad = subprocess.run(
        [sys.executable, "-m", "bots_cli", "make-data", "domain=arith",
         "domain.generate.levels=[1]", "domain.generate.n_train=5000",
         f"make_data.out_dir={out}", f"hydra.run.dir={tmp_path / 'run2'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: only")
    assert "Traceback" not in bad.stderr
