"""The tiny world's model: a byte-level tokenizer, a ~1M-parameter Qwen2 and its warm start.

Everything here runs offline on a CPU in seconds to minutes, so every command and test has a real
causal LM without a model hub:

- `build_tokenizer()`: one token per byte (256) plus `<|pad|>` and `<|endoftext|>`, built with the
  `tokenizers` library. Any text round-trips exactly. Saved with `save_pretrained` and loaded back
  with `PreTrainedTokenizerFast`, never `AutoTokenizer`: the model config says `qwen2`, and
  AutoTokenizer may then swap in Qwen's own pre-tokenizer, which would change every token id.
- `TinyArch` / `init_model()`: a Qwen2 causal LM with tied embeddings, randomly initialised from a
  seed (hidden 128, 4 layers, 4 heads, intermediate 512: about 1.08M parameters).
- `warm_start()`: supervised training on `(prompt, answer)` text pairs, with the loss on the answer
  tokens and the EOS token only, so the model learns to answer and then stop. Deterministic for a
  seed: the initial weights, the batch order and the optimiser are all seeded.

`bots_cli.models.build` turns these into cached `weak` and `strong` checkpoints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"
N_BYTES = 256
IGNORE = -100  # label of positions that carry no loss (the prompt, padding)


def byte_to_char() -> dict[int, str]:
    """A printable character for every byte value (the GPT-2 byte-level alphabet).

    The byte-level pre-tokenizer of `tokenizers` writes each byte as one such character, so the
    vocabulary is these 256 characters and id == byte value.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table, shift = {}, 0
    for b in range(N_BYTES):
        if b in keep:
            table[b] = chr(b)
        else:  # control and whitespace bytes move above 255 so that every byte stays visible
            table[b] = chr(N_BYTES + shift)
            shift += 1
    return table


def build_tokenizer() -> Any:
    """The tiny model's tokenizer: 256 byte tokens (ids 0-255), then `<|pad|>`, `<|endoftext|>`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: b for b, char in byte_to_char().items()}
    # BPE without merges = one token per byte; no regex split, so spaces are ordinary bytes.
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([PAD_TOKEN, EOS_TOKEN])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD_TOKEN, eos_token=EOS_TOKEN,
        padding_side="left",  # generation pads on the left; training builds its own batches
        clean_up_tokenization_spaces=False, model_max_length=4096,
    )


def save_tokenizer(tokenizer: Any, path: str | Path) -> None:
    """`save_pretrained`, with the class recorded as `PreTrainedTokenizerFast`.

    transformers 5 records its new class name (`TokenizersBackend`), which transformers 4 (the
    version a vLLM install may pin) cannot load; `PreTrainedTokenizerFast` is the same class under
    a name both understand.
    """
    tokenizer.save_pretrained(str(path))
    cfg_file = Path(path) / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def load_tokenizer(path: str) -> Any:
    """Load a tokenizer saved by `build_tokenizer().save_pretrained(path)` (see the docstring)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(path)


@dataclass(frozen=True)
class TinyArch:
    """Shape of the tiny Qwen2 model (values: conf/model/tiny.yaml, build.shipped_recipe())."""

    hidden_size: int  # width of the residual stream
    num_layers: int  # transformer blocks
    num_heads: int  # attention heads (as many key/value heads)
    intermediate_size: int  # width of each block's SwiGLU MLP
    max_positions: int  # longest prompt + completion, in tokens

    def to_config(self, tokenizer: Any) -> Any:
        from transformers import Qwen2Config

        return Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_heads,
            max_position_embeddings=self.max_positions,
            tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=None,
        )


def init_model(arch: TinyArch, tokenizer: Any, seed: int) -> Any:
    """A randomly initialised tiny Qwen2 (fp32, CPU); the same seed gives the same weights."""
    from transformers import GenerationConfig, Qwen2ForCausalLM

    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(arch.to_config(tokenizer))
    # A neutral generation config: no sampling defaults of its own leak into `generate`.
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return model


