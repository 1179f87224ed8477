"""`build_selector`: a selector from its Hydra config group (`conf/selector/*.yaml`).

The BOTS family's extensions are assembled here too (DESIGN.md §1.5): the implicit plug-in
(`implicit.name`: the references' interpolation, task groups of a column, or the k-NN graph of
an embedding), the per-task prior (`prior_from`) and the ρ/λ schedules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from bots_cli.checks import check_choice, check_range, check_rates
from bots_cli.errors import InvalidValue
from bots_cli.selection.adarft import AdarftSelector
from bots_cli.selection.base import Selector
from bots_cli.selection.baselines import Easy2HardSelector, OfflineBandSelector, UniformSelector
from bots_cli.selection.bots import BotsSelector
from bots_cli.selection.dps import DpsSelector
from bots_cli.selection.greso import GresoSelector
from bots_cli.selection.implicit import ImplicitEvidence, InterpolationEvidence
from bots_cli.selection.learnability import LearnabilitySelector
from bots_cli.selection.speed import SpeedSelector, refuse_screening

_BOTS_KEYS = ("lam", "rho", "target", "m", "gamma", "prior", "mode", "tau", "rho_schedule",
              "rho_threshold", "lam_schedule")
IMPLICIT = ("interpolation", "groups", "knn")
PRIOR_FROM = ("weak", "strong")


def _keys(cfg: Mapping[str, Any], *keys: str) -> list[Any]:
    """The values of `keys` in a selector's config: conf/selector/ holds every default, so a
    missing key is an error rather than a silent second default."""
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise InvalidValue(f"{missing[0]} is missing from the {cfg.get('name')} selector's config "
                           f"(its keys: {', '.join(keys)}); start from conf/selector/")
    return [cfg[k] for k in keys]


def _bots(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int,
          columns: Any = None) -> Selector:
    kwargs = dict(zip(_BOTS_KEYS, _keys(cfg, *_BOTS_KEYS), strict=True))
    kwargs["prior"] = _prior(cfg, tuple(kwargs["prior"]), n, weak, strong)
    implicit = _implicit(cfg, n, weak, strong, columns, kwargs["prior"], kwargs["gamma"])
    sel = BotsSelector(n, weak=weak, strong=strong, seed=seed, implicit=implicit, **kwargs)
    sel.name = str(cfg["name"])  # mopps, implicit_only, bots_calibrated: BOTS under another name
    return sel


def _prior(cfg: Mapping[str, Any], prior: tuple[Any, Any], n: int, weak: Any,
           strong: Any) -> tuple[Any, Any]:
    """(a0, b0), or per task (a0 + c·r_k, b0 + c·(1 − r_k)) from `prior_from`'s pass rates r."""
    source, strength = _keys(cfg, "prior_from", "prior_strength")
    if source is None:
        return prior
    which = check_choice("prior_from", source, PRIOR_FROM)
    rates = weak if which == "weak" else strong
    if rates is None:
        raise InvalidValue(f"prior_from={which}: the {which} reference's pass rates are needed "
                           "and none were given; profile it or set prior_from=null")
    r = check_rates(which, rates, n)
    c = check_range("prior_strength", strength, 0.0, lo_open=True)
    a0 = check_range("prior a0", prior[0], 0.0, lo_open=True)
    b0 = check_range("prior b0", prior[1], 0.0, lo_open=True)
    return a0 + c * r, b0 + c * (1.0 - r)


def _implicit(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, columns: Any,
              prior: tuple[Any, Any], gamma: float) -> ImplicitEvidence | None:
    """The plug-in `implicit.name` asks for; None leaves the interpolation to BotsSelector."""
    spec = dict(_keys(cfg, "implicit")[0])
    name = check_choice("implicit.name", spec.get("name"), IMPLICIT)
    if name == "interpolation":
        return None
    fallback = None
    if weak is not None and strong is not None:  # groups never observed: the interpolation
        fallback = InterpolationEvidence(check_rates("weak", weak, n),
                                         check_rates("strong", strong, n), gamma)
    a0, b0 = prior
    options = {"forget": spec["forget"], "smoothing": spec["smoothing"],
               "prior_mean": a0 / (a0 + b0), "fallback": fallback}
    if columns is None:
        raise InvalidValue(f"implicit.name={name} reads the task table, and none was given")
    if name == "groups":
        from bots_cli.selection.pooled import GroupEvidence

        column = spec.get("column")
        if column is None or column not in columns:
            known = ", ".join(str(c) for c in columns)  # a mapping's or a DataFrame's names
            raise InvalidValue(f"implicit.column={column}: groups need a column of the task "
                               f"table that groups tasks (its columns: {known})")
        return GroupEvidence(np.asarray(columns[column]), **options)
    from bots_cli.selection.graph import knn_graph, task_vectors
    from bots_cli.selection.pooled import NeighbourEvidence

    neighbours, weights = knn_graph(task_vectors(columns, spec.get("column")), spec["k"])
    return NeighbourEvidence(neighbours, weights, **options)


