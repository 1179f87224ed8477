"""Checkpoints of a training run: written atomically, found again, restored with every RNG.

Layout (DESIGN.md §4): `<run>/checkpoints/step_N/` holds `model/` (whatever `save_model` writes,
e.g. `save_pretrained`) and `state.pt` (optimizer, scheduler, selector state, trainer state and
the random states of Python, numpy and torch). A checkpoint directory is first written under a
hidden temporary name and renamed into place when complete (`bots_cli.atomic.atomic_dir`), so
every `step_N` that exists is whole: a run killed mid-write resumes from the previous one.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bots_cli.atomic import atomic_dir

_STEP_DIR = re.compile(r"^step_(\d+)$")


def capture_rng_state() -> dict[str, Any]:
    """The random states of Python, numpy's global generator and torch (CPU and every GPU)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the global one other libraries use
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step}"


def save_checkpoint(
    run_dir: Path,
    step: int,
    state: dict[str, Any],
    save_model: Callable[[Path], None],
) -> Path:
    """Write `state` (plus the current RNG states) and the model for `step`; return its dir."""
    final = checkpoint_dir(run_dir, step)
    # Re-saving a step (a resumed run reaching it again) replaces it whole.
    with atomic_dir(final) as tmp:
        save_model(tmp / "model")
        torch.save({**state, "rng": capture_rng_state(), "step": step}, tmp / "state.pt")
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return None
    steps = [(int(m.group(1)), p) for p in root.iterdir()
             if p.is_dir() and (m := _STEP_DIR.match(p.name)) and (p / "state.pt").is_file()]
    return max(steps)[1] if steps else None


def damage(path: Path) -> str | None:
    """What is wrong with the first damaged file of a checkpoint (or model) directory, None when
    every file reads: a safetensors file whose header does not parse or whose data it does not
    hold (truncated, replaced), a torch file (`.pt`, `.bin`) that is not a whole zip archive.
    Cheap: headers and archive directories only, not the tensors."""
    import json
    import struct
    import zipfile

    for file in sorted(Path(path).rglob("*")):
        if file.suffix == ".safetensors":
            try:
                size = file.stat().st_size
                with file.open("rb") as f:
                    (n,) = struct.unpack("<Q", f.read(8))
                    if n > size - 8:
                        raise ValueError("header longer than the file")
                    header = json.loads(f.read(n))
                ends = [int(t["data_offsets"][1]) for k, t in header.items()
                        if k != "__metadata__"]
            except (OSError, ValueError, struct.error, KeyError, TypeError, IndexError,
                    AttributeError):
                return f"{file} is damaged (its safetensors header does not read)"
            if 8 + n + max(ends, default=0) > size:
                return f"{file} is damaged (shorter than its header says: truncated?)"
        elif file.suffix in (".pt", ".bin", ".pth"):
            try:
                with zipfile.ZipFile(file) as archive:
                    archive.infolist()
            except (OSError, zipfile.BadZipFile, ValueError):
                return f"{file} is damaged (not a whole torch file: truncated or replaced?)"
    return None


def damaged_checkpoint_error(damaged: str, intact: list[tuple[int, Path]], fix: str) -> Any:
    """The `UserError` for a damaged checkpoint: which file, and which earlier one is intact."""
    from bots_cli.errors import UserError

    if intact:
        step, where = intact[-1]
        return UserError(f"{damaged}; the checkpoint of step {step} ({where}) is intact: "
                         f"{fix.format(step=step)}")
    return UserError(f"{damaged}; no earlier checkpoint is intact: start a new run")


def check_resumable(run_dir: Path, latest: Path) -> None:
    """Refuse to resume from a damaged latest checkpoint, naming the file and the newest intact
    earlier checkpoint (the damaged one must be moved aside to resume from it)."""
    why = damage(latest)
    if why is None:
        return
    root = Path(run_dir) / "checkpoints"
    earlier = sorted((int(m.group(1)), p) for p in root.iterdir()
                     if p.is_dir() and (m := _STEP_DIR.match(p.name))
                     and (p / "state.pt").is_file() and p != latest)
    intact = [(step, p) for step, p in earlier if damage(p) is None]
    raise damaged_checkpoint_error(why, intact, f"move {latest} aside (e.g. mv {latest} "
                                   f"{latest}.damaged) to resume from step {{step}}")


def load_checkpoint(path: Path, restore_rng: bool = True) -> dict[str, Any]:
    """The saved state of a checkpoint (the model is loaded by the caller from `path/model`)."""
    state: dict[str, Any] = torch.load(Path(path) / "state.pt", weights_only=False)
    if restore_rng:
        restore_rng_state(state["rng"])
    return state


# `bots train trainer=trl` runs keep TRL's own checkpoint layout: `<run>/checkpoints/checkpoint-N/`
# (N = TRL's optimizer step) holds the model files, TRL's optimizer/scheduler/RNG/trainer state and
# the selector's state, which BotsGRPOTrainer writes last: a checkpoint without it is incomplete.
TRL_STATE_FILE = "bots_selector.pt"


def trl_checkpoints(run_dir: Path) -> dict[int, Path]:
    """bots step -> directory of every complete TRL checkpoint of a run (the step is the number
    of selected batches trained, read from the selector's state)."""
    root = Path(run_dir) / "checkpoints"
    found: dict[int, Path] = {}
    numbered = [p for p in root.glob("checkpoint-*") if p.name.split("-", 1)[1].isdigit()] \
        if root.is_dir() else []
    for path in sorted(numbered, key=lambda p: int(p.name.split("-", 1)[1])):
        if (path / TRL_STATE_FILE).is_file():
            why = damage(path)
            if why is not None:  # the ones before it were read: they are intact
                raise damaged_checkpoint_error(why, sorted(found.items()), f"move {path} aside "
                                               f"(e.g. mv {path} {path}.damaged) to use it")
            state = torch.load(path / TRL_STATE_FILE, weights_only=False)
            found[int(state["generations"])] = path
    return found
