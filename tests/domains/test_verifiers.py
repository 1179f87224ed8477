"""Verifiers: right and wrong answers, with the formatting models actually produce."""

from __future__ import annotations

import json
import threading

import pytest

from bots_cli.domains import load_domain
from bots_cli.domains.arith import final_integer
from bots_cli.domains.code import extract_code
from bots_cli.domains.logic import parse_roles
from bots_cli.domains.mathcheck import MathChecker, as_fraction, last_boxed


# ---- arith ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("completion", "reward"), [
    ("19", 1.0), (" 19\n", 1.0), ("12+7=19", 1.0), ("The answer is 19.", 1.0),
    ("\\boxed{19}", 1.0), ("answer: 19", 1.0), ("18", 0.0), ("190", 0.0), ("", 0.0),
    ("nineteen", 0.0), ("19.5", 0.0), ("-19", 0.0),
])
def test_arith_reward(completion: str, reward: float) -> None:
    assert load_domain("arith").reward(completion, {"prompt": "12+7=", "answer": "19"}) == reward


def test_arith_negative_and_grouped_answers() -> None:
    domain = load_domain("arith")
    assert domain.reward("3-7=-4", {"answer": "-4"}) == 1.0
    assert domain.reward("4", {"answer": "-4"}) == 0.0
    assert final_integer("1,234") == 1234 and final_integer("no digits") is None


def test_arith_shipped_answers_score_one_and_prompts_render_raw() -> None:
    domain = load_domain("arith")
    df = domain.load(split="eval")
    assert all(domain.reward(a, row) == 1.0 for a, (_, row) in zip(df["answer"], df.iterrows(),
                                                                    strict=True))
    assert domain.render_prompt(df.iloc[0]) == df.iloc[0]["prompt"]


# ---- logic ------------------------------------------------------------------------------------
TRUTH = {"Alice": "knight", "Bob": "knave", "Carol": "knave"}
TASK = {"answer": json.dumps(TRUTH)}


@pytest.mark.parametrize(("completion", "reward"), [
    ("Alice is a knight, Bob is a knave, and Carol is a knave.", 1.0),
    ("(1) Alice is a knight\n(2) Bob is a knave\n(3) Carol is a knave", 1.0),
    ("**Alice**: Knight\n**Bob**: Knave\n**Carol**: Knave", 1.0),
    ('{"Alice": "knight", "Bob": "knave", "Carol": "knave"}', 1.0),
    ("Alice is a knight. Bob and Carol are knaves.", 1.0),
    ("Alice is a knight, Bob is not a knight, Carol is a knave.", 1.0),
    ("Suppose Bob is a knight. Then Alice is a knave... contradiction.\n\nFinal answer:\n"
     "Alice is a knight\nBob is a knave\nCarol is a knave", 1.0),
    ("If Alice is a knave then ... so in the end Alice is a knight, Bob is a knave, Carol is a "
     "knave.", 1.0),
    ("Alice is a knight, Bob is a knave.", 0.0),  # Carol missing
    ("Alice is a knight, Bob is a knave, Carol is a knight.", 0.0),
    ("Final answer: Alice is a knave, Bob is a knave, Carol is a knave.", 0.0),
    ("All of them are knights.", 0.0),
    ("", 0.0),
])
def test_logic_reward(completion: str, reward: float) -> None:
    assert load_domain("logic").reward(completion, TASK) == reward


def test_logic_names_are_whole_words() -> None:
    roles = parse_roles("Eve is a knight. Steve is a knave.", ["Eve"])
    assert roles == {"Eve": "knight"}


def test_logic_shipped_answers_score_one_when_written_out() -> None:
    domain = load_domain("logic")
    df = domain.load(split="eval")
    for _, row in df.iterrows():
        lines = "\n".join(f"{n} is a {r}" for n, r in json.loads(row["answer"]).items())
        assert domain.reward(f"Reasoning...\nFinal answer:\n{lines}", row) == 1.0
    assert "final answer" in domain.render_prompt(df.iloc[0])


# ---- math -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("gold", "completion", "reward"), [
    ("1/7", "so it is \\boxed{\\frac{1}{7}}", 1.0),
    ("1/7", "\\boxed{2/14}", 1.0),
    ("3/4", "\\boxed{0.75}", 1.0),
    ("0.5", "\\boxed{\\dfrac12}", 1.0),
    ("24", "First \\boxed{12}, then corrected: \\boxed{24}", 1.0),
    ("24", "\\boxed{24.0}", 1.0),
    ("1000", "\\boxed{1{,}000}", 1.0),
    ("\\sqrt{8}", "\\boxed{2\\sqrt{2}}", 1.0),
    ("x+1", "\\boxed{1 + x}", 1.0),
    ("\\frac{3}{4}", "$\\boxed{\\frac{3}{4}}$.", 1.0),
    ("1/7", "\\boxed{1/8}", 0.0),
    ("24", "The answer is 24.", 0.0),  # no \boxed{}: no final answer
    ("24", "\\boxed{25}", 0.0),
    ("\\sqrt{8}", "\\boxed{3}", 0.0),
    ("24", "\\boxed{24", 0.0),  # unbalanced
])
def test_math_reward(gold: str, completion: str, reward: float) -> None:
    assert load_domain("math").reward(completion, {"answer": gold}) == reward


