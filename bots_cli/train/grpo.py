"""The GRPO math, one small pure function per step (shapes in comments).

N = number of completions in a (mini-)batch, T = completion length in tokens, V = vocabulary.
Conventions: `mask` is 1.0 on completion tokens that count and 0.0 on padding; log-probabilities
are natural logs; losses are to be minimised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

LossAggregation = Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"]


def group_advantages(
    rewards: torch.Tensor,  # (B, G): G rollouts of each of B tasks
    scale_by_std: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:  # (B, G)
    """(r - mean_group) / (std_group + eps), or r - mean_group without std scaling (Dr. GRPO).

    The std is the sample standard deviation (n - 1 in the denominator), as in verl and TRL. A
    group whose rewards are all equal gets advantage 0: it carries no learning signal.
    """
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale_by_std:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + eps)


def token_log_probs(
    logits: torch.Tensor,  # (N, T, V): logits that predict each of the T tokens
    tokens: torch.Tensor,  # (N, T): the tokens
) -> torch.Tensor:  # (N, T)
    """log p(token_t | prefix) for every position."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def clipped_surrogate(
    logp: torch.Tensor,  # (N, T) under the policy being updated
    logp_old: torch.Tensor,  # (N, T) under the policy that generated the rollouts
    advantages: torch.Tensor,  # (N,) one advantage per completion
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # (N, T) loss per token, (N, T) 1.0 where clipped
    """PPO's clipped objective per token: -min(ratio·A, clip(ratio, 1-ε, 1+ε_high)·A).

    With one update per batch the ratio is exactly 1 and this is the plain policy gradient.
    `clip_eps_high` defaults to `clip_eps` (set it higher for DAPO's clip-higher).
    """
    high = clip_eps if clip_eps_high is None else clip_eps_high
    ratio = torch.exp(logp - logp_old)
    adv = advantages.unsqueeze(-1)  # (N, 1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + high) * adv
    loss = -torch.minimum(unclipped, clipped)
    return loss, (clipped < unclipped).float()


def kl_k3(
    logp: torch.Tensor,  # (N, T) policy
    logp_ref: torch.Tensor,  # (N, T) reference policy
) -> torch.Tensor:  # (N, T)
    """Schulman's k3 estimator of KL(policy || ref): exp(r) - r - 1 with r = logp_ref - logp.

    Unbiased, always ≥ 0, and low-variance for samples drawn from the policy.
    """
    r = logp_ref - logp
    return torch.exp(r) - r - 1.0


def aggregate_loss(
    per_token: torch.Tensor,  # (N, T)
    mask: torch.Tensor,  # (N, T) 1.0 on completion tokens
    mode: LossAggregation = "token_mean",
    max_len: int | None = None,
) -> torch.Tensor:  # scalar
    """Reduce a per-token loss to a scalar.

    token_mean: sum over all tokens / number of tokens (long completions weigh more; DAPO).
    seq_mean_token_mean: mean over completions of each one's token mean (the original GRPO).
    seq_mean_token_sum_norm: mean over completions of token sums / max_len (Dr. GRPO, no
    length bias); `max_len` defaults to T.
    """
    masked = per_token * mask
    if mode == "token_mean":
        return masked.sum() / mask.sum().clamp(min=1.0)
    if mode == "seq_mean_token_mean":
        return (masked.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)).mean()
    if mode == "seq_mean_token_sum_norm":
        return (masked.sum(dim=1) / float(max_len or per_token.shape[1])).mean()
    raise ValueError(f"unknown loss aggregation {mode!r}")


def kept_update_sizes(kept: int, batch_size: int, mini_batch_size: int,
                      micro_batch_size: int) -> tuple[int, int]:
    """(completions per optimizer step, per forward/backward pass) when `kept` completions of a
    batch remain after the equal-reward groups are dropped.

    The update keeps a fixed number of optimizer steps, batch_size // mini_batch_size (in tasks),
    whatever share of groups was kept, so the steps per update do not depend on the batch's luck:
    the kept completions are split into that many mini-batches of ceil(kept / steps).
    `micro_batch_size` 0 means the mini-batch; it never exceeds it.
    """
    mini = math.ceil(kept / (batch_size // mini_batch_size))
    return mini, min(micro_batch_size or mini, mini)


def batch_loss_scale(kept_lengths: Sequence[int], all_lengths: Sequence[int],
                     mode: LossAggregation) -> float:
    """The factor `train.loss_norm=batch` multiplies the kept groups' loss by: the loss is then
    normalised as if the dropped groups' completions (advantage 0) were still in the batch.

    token_mean: kept tokens / all tokens; the per-sequence modes: kept completions / all.
    """
    if mode == "token_mean":
        return sum(kept_lengths) / max(1, sum(all_lengths))
    return len(kept_lengths) / max(1, len(all_lengths))
