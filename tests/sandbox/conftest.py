"""Sandboxes for the tests: one per backend, with tight limits so hostile programs end fast."""

from __future__ import annotations

import pytest

from bots_cli.errors import UserError
from bots_cli.sandbox import Sandbox, SandboxConfig

LIMITS = dict(cpu_seconds=1, wall_seconds=2.0, memory_mb=256, max_processes=12, max_file_mb=4,
              max_output_kb=16, workers=2)


@pytest.fixture(scope="session")
def bwrap_sandbox() -> Sandbox:
    """The bubblewrap sandbox; the test skips (saying why) where isolation is unavailable."""
    try:
        return Sandbox(SandboxConfig.from_config({"require_isolation": True, **LIMITS}))
    except UserError as err:
        pytest.skip(f"bubblewrap isolation unavailable here: {err}")


@pytest.fixture(scope="session")
def rlimits_sandbox() -> Sandbox:
    """The fallback: resource limits only (runs everywhere)."""
    return Sandbox(SandboxConfig.from_config({"use_bwrap": False, **LIMITS}))


@pytest.fixture(params=["bwrap", "rlimits"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    return request.getfixturevalue(f"{request.param}_sandbox")
