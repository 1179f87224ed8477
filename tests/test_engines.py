"""Rollout-engine conformance: every engine that can be built here passes the same checks.

The engines generate with a miniature tiny model warm-started in the test session (seconds): its
`weak` checkpoint answers one-digit additions and then emits EOS, its `strong` checkpoint answers
differently, which the weight-update checks rely on. The vLLM half needs vLLM and a CUDA GPU and
skips, with the reason, where either is missing.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from bots_cli.engines import SamplingParams, build_engine
from bots_cli.engines.base import Completion, RolloutEngine
from bots_cli.engines.hf import HFEngine, finish_completion
from bots_cli.errors import InvalidValue, UserError
from bots_cli.models.build import TinyBuild
from bots_cli.models.loading import load_tokenizer
from tests.miniature import PAIRS, build_miniature

PROMPTS = ["3+4=", "12+7=", "x", "9+9=", "5+0=  "]  # different lengths: left padding matters
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=8)
SAMPLED = SamplingParams(temperature=1.0, max_new_tokens=8, seed=7)


@pytest.fixture(scope="session")
def mini(tmp_path_factory: pytest.TempPathFactory) -> TinyBuild:
    return build_miniature(tmp_path_factory.mktemp("mini") / "build")


def load_hf(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path)).eval()


def _vllm_skip_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (the optional extra bots-cli[vllm])"
    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU"
    return None


EngineFactory = Callable[[str], RolloutEngine]  # checkpoint name -> engine


@pytest.fixture(params=["hf", "vllm", "vllm-standin"])
def make_engine(request: pytest.FixtureRequest, mini: TinyBuild) -> Iterator[EngineFactory]:
    """Each engine in turn; `vllm-standin` is the vLLM engine against tests/vllm_standin, a
    stand-in that enforces vLLM's rules where vLLM cannot be installed."""
    made: list[RolloutEngine] = []

    def make(checkpoint: str = "weak") -> RolloutEngine:
        if request.param == "hf":
            path = mini.checkpoint(checkpoint)
            engine: RolloutEngine = HFEngine(load_hf(path), load_tokenizer(path))
        else:
            from bots_cli.engines.vllm_engine import VLLMEngine

            engine = VLLMEngine(str(mini.checkpoint(checkpoint)), dtype="float32",
                                gpu_memory_utilization=0.2, enforce_eager=True, max_model_len=64)
        made.append(engine)
        return engine

    if request.param == "vllm" and (reason := _vllm_skip_reason()):
        pytest.skip(reason)
    if request.param == "vllm-standin":
        request.getfixturevalue("vllm_standin")
    yield make
    for engine in made:
        engine.close()


def argmax_continuation(model: Any, prompt_ids: list[int], eos: int, steps: int) -> list[int]:
    """Greedy decoding the plain way: full forward pass, argmax, append, until EOS."""
    ids = list(prompt_ids)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=torch.tensor([ids])).logits  # (1, T, V)
            nxt = int(logits[0, -1].argmax())
            out.append(nxt)
            ids.append(nxt)
            if nxt == eos:
                break
    return out


# -- conformance: every engine ----------------------------------------------------------------


def test_outputs_have_one_group_of_n_per_prompt(make_engine: EngineFactory) -> None:
    out = make_engine("weak").generate(PROMPTS, 3, SAMPLED)
    assert len(out) == len(PROMPTS)
    for group in out:
        assert len(group) == 3
        for c in group:
            assert isinstance(c, Completion) and isinstance(c.text, str)
            assert 1 <= len(c.token_ids) <= SAMPLED.max_new_tokens
            assert c.finish_reason in ("stop", "length")
            if c.finish_reason == "length":
                assert len(c.token_ids) == SAMPLED.max_new_tokens
    assert make_engine("weak").generate([], 2, SAMPLED) == []


def test_eos_ends_a_completion_and_is_not_in_its_text(make_engine: EngineFactory,
                                                      mini: TinyBuild) -> None:
    tok = load_tokenizer(mini.checkpoint("weak"))
    out = make_engine("weak").generate([p for p, _ in PAIRS[:10]], 1, GREEDY)
    for [c] in out:  # the warm start taught it: an answer of digits, then EOS
        assert c.finish_reason == "stop" and c.token_ids[-1] == tok.eos_token_id
        assert c.text == tok.decode(list(c.token_ids[:-1])) and c.text.isdigit()


def test_text_is_cut_before_a_stop_string(make_engine: EngineFactory) -> None:
    engine = make_engine("weak")
    [[free]] = engine.generate(["3+4="], 1, GREEDY)
    assert len(free.text) >= 2, "the fixture model should answer with two digits"
    for stop in (free.text[1:2], free.text[:2]):  # one token; two tokens
        [[cut]] = engine.generate(["3+4="], 1, greedy_stop(stop))
        at = free.text.index(stop)
        assert cut.finish_reason == "stop" and cut.text == free.text[:at]
        assert cut.token_ids == free.token_ids[: at + len(stop)]  # through the stop's last token
    [[same]] = engine.generate(["3+4="], 1, greedy_stop("never appears"))
    assert same == free


