"""The generated code tasks: families of small function-writing problems, graded by level.

A family is a parameterised problem (`rotate a list right by k`, `Caesar shift by k`): its
parameters make many distinct tasks, its reference solution (source with the parameters filled
in) computes the expected output of every hidden test at generation time, and the first two tests
appear in the prompt as examples. Level 1 is a one-liner, level 4 needs dynamic programming or
graph search. Reference solutions ship in the `reference` column, for warm starts and for the
test that every shipped task is solvable.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Rng = random.Random


@dataclass(frozen=True)
class Family:
    name: str  # the entry point the model must define
    level: int
    params: Callable[[Rng], dict[str, Any]]
    describe: str | Callable[[dict[str, Any]], str]  # str.format template, or a function
    reference: str  # string.Template source over the params ($k)
    inputs: Callable[[Rng, dict[str, Any]], list[Any]]  # the arguments of one test


def _ints(rng: Rng, lo: int, hi: int, n_lo: int = 0, n_hi: int = 8) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(n_lo, n_hi))]


def _word(rng: Rng, alphabet: str = string.ascii_lowercase, lo: int = 0, hi: int = 10) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


def _grid(rng: Rng) -> list[list[int]]:
    rows, cols = rng.randint(1, 5), rng.randint(1, 5)
    return [[int(rng.random() < 0.45) for _ in range(cols)] for _ in range(rows)]


def _number_grid(rng: Rng, hi: int) -> list[list[int]]:
    rows, cols = rng.randint(1, 5), rng.randint(1, 5)
    return [[rng.randint(0, hi) for _ in range(cols)] for _ in range(rows)]


FAMILIES: list[Family] = [
    # ---- level 1: one expression ----
    Family("add_k", 1, lambda r: {"k": r.randint(-50, 50)},
           "returns the integer x plus {k}",
           "def add_k(x):\n    return x + $k\n",
           lambda r, p: [r.randint(-1000, 1000)]),
    Family("times_k", 1, lambda r: {"k": r.randint(2, 30)},
           "returns the integer x multiplied by {k}",
           "def times_k(x):\n    return x * $k\n",
           lambda r, p: [r.randint(-1000, 1000)]),
    Family("is_multiple", 1, lambda r: {"k": r.randint(2, 13)},
           "returns True if the integer n is divisible by {k} and False otherwise",
           "def is_multiple(n):\n    return n % $k == 0\n",
           lambda r, p: [r.randint(-100, 100) * r.choice([1, p["k"]])]),
    Family("count_char", 1, lambda r: {"c": r.choice("aeiostx")},
           "returns how many times the letter '{c}' occurs in the string s",
           "def count_char(s):\n    return s.count('$c')\n",
           lambda r, p: [_word(r, "aeiostxyz", 0, 15)]),
    Family("repeat_text", 1, lambda r: {"k": r.randint(2, 5), "sep": r.choice(["-", "+", " "])},
           "returns the string s repeated {k} times, with '{sep}' between the copies",
           "def repeat_text(s):\n    return '$sep'.join([s] * $k)\n",
           lambda r, p: [_word(r, lo=1, hi=5)]),
    Family("max_or_default", 1, lambda r: {"d": r.randint(-5, 5)},
           "returns the largest element of the list xs, or {d} if xs is empty",
           "def max_or_default(xs):\n    return max(xs) if xs else $d\n",
           lambda r, p: [_ints(r, -99, 99)]),
    # ---- level 2: a loop or a comprehension ----
    Family("sum_multiples", 2, lambda r: {"a": r.randint(2, 7), "b": r.randint(8, 13)},
           "returns the sum of all non-negative integers below n that are divisible by {a} or "
           "by {b}",
           "def sum_multiples(n):\n    return sum(i for i in range(n) if i % $a == 0 or "
           "i % $b == 0)\n",
           lambda r, p: [r.randint(0, 300)]),
    Family("above", 2, lambda r: {"t": r.randint(-20, 20)},
           "returns the elements of the list xs that are greater than {t}, in their order",
           "def above(xs):\n    return [x for x in xs if x > $t]\n",
           lambda r, p: [_ints(r, -40, 40, 0, 10)]),
    Family("fizzbuzz", 2, lambda r: {"a": r.randint(2, 4), "b": r.randint(5, 7)},
           "returns a list of strings for 1..n: 'FizzBuzz' for multiples of both {a} and {b}, "
           "'Fizz' for multiples of {a}, 'Buzz' for multiples of {b}, else the number as text",
           "def fizzbuzz(n):\n    out = []\n    for i in range(1, n + 1):\n"
           "        s = ('Fizz' if i % $a == 0 else '') + ('Buzz' if i % $b == 0 else '')\n"
           "        out.append(s or str(i))\n    return out\n",
           lambda r, p: [r.randint(0, 30)]),
    Family("running_mod", 2, lambda r: {"m": r.randint(5, 100)},
           "returns the running sums of the list xs, each taken modulo {m}",
           "def running_mod(xs):\n    out, s = [], 0\n    for x in xs:\n        s += x\n"
           "        out.append(s % $m)\n    return out\n",
           lambda r, p: [_ints(r, -50, 200, 0, 10)]),
    Family("count_in_set", 2, lambda r: {"chars": "".join(r.sample(string.ascii_lowercase, 4))},
           "returns how many characters of the string s are one of '{chars}'",
           "def count_in_set(s):\n    return sum(c in '$chars' for c in s)\n",
           lambda r, p: [_word(r, lo=0, hi=20)]),
    Family("join_reversed", 2, lambda r: {"sep": r.choice([",", "|", " ", "-"])},
           "returns the words of the string s (separated by single spaces) in reverse order, "
           "joined by '{sep}'",
           "def join_reversed(s):\n    return '$sep'.join(reversed(s.split(' ')))\n",
           lambda r, p: [" ".join(_word(r, lo=1, hi=5) for _ in range(r.randint(1, 5)))]),
    # ---- level 3: a small algorithm ----
    Family("caesar", 3, lambda r: {"k": r.randint(1, 25)},
           "shifts every lowercase letter of the string s {k} places forward in the alphabet "
           "(wrapping from z to a) and leaves other characters unchanged",
           "def caesar(s):\n    return ''.join(chr((ord(c) - 97 + $k) % 26 + 97) if 'a' <= c <= "
           "'z' else c for c in s)\n",
           lambda r, p: [_word(r, string.ascii_lowercase + " .!A", 0, 15)]),
    Family("digit_power_sum", 3, lambda r: {"p": r.randint(2, 5)},
           "returns the sum of the decimal digits of the non-negative integer n, each raised to "
           "the power {p}",
           "def digit_power_sum(n):\n    return sum(int(d) ** $p for d in str(n))\n",
           lambda r, p: [r.randint(0, 10**6)]),
    Family("rotate", 3, lambda r: {"k": r.randint(1, 9)},
           "returns the list xs rotated right by {k} positions (the last element moves to the "
           "front, {k} times); an empty list stays empty",
           "def rotate(xs):\n    if not xs:\n        return []\n    k = $k % len(xs)\n"
           "    return xs[len(xs) - k:] + xs[:len(xs) - k]\n",
           lambda r, p: [_ints(r, 0, 9, 0, 8)]),
    Family("chunk_sums", 3, lambda r: {"k": r.randint(2, 4)},
           "returns the sums of consecutive chunks of {k} elements of the list xs (the last "
           "chunk may be shorter)",
           "def chunk_sums(xs):\n    return [sum(xs[i:i + $k]) for i in range(0, len(xs), $k)]\n",
           lambda r, p: [_ints(r, -9, 9, 0, 11)]),
    Family("run_length", 3, lambda r: {"count_first": r.random() < 0.5},
           lambda p: "returns the run-length encoding of the string s, writing each run as "
           + ("its count then its character (e.g. 'aaab' -> '3a1b')" if p["count_first"] else
              "its character then its count (e.g. 'aaab' -> 'a3b1')"),
           "def run_length(s):\n    out, i = '', 0\n    while i < len(s):\n        j = i\n"
           "        while j < len(s) and s[j] == s[i]:\n            j += 1\n"
           "        out += (str(j - i) + s[i]) if $count_first else (s[i] + str(j - i))\n"
           "        i = j\n    return out\n",
           lambda r, p: [_word(r, "aab", 0, 12)]),
    Family("balanced", 3, lambda r: {"pairs": r.choice(["()", "()[]", "()[]{}"])},
           "returns True if the brackets in the string s (made of the bracket pairs '{pairs}') "
           "are balanced and properly nested, else False",
           "def balanced(s):\n    pairs = '$pairs'\n    closing = {pairs[i + 1]: pairs[i] for i "
           "in range(0, len(pairs), 2)}\n    stack = []\n    for c in s:\n"
           "        if c in closing:\n            if not stack or stack.pop() != closing[c]:\n"
           "                return False\n        else:\n            stack.append(c)\n"
           "    return not stack\n",
           lambda r, p: [_word(r, p["pairs"], 0, 10)]),
    Family("nth_prime", 3, lambda r: {"o": r.randint(0, 3)},
           "returns the (n + {o})-th prime number, counting 2 as the 1st prime (n >= 1)",
           "def nth_prime(n):\n    count, x = 0, 1\n    while count < n + $o:\n        x += 1\n"
           "        if all(x % d for d in range(2, int(x ** 0.5) + 1)):\n            count += 1\n"
           "    return x\n",
           lambda r, p: [r.randint(1, 60)]),
    # ---- level 4: dynamic programming, search ----
    Family("lis_length", 4, lambda r: {"strict": r.random() < 0.5},
           lambda p: "returns the length of the longest "
           + ("strictly increasing" if p["strict"] else "non-decreasing")
           + " subsequence of the list xs",
           "def lis_length(xs):\n    best = []\n    for i, x in enumerate(xs):\n"
           "        best.append(1 + max([best[j] for j in range(i) if (xs[j] < x if $strict "
           "else xs[j] <= x)], default=0))\n    return max(best, default=0)\n",
           lambda r, p: [_ints(r, 0, 9, 0, 12)]),
    Family("edit_cost", 4, lambda r: {"ins": r.randint(1, 3), "sub": r.randint(1, 4)},
           "returns the minimum cost of turning the string a into the string b, where inserting "
           "or deleting a character costs {ins} and replacing one costs {sub}",
           "def edit_cost(a, b):\n    prev = [j * $ins for j in range(len(b) + 1)]\n"
           "    for i in range(1, len(a) + 1):\n        cur = [i * $ins]\n"
           "        for j in range(1, len(b) + 1):\n"
           "            cur.append(min(prev[j] + $ins, cur[j - 1] + $ins, prev[j - 1] + "
           "(0 if a[i - 1] == b[j - 1] else $sub)))\n        prev = cur\n    return prev[-1]\n",
           lambda r, p: [_word(r, "abc", 0, 7), _word(r, "abc", 0, 7)]),
    Family("coin_ways", 4, lambda r: {"coins": sorted(r.sample([1, 2, 3, 5, 7, 10, 25], 3))},
           "returns the number of ways to make the amount n from coins of values {coins} "
           "(unlimited coins of each value; order does not matter)",
           "def coin_ways(n):\n    ways = [1] + [0] * n\n    for c in $coins:\n"
           "        for v in range(c, n + 1):\n            ways[v] += ways[v - c]\n"
           "    return ways[n]\n",
           lambda r, p: [r.randint(0, 60)]),
    Family("islands", 4, lambda r: {"diag": r.random() < 0.5},
           lambda p: "returns the number of islands in the grid (a list of rows of 0s and 1s), "
           "where an island is a group of 1s connected "
           + ("horizontally, vertically or diagonally" if p["diag"] else
              "horizontally or vertically"),
           "def islands(grid):\n    seen, count = set(), 0\n"
           "    steps = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a or b) and "
           "($diag or not (a and b))]\n"
           "    for i, row in enumerate(grid):\n        for j, v in enumerate(row):\n"
           "            if v and (i, j) not in seen:\n                count += 1\n"
           "                todo = [(i, j)]\n                seen.add((i, j))\n"
           "                while todo:\n                    y, x = todo.pop()\n"
           "                    for a, b in steps:\n                        p = (y + a, x + b)\n"
           "                        if 0 <= p[0] < len(grid) and 0 <= p[1] < len(row) and "
           "grid[p[0]][p[1]] and p not in seen:\n"
           "                            seen.add(p)\n                            todo.append(p)\n"
           "    return count\n",
           lambda r, p: [_grid(r)]),
    Family("to_base", 4, lambda r: {"b": r.randint(2, 9)},
           "returns the non-negative integer n written in base {b} as a string of digits",
           "def to_base(n):\n    digits = ''\n    while True:\n        digits = str(n % $b) + "
           "digits\n        n //= $b\n        if n == 0:\n            return digits\n",
           lambda r, p: [r.randint(0, 5000)]),
    Family("longest_unique", 4, lambda r: {"alphabet": r.choice(["abc", "abcd", "abcdef"])},
           "returns the length of the longest substring of s without a repeated character",
           "def longest_unique(s):\n    best, start, last = 0, 0, {}\n"
           "    for i, c in enumerate(s):\n        if last.get(c, -1) >= start:\n"
           "            start = last[c] + 1\n        last[c] = i\n"
           "        best = max(best, i - start + 1)\n    return best\n",
           lambda r, p: [_word(r, p["alphabet"], 0, 16)]),
    Family("min_path", 4, lambda r: {"hi": r.randint(5, 20)},
           "returns the smallest sum of a path from the top-left to the bottom-right cell of "
           "the grid (a non-empty list of equal-length rows of integers), moving only right or "
           "down",
           "def min_path(grid):\n    cost = [row[:] for row in grid]\n"
           "    for i in range(len(cost)):\n        for j in range(len(cost[0])):\n"
           "            if i or j:\n                cost[i][j] += min(cost[i - 1][j] if i else "
           "float('inf'), cost[i][j - 1] if j else float('inf'))\n    return cost[-1][-1]\n",
           lambda r, p: [_number_grid(r, p["hi"])]),
]
