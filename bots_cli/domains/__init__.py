"""Task domains: each owns its data (generated or loaded), its prompt format and its reward.

```python
from bots_cli.domains import load_domain
domain = load_domain("code")              # "arith" | "math" | "code" | "logic"; cfg optional
tasks = domain.load(cfg.domain)           # pandas DataFrame in the task-table schema (DESIGN.md §4)
text = domain.render_prompt(task)         # task: a row / mapping of the task table
r = domain.reward(completion, task)       # float in [0, 1]; 1.0 = fully correct
s = domain.score(completion, task)        # Score(reward, details)
rs = domain.rewards(completions, tasks)   # a batch (code runs it through the sandbox pool)
```
`DOMAINS` maps each name to its class ("module:Class", imported on first use so that importing
this package stays light).
"""

from __future__ import annotations

import importlib
from typing import Any

from bots_cli.domains.base import Domain, Score
from bots_cli.errors import InvalidValue

DOMAINS: dict[str, str] = {
    "arith": "bots_cli.domains.arith:Arith",
    "math": "bots_cli.domains.math:Math",
    "code": "bots_cli.domains.code:Code",
    "logic": "bots_cli.domains.logic:Logic",
}


def load_domain(name: str, cfg: Any = None) -> Domain:
    """The domain `name`, configured by `cfg` (its `domain` config; None = conf/domain/<name>.yaml).

    `cfg` sets the reward options (e.g. `reward.graded`, `sandbox.*`) and the default data paths.
    """
    if name not in DOMAINS:
        raise InvalidValue(f"domain must be one of {', '.join(DOMAINS)}, got {name!r}")
    module, cls = DOMAINS[name].split(":")
    domain_cls = getattr(importlib.import_module(module), cls)
    domain: Domain = domain_cls(cfg)
    return domain


__all__ = ["DOMAINS", "Domain", "Score", "load_domain"]