def greedy_stop(stop: str) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_new_tokens=8, stop=(stop,))


def test_same_seed_same_completions_other_seed_others(make_engine: EngineFactory) -> None:
    engine = make_engine("weak")
    first = engine.generate(PROMPTS, 4, SAMPLED)
    assert engine.generate(PROMPTS, 4, SAMPLED) == first
    other = engine.generate(PROMPTS, 4, SamplingParams(temperature=1.0, max_new_tokens=8, seed=8))
    assert other != first
    texts = [c.token_ids for group in first for c in group]
    assert len(set(texts)) > len(PROMPTS)  # the n samples of a prompt are not copies


def test_greedy_is_the_models_argmax_continuation(make_engine: EngineFactory,
                                                  mini: TinyBuild) -> None:
    path = mini.checkpoint("strong")
    model, tok = load_hf(path), load_tokenizer(path)
    out = make_engine("strong").generate(PROMPTS, 1, GREEDY)
    for prompt, [c] in zip(PROMPTS, out, strict=True):
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        assert list(c.token_ids) == argmax_continuation(model, ids, tok.eos_token_id, 8)


def test_a_left_padded_batch_equals_one_prompt_at_a_time(make_engine: EngineFactory) -> None:
    engine = make_engine("strong")
    batch = engine.generate(PROMPTS, 2, GREEDY)
    alone = [engine.generate([p], 2, GREEDY)[0] for p in PROMPTS]
    assert batch == alone


def test_loaded_weights_take_effect(make_engine: EngineFactory, mini: TinyBuild) -> None:
    prompts = [p for p, _ in PAIRS[::7]]
    engine = make_engine("weak")
    before = engine.generate(prompts, 1, GREEDY)
    expected = make_engine("strong").generate(prompts, 1, GREEDY)
    assert before != expected  # the two checkpoints answer differently
    engine.load_weights(load_hf(mini.checkpoint("strong")))
    assert engine.generate(prompts, 1, GREEDY) == expected


# -- the hf engine in particular --------------------------------------------------------------


@pytest.fixture
def weak_hf(mini: TinyBuild) -> HFEngine:
    path = mini.checkpoint("weak")
    return HFEngine(load_hf(path), load_tokenizer(path))


def test_hf_shares_the_trainers_model(weak_hf: HFEngine) -> None:
    """An in-place update of the trainer's model is what the next rollouts use."""
    before = weak_hf.generate(PROMPTS, 1, GREEDY)
    with torch.no_grad():
        weak_hf.model.model.norm.weight.mul_(-3.0)  # a change the argmax cannot miss
    weak_hf.load_weights(weak_hf.model)  # the same object: nothing to copy
    assert weak_hf.generate(PROMPTS, 1, GREEDY) != before


def test_hf_token_budget_batches_give_the_same_greedy_output(weak_hf: HFEngine) -> None:
    whole = weak_hf.generate(PROMPTS, 3, GREEDY)
    weak_hf.max_batch_tokens = 20  # one or two rows per generate call
    assert weak_hf.generate(PROMPTS, 3, GREEDY) == whole


