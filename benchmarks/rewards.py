"""Reward throughput: completions scored per second by each verifier, and the sandbox's overhead.

    .venv/bin/python benchmarks/rewards.py [--n 400]

Completions are built from each domain's shipped eval split, half right and half wrong, and scored
through the public API (`dom.rewards`, which the trainer calls once per step). Math is measured
twice: plain numbers (compared exactly in-process) and LaTeX answers that need math-verify (in
its worker processes). Code is measured on both sandbox backends with the configured pool
(`sandbox.workers`, default 2). The last rows time one trivial program at a time: the fixed
cost of starting an interpreter in the sandbox, isolated or not.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bots_cli.domains import load_domain
from bots_cli.sandbox import Sandbox, SandboxConfig

_OVERHEAD_RUNS = 40  # trivial programs timed one after another per backend


def _rows(name: str, n: int) -> list[Any]:
    df = load_domain(name).load(split="eval")
    rows = [row for _, row in df.iterrows()]
    return (rows * (n // len(rows) + 1))[:n]


def _arith(rows: list[Any]) -> list[str]:
    return [r["answer"] if i % 2 else str(int(r["answer"]) + 1) for i, r in enumerate(rows)]


def _logic(rows: list[Any]) -> list[str]:
    out = []
    for i, r in enumerate(rows):
        roles = json.loads(r["answer"])
        if i % 2:
            first = next(iter(roles))
            roles[first] = "knave" if roles[first] == "knight" else "knight"
        out.append("Let me reason it through.\nFinal answer:\n"
                   + "\n".join(f"{k} is a {v}" for k, v in roles.items()))
    return out


def _math_plain(rows: list[Any]) -> list[str]:
    return [f"... so \\boxed{{{r['answer']}}}" if i % 2 else "\\boxed{-1}"
            for i, r in enumerate(rows)]


def _math_latex(rows: list[Any]) -> list[str]:
    def latex(a: str) -> str:
        num, _, den = a.partition("/")
        return f"\\frac{{2 \\cdot {num}}}{{2 \\cdot {den or 1}}}"
    return [f"\\boxed{{{latex(r['answer'])}}}" if i % 2 else "\\boxed{\\sqrt{2} + 1}"
            for i, r in enumerate(rows)]


def _code(rows: list[Any]) -> list[str]:
    wrong = "def f(*args):\n    return None\n"
    return [f"```python\n{r['reference'] if i % 2 else wrong}```" for i, r in enumerate(rows)]


def _time(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _threaded(dom: Any, completions: list[str], rows: list[Any], threads: int) -> list[float]:
    """Score from `threads` threads, as a trainer with a thread per rollout worker would."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(dom.reward, completions, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400, help="completions per verifier")
    args = parser.parse_args()
    n = args.n
    table: list[tuple[str, int, float, str]] = []

    def bench(label: str, dom: Any, completions: list[str], rows: list[Any],
              score: Callable[[], list[float]] | None = None, note: str = "") -> None:
        dom.reward(completions[0], rows[0])  # warm up (worker start-up, isolation probe)
        rewards: list[float] = []

        def run() -> None:
            rewards.extend(score() if score else dom.rewards(completions, rows))

        seconds = _time(run)
        right = sum(r == 1.0 for r in rewards)
        assert right == len(rows) // 2, f"{label}: {right} right of {len(rows)}"
        table.append((label, len(rows), len(rows) / seconds, note))

    for name, make in [("arith", _arith), ("logic", _logic)]:
        rows = _rows(name, n)
        bench(name, load_domain(name), make(rows), rows)
    rows = _rows("math", n)
    dom = load_domain("math")
    bench("math (plain numbers)", dom, _math_plain(rows), rows)
    latex = _math_latex(rows)
    bench("math (LaTeX, math-verify)", dom, latex, rows,
          score=lambda: _threaded(dom, latex, rows, 2), note="2 worker processes")
    rows = _rows("code", max(n // 4, 20))
    for use_bwrap in (True, False):
        code = load_domain("code", {"sandbox": {"use_bwrap": use_bwrap, "workers": 2}})
        note = "bubblewrap" if code.sandbox.isolated else "rlimits only"
        bench(f"code ({note})", code, _code(rows), rows, note="pool of 2")

    overhead = []
    for use_bwrap in (True, False):
        sb = Sandbox(SandboxConfig(use_bwrap=use_bwrap))
        sb.run("def f():\n    return 1\n", "f", [[]])
        seconds = _time(lambda sb=sb: [sb.run("def f():\n    return 1\n", "f", [[]])
                                       for _ in range(_OVERHEAD_RUNS)])
        overhead.append(("bubblewrap" if sb.isolated else "rlimits only",
                         1000 * seconds / _OVERHEAD_RUNS))

    print(f"\nReward throughput on {os.cpu_count()} CPU cores (completions/s, half right):\n")
    print(f"| {'verifier':<30} | {'n':>5} | {'completions/s':>13} | note")
    print(f"|{'-' * 32}|{'-' * 7}|{'-' * 15}|{'-' * 22}")
    for label, count, rate, note in table:
        print(f"| {label:<30} | {count:>5} | {rate:>13.1f} | {note}")
    print("\nSandbox overhead per program (one trivial program at a time):\n")
    for label, ms in overhead:
        print(f"| {label:<14} | {ms:6.1f} ms |")


if __name__ == "__main__":
    main()
