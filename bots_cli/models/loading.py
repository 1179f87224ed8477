"""Loading a model and its tokenizer from a `conf/model/*.yaml` config, offline first.

Where the weights come from, in order:
1. `model.path`: any local Hugging Face model directory (config.json, weights, tokenizer).
2. `model.hub_id`: the user's Hugging Face cache (`local_files_only` first); only when it is not
   cached is the hub tried, and when that fails too, one line says how to fix it.
3. The tiny model (`model.build` present): its build under `model.build.dir` (the default one
   ships in git), built on first use when its recipe changed (`bots build-tiny` builds it
   explicitly, with a progress bar). The command's own domain data never changes it.

Precision follows the device unless set: bf16 on a GPU, fp32 on a CPU (bf16 matmuls on a CPU
are slow and fp16 there is lossy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bots_cli.errors import UserError
from bots_cli.models.prompts import render_prompt_for_model

__all__ = ["load_model_and_tokenizer", "load_tokenizer", "model_dir", "render_prompt_for_model",
           "resolve_device", "resolve_dtype"]

DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_device(device: str | None) -> Any:
    """`auto` means the first CUDA GPU when there is one, else the CPU."""
    import torch

    name = str(device or "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"model.device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"model.device={name} but no CUDA GPU is visible; use model.device=auto "
                        "or cpu")
    return dev


def resolve_dtype(dtype: str | None, device: Any) -> Any:
    """`auto` means bf16 on a GPU that supports it (fp16 on older GPUs), fp32 elsewhere."""
    import torch

    name = str(dtype or "auto")
    if name not in DTYPES:
        raise UserError(f"model.dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def model_dir(model_cfg: Any, checkpoint: str | None = None, domain_cfg: Any = None) -> Path:
    """The local directory holding the model's files; downloads or builds it when needed.

    `checkpoint` picks one of the tiny model's checkpoints (`weak`, `strong`); it defaults to
    `model.checkpoint` and is ignored for other models.
    """
    path = model_cfg.get("path")
    if path:
        return _checked_dir(Path(str(path)).expanduser(), f"model.path={path}")
    hub_id = model_cfg.get("hub_id")
    if hub_id:
        return _hub_snapshot(str(hub_id))
    if model_cfg.get("build") is not None:
        from bots_cli.models.build import CHECKPOINTS, ensure_tiny

        name = str(checkpoint or model_cfg.get("checkpoint") or "weak")
        if name not in CHECKPOINTS:  # checked before a build is looked for (or made)
            raise UserError(f"checkpoint={name} (model.checkpoint, or refs.weak.checkpoint / "
                            "refs.strong.checkpoint): the tiny model's checkpoints are "
                            f"{', '.join(CHECKPOINTS)}")
        return ensure_tiny(model_cfg, domain_cfg).checkpoint(name)
    raise UserError(f"model={model_cfg.get('name')} sets neither model.path nor model.hub_id; set "
                    "model.path=/path/to/hf_model_dir")


def load_tokenizer(path: Path | str) -> Any:
    """The tokenizer saved in `path`.

    A tokenizer saved as a plain `PreTrainedTokenizerFast` (the tiny model's) is loaded as that
    class: AutoTokenizer would look at the model type (qwen2) and may rebuild it differently.
    """
    cfg_file = Path(path) / "tokenizer_config.json"
    if cfg_file.is_file():
        tok_cfg = json.loads(cfg_file.read_text())
        if tok_cfg.get("tokenizer_class") == "PreTrainedTokenizerFast":
            from bots_cli.models.tiny import load_tokenizer as load_fast

            return load_fast(str(path))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), padding_side="left")


def load_model_and_tokenizer(
    model_cfg: Any, checkpoint: str | None = None, domain_cfg: Any = None
) -> tuple[Any, Any]:
    """The causal LM (eval mode, on `model.device` in `model.dtype`) and its tokenizer."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress display is the one the user watches
    where = model_dir(model_cfg, checkpoint, domain_cfg)
    device = resolve_device(model_cfg.get("device"))
    dtype = resolve_dtype(model_cfg.get("dtype"), device)
    tokenizer = load_tokenizer(where)
    import transformers

    # transformers 4.56 renamed torch_dtype to dtype; an unknown keyword would be ignored.
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(str(where), **{key: dtype})
    model.to(device)
    model.eval()
    return model, tokenizer


def _checked_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise UserError(f"{what}: no such directory")
    if not (path / "config.json").is_file():
        raise UserError(f"{what} is not a Hugging Face model directory (no config.json in it)")
    return path


def _hub_snapshot(hub_id: str) -> Path:
    """The local snapshot of `hub_id`: from the cache, else downloaded, else one clear error."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
    try:
        return Path(snapshot_download(hub_id, local_files_only=True, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        pass  # not cached: try the hub once
    try:
        return Path(snapshot_download(hub_id, allow_patterns=patterns))
    except Exception as err:  # offline, unknown repo, gated, disk full: all end the same way
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise UserError(
            f"model {hub_id} is not in the Hugging Face cache and could not be downloaded "
            f"({reason}); download it once with `huggingface-cli download {hub_id}` where the "
            "hub is reachable, or set model.path=/path/to/local/model_dir"
        ) from None
