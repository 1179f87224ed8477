"""Argument checks shared by the selectors and by config validation.

Each check raises `InvalidValue` (a `ValueError`) whose message names the parameter, the bad value
and what is allowed, e.g. ``lambda (forgetting factor) must be in [0, 1], got 1.5``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bots_cli.errors import InvalidValue


def shown(value: Any) -> str:
    """`value` as a message shows it: repr of the plain Python value, so a numpy scalar reads
    1.5 rather than np.float64(1.5) (text stays quoted: 'abc')."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def as_number(name: str, value: Any) -> float:
    """`value` as a finite float, or an error naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidValue(f"{name} must be a number, got {shown(value)}")
    out = float(value)
    if not math.isfinite(out):
        raise InvalidValue(f"{name} must be a finite number, got {shown(value)}")
    return out


def check_range(
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """Check lo <= value <= hi (or strict where open) and return the value as a float."""
    x = as_number(name, value)
    too_low = lo is not None and (x <= lo if lo_open else x < lo)
    too_high = hi is not None and (x >= hi if hi_open else x > hi)
    if too_low or too_high:
        raise InvalidValue(f"{name} must be {_describe(lo, hi, lo_open, hi_open)}, got "
                           f"{shown(value)}")
    return x


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """Check that `value` is an integer in [lo, hi] and return it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidValue(f"{name} must be an integer, got {shown(value)}")
    check_range(name, value, lo, hi)
    return int(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    if value not in choices:
        raise InvalidValue(f"{name} must be one of {', '.join(choices)}, got {shown(value)}")
    return str(value)


def check_rates(name: str, values: Any, n: int) -> np.ndarray:
    """Per-task pass rates: a float64 vector of length n in [0, 1] without NaN."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InvalidValue(
            f"{name} must hold one pass rate per task ({n}), got shape {tuple(arr.shape)}"
        )
    if np.isnan(arr).any():
        raise InvalidValue(f"{name} has {int(np.isnan(arr).sum())} NaN pass rates")
    bad = (arr < 0) | (arr > 1)
    if bad.any():
        raise InvalidValue(
            f"{name} has {int(bad.sum())} pass rates outside [0, 1] (e.g. {shown(arr[bad][0])})"
        )
    return arr


def _describe(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '≥'} {_fmt(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '≤'} {_fmt(hi)}"
    return "a number"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
