"""Shared helpers: run the real `bots` executable in a scratch directory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Two pytest-xdist workers share 2 cores: torch's default of one thread per core in each worker
# (and in every `bots` subprocess) would oversubscribe them and slow torch down several-fold.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
BOTS = Path(sys.executable).with_name("bots")

# A world small enough for a CLI round trip in about a second.
SMALL = ["simulate.steps=30", "simulate.seeds=1", "world.n_tasks=100", "world.n_eval=100",
         "simulate.plot=false"]


def run_bots(*args: str, cwd: Path, timeout: float = 120,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HYDRA_FULL_ERROR": "", **(env or {})}
    env.pop("HYDRA_FULL_ERROR")
    return subprocess.run([str(BOTS), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """An empty working directory: runs land in its outputs/."""
    return tmp_path


@pytest.fixture
def vllm_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """tests/vllm_standin imported as `vllm` for one test (not vLLM: a stand-in that enforces
    vLLM 0.11's rules), with fresh state and the VLLM_* variables the engine sets undone."""
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)
    for var in ("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_ALLOW_INSECURE_SERIALIZATION"):
        monkeypatch.setenv(var, "")  # recorded, so that whatever the engine sets is undone
        monkeypatch.delenv(var)
    monkeypatch.syspath_prepend(str(REPO / "tests" / "vllm_standin"))
    import vllm

    vllm._reset()
    yield vllm
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        sys.modules.pop(name)


from tests.trainworld import world  # noqa: E402, F401 - the miniature training world fixture
