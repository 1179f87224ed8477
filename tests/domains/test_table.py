"""The task-table loader: column mapping (MATH/GURU-style files) and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bots_cli.domains import load_domain
from bots_cli.domains.table import load_task_table, write_task_table
from bots_cli.errors import UserError

COLS = {"task_id": "task_id", "prompt": "prompt", "answer": "answer", "domain": "domain",
        "level": "level", "weak_pass_rate": None, "strong_pass_rate": None}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _good(n: int = 3) -> list[dict]:
    return [{"task_id": f"t{i}", "prompt": f"{i}+1=", "answer": str(i + 1)} for i in range(n)]


def test_jsonl_round_trip_keeps_answers_as_text(tmp_path: Path) -> None:
    rows = [*_good(), {"task_id": "z", "prompt": "0+7=", "answer": "007"}]
    df = load_task_table(_jsonl(tmp_path / "t.jsonl", rows), COLS, "arith")
    assert list(df.columns[:4]) == ["task_id", "prompt", "answer", "domain"]
    assert df["answer"].tolist() == ["1", "2", "3", "007"]
    assert set(df["domain"]) == {"arith"}
    write_task_table(df, tmp_path / "copy.parquet")
    back = load_task_table(tmp_path / "copy.parquet", COLS, "arith")
    assert back["answer"].tolist() == df["answer"].tolist()


def test_guru_style_parquet_through_the_column_mapping(tmp_path: Path) -> None:
    guru = pd.DataFrame({
        "data_source": ["math__a", "math__b"],
        "prompt": [[{"role": "user", "content": "What is 1+1?"}],
                   [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "What is 2+2?"}]],
        "reward_model": [{"ground_truth": "2", "style": "rule"},
                         {"ground_truth": "4", "style": "rule"}],
        "extra_info": [{"index": 11}, {"index": 12}],
        "qwen2.5_7b_pass_rate": [0.25, 0.5],
        "deepseek_r1_0528_pass_rate": [0.75, 1.0],
    })
    guru.to_parquet(tmp_path / "guru.parquet")
    cols = {"task_id": "extra_info.index", "prompt": "prompt",
            "answer": "reward_model.ground_truth",
            "domain": None, "level": None, "weak_pass_rate": "qwen2.5_7b_pass_rate",
            "strong_pass_rate": "deepseek_r1_0528_pass_rate"}
    domain = load_domain("math")
    df = domain.load({"data": {"train": str(tmp_path / "guru.parquet")}, "columns": cols})
    assert df["task_id"].tolist() == ["11", "12"]
    assert df["answer"].tolist() == ["2", "4"]
    assert df["weak_pass_rate"].tolist() == [0.25, 0.5]
    assert df["strong_pass_rate"].tolist() == [0.75, 1.0]
    assert domain.render_prompt(df.iloc[1]) == "Be brief.\n\nWhat is 2+2?"
    assert domain.render_messages(df.iloc[1])[1] == {"role": "user", "content": "What is 2+2?"}
    assert domain.reward("so \\boxed{4}", df.iloc[1]) == 1.0


def test_math_style_file_with_boxed_solutions_and_text_levels(tmp_path: Path) -> None:
    pd.DataFrame({
        "problem": ["Compute 1/2 + 1/4.", "What is 3*3?"],
        "solution": ["We add: $\\boxed{\\frac{3}{4}}$.", "It is $\\boxed{9}$."],
        "level": ["Level 2", "Level ?"],
    }).to_parquet(tmp_path / "MATH_test.parquet")
    cols = {"task_id": None, "prompt": "problem", "answer": "solution", "level": "level"}
    df = load_domain("math").load({"data": {"eval": str(tmp_path / "MATH_test.parquet")},
                                   "columns": cols, "answer_from_boxed": True}, split="eval")
    assert df["task_id"].tolist() == ["MATH_test-0", "MATH_test-1"]
    assert df["answer"].tolist() == ["\\frac{3}{4}", "9"]
    assert df["level"].tolist()[0] == 2 and pd.isna(df["level"].tolist()[1])


@pytest.mark.parametrize(("rows", "cols", "message"), [
    ([{"task_id": "a", "prompt": "p"}], COLS, "column 'answer' is missing"),
    ([{"task_id": "a", "prompt": "p", "answer": "1"}] * 2, COLS, "task_id 'a' is duplicated"),
    ([{"task_id": " ", "prompt": "p", "answer": "1"}], COLS, "row 1 has an empty task_id"),
    ([{"task_id": 1.5, "prompt": "p", "answer": "1"}], COLS, "task_id must be text or an integer"),
    ([{"task_id": "a", "prompt": 3, "answer": "1"}], COLS, "prompt must be text or a list"),
    ([{"task_id": "a", "prompt": "p", "answer": {"x": 1}}], COLS, "answer must be text"),
    ([{"task_id": "a", "prompt": "p", "answer": "1", "level": "hard"}], COLS,
     "level must be an integer"),
    ([{"task_id": "a", "prompt": "p", "answer": "1", "w": 1.5}], {**COLS, "weak_pass_rate": "w"},
     "pass rates outside [0, 1]"),
    ([{"task_id": "a", "prompt": "p", "answer": "1", "w": None}], {**COLS, "weak_pass_rate": "w"},
     "NaN pass rates"),
    ([{"task_id": "a", "prompt": "p", "answer": "1", "w": "high"}],
     {**COLS, "weak_pass_rate": "w"}, "must be numeric"),
    ([{"task_id": "a", "prompt": "p", "answer": "1"}], {**COLS, "strong_pass_rate": "s"},
     "column 's' is missing"),
    ([{"task_id": "a", "prompt": "p", "answer": "1", "rm": {}}], {**COLS, "answer": "rm.truth"},
     "missing key 'truth'"),
])
def test_bad_files_get_one_line_errors(tmp_path: Path, rows: list[dict], cols: dict,
                                       message: str) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(UserError) as err:
        load_task_table(path, cols, "arith")
    assert message in str(err.value)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_missing_empty_unreadable_and_wrong_format_files(tmp_path: Path) -> None:
    for path, message in [
        (tmp_path / "nope.jsonl", "does not exist"),
        (_jsonl(tmp_path / "empty.jsonl", []), "has no rows"),
        (tmp_path / "garbage.parquet", "cannot read task file"),
        (tmp_path / "t.csv", "must be .parquet or .jsonl"),
    ]:
        if path.suffix in (".parquet", ".csv"):
            path.write_bytes(b"not a parquet file at all")
        with pytest.raises(UserError, match=message) as err:
            load_task_table(path, COLS, "arith")
        assert "\n" not in str(err.value)
    (tmp_path / "broken.jsonl").write_text('{"task_id": "a", "prompt": \n')
    with pytest.raises(UserError, match=r"broken\.jsonl:1: not valid JSON"):
        load_task_table(tmp_path / "broken.jsonl", COLS, "arith")


def test_bad_json_is_reported_by_file_and_line(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "t.jsonl", _good(5))
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:-1]  # a missing closing brace on line 4
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as err:
        load_task_table(path, COLS, "arith")
    assert str(err.value).startswith(f"{path}:4: not valid JSON")
    assert "position" not in str(err.value) and "\n" not in str(err.value)
    path.write_text("\n".join([*lines[:3], "[1, 2]"]) + "\n")
    with pytest.raises(UserError, match=r"t.jsonl:4: a list, not a JSON object"):
        load_task_table(path, COLS, "arith")


def test_chat_messages_with_an_unknown_role_are_refused(tmp_path: Path) -> None:
    ok = [{"role": r, "content": "hi"} for r in ("system", "user", "assistant")]
    rows = [{"task_id": "a", "prompt": ok, "answer": "1"},
            {"task_id": "b", "prompt": [{"role": "wizard", "content": "hi"}], "answer": "1"}]
    with pytest.raises(UserError) as err:
        load_task_table(_jsonl(tmp_path / "chat.jsonl", rows), COLS, "arith")
    assert "row 2 has a chat message with role 'wizard'" in str(err.value)
    assert "system, user, assistant, tool" in str(err.value)
    df = load_task_table(_jsonl(tmp_path / "ok.jsonl", rows[:1]), COLS, "arith")
    assert [m["role"] for m in df["prompt"][0]] == ["system", "user", "assistant"]


def test_data_paths_resolve_against_data_dir(tmp_path: Path) -> None:
    domain = load_domain("arith")
    assert domain.data_path("train").parts[-3:] == ("data", "arith", "train.jsonl")
    _jsonl(tmp_path / "mine.jsonl", _good())
    df = domain.load({"data_dir": str(tmp_path), "data": {"train": "mine.jsonl"}, "columns": COLS})
    assert len(df) == 3
    with pytest.raises(UserError, match=r"domain\.data\.test is not set"):
        domain.load(split="test")


@pytest.mark.parametrize(("name", "answer", "message"), [
    ("code", "def f(): pass", "not JSON"),
    ("code", json.dumps({"entry_point": "f", "tests": []}), "non-empty list"),
    ("logic", json.dumps({"Alice": "wizard"}), "knight"),
    ("arith", "12.5", "is not an integer"),
])
def test_answers_a_domain_cannot_score_are_rejected_at_load(tmp_path: Path, name: str,
                                                          answer: str, message: str) -> None:
    path = _jsonl(tmp_path / "t.jsonl", [{"task_id": "a", "prompt": "p", "answer": answer}])
    with pytest.raises(UserError, match="row 1 has an answer") as err:
        load_domain(name).load({"data": {"train": str(path)}, "columns": COLS})
    assert message in str(err.value) and "\n" not in str(err.value)
