"""Integer arithmetic: the world of the tiny model (`model=tiny`) trained on a CPU.

Prompts are short ASCII expressions ending in `=` (`12+7=`, `3*4-2=`) and answers are exact
integers (`19`, `-4`), so a model of about a million parameters with a character-level vocabulary
can learn them, and difficulty grows in controlled steps: more operators and precedence on single
digits, then carrying on two digits, two-digit products, then three-digit carrying (see
`LEVELS`; the generator also supports parentheses, which no level uses). Prompts carry no
instruction: the tiny model only ever sees this format, and larger models complete `12+7=` just
as well.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from bots_cli.domains.base import Domain, Score, task_field


@dataclass(frozen=True)
class Level:
    operands: int  # how many numbers
    digits: int  # each operand is drawn uniformly from 0 .. 10**digits - 1
    ops: str  # operators to draw from
    parens: bool = False  # group the first two operands: (a op b) op c


# A ladder the tiny model (1M parameters, answers written most significant digit first) can
# climb in a CPU warm start: single digits with more operators and precedence, then carrying on
# two digits, two-digit products, three-digit carrying (hard, but not hopeless like 3-digit
# products). Levels 6-7 are the hardest and 1-2 among the easiest in every build measured; where
# two-digit addition (level 3) falls among levels 1-4 depends on when a build learns carrying
# (BENCHMARKS.md). Every level has at least 4,000 distinct prompts, so the eval and train splits
# (800 per level together) leave most of each level to the fresh warm-start stream, which never
# repeats a split's prompt: with only 1,000 prompts (a+b+c) the model saw a few hundred of them
# over and over and did worse on the held-out rest than on harder levels.
LEVELS: dict[int, Level] = {
    1: Level(3, 1, "+-"),  # 3-5+2: 4,000 prompts
    2: Level(3, 1, "+-*"),  # 3*4-2: precedence
    3: Level(2, 2, "+"),  # 47+38: carrying
    4: Level(2, 2, "+-"),  # 47-38, 38-47: borrowing, negative results
    5: Level(2, 2, "+-*"),  # 47*38: two-digit products
    6: Level(2, 3, "+"),  # 471+385: two carries
    7: Level(2, 3, "+-"),  # 471-385: two borrows
}

_BOXED = re.compile(r"\\boxed\{\s*([^{}]*)\}")
_ANSWER_IS = re.compile(r"answer(?: is)?\s*[:=]?\s*", re.IGNORECASE)
_INT = re.compile(r"-?\d{1,3}(?:,\d{3})+(?!\d)|-?\d+")


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def evaluate(numbers: list[int], ops: list[str], parens: bool) -> int:
    """Value of n0 op0 n1 op1 n2 ... with * before + and -, or with (n0 op0 n1) first."""
    if parens:
        numbers = [_apply(numbers[0], ops[0], numbers[1]), *numbers[2:]]
        ops = ops[1:]
    terms, signs = [numbers[0]], [1]
    for op, x in zip(ops, numbers[1:], strict=True):
        if op == "*":
            terms[-1] *= x
        else:
            terms.append(x)
            signs.append(1 if op == "+" else -1)
    return sum(s * t for s, t in zip(signs, terms, strict=True))


def final_integer(completion: str) -> int | None:
    """The final answer as an integer: the last \\boxed{}, else after the last "answer is",
    else the last integer of the completion ("12+7=19" -> 19). None if there is none."""
    boxed = _BOXED.findall(completion)
    if boxed:
        segment = boxed[-1]
    else:
        parts = _ANSWER_IS.split(completion)
        segment = parts[-1] if len(parts) > 1 else completion
    found = _INT.findall(segment)
    if not found:
        return None
    return int(found[-1].replace(",", ""))


class Arith(Domain):
    name = "arith"
    levels = tuple(LEVELS)

    def generate_task(self, rng: random.Random, level: int) -> dict[str, Any]:
        spec = LEVELS[level]
        numbers = [rng.randrange(10**spec.digits) for _ in range(spec.operands)]
        ops = [rng.choice(spec.ops) for _ in range(spec.operands - 1)]
        text = str(numbers[0])
        for op, x in zip(ops, numbers[1:], strict=True):
            text += f"{op}{x}"
        if spec.parens:
            first = f"{numbers[0]}{ops[0]}{numbers[1]}"
            text = f"({first})" + text[len(first):]
        return {"prompt": f"{text}=", "answer": str(evaluate(numbers, ops, spec.parens))}

    def check_answer(self, answer: str) -> str | None:
        return None if re.fullmatch(r"\s*-?\d+\s*", answer) else f"{answer!r} is not an integer"

    def score(self, completion: str, task: Any) -> Score:
        got = final_integer(completion)
        want = int(str(task_field(task, "answer")).strip())
        return Score(float(got == want), {"parsed": got})
