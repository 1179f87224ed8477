"""The text a model sees for a task prompt (its chat template, if it has one).

Below both `models.loading` and `models.build` (the warm start renders its prompts the way the
rollout engines will), so neither needs the other for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def render_prompt_for_model(tokenizer: Any, prompt: str | Sequence[Mapping[str, str]]) -> str:
    """The text the model sees for a task prompt.

    With a chat template (instruct models), a string becomes one user message and a list of chat
    messages is used as is; the template adds the assistant turn's opening. Without one (the tiny
    model, base models), a string is used verbatim and messages are joined by their contents.
    """
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(text)
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m["content"]) for m in messages)
