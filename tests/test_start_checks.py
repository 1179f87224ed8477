"""What `bots train` refuses before its first step: a level no task has, a prompt longer than the
model's context; and how numbers read in the messages (1.5, never np.float64(1.5))."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bots_cli.checks import check_int, check_range, check_rates, shown
from bots_cli.errors import UserError
from bots_cli.models.context import check_prompt_lengths, context_length, prompt_lengths
from bots_cli.train.pool import training_pool


def arith_pool(tmp_path: Path, rows: list[dict]) -> tuple[Any, Any]:
    """(cfg, the arith domain) whose train split is `rows`, written as a jsonl file."""
    from omegaconf import OmegaConf

    from bots_cli.domains import load_domain

    path = tmp_path / "train.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    cfg = OmegaConf.create({"domain": {"data": {"train": str(path)}}})
    return cfg, load_domain("arith", cfg.domain)


TASKS = [{"task_id": f"t{i}", "prompt": "1+1=", "answer": "2", "level": 1 + i % 3}
         for i in range(12)]


def settings(levels=None, batch_size=2, feedback_delay=0):
    return SimpleNamespace(levels=levels, max_tasks=None, batch_size=batch_size,
                           feedback_delay=feedback_delay)


def test_a_level_no_task_has_is_named_with_the_levels_there(tmp_path: Path) -> None:
    cfg, dom = arith_pool(tmp_path, TASKS)
    with pytest.raises(UserError) as err:
        training_pool(cfg, settings(levels=(9,)), dom)
    assert str(err.value) == ("train.levels: no task of the train split has level 9 (its "
                              "levels: 1, 2, 3)")
    with pytest.raises(UserError, match="has level 4, 9 "):
        training_pool(cfg, settings(levels=(2, 4, 9)), dom)
    pool = training_pool(cfg, settings(levels=(2, 3)), dom)
    assert sorted(set(pool["level"])) == [2, 3] and len(pool) == 8
    with pytest.raises(UserError, match=r"batch_size \(9\) exceeds the training pool \(4 tasks"):
        training_pool(cfg, settings(levels=(1,), batch_size=9), dom)
    # with k batches in flight, (k + 1) batches of tasks must be free
    assert len(training_pool(cfg, settings(levels=(2, 3), batch_size=4, feedback_delay=1),
                             dom)) == 8
    with pytest.raises(UserError, match=r"^train\.batch_size \(4\) × \(train\.feedback_delay "
                       r"\(2\) \+ 1\) exceeds the training pool \(8 tasks\)"):
        training_pool(cfg, settings(levels=(2, 3), batch_size=4, feedback_delay=2), dom)


def test_a_prompt_longer_than_the_context_is_refused_before_training() -> None:
    pytest.importorskip("transformers")
    from bots_cli.models.tiny import TinyArch, build_tokenizer

    tokenizer = build_tokenizer()
    config = TinyArch(hidden_size=8, num_layers=1, num_heads=1, intermediate_size=8,
                      max_positions=64).to_config(tokenizer)
    context = context_length(SimpleNamespace(config=config))
    assert context == 64
    ids = ["a", "huge", "b", "long"]
    prompts = ["1+2=", "9" * 10_000, "3+4=", "5" * 49]
    lengths = prompt_lengths(iter(prompts), tokenizer, chunk=3)  # chunks of 3, then 1
    assert lengths == [4, 10_000, 4, 49]
    with pytest.raises(UserError) as err:
        check_prompt_lengths(ids, lengths, context, 16, "train")
    message = str(err.value)
    assert message.startswith("task 'huge' (train split): its prompt is 10000 tokens, but the "
                              "model's context of 64 tokens leaves 48 for it after "
                              "sampling.max_new_tokens=16 (1 more train tasks are too long")
    assert "\n" not in message
    check_prompt_lengths(ids[::2], lengths[::2], context, 16, "train")  # fits
    check_prompt_lengths(["x"], prompt_lengths(["5" * 48], tokenizer), context, 16, "eval")
    check_prompt_lengths(ids, lengths, None, 16, "train")  # context unknown
    assert context_length(SimpleNamespace(config=SimpleNamespace())) is None


@pytest.mark.parametrize(("check", "message"), [
    (lambda: check_range("lambda", np.float64(1.5), 0, 1), "lambda must be in [0, 1], got 1.5"),
    (lambda: check_int("steps", np.float32(2.5), 1), "steps must be an integer, got 2.5"),
    (lambda: check_range("x", np.float64("nan")), "x must be a finite number, got nan"),
    (lambda: check_rates("weak", np.array([0.5, 1.5]), 2),
     "weak has 1 pass rates outside [0, 1] (e.g. 1.5)"),
])
def test_numbers_read_plainly_in_messages(check, message) -> None:
    with pytest.raises(ValueError) as err:
        check()
    assert str(err.value) == message
    assert "np." not in str(err.value)


def test_shown_keeps_text_quoted_and_numbers_plain() -> None:
    assert shown(np.int64(3)) == "3" and shown("abc") == "'abc'" and shown(1.5) == "1.5"


@pytest.mark.parametrize("trainer", ["native", "trl"])
def test_bots_train_refuses_a_prompt_too_long_for_the_model(world, tmp_path, trainer) -> None:
    """Through the real trainers: the miniature model's context is 64 tokens."""
    if trainer == "trl":
        pytest.importorskip("trl")
    from tests.conftest import run_bots
    from tests.trainworld import train_args, train_tasks

    rows = train_tasks("train")
    rows[5]["prompt"] = "1+" * 100 + "1="  # 202 byte tokens
    pd.DataFrame(rows).to_json(tmp_path / "long.jsonl", orient="records", lines=True)
    out = run_bots(*train_args(world, f"domain.data.train={tmp_path / 'long.jsonl'}",
                               "selector=uniform", "train.steps=1", f"trainer={trainer}"),
                   cwd=tmp_path, timeout=600)
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: task 'train-05' (train split): its prompt is 202 tokens, but "
                           "the model's context of 64 tokens leaves "), out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "outputs").exists()  # refused before the first step, nothing kept


def test_the_context_of_a_model_directory_is_read_from_its_config(tmp_path) -> None:
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 4096}')
    assert context_length(tmp_path) == 4096
    assert context_length(str(tmp_path / "missing")) is None
