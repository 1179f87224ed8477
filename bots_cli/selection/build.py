"""`build_selector`: a selector from its Hydra config group (`conf/selector/*.yaml`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from bots_cli.checks import check_choice
from bots_cli.errors import InvalidValue
from bots_cli.selection.base import Selector
from bots_cli.selection.baselines import Easy2HardSelector, OfflineBandSelector, UniformSelector
from bots_cli.selection.bots import BotsSelector

_BOTS_KEYS = ("lam", "rho", "target", "m", "gamma", "prior", "mode", "tau")


def _keys(cfg: Mapping[str, Any], *keys: str) -> list[Any]:
    """The values of `keys` in a selector's config: conf/selector/ holds every default, so a
    missing key is an error rather than a silent second default."""
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise InvalidValue(f"{missing[0]} is missing from the {cfg.get('name')} selector's config "
                           f"(its keys: {', '.join(keys)}); start from conf/selector/")
    return [cfg[k] for k in keys]


def _bots(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int) -> Selector:
    kwargs = dict(zip(_BOTS_KEYS, _keys(cfg, *_BOTS_KEYS), strict=True))
    kwargs["prior"] = tuple(kwargs["prior"])
    sel = BotsSelector(n, weak=weak, strong=strong, seed=seed, **kwargs)
    sel.name = str(cfg["name"])  # mopps / implicit_only are BOTS under another name
    return sel


def _mopps(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int) -> Selector:
    if float(_keys(cfg, "rho")[0]) != 0.0:
        raise InvalidValue(f"rho: mopps is BOTS with rho = 0, got rho={cfg['rho']}; use "
                           "selector=bots to weight implicit evidence")
    return _bots(cfg, n, weak, strong, seed)


def _implicit_only(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int) -> Selector:
    lam, rho = _keys(cfg, "lam", "rho")
    if float(lam) != 1.0 or float(rho) != 1.0:
        raise InvalidValue(f"lam/rho: implicit_only is BOTS with lam = rho = 1, got "
                           f"lam={lam}, rho={rho}; use selector=bots instead")
    return _bots(cfg, n, weak, strong, seed)


def _reference(cfg: Mapping[str, Any], weak: Any, strong: Any) -> Any:
    which = check_choice("reference", _keys(cfg, "reference")[0], ("weak", "strong"))
    rates = weak if which == "weak" else strong
    if rates is None:
        raise InvalidValue(f"reference: {cfg['name']} needs the {which} reference's pass rates, "
                           "and none were given")
    return rates


def _uniform(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int) -> Selector:
    return UniformSelector(n, seed=seed)


def _offline_band(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int) -> Selector:
    lo, hi = _keys(cfg, "lo", "hi")
    return OfflineBandSelector(n, _reference(cfg, weak, strong), lo=lo, hi=hi, seed=seed)


def _easy2hard(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int) -> Selector:
    return Easy2HardSelector(n, _reference(cfg, weak, strong), seed=seed)


BUILDERS: dict[str, Callable[[Mapping[str, Any], int, Any, Any, int], Selector]] = {
    "bots": _bots,
    "mopps": _mopps,
    "implicit_only": _implicit_only,
    "uniform": _uniform,
    "offline_band": _offline_band,
    "easy2hard": _easy2hard,
}


def needs_references(cfg: Mapping[str, Any]) -> bool:
    """Whether the configured selector reads reference pass rates."""
    name = cfg.get("name")
    if name in ("offline_band", "easy2hard"):
        return True
    return name in ("bots", "implicit_only") and float(cfg["rho"]) > 0.0


def build_selector(
    cfg: Mapping[str, Any],
    *,
    n_tasks: int,
    weak: np.ndarray | None = None,
    strong: np.ndarray | None = None,
    seed: int = 0,
    group_size: int | None = None,
    key: str = "selector",
) -> Selector:
    """Build the selector a config describes: `cfg.name` picks it, the other keys are arguments.

    `selector.m: null` means "the rollout group size": pass `group_size`. Invalid values raise
    `InvalidValue` (a ValueError) whose message starts with the config key, e.g.
    ``selector.rho (implicit-evidence weight ρ) must be in [0, 1], got 1.5``; `key` is the prefix.
    """
    name = check_choice(f"{key}.name", cfg.get("name"), tuple(BUILDERS))
    resolved = dict(cfg)
    if "m" in resolved and resolved["m"] is None:
        if group_size is None:
            raise InvalidValue(f"{key}.m is null (= the rollout group size) but no group size was "
                               "given; set m or pass group_size")
        resolved["m"] = group_size
    try:
        return BUILDERS[name](resolved, n_tasks, weak, strong, seed)
    except InvalidValue as err:
        raise InvalidValue(f"{key}.{err}") from None
