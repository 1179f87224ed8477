"""Code: write a Python function; the reward runs it in the sandbox against hidden tests.

`answer` is JSON: ``{"entry_point": "rotate", "tests": [{"args": [[1, 2, 3]], "expected": [3, 1,
2]}, ...]}``. The verifier takes the last fenced Python block of the completion (or the whole
completion if it has none), runs it in `bots_cli.sandbox` (model-written code is hostile by
default), and compares each returned value with the expected one outside the sandbox. The reward
is 1 only if every test passes; `reward.graded: true` gives the share of tests passed instead
(the selector accepts fractional successes). `rewards()` scores a whole batch through the
sandbox's bounded pool.
"""

from __future__ import annotations

import json
import random
import re
import string
import threading
from collections.abc import Sequence
from typing import Any

from bots_cli.domains.base import Domain, Score, task_field
from bots_cli.domains.code_tasks import FAMILIES, Family

_N_TESTS = 8
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_OPEN_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n", re.IGNORECASE)


def extract_code(completion: str) -> str:
    """The last fenced code block; an unclosed last fence runs to the end; else everything."""
    blocks = _FENCE.findall(completion)
    opened = list(_OPEN_FENCE.finditer(completion))
    if opened and (not blocks or completion.count("```") % 2 == 1):
        return completion[opened[-1].end():]  # cut off mid-block (e.g. by the length limit)
    return blocks[-1] if blocks else completion


def run_reference(source: str, entry_point: str, args: list[Any]) -> Any:
    """Our own reference solution, run in-process (trusted code) on JSON-copied arguments."""
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<reference {entry_point}>", "exec"), namespace)
    return json.loads(json.dumps(namespace[entry_point](*json.loads(json.dumps(args)))))


def _signature(source: str) -> str:
    return source.split("\n", 1)[0].removeprefix("def ").rstrip(":")


def _call(entry_point: str, args: list[Any]) -> str:
    return f"{entry_point}({', '.join(repr(a) for a in args)})"


def make_task(family: Family, params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One task of `family`: prompt with two examples, hidden tests, reference solution."""
    source = string.Template(family.reference).substitute(params)
    describe = family.describe
    text = describe(params) if callable(describe) else describe.format(**params)
    tests: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(_N_TESTS * 10):
        args = json.loads(json.dumps(family.inputs(rng, params)))
        key = json.dumps(args)
        if key in seen:
            continue
        seen.add(key)
        tests.append({"args": args, "expected": run_reference(source, family.name, args)})
        if len(tests) == _N_TESTS:
            break
    examples = "\n".join(f"{_call(family.name, t['args'])} == {t['expected']!r}"
                         for t in tests[:2])
    prompt = (f"Write a Python function `{_signature(source)}` that {text}.\n\n"
              f"Examples:\n{examples}")
    answer = json.dumps({"entry_point": family.name, "tests": tests})
    return {"prompt": prompt, "answer": answer, "reference": source}


class Code(Domain):
    name = "code"
    levels = (1, 2, 3, 4)
    instruction = "\n\nAnswer with the complete function in a single ```python code block."

    def __init__(self, cfg: Any = None) -> None:
        super().__init__(cfg)
        self._sandbox: Any = None
        self._lock = threading.Lock()

    @property
    def sandbox(self) -> Any:
        """The sandbox, created (and its isolation probed) on first use."""
        with self._lock:
            if self._sandbox is None:
                from bots_cli.sandbox import Sandbox, SandboxConfig

                self._sandbox = Sandbox(SandboxConfig.from_config(self.cfg["sandbox"]))
            return self._sandbox

    def generate_task(self, rng: random.Random, level: int) -> dict[str, Any]:
        family = rng.choice([f for f in FAMILIES if f.level == level])
        return make_task(family, family.params(rng), rng)

    def check_answer(self, answer: str) -> str | None:
        try:
            spec = json.loads(answer)
        except ValueError:
            return "not JSON (expected {\"entry_point\": ..., \"tests\": [...]})"
        if not isinstance(spec, dict) or not isinstance(spec.get("entry_point"), str):
            return "no \"entry_point\" name"
        tests = spec.get("tests")
        if not isinstance(tests, list) or not tests or not all(
                isinstance(t, dict) and isinstance(t.get("args"), list) and "expected" in t
                for t in tests):
            return "\"tests\" must be a non-empty list of {\"args\": [...], \"expected\": ...}"
        return None

    def _job(self, completion: str, task: Any) -> tuple[Any, list[Any]]:
        from bots_cli.sandbox import Job

        spec = json.loads(task_field(task, "answer"))
        tests = spec["tests"]
        job = Job(extract_code(completion), spec["entry_point"], [t["args"] for t in tests])
        return job, [t["expected"] for t in tests]

    def _score(self, result: Any, expected: list[Any]) -> Score:
        from bots_cli.sandbox import count_passed

        passed, total = count_passed(result, expected), len(expected)
        graded = bool(self.reward_cfg["graded"])
        reward = passed / total if graded else float(passed == total)
        return Score(reward, {"passed": passed, "tests": total, "status": result.status,
                              "isolated": result.isolated})

    def score(self, completion: str, task: Any) -> Score:
        job, expected = self._job(completion, task)
        return self._score(self.sandbox.run(job.code, job.entry_point, job.inputs), expected)

    def scores(self, completions: Sequence[str], tasks: Sequence[Any]) -> list[Score]:
        """Scores of a batch, run through the sandbox's bounded parallel pool."""
        if len(completions) != len(tasks):
            raise ValueError(f"{len(completions)} completions for {len(tasks)} tasks")
        pairs = [self._job(c, t) for c, t in zip(completions, tasks, strict=True)]
        results = self.sandbox.run_many([job for job, _ in pairs])
        return [self._score(r, exp) for r, (_, exp) in zip(results, pairs, strict=True)]

    def rewards(self, completions: Sequence[str], tasks: Sequence[Any]) -> list[float]:
        return [s.reward for s in self.scores(completions, tasks)]
