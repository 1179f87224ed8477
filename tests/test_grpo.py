"""The GRPO functions against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from bots_cli.train.grpo import (
    aggregate_loss,
    batch_loss_scale,
    clipped_surrogate,
    group_advantages,
    kept_update_sizes,
    kl_k3,
    token_log_probs,
)


def test_group_advantages_by_hand() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    adv = group_advantages(rewards, eps=0.0 + 1e-12)
    # Group 0: mean 0.5, sample std sqrt(1/3): ±0.5 / 0.57735 = ±0.866.
    s = math.sqrt(1 / 3)
    torch.testing.assert_close(adv[0], torch.tensor([0.5, -0.5, -0.5, 0.5]) / s)
    # Group 1: all equal, no signal.
    assert torch.all(adv[1] == 0)
    # Group 2: mean 0.25, sample std 0.5: (0.75, -0.25, ...) / 0.5.
    torch.testing.assert_close(adv[2], torch.tensor([1.5, -0.5, -0.5, -0.5]))
    # Dr. GRPO: centred only.
    torch.testing.assert_close(group_advantages(rewards, scale_by_std=False)[2],
                               torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_token_log_probs_by_hand() -> None:
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]]))  # (1, 2, 3)
    tokens = torch.tensor([[0, 2]])
    torch.testing.assert_close(token_log_probs(logits, tokens),
                               torch.log(torch.tensor([[0.5, 0.8]])))


def test_clipped_surrogate_by_hand() -> None:
    logp_old = torch.zeros(3, 1)
    logp = torch.log(torch.tensor([[1.5], [0.5], [1.1]]))  # ratios 1.5, 0.5, 1.1
    adv = torch.tensor([1.0, 1.0, -2.0])
    loss, clipped = clipped_surrogate(logp, logp_old, adv, clip_eps=0.2)
    # A > 0, ratio 1.5: min(1.5, 1.2) = 1.2 (clipped). A > 0, ratio 0.5: min(0.5, 0.8) = 0.5.
    # A < 0, ratio 1.1: min(-2.2, -2.2) = -2.2.
    torch.testing.assert_close(loss, torch.tensor([[-1.2], [-0.5], [2.2]]))
    assert clipped.squeeze().tolist() == [1.0, 0.0, 0.0]
    high, _ = clipped_surrogate(logp, logp_old, adv, clip_eps=0.2, clip_eps_high=0.28)
    assert high[0, 0].item() == pytest.approx(-1.28)


def test_surrogate_gradient_at_ratio_one_is_the_policy_gradient() -> None:
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, _ = clipped_surrogate(logp, logp.detach(), torch.tensor([3.0]))
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-3.0, -3.0]]))


def test_kl_k3_by_hand() -> None:
    logp = torch.tensor([[math.log(0.5), math.log(0.2)]])
    ref = torch.tensor([[math.log(0.5), math.log(0.4)]])
    # r = 0 -> 0; r = log 2 -> 2 - log 2 - 1.
    torch.testing.assert_close(kl_k3(logp, ref), torch.tensor([[0.0, 1.0 - math.log(2.0)]]))
    assert torch.all(kl_k3(torch.randn(4, 5), torch.randn(4, 5)) >= 0)


def test_loss_aggregations_by_hand() -> None:
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert aggregate_loss(per_token, mask, "token_mean").item() == pytest.approx(10 / 4)
    assert aggregate_loss(per_token, mask, "seq_mean_token_mean").item() == pytest.approx(3.0)
    assert aggregate_loss(per_token, mask, "seq_mean_token_sum_norm").item() == \
        pytest.approx((6 / 3 + 4 / 3) / 2)
    assert aggregate_loss(per_token, mask, "seq_mean_token_sum_norm", max_len=10).item() == \
        pytest.approx((0.6 + 0.4) / 2)
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        aggregate_loss(per_token, mask, "sum")  # type: ignore[arg-type]


def test_kept_update_sizes_by_hand() -> None:
    # batch 8 tasks in mini-batches of 2 tasks = 4 optimizer steps, whatever is kept
    assert kept_update_sizes(kept=24, batch_size=8, mini_batch_size=2, micro_batch_size=0) == (6, 6)
    assert kept_update_sizes(kept=10, batch_size=8, mini_batch_size=2, micro_batch_size=0) == (3, 3)
    assert kept_update_sizes(kept=10, batch_size=8, mini_batch_size=2, micro_batch_size=2) == (3, 2)
    assert kept_update_sizes(kept=10, batch_size=8, mini_batch_size=8, micro_batch_size=16) == \
        (10, 10)  # one step; the micro-batch never exceeds the mini-batch


def test_batch_loss_scale_by_hand() -> None:
    kept, every = [3, 5], [3, 5, 2, 10]  # two of four completions kept: 8 of 20 tokens
    assert batch_loss_scale(kept, every, "token_mean") == pytest.approx(8 / 20)
    assert batch_loss_scale(kept, every, "seq_mean_token_mean") == pytest.approx(2 / 4)
    assert batch_loss_scale(kept, every, "seq_mean_token_sum_norm") == pytest.approx(2 / 4)
