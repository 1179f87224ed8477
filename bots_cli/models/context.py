"""Whether a task pool's prompts fit a model's context: its length, the prompts' token counts,
and one line naming the first task that leaves no room for sampling (it would fail mid-run).
Read by `bots train` (both trainers) and `bots evaluate` before anything is generated."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bots_cli.errors import UserError


def context_length(model: Any) -> int | None:
    """The longest prompt + completion a model takes, in tokens: its config's
    max_position_embeddings (the tiny model's model.build.max_positions); `model` is a loaded
    model or a model directory (config.json). None when it is not known."""
    if isinstance(model, (str, Path)):
        try:
            value = json.loads((Path(model) / "config.json").read_text()).get(
                "max_position_embeddings")
        except (OSError, ValueError, AttributeError):
            return None
    else:
        value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def check_pool_prompts(pool: Any, dom: Any, tokenizer: Any, context: int | None,
                       max_new_tokens: int) -> None:
    """The training pool's prompts, rendered as the trainers render them, fit the context."""
    from bots_cli.models.loading import render_prompt_for_model

    if context is None:
        return
    prompts = (render_prompt_for_model(tokenizer, dom.render_messages(row))
               for _, row in pool.iterrows())
    check_prompt_lengths([str(t) for t in pool["task_id"]], prompt_lengths(prompts, tokenizer),
                         context, max_new_tokens, "train")


def prompt_lengths(prompts: Iterable[str], tokenizer: Any, chunk: int = 1024) -> list[int]:
    """Tokens of each rendered prompt (as the trainer tokenizes it), in chunks of `chunk`."""
    out: list[int] = []
    batch: list[str] = []
    for text in [*prompts, None]:
        if text is not None:
            batch.append(text)
        if batch and (text is None or len(batch) == chunk):
            out += [len(ids) for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]]
            batch = []
    return out


def check_prompt_lengths(task_ids: list[str], lengths: list[int], context: int | None,
                         max_new_tokens: int, split: str) -> None:
    """Every prompt (`lengths` in tokens) leaves room for `max_new_tokens` in the model's
    context, or one line naming the first task that does not (it would fail mid-run)."""
    if context is None:
        return
    room = context - max_new_tokens
    over = [i for i, n in enumerate(lengths) if n > room]
    if not over:
        return
    i = over[0]
    more = f" ({len(over) - 1} more {split} tasks are too long too)" if len(over) > 1 else ""
    raise UserError(f"task {task_ids[i]!r} ({split} split): its prompt is {lengths[i]} tokens, "
                    f"but the model's context of {context} tokens leaves {max(room, 0)} for it "
                    f"after sampling.max_new_tokens={max_new_tokens}{more}; shorten or drop the "
                    "task, or lower sampling.max_new_tokens")