def _mopps(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int,
           columns: Any = None) -> Selector:
    if float(_keys(cfg, "rho")[0]) != 0.0:
        raise InvalidValue(f"rho: mopps is BOTS with rho = 0, got rho={cfg['rho']}; use "
                           "selector=bots to weight implicit evidence")
    return _bots(cfg, n, weak, strong, seed, columns)


def _implicit_only(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int,
                   columns: Any = None) -> Selector:
    lam, rho = _keys(cfg, "lam", "rho")
    if float(lam) != 1.0 or float(rho) != 1.0:
        raise InvalidValue(f"lam/rho: implicit_only is BOTS with lam = rho = 1, got "
                           f"lam={lam}, rho={rho}; use selector=bots instead")
    return _bots(cfg, n, weak, strong, seed, columns)


def _bots_calibrated(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int,
                     columns: Any = None) -> Selector:
    if _keys(cfg, "rho_schedule")[0] != "calibrated":
        raise InvalidValue(f"rho_schedule: bots_calibrated is BOTS with rho_schedule=calibrated, "
                           f"got {cfg['rho_schedule']}; use selector=bots for another schedule")
    return _bots(cfg, n, weak, strong, seed, columns)


def _reference(cfg: Mapping[str, Any], weak: Any, strong: Any) -> Any:
    which = check_choice("reference", _keys(cfg, "reference")[0], ("weak", "strong"))
    rates = weak if which == "weak" else strong
    if rates is None:
        raise InvalidValue(f"reference: {cfg['name']} needs the {which} reference's pass rates, "
                           "and none were given")
    return rates


def _uniform(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int,
             columns: Any = None) -> Selector:
    return UniformSelector(n, seed=seed)


def _offline_band(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int,
                  columns: Any = None) -> Selector:
    lo, hi = _keys(cfg, "lo", "hi")
    return OfflineBandSelector(n, _reference(cfg, weak, strong), lo=lo, hi=hi, seed=seed)


def _easy2hard(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int,
               columns: Any = None) -> Selector:
    return Easy2HardSelector(n, _reference(cfg, weak, strong), seed=seed)


def _dps(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int,
         columns: Any = None) -> Selector:
    decay, prior_alpha, ratio = _keys(cfg, "decay", "prior_alpha", "candidate_ratio")
    return DpsSelector(n, decay=decay, prior_alpha=prior_alpha, candidate_ratio=ratio, seed=seed)


def _greso(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int,
           columns: Any = None) -> Selector:
    keys = ("p_easy", "p_hard", "target_zero_variance", "step", "p_min", "p_max", "min_keep")
    return GresoSelector(n, seed=seed, **dict(zip(keys, _keys(cfg, *keys), strict=True)))


def _speed(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int,
           columns: Any = None) -> Selector:
    ratio, rollouts, rounds = _keys(cfg, "screen_ratio", "screen_rollouts", "max_rounds")
    return SpeedSelector(n, screen_ratio=ratio, screen_rollouts=rollouts, max_rounds=rounds,
                         seed=seed)


def _learnability(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int,
                  columns: Any = None) -> Selector:
    momentum, prior_rate, explore = _keys(cfg, "momentum", "prior_rate", "explore")
    return LearnabilitySelector(n, momentum=momentum, prior_rate=prior_rate, explore=explore,
                                seed=seed)


def _adarft(cfg: Mapping[str, Any], n: int, weak: Any, strong: Any, seed: int,
            columns: Any = None) -> Selector:
    keys = ("target_reward", "sensitivity", "step_size", "min_difficulty", "max_difficulty",
            "initial_difficulty")
    return AdarftSelector(n, _reference(cfg, weak, strong), seed=seed,
                          **dict(zip(keys, _keys(cfg, *keys), strict=True)))


