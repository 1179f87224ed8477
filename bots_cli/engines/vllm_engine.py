"""The `vllm` rollout engine: `vllm.LLM` on one or more GPUs (the optional extra `bots-cli[vllm]`).

Written and reviewed against vLLM 0.11's source (`SUPPORTED_VLLM`; another version is refused in
one line) and tested here against a stand-in that enforces the same rules (tests/vllm_standin:
there is no vLLM wheel for CPUs). It has not run on a GPU. vLLM is imported only when this
engine is built. The vLLM API used, and why:

- `LLM(model=dir, tokenizer=dir, tensor_parallel_size, gpu_memory_utilization, dtype, seed,
  enable_sleep_mode, max_model_len, enforce_eager, max_num_batched_tokens)`.
- `LLM.generate([{"prompt_token_ids": ids}, ...], [SamplingParams per prompt], use_tqdm=False)`.
  Prompts go in as token ids tokenized exactly as the trainer tokenizes them
  (`add_special_tokens=False`): vLLM would tokenize text with the special tokens, a BOS the
  trainer's log-probabilities never saw for models that add one.
- `SamplingParams(n, temperature, top_p, max_tokens, stop, seed)`: top-k is left at its default,
  which is off. vLLM refuses temperature 0 with n > 1 (`_verify_greedy_sampling`), so a greedy
  request for n completions is sent as n requests of one. With a seed and n > 1, vLLM gives the
  i-th sample of a request the seed `seed + i`, so each prompt gets its own 63-bit seed derived
  from `(sampling.seed, prompt index)`, spaced so that no two samples share one.
- Weight updates: `LLM.apply_model(fn)` (in 0.11: `collective_rpc("apply_model")`) runs `fn(model)`
  in every worker; `model.load_weights(iterable of (name, tensor))` is the loader vLLM's model
  classes expose (Hugging Face names; it fuses q/k/v and gate/up, shards for tensor parallelism
  and skips a tied `lm_head`). The engine core runs in this process only with one GPU and
  `VLLM_ENABLE_V1_MULTIPROCESSING=0` (set before the engine starts unless the user set it): then
  the trainer's tensors are handed over as they are. Otherwise the function is serialised to the
  worker processes (`VLLM_ALLOW_INSECURE_SERIALIZATION=1`: our own function to our own local
  workers), so the weights travel as CPU tensors in the engine's dtype, in chunks of
  `push_chunk_mb`, which bounds the host memory one push takes (vLLM copies the payload twice:
  its msgpack encoder, then the multiprocess executor). `LLM.reset_prefix_cache()` then drops KV
  blocks computed with the old weights.
- Colocation with training (`enable_sleep_mode`, for training only: profiling and evaluation never
  sleep, and vLLM's sleep-mode allocator allows one such engine per process): `LLM.sleep(level)`
  frees the GPU memory for the training step (level 1 keeps a CPU copy of the weights, level 2
  discards them; the trainer pushes new weights after every step anyway, so level 2, as TRL's
  colocate mode, is the default); `LLM.wake_up(tags=["weights"])` maps the weight memory back
  before a push, `wake_up(tags=["kv_cache"])` the KV cache afterwards. Before each wake-up the
  trainer's cached CUDA blocks are released (`gc.collect()`, `torch.cuda.empty_cache()`): vLLM's
  allocator re-maps memory without asking PyTorch's cache for it. After a level-2 sleep the engine
  refuses to wake until weights were pushed (it would generate from uninitialised memory).
- `close()`: `llm.llm_engine.engine_core.shutdown()` and
  `vllm.distributed.parallel_state.cleanup_dist_env_and_memory()`. Up to 0.11 the in-process
  engine core has no finalizer: without this the first of two engines in one process (profiling
  weak then strong, a sweep's jobs) keeps its memory and the second fails vLLM's free-memory check.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from bots_cli.checks import check_choice, check_int, check_range
from bots_cli.engines.base import Completion, RolloutEngine, SamplingParams
from bots_cli.errors import UserError

SUPPORTED_VLLM = (">=0.11.0", "<0.12")  # the vLLM versions this engine was written against
INSTALL_HINT = ("engine=vllm needs vLLM, which is not installed here: install the extra with "
                "`pip install 'bots-cli[vllm]'` on a Linux machine with an NVIDIA GPU, or use "
                "engine=hf")
DTYPES = ("bfloat16", "float16", "float32")


def import_vllm() -> Any:
    """The vllm module, or one line saying what to install (missing, or another version)."""
    try:
        import vllm
    except ImportError as err:
        if err.name not in ("vllm", None):
            raise  # vLLM is installed but broken: keep the real error
        raise UserError(INSTALL_HINT) from None
    check_vllm_version(str(getattr(vllm, "__version__", "unknown")))
    return vllm


def check_vllm_version(version: str) -> None:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    wanted = ",".join(SUPPORTED_VLLM)
    try:
        ok = Version(version) in SpecifierSet(wanted)
    except InvalidVersion:
        ok = False
    if not ok:
        raise UserError(f"vLLM {version} is installed, but engine=vllm supports vllm{wanted}: "
                        f"pip install 'vllm{wanted}' (or 'bots-cli[vllm]'), or use engine=hf")


def _push_weights(weights: Sequence[tuple[str, Any]], model: Any) -> None:
    """Runs inside each vLLM worker (through `apply_model`): load Hugging Face-named tensors."""
    model.load_weights(weights=iter(weights))


def weight_chunks(state: Mapping[str, Any], dtype: Any, chunk_bytes: int
                  ) -> Iterator[list[tuple[str, Any]]]:
    """The state dict as CPU tensors in `dtype`, in groups of at most `chunk_bytes` (a tensor
    larger than that travels alone), cast one group at a time."""
    import torch

    itemsize = torch.empty((), dtype=dtype).element_size()
    group: list[tuple[str, Any]] = []
    size = 0
    for name, tensor in state.items():
        t = tensor.detach()
        nbytes = t.numel() * (itemsize if t.is_floating_point() else t.element_size())
        if group and size + nbytes > chunk_bytes:
            yield group
            group, size = [], 0
        group.append((name, t.to(device="cpu", dtype=dtype) if t.is_floating_point()
                      else t.cpu()))
        size += nbytes
    if group:
        yield group


class VLLMEngine(RolloutEngine):
    """Rollouts with `vllm.LLM`; weights are pushed from the trainer with `load_weights`."""

    def __init__(
        self,
        model_dir: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.3,
        dtype: str = "bfloat16",
        seed: int = 0,
        enable_sleep_mode: bool = False,
        sleep_level: int = 2,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        max_num_batched_tokens: int | None = None,
        push_chunk_mb: int = 512,
    ) -> None:
        tp = check_int("engine.tensor_parallel_size", tensor_parallel_size, lo=1)
        check_range("engine.gpu_memory_utilization", gpu_memory_utilization, 0.0, 1.0,
                    lo_open=True)
        self.dtype_name = check_choice("engine.dtype", dtype, DTYPES)
        self.sleep_level = check_int("engine.sleep_level", sleep_level, lo=1, hi=2)
        self.chunk_bytes = check_int("engine.push_chunk_mb", push_chunk_mb, lo=1) * 2**20
        if max_num_batched_tokens is not None:
            check_int("engine.max_num_batched_tokens", max_num_batched_tokens, lo=1)
        vllm = import_vllm()
        from bots_cli.models.loading import load_tokenizer

        self.tokenizer = load_tokenizer(model_dir)  # the trainer's tokenizer, for prompt ids
        # Read when the engine starts: see the module docstring for why each is set.
        if tp == 1:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self._in_process = tp == 1 and os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
        if not self._in_process:
            os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        self._vllm = vllm
        extra = {} if max_num_batched_tokens is None else {
            "max_num_batched_tokens": int(max_num_batched_tokens)}
        self._llm: Any = vllm.LLM(
            model=model_dir, tokenizer=model_dir, tensor_parallel_size=tp,
            gpu_memory_utilization=float(gpu_memory_utilization), dtype=dtype, seed=seed,
            enable_sleep_mode=bool(enable_sleep_mode), max_model_len=max_model_len,
            enforce_eager=bool(enforce_eager), **extra,
        )
        self.sleep_mode = bool(enable_sleep_mode)
        self._asleep = False
        self._weights_valid = True  # False after a level-2 sleep until weights are pushed

    def _prompt_ids(self, prompts: Sequence[str]) -> list[dict[str, list[int]]]:
        out = []
        for p in prompts:
            ids = self.tokenizer(p, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ValueError("empty prompt: every prompt needs at least one token")
            out.append({"prompt_token_ids": list(ids)})
        return out

    def generate(
        self, prompts: Sequence[str], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        check_int("n (completions per prompt)", n, lo=1)
        if not prompts:
            return []
        self.wake_up()
        inputs = self._prompt_ids(prompts)
        greedy = sampling.temperature == 0
        per_request = 1 if greedy else n  # vLLM refuses greedy sampling with n > 1
        copies = n if greedy else 1
        params = [
            self._vllm.SamplingParams(
                n=per_request, temperature=sampling.temperature, top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens, stop=list(sampling.stop) or None,
                seed=_prompt_seed(sampling.seed, i, n),
            )
            for i in range(len(prompts)) for _ in range(copies)
        ]
        requests = [p for p in inputs for _ in range(copies)]
        outputs = self._llm.generate(requests, params, use_tqdm=False)
        result: list[list[Completion]] = []
        for k, out in enumerate(outputs):  # vLLM returns outputs in request order
            if k % copies == 0:
                result.append([])
            for o in sorted(out.outputs, key=lambda o: o.index):
                if o.finish_reason not in ("stop", "length"):
                    raise RuntimeError(f"vLLM ended a completion with {o.finish_reason!r}")
                result[-1].append(Completion(text=o.text, token_ids=tuple(o.token_ids),
                                             finish_reason=o.finish_reason))
        return result

    def load_weights(self, model: Any) -> None:
        """Push `model`'s weights (a Hugging Face model or a state dict) into the vLLM model."""
        import torch

        state = model if isinstance(model, Mapping) else model.state_dict()
        was_asleep = self._asleep
        if was_asleep:
            _release_cached_memory()
            self._llm.wake_up(tags=["weights"])  # weight memory back; KV cache stays freed
        if self._in_process:
            chunks: Any = [[(name, t.detach()) for name, t in state.items()]]
        else:
            chunks = weight_chunks(state, getattr(torch, self.dtype_name), self.chunk_bytes)
        for chunk in chunks:
            self._llm.apply_model(functools.partial(_push_weights, chunk))
        self._weights_valid = True
        if was_asleep:
            _release_cached_memory()
            self._llm.wake_up(tags=["kv_cache"])
            self._asleep = False
        self._llm.reset_prefix_cache()  # cached prefixes were computed with the old weights

    def sleep(self) -> None:
        """Free the GPU memory vLLM holds (weights and KV cache) for a training step."""
        if not self.sleep_mode or self._asleep:
            return
        self._llm.sleep(level=self.sleep_level)
        self._asleep = True
        self._weights_valid = self.sleep_level == 1

    def wake_up(self) -> None:
        """Map vLLM's memory back. After a level-2 sleep the weights are gone: refused until
        `load_weights` has pushed new ones (which wakes the engine itself)."""
        if not self._asleep:
            return
        if not self._weights_valid:
            raise RuntimeError("the vLLM engine slept at level 2 and discarded its weights: call "
                               "load_weights(model) before generating")
        _release_cached_memory()
        self._llm.wake_up()
        self._asleep = False

    def close(self) -> None:
        """Shut the engine core down and free its GPU memory (a second engine may follow)."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
        del llm
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
        _release_cached_memory()


def _release_cached_memory() -> None:
    """Return PyTorch's cached CUDA blocks (e.g. the backward pass's) before vLLM maps memory
    (`empty_cache` does nothing where CUDA was never initialised)."""
    gc.collect()
    import torch

    torch.cuda.empty_cache()


def _prompt_seed(seed: int, prompt_index: int, n: int) -> int:
    """A seed for prompt `i` whose `n` per-sample seeds (seed + j) overlap no other prompt's."""
    import numpy as np

    base = int(np.random.SeedSequence([seed]).generate_state(1, np.uint64)[0] >> 2)
    return (base + prompt_index * n) % (2**62)
