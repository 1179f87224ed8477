"""The `hf` rollout engine: transformers `generate`, on a CPU or a GPU.

It generates with the very model object the trainer updates, so `load_weights` costs nothing
when given that object. What it takes care of, because `generate` does not by default:

- **Left padding.** Prompts of different lengths are padded on the left with an attention mask;
  `generate` derives each row's position ids from the mask, so a padded row gets the same
  positions, and the same greedy output, as the prompt alone (the conformance suite checks this).
- **Only the sampling asked for.** transformers fills every setting left unset from the model's
  `generation_config.json` (Qwen's ships top_k=20, top_p=0.8, repetition_penalty=1.05) and then
  from global defaults (top_k=50). Here the model's defaults are set aside during the call and
  top-k is switched off explicitly: temperature and top-p are the whole sampling recipe, the same
  as the vLLM engine's.
- **Stop strings.** A stopping criterion ends a row as soon as its text contains a stop string;
  the completion's text is cut before it.
- **Reproducibility.** Each batch samples from the global torch RNG reseeded from
  `(sampling.seed, batch index)` inside `fork_rng`, so the same prompts, n and seed give the same
  completions, and the caller's (the trainer's) RNG stream is left untouched.
- **Memory.** Rows are batched by a token budget (rows × (longest prompt + max_new_tokens)).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from transformers import StoppingCriteria

from bots_cli.checks import check_int
from bots_cli.engines.base import Completion, RolloutEngine, SamplingParams


class HFEngine(RolloutEngine):
    """Rollouts with `model.generate`; `model` may be the trainer's own (shared, not copied)."""

    def __init__(self, model: Any, tokenizer: Any, *, max_batch_tokens: int = 65536) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_tokens = check_int("engine.max_batch_tokens", max_batch_tokens, lo=1)
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has neither a pad nor an EOS token to pad batches with")
        self.pad_id = (tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                       else tokenizer.eos_token_id)
        self.eos_ids = _eos_ids(model, tokenizer)

    def generate(
        self, prompts: Sequence[str], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        check_int("n (completions per prompt)", n, lo=1)
        if not prompts:
            return []
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        empty = [i for i, p in enumerate(encoded) if not p]
        if empty:  # nothing to condition on (and a fully masked row has no defined attention)
            raise ValueError(f"{len(empty)} empty prompt(s), e.g. prompt {empty[0]}")
        rows = [(i, j) for i in range(len(encoded)) for j in range(n)]  # (prompt, sample)
        out: list[list[Completion | None]] = [[None] * n for _ in encoded]
        for b, batch in enumerate(self._batches(rows, encoded, sampling.max_new_tokens)):
            tokens = self._generate_batch([encoded[i] for i, _ in batch], sampling, b)
            for (i, j), toks in zip(batch, tokens, strict=True):
                out[i][j] = finish_completion(toks, self.eos_ids, sampling.stop, self._decode)
        return [[c for c in group if c is not None] for group in out]

    def load_weights(self, model: Any) -> None:
        """Generate with `model`'s weights from now on.

        The trainer's own model object (the usual case) needs nothing: the engine already holds
        it. Another module with the same architecture, or a state dict, is copied in.
        """
        if model is self.model:
            return
        state = model if isinstance(model, Mapping) else model.state_dict()
        with torch.no_grad():
            self.model.load_state_dict(state)

    def close(self) -> None:
        self.model = None

    # -- internals ------------------------------------------------------------------------------

    def _decode(self, tokens: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(tokens), skip_special_tokens=True))

    def _batches(
        self, rows: list[tuple[int, int]], encoded: list[list[int]], max_new: int
    ) -> Iterator[list[tuple[int, int]]]:
        """Rows grouped, longest prompts first, so that rows × (longest + max_new) fits the budget.

        Sorting by length keeps padding small; the order is deterministic (a stable sort), so
        batch composition, and hence sampling, is reproducible.
        """
        order = sorted(rows, key=lambda r: -len(encoded[r[0]]))
        start = 0
        while start < len(order):
            longest = len(encoded[order[start][0]]) + max_new
            size = max(1, self.max_batch_tokens // max(1, longest))
            yield order[start: start + size]
            start += size

    def _generate_batch(
        self, prompts: list[list[int]], sampling: SamplingParams, batch_index: int
    ) -> list[list[int]]:
        """Generated token ids of each left-padded prompt (pads after a finished row included)."""
        from transformers import GenerationConfig, StoppingCriteriaList

        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)  # (B, P)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)  # (B, P)
        for r, p in enumerate(prompts):
            ids[r, width - len(p):] = torch.tensor(p)
            mask[r, width - len(p):] = 1
        sample = sampling.temperature > 0
        config = GenerationConfig(
            max_new_tokens=sampling.max_new_tokens, min_new_tokens=0, do_sample=sample,
            num_beams=1, eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id,
            **({"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
               if sample else {}),
        )
        criteria = StoppingCriteriaList()
        if sampling.stop:
            criteria.append(StopOnStrings(sampling.stop, width, self._decode))
        seed = _batch_seed(sampling.seed, batch_index)
        with _neutral_generation_defaults(self.model), _seeded(seed, device), torch.no_grad():
            out = self.model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device),
                generation_config=config, stopping_criteria=criteria,
            )  # (B, P + T), T <= max_new_tokens
        return [row[width:].tolist() for row in out.cpu()]