def count_parameters(model: Any) -> int:
    """Distinct parameters (the tied embedding counts once)."""
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class WarmStart:
    """Supervised warm-start settings (values: conf/model/tiny.yaml, build.shipped_recipe())."""

    batch_size: int  # (prompt, answer) pairs per step
    lr: float  # AdamW peak learning rate
    warmup_steps: int  # linear warm-up from 0
    weight_decay: float  # AdamW weight decay of the weight matrices
    schedule: str  # after warm-up: "constant", or "cosine" down to the last step

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SCHEDULES = ("constant", "cosine")
MIN_LR_RATIO = 0.1  # the cosine schedule ends at this fraction of the peak learning rate


def lr_factor(step: int, ws: WarmStart, total_steps: int) -> float:
    """The learning rate of optimiser step `step` (0-based) as a fraction of `ws.lr`: a linear
    warm-up, then constant or a cosine decay that reaches MIN_LR_RATIO at `total_steps`."""
    warm = max(1, ws.warmup_steps)
    if step < warm or ws.schedule == "constant":
        return min(1.0, (step + 1) / warm)
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    return MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))


class PairBatches:
    """`(prompt, answer)` pairs as padded tensors, served in a seeded shuffled order.

    Each row is `prompt bytes + answer bytes + EOS`; labels are IGNORE on the prompt and on the
    right padding, so the loss covers the answer and the EOS token only.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]], tokenizer: Any, seed: int) -> None:
        if not pairs:
            raise ValueError("the warm start needs at least one (prompt, answer) pair")
        prompts = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
        answers = tokenizer([a for _, a in pairs], add_special_tokens=False)["input_ids"]
        rows = [p + a + [tokenizer.eos_token_id] for p, a in zip(prompts, answers, strict=True)]
        width = max(len(r) for r in rows)
        n = len(rows)
        self.input_ids = torch.full((n, width), tokenizer.pad_token_id, dtype=torch.long)  # (N, L)
        self.labels = torch.full((n, width), IGNORE, dtype=torch.long)  # (N, L)
        self.lengths = torch.tensor([len(r) for r in rows])  # (N,)
        for i, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
            self.input_ids[i, : len(row)] = torch.tensor(row)
            self.labels[i, len(prompt): len(row)] = torch.tensor(row[len(prompt):])
        self._gen = torch.Generator().manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def next(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next batch: input ids, attention mask, labels, each (B, longest row in the batch)."""
        idx: list[int] = []
        while len(idx) < batch_size:  # epochs of fresh permutations, wrapping as needed
            if self._pos >= len(self._order):
                self._order, self._pos = torch.randperm(len(self), generator=self._gen), 0
            take = self._order[self._pos: self._pos + batch_size - len(idx)]
            idx.extend(take.tolist())
            self._pos += len(take)
        rows = torch.tensor(idx)
        width = int(self.lengths[rows].max())
        ids = self.input_ids[rows, :width]  # (B, W)
        mask = (torch.arange(width)[None, :] < self.lengths[rows, None]).long()  # (B, W)
        return ids, mask, self.labels[rows, :width]


def make_optimizer(model: Any, ws: WarmStart,
                   total_steps: int = 0) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW with a linear warm-up, then the schedule of `ws` (see `lr_factor`).

    The schedule spans the whole run (`total_steps`, the strong checkpoint's): the `strong`
    checkpoint continues the very run that produced `weak`, so `weak` is exactly `strong`'s state
    at `weak_steps`, taken while the learning rate is still high.
    """
    if ws.schedule not in SCHEDULES:
        raise ValueError(f"warm-start schedule must be one of {SCHEDULES}, got {ws.schedule!r}")
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "norm" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": ws.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=ws.lr, betas=(0.9, 0.95),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, ws, total_steps))
    return opt, sched


def warm_start(
    model: Any,
    batches: PairBatches,
    steps: int,
    ws: WarmStart,
    optimizer: tuple[torch.optim.Optimizer, Any],
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train `model` for `steps` optimiser steps on `batches`; returns the loss of every step.

    The loss is the mean cross-entropy over answer and EOS tokens of the batch.
    """
    opt, sched = optimizer
    model.train()
    losses: list[float] = []
    for _ in range(steps):
        ids, mask, labels = batches.next(ws.batch_size)
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, W, V)
        # Token t predicts token t+1: shift labels left by one.
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
            ignore_index=IGNORE,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"warm-start loss is {value} at step {len(losses) + 1}; "
                                     f"lower model.build.lr (now {ws.lr})")
        losses.append(value)
        if on_step is not None:
            on_step(len(losses), value)
    model.eval()
    return losses
