"""Math: generated multi-step word problems, real math sets (MATH, GURU) and a careful verifier.

The generator tells a short story about a quantity (marbles, litres of juice) changed by 1 to 5
steps (level = number of steps): adding, buying packs, giving some away, doubling, giving away a
fraction, sharing equally. Answers are exact rationals written as integers or `a/b`, computed with
`fractions.Fraction`, never floats.

Real sets come in through the column mapping of `conf/domain/math.yaml` (see docs/domains.md); when
the answer column holds a full solution (MATH's `solution`), `answer_from_boxed: true` keeps only
its last `\\boxed{...}`. The reward takes the completion's last `\\boxed{...}` and asks
`MathChecker` (math-verify in time-bounded worker processes) whether it equals the answer.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from bots_cli.domains.base import Domain, Score, task_field
from bots_cli.domains.mathcheck import MathChecker, last_boxed
from bots_cli.errors import UserError

NAMES = ("Maya", "Omar", "Lena", "Tariq", "Sofia", "Ken", "Amara", "Luis", "Priya", "Jonas",
         "Hana", "Diego", "Ines", "Felix", "Zara", "Ravi")
COUNTABLE = ("marbles", "stickers", "apples", "coins", "pencils", "cards", "shells", "stamps")
MEASURED = (("litres", "juice"), ("kilograms", "flour"), ("metres", "rope"), ("cups", "rice"))


def _fmt(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _step(rng: random.Random, x: Fraction, unit: str, countable: bool) -> tuple[str, Fraction]:
    """One story step: its sentence and the new amount (never negative)."""
    kinds = ["add", "packs", "remove", "scale", "fraction"]
    while True:
        kind = rng.choice(kinds)
        if kind == "add":
            k = rng.randint(2, 40)
            return f"Then they get {k} more {unit}.", x + k
        if kind == "packs":
            m, k = rng.randint(2, 9), rng.randint(2, 12)
            return f"Then they buy {m} packs with {k} {unit} in each pack.", x + m * k
        if kind == "remove" and x >= 2:
            k = rng.randint(1, int(x) - 1) if x.denominator == 1 else rng.randint(1, int(x) or 1)
            if k < x:
                return f"Then they use up {k} {unit}.", x - k
        if kind == "scale":
            m = rng.choice((2, 3, 4))
            word = {2: "doubles", 3: "triples", 4: "quadruples"}[m]
            return f"Then the amount they have {word}.", x * m
        if kind == "fraction":
            q = rng.choice((2, 3, 4, 5, 6, 8))
            p = rng.randint(1, q - 1)
            f = Fraction(p, q)
            if countable and (x * f).denominator != 1:
                continue  # no half marbles
            return f"Then they give away {f.numerator}/{f.denominator} of what they have.", \
                x * (1 - f)


class Math(Domain):
    name = "math"
    levels = (1, 2, 3, 4, 5)  # number of steps in the story
    instruction = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."

    def __init__(self, cfg: Any = None) -> None:
        super().__init__(cfg)
        self._checker: MathChecker | None = None
        self._lock = threading.Lock()

    @property
    def checker(self) -> MathChecker:
        with self._lock:
            if self._checker is None:
                self._checker = MathChecker(timeout_s=float(self.reward_cfg["timeout_s"]),
                                            workers=int(self.reward_cfg["workers"]))
            return self._checker

    @property
    def reward_timeouts(self) -> int:
        return 0 if self._checker is None else self._checker.timeouts

    def _loaded(self, df: Any, conf: Mapping[str, Any], path: Path) -> Any:
        if not conf["answer_from_boxed"]:
            return df
        answers = []
        for i, text in enumerate(df["answer"]):
            boxed = last_boxed(text)
            if boxed is None:
                raise UserError(f"{path}: row {i + 1}'s answer has no \\boxed{{...}} "
                                "(domain.answer_from_boxed is true); map domain.columns.answer "
                                "to a column holding final answers")
            answers.append(boxed)
        df["answer"] = answers
        return df

    def generate_task(self, rng: random.Random, level: int) -> dict[str, Any]:
        name = rng.choice(NAMES)
        countable = rng.random() < 0.6
        if countable:
            unit = rng.choice(COUNTABLE)
            x = Fraction(rng.randint(3, 60))
            start = f"{name} has {x} {unit}."
        else:
            measure, stuff = rng.choice(MEASURED)
            unit = f"{measure} of {stuff}"
            x = Fraction(rng.randint(2, 30))
            start = f"{name} has {x} {unit}."
        sentences = [start]
        for _ in range(level - 1):
            text, x = _step(rng, x, unit, countable)
            sentences.append(text)
        if countable:
            text, x = _step(rng, x, unit, countable)
            sentences.append(text)
            question = f"How many {unit} does {name} have now?"
        else:
            k = rng.randint(2, 7)
            x = x / k
            unit_word = unit.split(" of ")[0]
            sentences.append(f"Finally, {name} shares it equally among {k} friends.")
            question = f"How many {unit_word} does each friend get?"
        return {"prompt": " ".join(sentences) + " " + question, "answer": _fmt(x)}

    def score(self, completion: str, task: Any) -> Score:
        answer = last_boxed(completion)
        if answer is None:
            return Score(0.0, {"parsed": None})
        gold = str(task_field(task, "answer"))
        return Score(float(self.checker.equivalent(gold, answer)), {"parsed": answer})
