"""The GRPO policy update on a real (tiny, random) causal LM."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch

from bots_cli.train.update import UpdateConfig, pack, policy_update, sequence_log_probs

transformers = pytest.importorskip("transformers")


def tiny_lm(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.Qwen2Config(vocab_size=24, hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=2,
                                   intermediate_size=64, max_position_embeddings=64,
                                   tie_word_embeddings=True)
    return transformers.Qwen2ForCausalLM(cfg).float()


PROMPTS = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
COMPLETIONS = [[10, 11], [12, 13, 14], [15]]


def test_pack_marks_the_predicted_completion_tokens() -> None:
    p = pack(PROMPTS, COMPLETIONS, pad_id=0)
    assert p.input_ids.tolist() == [[1, 2, 3, 10, 11], [4, 5, 12, 13, 14], [6, 7, 8, 9, 15]]
    assert p.attention_mask.sum(1).tolist() == [5, 5, 5]
    # Row 0: logits at positions 2 and 3 predict tokens 10 and 11.
    assert p.completion_mask.tolist() == [[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]]
    short = pack([[1]], [[2]], pad_id=0)
    assert short.completion_mask.tolist() == [[1.0]]


def test_log_probs_of_a_padded_batch_equal_one_by_one() -> None:
    model = tiny_lm().eval()
    prompts, completions = [[1, 2, 3, 4, 5], [6]], [[7], [8, 9]]
    batch = pack(prompts, completions, pad_id=0)
    with torch.no_grad():
        together = sequence_log_probs(model, batch)
        for i in range(2):
            alone = sequence_log_probs(model, pack([prompts[i]], [completions[i]], pad_id=0))
            width = alone.shape[1]
            mask = batch.completion_mask[i, :width].bool()
            torch.testing.assert_close(together[i, :width][mask], alone[0][mask])


def update_config(**changes: Any) -> UpdateConfig:
    """conf/train.yaml's update settings (the one place holding their defaults), with changes."""
    from omegaconf import OmegaConf

    from bots_cli.config import config_dir
    from bots_cli.train.settings import TrainSettings

    train = OmegaConf.load(config_dir() / "train.yaml").train
    return dataclasses.replace(TrainSettings.from_config(train).update, **changes)


def update_once(micro: int, agg: str = "token_mean") -> dict[str, torch.Tensor]:
    model = tiny_lm()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    packed = pack(PROMPTS, COMPLETIONS, pad_id=0)
    policy_update(model, opt, None, packed, torch.tensor([1.0, -0.5, 2.0]),
                  update_config(micro_batch_size=micro, loss_agg=agg, max_grad_norm=1e9))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_gradient_accumulation_equals_one_pass(agg: str) -> None:
    whole, accumulated = update_once(0, agg), update_once(1, agg)
    for key in whole:
        torch.testing.assert_close(whole[key], accumulated[key], rtol=1e-4, atol=1e-6)


def test_positive_advantage_raises_the_completion_log_prob() -> None:
    model = tiny_lm()
    before_state = copy.deepcopy(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    packed = pack([[1, 2]], [[5, 6, 7]], pad_id=0)
    with torch.no_grad():
        before = (sequence_log_probs(model, packed) * packed.completion_mask).sum()
    stats = policy_update(model, opt, None, packed, torch.tensor([1.0]), update_config())
    with torch.no_grad():
        after = (sequence_log_probs(model, packed) * packed.completion_mask).sum()
    assert after > before
    assert any(not torch.equal(before_state[k], v) for k, v in model.state_dict().items())
    assert set(stats) == {"loss", "kl", "grad_norm", "clip_frac"}
    assert stats["clip_frac"] == 0.0  # one epoch, one mini-batch: the ratio is exactly 1


def test_several_epochs_clip_and_kl_is_measured_against_the_reference() -> None:
    model = tiny_lm()
    ref = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-2)
    packed = pack(PROMPTS, COMPLETIONS, pad_id=0)
    stats = policy_update(model, opt, None, packed, torch.tensor([1.0, 1.0, 1.0]),
                          update_config(ppo_epochs=4, mini_batch_size=1, kl_coef=0.1),
                          ref_model=ref)
    assert stats["clip_frac"] > 0  # later epochs move the ratio past 1 + ε
    assert stats["kl"] > 0


def test_loss_scale_scales_the_sgd_step() -> None:
    """loss_norm=batch passes the kept share as loss_scale: with SGD the step shrinks by it."""
    start = tiny_lm().state_dict()
    steps = {}
    for scale in (1.0, 0.25):
        model = tiny_lm()
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        policy_update(model, opt, None, pack(PROMPTS, COMPLETIONS, pad_id=0),
                      torch.tensor([1.0, -0.5, 2.0]),
                      update_config(max_grad_norm=1e9, loss_scale=scale))
        steps[scale] = {k: v - start[k] for k, v in model.state_dict().items()}
    for key in start:
        torch.testing.assert_close(steps[0.25][key], 0.25 * steps[1.0][key], rtol=1e-4, atol=1e-7)