def test_hf_top_k_is_off_and_model_defaults_do_not_leak(mini: TinyBuild) -> None:
    """A random-init model is near-uniform over 258 tokens: 400 first tokens hit far more than
    50 distinct values, unless a top-k (transformers' default 50, or the model's own) is on."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(mini.checkpoint("weak")))
    model.generation_config.top_k = 5  # what a checkpoint's generation_config.json may say
    model.generation_config.do_sample = True
    model.generation_config.repetition_penalty = 3.0
    engine = HFEngine(model, load_tokenizer(mini.checkpoint("weak")))
    [group] = engine.generate(["3+4="], 400, SamplingParams(temperature=1.0, max_new_tokens=1))
    assert len({c.token_ids[0] for c in group}) > 100
    assert model.generation_config.top_k == 5  # restored after the call


def test_hf_generation_leaves_the_callers_rng_alone(weak_hf: HFEngine) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    weak_hf.generate(PROMPTS, 2, SAMPLED)
    assert torch.equal(torch.rand(3), expected)


def test_hf_load_weights_copies_another_model_or_a_state_dict(weak_hf: HFEngine,
                                                              mini: TinyBuild) -> None:
    strong = load_hf(mini.checkpoint("strong"))
    weak_state = copy.deepcopy(weak_hf.model.state_dict())
    before = weak_hf.generate(PROMPTS, 1, GREEDY)
    weak_hf.load_weights(strong)
    assert weak_hf.model is not strong  # copied in, not swapped
    assert weak_hf.generate(PROMPTS, 1, GREEDY) != before
    weak_hf.load_weights(weak_state)
    assert weak_hf.generate(PROMPTS, 1, GREEDY) == before


def test_hf_restores_train_mode_and_rejects_bad_input(weak_hf: HFEngine) -> None:
    weak_hf.model.train()
    weak_hf.generate(["1+1="], 1, GREEDY)
    assert weak_hf.model.training
    with pytest.raises(ValueError, match="empty prompt"):
        weak_hf.generate(["1+1=", ""], 1, GREEDY)
    with pytest.raises(InvalidValue, match="n \\(completions per prompt\\)"):
        weak_hf.generate(["1+1="], 0, GREEDY)


# -- pieces -----------------------------------------------------------------------------------


def _bytes_decode(tokens: Any) -> str:
    return bytes(t for t in tokens if t < 256).decode(errors="replace")


@pytest.mark.parametrize(
    ("text", "eos_at", "stops", "expected"),
    [
        ("42", None, (), ("42", b"42", "length")),
        ("42", 2, (), ("42", b"42\x01", "stop")),  # EOS (here 1) kept in the tokens
        ("4;2", None, (";",), ("4", b"4;", "stop")),
        ("4;2", 1, (";",), ("4", b"4\x01", "stop")),  # EOS before the stop string wins
        ("ab<|x|>cd", None, ("<|x|>", "d"), ("ab", b"ab<|x|>", "stop")),  # earliest stop wins
        ("é!", None, ("!",), ("é", "é!".encode(), "stop")),  # two-byte character before it
    ],
)
def test_finish_completion(text: str, eos_at: int | None, stops: tuple[str, ...],
                           expected: tuple[str, bytes, str]) -> None:
    tokens = list(text.encode())
    if eos_at is not None:
        tokens.insert(eos_at, 1)
    got = finish_completion(tokens, {1}, stops, _bytes_decode)
    assert (got.text, bytes(got.token_ids), got.finish_reason) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -0.5}, "sampling.temperature must be ≥ 0"),
        ({"top_p": 0.0}, "sampling.top_p must be in (0, 1]"),
        ({"max_new_tokens": 0}, "sampling.max_new_tokens must be ≥ 1"),
        ({"stop": "\n"}, "sampling.stop must be a list of non-empty strings"),
        ({"stop": ("",)}, "sampling.stop must be a list of non-empty strings"),
    ],
)
def test_sampling_params_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidValue, match=re.escape(message)):
        SamplingParams(**kwargs)


def test_sampling_params_from_a_config_section() -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"temperature": 0.7, "stop": ["\n\n"], "max_new_tokens": 16,
                            "other": 1})
    assert SamplingParams.from_config(cfg) == SamplingParams(temperature=0.7, stop=("\n\n",),
                                                             max_new_tokens=16)


def test_build_engine_from_configs(mini: TinyBuild) -> None:
    from omegaconf import OmegaConf

    model_cfg = OmegaConf.create({"name": "tiny", "path": str(mini.checkpoint("strong")),
                                  "dtype": "auto", "device": "cpu"})
    engine = build_engine(OmegaConf.create({"name": "hf", "max_batch_tokens": 512}), model_cfg)
    assert isinstance(engine, HFEngine) and engine.max_batch_tokens == 512
    with pytest.raises(UserError, match="engine must be one of hf, vllm, got 'sglang'"):
        build_engine(OmegaConf.create({"name": "sglang"}), model_cfg)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_vllm_without_vllm_says_how_to_install_it(mini: TinyBuild) -> None:
    from omegaconf import OmegaConf

    engine_cfg = OmegaConf.create({"name": "vllm", "tensor_parallel_size": 1})
    with pytest.raises(UserError, match=r"pip install 'bots-cli\[vllm\]'") as err:
        build_engine(engine_cfg, OmegaConf.create({"name": "tiny", "path": "/nonexistent"}))
    assert "\n" not in str(err.value)


def test_vllm_precision_follows_model_dtype() -> None:
    from bots_cli.engines import _vllm_dtype

    assert _vllm_dtype("float32") == "float32" and _vllm_dtype("bfloat16") == "bfloat16"
    if not torch.cuda.is_available():
        assert _vllm_dtype("auto") == "bfloat16"  # never vLLM's own fp32 -> fp16 `auto`


@pytest.mark.slow
def test_rollout_throughput_benchmark_prints_its_table() -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "rollout_throughput.py"), "--batch", "8", "32",
         "--warm-steps", "20", "--repeats", "1"],
        capture_output=True, text=True, timeout=600, check=True,
    )
    rows = [line for line in out.stdout.splitlines() if line.startswith(("| 8 ", "| 32 "))]
    assert len(rows) == 2
