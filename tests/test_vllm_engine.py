"""The vLLM engine against vLLM's rules, on the stand-in (tests/vllm_standin; vLLM has no CPU
wheel): greedy groups, weight pushes in and out of process, two engines in one process, memory
before waking, prompt tokenization, the level-2 sleep guard, the supported version range."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bots_cli.engines import SamplingParams, build_engine
from bots_cli.engines.vllm_engine import VLLMEngine, check_vllm_version, import_vllm, weight_chunks
from bots_cli.errors import UserError
from bots_cli.models.build import TinyBuild
from bots_cli.models.loading import load_tokenizer
from tests.miniature import PAIRS, build_miniature

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=8)
PROMPTS = [p for p, _ in PAIRS[::9]]


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> TinyBuild:
    return build_miniature(tmp_path_factory.mktemp("mini") / "build")


def engine(mini: TinyBuild, checkpoint: str = "weak", **kwargs: Any) -> VLLMEngine:
    settings: dict[str, Any] = dict(dtype="float32", gpu_memory_utilization=0.3)
    settings.update(kwargs)
    return VLLMEngine(str(mini.checkpoint(checkpoint)), **settings)


def of(events: list[tuple[str, Any]], kind: str) -> list[Any]:
    return [detail for what, detail in events if what == kind]


def test_the_standin_enforces_vllms_greedy_rule(vllm_standin: Any) -> None:
    with pytest.raises(ValueError, match="n must be 1 when using greedy sampling"):
        vllm_standin.SamplingParams(n=2, temperature=0.0)


def test_greedy_groups_are_sent_as_one_request_per_completion(vllm_standin: Any,
                                                              mini: TinyBuild) -> None:
    out = engine(mini).generate(PROMPTS, 3, GREEDY)
    assert [len(g) for g in out] == [3] * len(PROMPTS)
    assert all(len({c for c in g}) == 1 for g in out)  # greedy: the same completion 3 times
    requests = of(vllm_standin.events, "request")
    assert len(requests) == 3 * len(PROMPTS) and {r["n"] for r in requests} == {1}


def test_prompts_go_in_as_the_trainers_token_ids(vllm_standin: Any, mini: TinyBuild) -> None:
    tok = load_tokenizer(mini.checkpoint("weak"))
    engine(mini).generate(PROMPTS, 2, SamplingParams(temperature=1.0, max_new_tokens=4))
    requests = of(vllm_standin.events, "request")
    assert not any(r["text"] for r in requests)  # vLLM would tokenize text with special tokens
    assert [r["prompt_token_ids"] for r in requests] == \
        [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    with pytest.raises(ValueError, match="empty prompt"):
        engine(mini).generate([""], 1, GREEDY)


def test_one_gpu_in_process_hands_the_tensors_over(vllm_standin: Any, mini: TinyBuild) -> None:
    from transformers import AutoModelForCausalLM

    e = engine(mini)
    expected = engine(mini, "strong").generate(PROMPTS, 1, GREEDY)
    e.load_weights(AutoModelForCausalLM.from_pretrained(str(mini.checkpoint("strong"))))
    assert of(vllm_standin.events, "apply_model") == [{"bytes": 0, "in_process": True}]
    assert e.generate(PROMPTS, 1, GREEDY) == expected


@pytest.mark.parametrize(("tp", "multiprocessing"), [(1, "1"), (2, "0"), (2, None)])
def test_worker_processes_get_cpu_tensors_in_the_engine_dtype(
        vllm_standin: Any, mini: TinyBuild, monkeypatch: pytest.MonkeyPatch, tp: int,
        multiprocessing: str | None) -> None:
    """One GPU with multiprocessing on, or several GPUs whatever the variable says: the engine
    core is not in this process, so the push is serialised (and must be allowed to be)."""
    from transformers import AutoModelForCausalLM

    if multiprocessing is not None:
        monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", multiprocessing)
    e = engine(mini, dtype="bfloat16", tensor_parallel_size=tp)
    e.load_weights(AutoModelForCausalLM.from_pretrained(str(mini.checkpoint("strong"))))
    pushes = of(vllm_standin.events, "apply_model")
    assert pushes and not any(p["in_process"] for p in pushes)
    assert {d for w in of(vllm_standin.events, "load_weights") for d in w["dtypes"]} == \
        {"torch.bfloat16"}


def test_weight_chunks_bound_each_push() -> None:
    state = {"a": torch.zeros(100), "b": torch.zeros(100), "c": torch.zeros(300),
             "step": torch.zeros(3, dtype=torch.int64)}
    # bf16: a and b are 200 bytes each, c 600; the int64 buffer keeps its 24 bytes.
    chunks = list(weight_chunks(state, torch.bfloat16, chunk_bytes=450))
    assert [[n for n, _ in c] for c in chunks] == [["a", "b"], ["c"], ["step"]]
    assert all(t.dtype == torch.bfloat16 for n, t in chunks[0] + chunks[1])
    assert chunks[2][0][1].dtype == torch.int64


def test_two_engines_in_one_process(vllm_standin: Any, mini: TinyBuild) -> None:
    """As profile-refs (weak, then strong) and train sweeps do; sleep mode included."""
    first = engine(mini, gpu_memory_utilization=0.6, enable_sleep_mode=True)
    with pytest.raises(ValueError, match="Free memory on device"):
        vllm_standin.LLM(str(mini.checkpoint("strong")), gpu_memory_utilization=0.6)
    first.close()
    assert of(vllm_standin.events, "shutdown") and \
        of(vllm_standin.events, "cleanup_dist_env_and_memory")
    second = engine(mini, "strong", gpu_memory_utilization=0.6, enable_sleep_mode=True)
    assert second.generate(PROMPTS, 1, GREEDY)
    second.close()


def test_only_a_colocated_engine_uses_sleep_mode(vllm_standin: Any, mini: TinyBuild) -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "engine" / "vllm.yaml")
    cfg.seed = 0
    model_cfg = OmegaConf.create({"name": "tiny", "path": str(mini.checkpoint("weak")),
                                  "dtype": "float32"})
    for colocated in (False, True):
        made = build_engine(cfg, model_cfg, colocated=colocated)
        made.close()
    starts = of(vllm_standin.events, "start")
    assert [s["sleep_mode"] for s in starts] == [False, True]
    assert starts[0]["max_num_batched_tokens"] == 4096


def test_cached_memory_is_released_before_every_wake_up(vllm_standin: Any, mini: TinyBuild,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(torch.cuda, "empty_cache",
                        lambda: vllm_standin.events.append(("empty_cache", None)))
    e = engine(mini, enable_sleep_mode=True, sleep_level=1)
    e.sleep()
    e.generate(PROMPTS, 1, GREEDY)  # wakes it
    e.sleep()
    e.load_weights(AutoModelForCausalLM.from_pretrained(str(mini.checkpoint("strong"))))
    kinds = [what for what, _ in vllm_standin.events]
    wakes = [i for i, k in enumerate(kinds) if k == "wake_up"]
    assert len(wakes) == 3  # all tags; then weights, then kv_cache around the push
    assert all(kinds[i - 1] == "empty_cache" for i in wakes)


def test_a_level_2_sleep_refuses_to_wake_before_a_push(vllm_standin: Any,
                                                       mini: TinyBuild) -> None:
    from transformers import AutoModelForCausalLM

    e = engine(mini, enable_sleep_mode=True, sleep_level=2)
    expected = e.generate(PROMPTS, 1, GREEDY)
    e.sleep()
    with pytest.raises(RuntimeError, match="call load_weights"):
        e.wake_up()
    with pytest.raises(RuntimeError, match="call load_weights"):
        e.generate(PROMPTS, 1, GREEDY)
    e.load_weights(AutoModelForCausalLM.from_pretrained(str(mini.checkpoint("weak"))))
    assert e.generate(PROMPTS, 1, GREEDY) == expected  # the pushed weights, not the garbage


def test_only_the_supported_vllm_range_is_accepted(vllm_standin: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    check_vllm_version("0.11.0")
    check_vllm_version("0.11.2")
    for version in ("0.10.2", "0.12.0", "0.33.0", "unknown"):
        with pytest.raises(UserError, match=r"supports vllm>=0\.11\.0,<0\.12") as err:
            check_vllm_version(version)
        assert "\n" not in str(err.value)
    monkeypatch.setattr(vllm_standin, "__version__", "0.33.0")
    with pytest.raises(UserError, match=r"vLLM 0\.33\.0 is installed"):
        import_vllm()
