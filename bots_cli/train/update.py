"""The policy update of one GRPO step: pack rollouts, compute log-probs, clipped loss, AdamW step.

Loss normalisation (why it matters for comparing selectors): groups whose rewards are all equal
have zero advantage and contribute nothing but tokens to the denominator. They are dropped before
the update (counted as `train/zero_variance_share` by the caller), and by default the loss is
normalised over the tokens of the completions that remain. Dividing by all tokens instead (verl's
token mean over the whole mini-batch, the paper's setup; `train.loss_norm=batch`, passed here as
`loss_scale` = the kept share) shrinks the effective learning rate of a selector in proportion
to the zero-variance share it picks, i.e. penalises uniform sampling for wasting rollouts twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bots_cli.train.grpo import (
    LossAggregation,
    aggregate_loss,
    clipped_surrogate,
    kl_k3,
    token_log_probs,
)


@dataclass
class Packed:
    """Prompt + completion sequences, right-padded into one batch."""

    input_ids: torch.Tensor  # (N, L)
    attention_mask: torch.Tensor  # (N, L) 1 on real tokens
    completion_mask: torch.Tensor  # (N, L-1) 1 where the *predicted* token is a completion token


def pack(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int
) -> Packed:
    """Right-pad prompt+completion token lists; mark which predicted tokens are completion."""
    seqs = [list(p) + list(c) for p, c in zip(prompts, completions, strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    comp = torch.zeros((len(seqs), width - 1), dtype=torch.float32)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        n = len(p) + len(c)
        ids[i, :n] = torch.tensor(list(p) + list(c), dtype=torch.long)
        attn[i, :n] = 1
        # Position t of the logits predicts token t+1: completion tokens are len(p) .. n-1.
        comp[i, len(p) - 1 : n - 1] = 1.0
    return Packed(ids, attn, comp)


def sequence_log_probs(model: Any, packed: Packed) -> torch.Tensor:  # (N, L-1)
    """log p of each next token under `model` (right padding: positions are 0..L-1 per row)."""
    logits = model(input_ids=packed.input_ids, attention_mask=packed.attention_mask).logits
    return token_log_probs(logits[:, :-1], packed.input_ids[:, 1:])


@dataclass(frozen=True)
class UpdateConfig:
    """The update's settings; their defaults live in conf/train.yaml (`TrainSettings` reads them),
    only the two the loop derives per batch have one here."""

    ppo_epochs: int  # passes over the batch
    micro_batch_size: int  # completions per forward/backward (gradient accumulation); 0 = mini
    clip_eps: float  # PPO clip range of the ratio
    clip_eps_high: float | None  # upper clip range; None = clip_eps
    kl_coef: float  # weight of the k3 KL penalty to the reference policy
    loss_agg: LossAggregation  # how per-token losses become one number
    max_grad_norm: float  # gradient clipping (global L2 norm)
    mini_batch_size: int = 0  # completions per optimizer step; 0 = the whole batch (per batch)
    loss_scale: float = 1.0  # multiplies the loss (train.loss_norm=batch: kept share of the batch)


def policy_update(
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    packed: Packed,
    advantages: torch.Tensor,  # (N,)
    cfg: UpdateConfig,
    ref_model: Any = None,
) -> dict[str, float]:
    """PPO-style epochs of clipped-surrogate updates over mini-batches; returns averaged stats.

    The ratio is taken against the rollout policy (the weights before this update); with one
    epoch over one mini-batch it is exactly 1 and the update is the plain policy gradient.
    """
    n = packed.input_ids.shape[0]
    mini = cfg.mini_batch_size or n
    micro = cfg.micro_batch_size or mini
    with torch.no_grad():
        old_logp = _chunked_log_probs(model, packed, micro)
        ref_logp = _chunked_log_probs(ref_model, packed, micro) if cfg.kl_coef > 0 else None
    stats: dict[str, list[float]] = {"loss": [], "kl": [], "grad_norm": [], "clip_frac": []}
    model.train()
    for _ in range(cfg.ppo_epochs):
        for start in range(0, n, mini):
            idx = torch.arange(start, min(start + mini, n))
            tokens = packed.completion_mask[idx].sum().clamp(min=1.0)
            optimizer.zero_grad(set_to_none=True)
            for mstart in range(0, len(idx), micro):
                sub = idx[mstart : mstart + micro]
                part = Packed(packed.input_ids[sub], packed.attention_mask[sub],
                              packed.completion_mask[sub])
                logp = sequence_log_probs(model, part)
                per_token, clipped = clipped_surrogate(logp, old_logp[sub], advantages[sub],
                                                       cfg.clip_eps, cfg.clip_eps_high)
                kl = torch.zeros_like(per_token)
                if ref_logp is not None:
                    kl = kl_k3(logp, ref_logp[sub])
                    per_token = per_token + cfg.kl_coef * kl
                # Micro-batches are weighted by their share of the mini-batch, so accumulation
                # gives the same gradient as one pass over the mini-batch.
                weight = _share(part.completion_mask, tokens, len(sub), len(idx), cfg.loss_agg)
                loss = (aggregate_loss(per_token, part.completion_mask, cfg.loss_agg) * weight
                        * cfg.loss_scale)
                loss.backward()
                mask = part.completion_mask
                stats["loss"].append(float(loss.detach()) / weight)
                stats["kl"].append(float((kl.detach() * mask).sum() / mask.sum().clamp(min=1.0)))
                stats["clip_frac"].append(float((clipped * mask).sum() / mask.sum().clamp(min=1.0)))
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            stats["grad_norm"].append(float(norm))
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
    return {k: sum(v) / len(v) for k, v in stats.items() if v}


def _share(mask: torch.Tensor, mini_tokens: torch.Tensor, rows: int, mini_rows: int,
           agg: LossAggregation) -> float:
    if agg == "token_mean":
        return float(mask.sum().clamp(min=1.0) / mini_tokens)
    return rows / mini_rows


def _chunked_log_probs(model: Any, packed: Packed, chunk: int) -> torch.Tensor:
    model.eval()
    parts = []
    for start in range(0, packed.input_ids.shape[0], chunk):
        sl = slice(start, start + chunk)
        parts.append(sequence_log_probs(
            model, Packed(packed.input_ids[sl], packed.attention_mask[sl],
                          packed.completion_mask[sl])))
    return torch.cat(parts)
