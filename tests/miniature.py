"""A miniature tiny world for tests: small additions and a model trained on them in seconds.

The pairs are written out here (not taken from a domain), so model and engine tests stand alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from bots_cli.models.build import TinyBuild, build_tiny
from bots_cli.models.tiny import TinyArch, WarmStart

# Under pytest-xdist every worker would start as many OpenMP threads as there are cores; on a
# small machine they then spin against each other and these tiny models run ~10x slower.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

# One-digit additions, "3+4=" -> "7": 100 pairs.
PAIRS = [(f"{a}+{b}=", str(a + b)) for a in range(10) for b in range(10)]
# A quarter of the default width and half its depth: ~0.1M parameters, ~200 steps/s on 2 cores.
ARCH = TinyArch(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, max_positions=64)
WARM = WarmStart(batch_size=32, lr=1e-2, warmup_steps=5, weight_decay=0.01, schedule="constant")


def build_miniature(out_dir: Path, seed: int = 0, weak_steps: int = 40, strong_steps: int = 120,
                    pairs: list[tuple[str, str]] | None = None) -> TinyBuild:
    """`weak` after 40 steps (answers, then EOS, mostly wrong), `strong` after 120 (better)."""
    return build_tiny(pairs or PAIRS, out_dir, weak_steps, strong_steps, seed, arch=ARCH,
                      warm=WARM)