def test_last_boxed_and_exact_numbers() -> None:
    assert last_boxed("\\boxed{\\frac{1}{2}} and \\boxed{\\sqrt{x^{2}}}") == "\\sqrt{x^{2}}"
    assert last_boxed("\\fbox{7}") == "7" and last_boxed("none") is None
    assert as_fraction("\\frac{-3}{6}") == as_fraction("-1/2") == as_fraction("-0.5")
    assert as_fraction("x") is None and as_fraction("1/0") is None


def test_math_shipped_answers_score_one() -> None:
    domain = load_domain("math")
    df = domain.load(split="eval")
    assert all(domain.reward(f"... \\boxed{{{a}}}", row) == 1.0
               for a, (_, row) in zip(df["answer"], df.iterrows(), strict=True))
    assert "\\boxed{}" in domain.render_prompt(df.iloc[0])


def test_math_pathological_answer_is_cut_off_and_the_checker_recovers() -> None:
    """The bomb keeps sympy busy for minutes: it is cut off at the timeout, scored 0 and counted
    (train/reward_timeouts), and a fresh worker takes the killed one's place."""
    checker = MathChecker(timeout_s=2.0, workers=1)
    try:
        assert checker.equivalent("\\sqrt{2}", "9^{9^{9^{9^{9}}}}") is False
        assert checker.timeouts == 1
        # No bound in practice from here on: the answer below must not depend on the machine's
        # load (an honest check can take seconds on a busy 2-core machine).
        checker.timeout_s = 600.0
        assert checker.equivalent("\\sqrt{2}", "2^{1/2}")
        assert checker.timeouts == 1
    finally:
        checker.close()


def test_math_checks_from_several_threads_get_their_own_answers() -> None:
    # A bound no honest check reaches, however loaded the machine: only the answers are tested.
    checker = MathChecker(timeout_s=600.0, workers=2)
    try:
        cases = {"ok": ("x^2 - 1", "(x-1)(x+1)", True), "no": ("\\pi", "3.15", False),
                 "root": ("\\sqrt{2}", "2^{1/2}", True), "half": ("\\frac{x}{2}", "x/3", False),
                 "sum": ("2x + 2", "2(x+1)", True)}
        results: dict[str, bool] = {}

        def check(key: str, gold: str, answer: str) -> None:
            results[key] = checker.equivalent(gold, answer)

        threads = [threading.Thread(target=check, args=(key, gold, answer))
                   for key, (gold, answer, _) in cases.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == {key: expected for key, (_, _, expected) in cases.items()}
        assert checker.timeouts == 0
    finally:
        checker.close()


# ---- code -------------------------------------------------------------------------------------
CODE_TASK = {"answer": json.dumps({"entry_point": "double", "tests": [
    {"args": [1], "expected": 2}, {"args": [-4], "expected": -8}, {"args": [0], "expected": 0},
    {"args": [7], "expected": 14}]})}


def test_extract_code_takes_the_last_fenced_block() -> None:
    text = "Try:\n```python\ndef f(): return 1\n```\nBetter:\n```py\ndef f(): return 2\n```\n"
    assert extract_code(text) == "def f(): return 2\n"
    assert extract_code("def f():\n    return 3\n") == "def f():\n    return 3\n"
    assert extract_code("```\ndef f(): return 4\n```") == "def f(): return 4\n"
    assert extract_code("text\n```python\ndef f(): return 5\n") == "def f(): return 5\n"


@pytest.mark.parametrize(("completion", "binary", "graded"), [
    ("```python\ndef double(x):\n    return 2 * x\n```", 1.0, 1.0),
    ("def double(x):\n    return x + x\n", 1.0, 1.0),
    ("```python\ndef double(x):\n    return abs(2 * x)\n```", 0.0, 0.75),
    ("```python\ndef double(x):\n    return 2 * x if x != 7 else 1 / 0\n```", 0.0, 0.75),
    ("```python\ndef triple(x):\n    return 3 * x\n```", 0.0, 0.0),
    ("I cannot do that.", 0.0, 0.0),
])
def test_code_reward_binary_and_graded(completion: str, binary: float, graded: float) -> None:
    assert load_domain("code").reward(completion, CODE_TASK) == binary
    assert load_domain("code", {"reward": {"graded": True}}).reward(completion, CODE_TASK) == graded
