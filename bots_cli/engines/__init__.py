"""Rollout engines: generate n completions per prompt with one model (DESIGN.md §6).

`base.RolloutEngine` is the interface; `hf` (transformers `generate`, CPU or GPU) and `vllm`
(GPU, optional extra) implement it and pass one conformance suite. `build_engine` makes the one a
config names (`conf/engine/*.yaml`); torch, transformers and vLLM are imported only then.
"""

from __future__ import annotations

from typing import Any

from bots_cli.engines.base import Completion, RolloutEngine, SamplingParams
from bots_cli.errors import UserError

ENGINES = ("hf", "vllm")

__all__ = ["ENGINES", "Completion", "RolloutEngine", "SamplingParams", "build_engine"]


def build_engine(
    engine_cfg: Any,
    model_cfg: Any,
    *,
    model: Any = None,
    tokenizer: Any = None,
    checkpoint: str | None = None,
    domain_cfg: Any = None,
    colocated: bool = False,
) -> RolloutEngine:
    """The engine `engine_cfg.name` for the model `model_cfg` describes.

    `hf` generates with `model`/`tokenizer` when given (the trainer's own objects, shared), else
    loads them. `vllm` loads the model's directory itself; push a trainer's weights into it with
    `load_weights`. `checkpoint` picks a tiny-model checkpoint (`weak`, `strong`). `colocated`:
    the engine shares its GPU with a trainer, so vLLM's sleep mode (`engine.enable_sleep_mode`)
    is used; profiling and evaluation never sleep and leave it off.
    """
    name = str(engine_cfg.name)
    if name == "hf":
        from bots_cli.engines.hf import HFEngine

        if model is None or tokenizer is None:
            from bots_cli.models.loading import load_model_and_tokenizer

            model, tokenizer = load_model_and_tokenizer(model_cfg, checkpoint, domain_cfg)
        return HFEngine(model, tokenizer, max_batch_tokens=engine_cfg.max_batch_tokens)
    if name == "vllm":
        from bots_cli.engines.vllm_engine import VLLMEngine, import_vllm

        import_vllm()  # the install hint before anything is downloaded or built
        from bots_cli.models.loading import model_dir

        where = model_dir(model_cfg, checkpoint, domain_cfg)
        return VLLMEngine(
            str(where),
            tensor_parallel_size=engine_cfg.tensor_parallel_size,
            gpu_memory_utilization=engine_cfg.gpu_memory_utilization,
            dtype=_vllm_dtype(model_cfg.get("dtype")),
            seed=engine_cfg.seed,
            enable_sleep_mode=colocated and bool(engine_cfg.enable_sleep_mode),
            sleep_level=engine_cfg.sleep_level,
            max_model_len=engine_cfg.max_model_len,
            enforce_eager=bool(engine_cfg.enforce_eager),
            max_num_batched_tokens=engine_cfg.max_num_batched_tokens,
            push_chunk_mb=engine_cfg.push_chunk_mb,
        )
    raise UserError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")


def _vllm_dtype(model_dtype: str | None) -> str:
    """vLLM's dtype from `model.dtype` (one setting for both engines): `auto` is bf16 where the
    GPU has it, else fp16 (vLLM's own `auto` would turn an fp32 checkpoint into fp16)."""
    name = str(model_dtype or "auto")
    if name != "auto":
        return name
    import torch

    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return "float16"
    return "bfloat16"