class StopOnStrings(StoppingCriteria):
    """Stopping criterion: a row is done once its generated text contains a stop string.

    Only the last few tokens are decoded each step (a stop string just completed lies within as
    many tokens as it has bytes), so the cost does not grow with the completion's length.
    """

    def __init__(self, stops: Sequence[str], prompt_width: int,
                 decode: Callable[[Sequence[int]], str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.prompt_width = prompt_width
        self.decode = decode
        self.window = max((len(s.encode()) for s in self.stops), default=0) + 2

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        tails = input_ids[:, self.prompt_width:][:, -self.window:].tolist()  # (B, <= window)
        done = [any(s in self.decode(t) for s in self.stops) for t in tails]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # (B,)


def finish_completion(
    tokens: Sequence[int], eos_ids: set[int] | frozenset[int], stops: Sequence[str],
    decode: Callable[[Sequence[int]], str],
) -> Completion:
    """One completion from its generated tokens: cut at EOS or before the first stop string.

    - a stop string in the text before any EOS: the text ends just before it, the tokens at the
      token that completed it, finish_reason "stop";
    - else an EOS token: the text is what precedes it, the tokens include it, "stop";
    - else the token budget ran out: "length".
    """
    eos_at = next((k for k, t in enumerate(tokens) if t in eos_ids), None)
    body = list(tokens[:eos_at]) if eos_at is not None else list(tokens)
    text = decode(body)
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    if hits:
        # Fewest tokens whose text holds a stop string (containment only grows with k).
        lo, hi = 1, len(body)
        while lo < hi:
            mid = (lo + hi) // 2
            if any(s and s in decode(body[:mid]) for s in stops):
                hi = mid
            else:
                lo = mid + 1
        return Completion(text=text[: min(hits)], token_ids=tuple(body[:lo]), finish_reason="stop")
    if eos_at is not None:
        return Completion(text=text, token_ids=tuple(tokens[: eos_at + 1]), finish_reason="stop")
    return Completion(text=text, token_ids=tuple(tokens), finish_reason="length")


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token that ends a completion: the tokenizer's EOS and the model's (chat models often
    list several, e.g. Qwen's <|im_end|> and <|endoftext|>)."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    if not ids:
        raise ValueError("neither the tokenizer nor the model defines an EOS token")
    return ids


def _batch_seed(seed: int, batch_index: int) -> int:
    """A 63-bit seed per (seed, batch): distinct batches and distinct seeds draw independently."""
    import numpy as np

    return int(np.random.SeedSequence([seed, batch_index]).generate_state(2, np.uint64)[0] >> 1)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNG for one call and restore the caller's RNG state afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _neutral_generation_defaults(model: Any) -> Iterator[None]:
    """Hide the model's own generation defaults (and its train mode) for the length of a call."""
    from transformers import GenerationConfig

    saved_config, was_training = model.generation_config, model.training
    model.generation_config = GenerationConfig()
    model.eval()
    try:
        yield
    finally:
        model.generation_config = saved_config
        model.train(was_training)
