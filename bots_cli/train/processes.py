"""How many processes a distributed launcher (torchrun, accelerate launch) started, and
accelerate's view of them: the native loop refuses several, the TRL backend joins them."""

from __future__ import annotations

import os
from typing import Any


def processes() -> int:
    """How many processes a distributed launcher (torchrun, accelerate launch) started."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def distributed_state() -> Any:
    """accelerate's view of the processes a launcher started (joins their process group).

    Without a GPU, accelerate sees the launcher's processes only when asked for the CPU."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
