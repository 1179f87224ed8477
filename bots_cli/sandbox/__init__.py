"""A sandbox for model-written code: run untrusted programs on test inputs, score their outputs.

```python
from bots_cli.sandbox import Job, Sandbox, SandboxConfig, count_passed
sb = Sandbox(SandboxConfig.from_config(cfg.domain.sandbox))   # probes isolation once
res = sb.run(code, "add", [[1, 2], [3, 4]])                   # RunResult
passed = count_passed(res, [3, 7])                            # compared here, never in the child
results = sb.run_many([Job(code, "add", [[1, 2]]), ...])      # bounded parallel pool
```
`isolation.py` says how a program is confined (bubblewrap, or resource limits only), `harness.py`
is what runs next to it inside the sandbox, `runner.py` starts it, enforces time and output
limits, kills its process tree and compares results.
"""

from bots_cli.sandbox.runner import (
    Job,
    RunResult,
    Sandbox,
    SandboxConfig,
    count_passed,
    same_value,
)

__all__ = ["Job", "RunResult", "Sandbox", "SandboxConfig", "count_passed", "same_value"]