BUILDERS: dict[str, Callable[..., Selector]] = {
    "bots": _bots,
    "bots_calibrated": _bots_calibrated,
    "mopps": _mopps,
    "implicit_only": _implicit_only,
    "uniform": _uniform,
    "offline_band": _offline_band,
    "easy2hard": _easy2hard,
    "dps": _dps,
    "greso": _greso,
    "speed": _speed,
    "learnability": _learnability,
    "adarft": _adarft,
}
# Published rivals (docs/rivals.md) that read no reference pass rates.
_NO_REFERENCES = ("uniform", "dps", "greso", "speed", "learnability")


def needs_references(cfg: Mapping[str, Any]) -> bool:
    """Whether the configured selector reads reference pass rates: the reference-ordered
    baselines and AdaRFT (its offline difficulty), a per-task prior from a reference, and the
    interpolation plug-in when implicit evidence is weighted (ρ > 0, or a ρ schedule that may
    raise it). DPS, GRESO, SPEED and learnability ignore references."""
    name = cfg.get("name")
    if name in ("offline_band", "easy2hard", "adarft"):
        return True
    if name not in BUILDERS or name in _NO_REFERENCES:
        return False
    if cfg["prior_from"] is not None:
        return True
    weighted = float(cfg["rho"]) > 0.0 or cfg["rho_schedule"] != "constant"
    return weighted and dict(cfg["implicit"])["name"] == "interpolation"


def build_selector(
    cfg: Mapping[str, Any],
    *,
    n_tasks: int,
    weak: np.ndarray | None = None,
    strong: np.ndarray | None = None,
    seed: int = 0,
    group_size: int | None = None,
    key: str = "selector",
    columns: Any = None,
    screening: bool = False,
) -> Selector:
    """Build the selector a config describes: `cfg.name` picks it, the other keys are arguments.

    `selector.m: null` means "the rollout group size": pass `group_size`. Invalid values raise
    `InvalidValue` (a ValueError) whose message starts with the config key, e.g.
    ``selector.rho (implicit-evidence weight ρ) must be in [0, 1], got 1.5``; `key` is the prefix.
    `columns` is the task table (a DataFrame or a mapping of column name to one value per task),
    which the groups and knn plug-ins read. `screening` says that the caller runs the screening
    rounds of a `ScreeningSelector` (selection/speed.py; `bots simulate` does); without it such a
    selector is refused in one line, so that no trainer runs SPEED as if it were uniform.
    """
    name = check_choice(f"{key}.name", cfg.get("name"), tuple(BUILDERS))
    resolved = dict(cfg)
    if "m" in resolved and resolved["m"] is None:
        if group_size is None:
            raise InvalidValue(f"{key}.m is null (= the rollout group size) but no group size was "
                               "given; set m or pass group_size")
        resolved["m"] = group_size
    try:
        sel = BUILDERS[name](resolved, n_tasks, weak, strong, seed, columns)
    except InvalidValue as err:
        raise InvalidValue(f"{key}.{err}") from None
    if not screening:
        refuse_screening(sel, key)
    return sel


def check_selector_config(cfg: Mapping[str, Any], *, group_size: int, key: str = "selector",
                          screening: bool = False) -> Selector:
    """A selector config's hyperparameters checked without a task pool (before a sweep's first
    job, or before a run loads anything): it is built on a stand-in pool of a few tasks with
    pass rates of 0.5, the groups and knn plug-ins on a stand-in column, and returned (for the
    caller's own checks). What depends on the pool itself (its size, its columns, its reference
    profiles) is checked when it is loaded. `screening` as in `build_selector`."""
    from bots_cli.checks import check_int

    spec = dict(cfg)
    n = 4
    columns: dict[str, Any] = {"prompt": [f"task {i}" for i in range(n)]}
    implicit = spec.get("implicit")
    if implicit is not None:
        implicit = dict(implicit)
        name = check_choice(f"{key}.implicit.name", implicit.get("name"), IMPLICIT)
        if name == "knn":
            check_int(f"{key}.implicit.k", implicit.get("k"), lo=1)
        if name != "interpolation":  # forget and smoothing are checked by the groups plug-in
            implicit.update(name="groups", column="group")
            columns["group"] = np.zeros(n, dtype=np.int64)
        spec["implicit"] = implicit
    rates = np.full(n, 0.5)
    return build_selector(spec, n_tasks=n, weak=rates, strong=rates, seed=0,
                          group_size=group_size, key=key, columns=columns, screening=screening)
