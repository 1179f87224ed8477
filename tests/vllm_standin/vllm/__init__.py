"""A STAND-IN for vLLM 0.11, for tests on machines without vLLM (see ../README.md).

It is not vLLM: it decodes with transformers on the CPU, one token at a time, and enforces the
parts of vLLM's API contract that the project's engine must respect. Each rule cites where vLLM
0.11 has it. `events` records what the engine asked for, in order, for tests to inspect.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from typing import Any

import torch

__version__ = "0.11.0"
_SAMPLING_EPS = 1e-5  # vllm/sampling_params.py

events: list[tuple[str, Any]] = []  # (what, detail), appended by the stand-in
_gpu_in_use = 0.0  # share of the (pretend) GPU held by engines whose core is still running
_sleep_mode_instances = 0  # CuMemAllocator is a per-process singleton (vllm/device_allocator)


def _reset() -> None:
    global _gpu_in_use, _sleep_mode_instances
    events.clear()
    _gpu_in_use = 0.0
    _sleep_mode_instances = 0


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    stop: list[str] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < _SAMPLING_EPS and self.n > 1:
            # vllm/sampling_params.py: SamplingParams._verify_greedy_sampling
            raise ValueError(f"n must be 1 when using greedy sampling, got {self.n}.")


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)


class _EngineCore:
    """The engine core client: until `shutdown()` its engine holds its share of the GPU (vLLM
    ≤ 0.11's in-process core has no finalizer: dropping the LLM does not free it)."""

    def __init__(self, share: float, sleep_mode: bool) -> None:
        self.share, self.sleep_mode, self.alive = share, sleep_mode, True

    def shutdown(self) -> None:
        global _gpu_in_use, _sleep_mode_instances
        if self.alive:
            self.alive = False
            _gpu_in_use -= self.share
            _sleep_mode_instances -= int(self.sleep_mode)
            events.append(("shutdown", None))


class _LLMEngine:
    def __init__(self, core: _EngineCore) -> None:
        self.engine_core = core


class LLM:
    def __init__(self, model: str, tokenizer: str | None = None, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, dtype: str = "auto", seed: int = 0,
                 enable_sleep_mode: bool = False, max_model_len: int | None = None,
                 enforce_eager: bool = False, max_num_batched_tokens: int | None = None,
                 **kwargs: Any) -> None:
        global _gpu_in_use, _sleep_mode_instances
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

        if _gpu_in_use + gpu_memory_utilization > 1.0 + 1e-9:
            # vllm/v1/worker/gpu_worker.py: Worker.init_device's free-memory check
            raise ValueError(f"Free memory on device ({1.0 - _gpu_in_use:.2f} of the GPU) on "
                             f"startup is less than desired GPU memory utilization "
                             f"({gpu_memory_utilization}).")
        if enable_sleep_mode and _sleep_mode_instances:
            # vllm/v1/worker/gpu_worker.py: the CuMemAllocator already holds weights
            raise AssertionError("Sleep mode can only be used for one instance per process.")
        _gpu_in_use += gpu_memory_utilization
        _sleep_mode_instances += int(enable_sleep_mode)
        self.llm_engine = _LLMEngine(_EngineCore(gpu_memory_utilization, enable_sleep_mode))
        self.tensor_parallel_size = tensor_parallel_size
        self.sleep_mode = enable_sleep_mode
        self.kwargs = dict(dtype=dtype, max_num_batched_tokens=max_num_batched_tokens,
                           max_model_len=max_model_len, **kwargs)
        self.model = AutoModelForCausalLM.from_pretrained(model).eval()
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer or model)
        self.asleep: set[str] = set()  # the memory tags not mapped back yet
        # The engine core runs in this process only with one GPU and multiprocessing off.
        self.in_process = (tensor_parallel_size == 1
                           and os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") == "0")
        events.append(("start", {"sleep_mode": enable_sleep_mode, "tp": tensor_parallel_size,
                                 **self.kwargs}))

    # -- generation ----------------------------------------------------------------------------

    def generate(self, prompts: list[Any], sampling_params: Any, use_tqdm: bool = True
                 ) -> list[RequestOutput]:
        if not self.llm_engine.engine_core.alive:
            raise RuntimeError("the engine core was shut down")
        if self.asleep:
            raise RuntimeError(f"generate() while the engine sleeps ({sorted(self.asleep)} not "
                               "woken up): call wake_up() with every tag first")
        params = (sampling_params if isinstance(sampling_params, list)
                  else [sampling_params] * len(prompts))
        if len(params) != len(prompts):
            raise ValueError("The lengths of prompts and params must be the same.")
        out = []
        for prompt, sp in zip(prompts, params, strict=True):
            if isinstance(prompt, dict):
                ids = list(prompt["prompt_token_ids"])
            else:  # text prompts are tokenized with the tokenizer's special tokens
                ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
            events.append(("request", {"prompt_token_ids": ids, "n": sp.n, "text": not
                                       isinstance(prompt, dict), "temperature": sp.temperature}))
            out.append(RequestOutput(ids, [self._sample(ids, sp, i) for i in range(sp.n)]))
        return out

    @torch.no_grad()
    def _sample(self, ids: list[int], sp: SamplingParams, index: int) -> CompletionOutput:
        gen = torch.Generator().manual_seed((sp.seed or 0) + index)  # sample i: seed + i
        eos = self.tokenizer.eos_token_id
        tokens: list[int] = []
        for _ in range(sp.max_tokens):
            logits = self.model(input_ids=torch.tensor([ids + tokens])).logits[0, -1]
            if sp.temperature < _SAMPLING_EPS:
                nxt = int(logits.argmax())
            else:
                probs = torch.softmax(logits.double() / sp.temperature, dim=-1)
                if sp.top_p < 1.0:
                    sorted_p, order = probs.sort(descending=True)
                    drop = sorted_p.cumsum(0) - sorted_p > sp.top_p
                    probs[order[drop]] = 0.0
                nxt = int(torch.multinomial(probs, 1, generator=gen))
            tokens.append(nxt)
            if nxt == eos:
                return CompletionOutput(index, self.tokenizer.decode(tokens[:-1]), tokens, "stop")
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            hits = [text.index(s) for s in sp.stop or [] if s in text]
            if hits:
                return CompletionOutput(index, text[: min(hits)], tokens, "stop")
        return CompletionOutput(index, self.tokenizer.decode(tokens, skip_special_tokens=True),
                                tokens, "length")

    # -- weights -------------------------------------------------------------------------------

    def apply_model(self, func: Any) -> list[Any]:
        """`collective_rpc("apply_model", args=(func,))`: outside the in-process engine core the
        function (and whatever it holds) is serialised to the workers."""
        if "weights" in self.asleep:
            raise RuntimeError("apply_model() while the weights' memory is unmapped")
        if not self.in_process:
            if os.environ.get("VLLM_ALLOW_INSECURE_SERIALIZATION") != "1":
                # vllm/v1/serial_utils.py: MsgpackEncoder refuses a function otherwise
                raise TypeError("Object of type function is not serializable. Set "
                                "VLLM_ALLOW_INSECURE_SERIALIZATION=1 to allow fallback to "
                                "pickle-based serialization.")
            payload = pickle.dumps(func)
            events.append(("apply_model", {"bytes": len(payload), "in_process": False}))
            func = pickle.loads(payload)
        else:
            events.append(("apply_model", {"bytes": 0, "in_process": True}))
        return [func(_LoadableModel(self.model))]

    def collective_rpc(self, method: Any, timeout: float | None = None, args: tuple = (),
                       kwargs: dict[str, Any] | None = None) -> list[Any]:
        if method == "apply_model":
            return self.apply_model(*args)
        raise NotImplementedError(f"the stand-in has no worker method {method!r}")

    def reset_prefix_cache(self) -> bool:
        events.append(("reset_prefix_cache", None))
        return True

    # -- sleep mode ----------------------------------------------------------------------------

    def sleep(self, level: int = 1) -> None:
        if not self.sleep_mode:
            raise AssertionError("Sleep mode is not enabled in the model config")
        self.asleep = {"weights", "kv_cache"}
        self.level = level
        events.append(("sleep", level))

    def wake_up(self, tags: list[str] | None = None) -> None:
        wanted = {"weights", "kv_cache"} if tags is None else set(tags)
        if not wanted <= {"weights", "kv_cache"}:
            raise ValueError(f"tags must be in ('weights', 'kv_cache'), got {tags}")
        if "weights" in wanted & self.asleep and self.level == 2:
            # Level 2 discarded the weights: the memory comes back, the values do not.
            with torch.no_grad():
                for p in self.model.parameters():
                    p.normal_()
        self.asleep -= wanted
        events.append(("wake_up", sorted(wanted)))


class _LoadableModel:
    """What `apply_model` hands the function: the worker's model, with vLLM's `load_weights`
    (Hugging Face names in, tensors copied into the engine's own dtype)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def load_weights(self, weights: Any) -> set[str]:
        params = dict(self.model.named_parameters())
        loaded, dtypes = set(), set()
        with torch.no_grad():
            for name, tensor in weights:
                dtypes.add(str(tensor.dtype))
                if name in params:
                    params[name].copy_(tensor.to(params[name].dtype))
                    loaded.add(name)
        events.append(("load_weights", {"names": len(loaded), "dtypes": sorted(dtypes)}))
        return loaded
