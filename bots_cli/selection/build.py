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


def _bots(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int) -> Selector:
    kwargs = {k: cfg[k] for k in _BOTS_KEYS if k in cfg}
    kwargs["prior"] = tuple(kwargs.get("prior", (1.0, 1.0)))
    sel = BotsSelector(n, weak=weak, strong=strong, seed=seed, **kwargs)
    sel.name = str(cfg["name"])  # mopps / implicit_only are BOTS under another name
    return sel


def _mopps(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int) -> Selector:
    if float(cfg.get("rho", 0.0)) != 0.0:
        raise InvalidValue(f"rho: mopps is BOTS with rho = 0, got rho={cfg['rho']}; use "
                           "selector=bots to weight implicit evidence")
    return _bots(cfg, n, weak, strong, seed)


def _implicit_only(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int) -> Selector:
    if float(cfg.get("lam", 1.0)) != 1.0 or float(cfg.get("rho", 1.0)) != 1.0:
        raise InvalidValue(f"lam/rho: implicit_only is BOTS with lam = rho = 1, got "
                           f"lam={cfg.get('lam')}, rho={cfg.get('rho')}; use selector=bots instead")
    return _bots(cfg, n, weak, strong, seed)


def _reference(cfg: Mapping[str, Any], weak: Any, strong: Any) -> Any:
    which = check_choice("reference", cfg.get("reference", "weak"), ("weak", "strong"))
    rates = weak if which == "weak" else strong
    if rates is None:
        raise InvalidValue(f"reference: {cfg['name']} needs the {which} reference's pass rates, "
                           "and none were given")
    return rates


def _uniform(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int) -> Selector:
    return UniformSelector(n, seed=seed)


def _offline_band(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int) -> Selector:
    return OfflineBandSelector(n, _reference(cfg, weak, strong), lo=cfg.get("lo", 0.2),
                               hi=cfg.get("hi", 0.8), seed=seed)


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
    return name in ("bots", "implicit_only") and float(cfg.get("rho", 0.0)) > 0.0


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
    if resolved.get("m", 0) is None:
        if group_size is None:
            raise InvalidValue(f"{key}.m is null (= the rollout group size) but no group size was "
                               "given; set m or pass group_size")
        resolved["m"] = group_size
    try:
        return BUILDERS[name](resolved, n_tasks, weak, strong, seed)
    except InvalidValue as err:
        raise InvalidValue(f"{key}.{err}") from None
