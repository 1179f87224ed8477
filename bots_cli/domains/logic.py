"""Knights and Knaves: logic puzzles with 2 to 8 people and exactly one solution.

Knights always tell the truth, knaves always lie; each person makes one statement and the model
must say who is what. The generator draws random statements and keeps a puzzle only if a
brute-force solver (all 2**n role assignments; n <= 8, so at most 256) finds exactly one
consistent assignment, so every shipped answer is provably the only one. Level L has L + 1 people.

The verifier is tolerant of ordinary phrasing ("Alice is a knight", "(1) Bob is a knave",
"**Carol**: Knave", "Dave and Eve are knights", "Frank is not a knight"), reading each person's
last stated role in the final-answer part of the completion; reward 1 only if everyone is right.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from bots_cli.domains.base import Domain, Score, task_field

NAMES = (
    "Alice", "Bob", "Carol", "Dave", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Oscar", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Zoe", "Liam", "Mia",
    "Noah", "Olivia", "Emma", "Jack", "Lily", "Henry", "Ruby", "Owen", "Chloe", "Leo", "Nora",
)
ROLE = {True: "knight", False: "knave"}

Assignment = int  # bit i set <=> person i is a knight
Statement = tuple[str, Callable[[Assignment], bool]]  # (text, truth value under an assignment)


def _is(i: int, knight: bool) -> Callable[[Assignment], bool]:
    return lambda a: bool(a >> i & 1) == knight


def _statement(rng: random.Random, speaker: int, names: Sequence[str]) -> Statement:
    """A random statement by `speaker` about the others (and sometimes about themself)."""
    n = len(names)
    others = [j for j in range(n) if j != speaker]
    x = rng.choice(others)
    y = rng.choice([j for j in range(n) if j != x])
    rx, ry = rng.random() < 0.5, rng.random() < 0.5
    X, Y = names[x], names[y]
    kind = rng.choice(("is", "is", "and", "or", "same", "different", "if", "count"))
    if kind == "is":
        return f"{X} is a {ROLE[rx]}.", _is(x, rx)
    if kind == "and":
        fx, fy = _is(x, rx), _is(y, ry)
        return f"{X} is a {ROLE[rx]} and {Y} is a {ROLE[ry]}.", lambda a: fx(a) and fy(a)
    if kind == "or":
        fx, fy = _is(x, rx), _is(y, ry)
        return f"{X} is a {ROLE[rx]} or {Y} is a {ROLE[ry]}.", lambda a: fx(a) or fy(a)
    if kind == "same":
        return (f"{X} and {Y} are the same kind.",
                lambda a: bool(a >> x & 1) == bool(a >> y & 1))
    if kind == "different":
        return (f"{X} and {Y} are different kinds.",
                lambda a: bool(a >> x & 1) != bool(a >> y & 1))
    if kind == "if":
        fx, fy = _is(x, rx), _is(y, ry)
        return (f"If {X} is a {ROLE[rx]}, then {Y} is a {ROLE[ry]}.",
                lambda a: not fx(a) or fy(a))
    k = rng.randrange(n + 1)
    role = ROLE[rx]
    noun = "knight" if role == "knight" and k == 1 else "knave" if k == 1 else f"{role}s"
    verb = "is" if k == 1 else "are"
    return (f"Exactly {k} of us {verb} {noun}.",
            lambda a: (bin(a).count("1") if rx else n - bin(a).count("1")) == k)


def solutions(statements: Sequence[Statement], n: int) -> list[Assignment]:
    """Every assignment where each speaker is a knight exactly when their statement is true."""
    return [a for a in range(1 << n)
            if all(bool(a >> i & 1) == says(a) for i, (_, says) in enumerate(statements))]


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# ---- reading a completion -------------------------------------------------------------------
_MARKERS = re.compile(r"final answer|answer\s*:|in conclusion|in summary|\bsolution\s*:",
                      re.IGNORECASE)
_Q = r"[\s*\"'`_]*"  # quotes, markdown emphasis and spaces around a name or a role


def parse_roles(text: str, names: Sequence[str]) -> dict[str, str]:
    """Each name's role as stated last in `text` (the final-answer part when there is one)."""
    marks = list(_MARKERS.finditer(text))
    candidates = [text[marks[-1].end():]] if marks else []
    candidates.append(text)
    for segment in candidates:
        roles = _roles_in(segment, names)
        if len(roles) == len(names):
            return roles
    return _roles_in(text, names)


def _roles_in(text: str, names: Sequence[str]) -> dict[str, str]:
    alt = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    role = r"(knight|knave)s?\b"
    single = re.compile(
        rf"\b({alt})\b{_Q}(?:is|was|would be|must be|:|-|–|=|→|->|\(){_Q}(not\s+)?"
        rf"(?:a\s+|an\s+|the\s+)?{_Q}{role}", re.IGNORECASE)
    group = re.compile(
        rf"((?:\b(?:{alt})\b{_Q}(?:,|,?\s+and)\s*)+\b(?:{alt})\b){_Q}\s+(?:are|were)\s+"
        rf"(?:both\s+|all\s+)?(not\s+)?{role}", re.IGNORECASE)
    by_lower = {n.lower(): n for n in names}
    found: list[tuple[int, str, str]] = []
    for m in single.finditer(text):
        found.append((m.end(), by_lower[m.group(1).lower()], _role(m.group(3), m.group(2))))
    for m in group.finditer(text):
        r = _role(m.group(3), m.group(2))
        for name in re.findall(rf"\b(?:{alt})\b", m.group(1), re.IGNORECASE):
            found.append((m.end(), by_lower[name.lower()], r))
    return {name: r for _, name, r in sorted(found)}


def _role(word: str, negated: str | None) -> str:
    knight = word.lower().startswith("knight")
    return ROLE[knight != bool(negated)]


class Logic(Domain):
    name = "logic"
    levels = (1, 2, 3, 4, 5, 6, 7)  # level L: L + 1 people
    instruction = ("\n\nThink it through, then end with your final answer: one line per person, "
                   "such as \"Alice is a knight\" or \"Bob is a knave\".")

    def generate_task(self, rng: random.Random, level: int) -> dict[str, Any]:
        n = level + 1
        while True:
            names = rng.sample(NAMES, n)
            statements = [_statement(rng, i, names) for i in range(n)]
            found = solutions(statements, n)
            if len(found) == 1:
                break
        said = " ".join(f"{names[i]} says: \"{text}\"" for i, (text, _) in
                        enumerate(statements))
        prompt = (f"A very special island is inhabited only by knights and knaves. Knights always "
                  f"tell the truth, and knaves always lie. You meet {n} inhabitants: "
                  f"{_join(names)}. {said} Who is a knight and who is a knave?")
        answer = {names[i]: ROLE[bool(found[0] >> i & 1)] for i in range(n)}
        return {"prompt": prompt, "answer": json.dumps(answer)}

    def check_answer(self, answer: str) -> str | None:
        try:
            roles = json.loads(answer)
        except ValueError:
            return "not JSON (expected {\"Alice\": \"knight\", ...})"
        if not isinstance(roles, dict) or not roles or not all(
                isinstance(k, str) and v in ("knight", "knave") for k, v in roles.items()):
            return "it must map each name to \"knight\" or \"knave\""
        return None

    def score(self, completion: str, task: Any) -> Score:
        truth: dict[str, str] = json.loads(task_field(task, "answer"))
        said = parse_roles(completion, list(truth))
        right = sum(said.get(name) == role for name, role in truth.items())
        return Score(float(right == len(truth)),
                     {"correct_people": right, "people": len(truth), "parsed": said})
