"""verl's reward function for the tasks `bots export format=verl` writes.

Point verl at it with `custom_reward_function.path=<this file>` and
`custom_reward_function.name=compute_score`. Each response is scored by the project's own
verifier of its domain (`data_source`), the code domain inside the sandbox, so a verl run and a
`bots train` run reward the same completion alike. Importing it imports no engine.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _domain(name: str) -> Any:
    from bots_cli.domains import load_domain

    return load_domain(name)


def compute_score(data_source: str, solution_str: str, ground_truth: str,
                  extra_info: dict[str, Any] | None = None, **_: Any) -> float:
    """The domain's reward in [0, 1] of `solution_str` against `ground_truth` (the answer)."""
    return float(_domain(str(data_source)).reward(solution_str, {"answer": ground_truth}))
