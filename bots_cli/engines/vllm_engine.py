"""The `vllm` rollout engine: `vllm.LLM` on one or more GPUs (the optional extra `bots-cli[vllm]`).

vLLM is imported only when this engine is built. The vLLM API used, and why:

- `LLM(model=dir, tensor_parallel_size, gpu_memory_utilization, dtype, seed, enable_sleep_mode,
  max_model_len, enforce_eager)`; `LLM.generate(prompts, [SamplingParams per prompt],
  use_tqdm=False)`. `SamplingParams(n, temperature, top_p, max_tokens, stop, seed)`: top-k is
  left at its default, which is off; temperature 0 is greedy. With a seed and n > 1, vLLM gives
  the i-th sample of a request the seed `seed + i`, so each prompt gets its own 63-bit seed derived
  from `(sampling.seed, prompt index)`, spaced so that no two samples share one.
- Weight updates: `LLM.apply_model(fn)` runs `fn(model)` on the model inside every worker, and
  `model.load_weights(iterable of (name, tensor))` is the loader vLLM's own model classes expose;
  it takes Hugging Face parameter names, fuses q/k/v and gate/up projections, shards for tensor
  parallelism and skips a tied `lm_head`. With tensor_parallel_size == 1 the engine core runs in
  this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, set before the engine starts), so the trainer's
  GPU tensors are handed over directly, without serialisation. With several GPUs the workers are
  separate processes: the loader function travels by pickle (`VLLM_ALLOW_INSECURE_SERIALIZATION=1`,
  our own function to our own local workers) and the weights are sent as CPU tensors.
  `LLM.reset_prefix_cache()` then drops KV blocks computed with the old weights.
- Colocation with training (`enable_sleep_mode`): `LLM.sleep(level)` frees the GPU memory for the
  training step (level 1 keeps a CPU copy of the weights, level 2 discards them: cheaper, but the
  weights must be pushed again before generating); `LLM.wake_up(tags=["weights"])` restores the
  weight memory before a push, `wake_up(tags=["kv_cache"])` the KV cache afterwards.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bots_cli.engines.base import Completion, RolloutEngine, SamplingParams
from bots_cli.errors import UserError
from bots_cli.selection.checks import check_choice, check_int, check_range

INSTALL_HINT = ("engine=vllm needs vLLM, which is not installed here: install the extra with "
                "`pip install 'bots-cli[vllm]'` on a Linux machine with an NVIDIA GPU, or use "
                "engine=hf")
DTYPES = ("bfloat16", "float16", "float32")


def import_vllm() -> Any:
    """The vllm module, or the one-line install hint as a UserError."""
    try:
        import vllm
    except ImportError as err:
        if err.name not in ("vllm", None):
            raise  # vLLM is installed but broken: keep the real error
        raise UserError(INSTALL_HINT) from None
    return vllm


def _push_weights(weights: Iterable[tuple[str, Any]], model: Any) -> None:
    """Runs inside each vLLM worker (through `apply_model`): load Hugging Face-named tensors."""
    model.load_weights(weights=iter(weights))


class VLLMEngine(RolloutEngine):
    """Rollouts with `vllm.LLM`; weights are pushed from the trainer with `load_weights`."""

    def __init__(
        self,
        model_dir: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.5,
        dtype: str = "bfloat16",
        seed: int = 0,
        enable_sleep_mode: bool = False,
        sleep_level: int = 1,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
    ) -> None:
        tp = check_int("engine.tensor_parallel_size", tensor_parallel_size, lo=1)
        check_range("engine.gpu_memory_utilization", gpu_memory_utilization, 0.0, 1.0,
                    lo_open=True)
        check_choice("engine.dtype", dtype, DTYPES)
        self.sleep_level = check_int("engine.sleep_level", sleep_level, lo=1, hi=2)
        vllm = import_vllm()
        # Read when the engine starts: see the module docstring for why each is set.
        if tp == 1:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        else:
            os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        self._in_process = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0"
        self._vllm = vllm
        self._llm: Any = vllm.LLM(
            model=model_dir, tokenizer=model_dir, tensor_parallel_size=tp,
            gpu_memory_utilization=float(gpu_memory_utilization), dtype=dtype, seed=seed,
            enable_sleep_mode=bool(enable_sleep_mode), max_model_len=max_model_len,
            enforce_eager=bool(enforce_eager),
        )
        self.sleep_mode = bool(enable_sleep_mode)
        self._asleep = False
        self._weights_valid = True  # False after a level-2 sleep until weights are pushed

    def generate(
        self, prompts: Sequence[str], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        check_int("n (completions per prompt)", n, lo=1)
        if not prompts:
            return []
        if self._asleep:
            if not self._weights_valid:
                raise RuntimeError("the vLLM engine slept at level 2 and lost its weights: call "
                                   "load_weights(model) before generating")
            self.wake_up()
        params = [
            self._vllm.SamplingParams(
                n=n, temperature=sampling.temperature, top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens, stop=list(sampling.stop) or None,
                seed=_prompt_seed(sampling.seed, i, n),
            )
            for i in range(len(prompts))
        ]
        outputs = self._llm.generate(list(prompts), params, use_tqdm=False)
        result = []
        for out in outputs:  # vLLM returns outputs in prompt order
            group = []
            for o in sorted(out.outputs, key=lambda o: o.index):
                if o.finish_reason not in ("stop", "length"):
                    raise RuntimeError(f"vLLM ended a completion with {o.finish_reason!r}")
                group.append(Completion(text=o.text, token_ids=tuple(o.token_ids),
                                        finish_reason=o.finish_reason))
            result.append(group)
        return result

    def load_weights(self, model: Any) -> None:
        """Push `model`'s weights (a Hugging Face model or a state dict) into the vLLM model."""
        state = model if isinstance(model, Mapping) else model.state_dict()
        if self._in_process:
            weights = [(name, t.detach()) for name, t in state.items()]
        else:
            weights = [(name, t.detach().cpu()) for name, t in state.items()]
        was_asleep = self._asleep
        if was_asleep:
            self._llm.wake_up(tags=["weights"])  # weight memory back; KV cache stays freed
        self._llm.apply_model(functools.partial(_push_weights, weights))
        if was_asleep:
            self._llm.wake_up(tags=["kv_cache"])
            self._asleep = False
        self._llm.reset_prefix_cache()  # cached prefixes were computed with the old weights
        self._weights_valid = True

    def sleep(self) -> None:
        """Free the GPU memory vLLM holds (weights and KV cache) for a training step."""
        if not self.sleep_mode or self._asleep:
            return
        self._llm.sleep(level=self.sleep_level)
        self._asleep = True
        self._weights_valid = self.sleep_level == 1

    def wake_up(self) -> None:
        if self._asleep:
            self._llm.wake_up()
            self._asleep = False

    def close(self) -> None:
        llm, self._llm = self._llm, None
        del llm
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _prompt_seed(seed: int, prompt_index: int, n: int) -> int:
    """A seed for prompt `i` whose `n` per-sample seeds (seed + j) overlap no other prompt's."""
    import numpy as np

    base = int(np.random.SeedSequence([seed]).generate_state(1, np.uint64)[0] >> 2)
    return (base + prompt_index * n) % (2**62)
