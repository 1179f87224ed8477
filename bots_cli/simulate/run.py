"""`bots simulate`: compare task selectors on the synthetic world of `world.py`.

For each seed, one world is drawn and every selector trains its own copy of the same starting
learner on it, with its own rollouts, so the comparison against the baseline is paired by seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bots_cli.analysis.comparison import Curve
from bots_cli.atomic import write_text
from bots_cli.checks import check_int, check_range
from bots_cli.errors import InvalidValue
from bots_cli.metrics import effective_task_ratio, zero_variance_share
from bots_cli.selection import (
    ScreeningSelector,
    Selector,
    build_selector,
    check_screening,
    screen_rounds,
)
from bots_cli.simulate import report
from bots_cli.simulate.world import Learner, World, WorldParams


@dataclass(frozen=True)
class SimParams:
    """The `simulate` config section (values and their meaning live in conf/simulate.yaml)."""

    seeds: int
    steps: int
    batch_size: int
    group_size: int
    eval_every: int
    baseline: str
    plot: bool

    @classmethod
    def from_config(cls, cfg: Any, world: WorldParams) -> SimParams:
        p = cls(
            seeds=check_int("simulate.seeds", cfg["seeds"], lo=1),
            steps=check_int("simulate.steps", cfg["steps"], lo=1),
            batch_size=check_int("simulate.batch_size", cfg["batch_size"], lo=1),
            group_size=check_int("simulate.group_size", cfg["group_size"], lo=2),
            eval_every=check_int("simulate.eval_every", cfg["eval_every"], lo=1),
            baseline=str(cfg["baseline"]),
            plot=bool(cfg["plot"]),
        )
        if p.batch_size > world.n_tasks:
            raise InvalidValue(f"simulate.batch_size ({p.batch_size}) must be ≤ world.n_tasks "
                               f"({world.n_tasks})")
        k = world.feedback_delay
        if p.batch_size * (k + 1) > world.n_tasks:
            raise InvalidValue(f"simulate.batch_size ({p.batch_size}) × (world.feedback_delay "
                               f"({k}) + 1) must be ≤ world.n_tasks ({world.n_tasks}): {k} "
                               "batches await their feedback while the next one is selected")
        return p


def selector_configs(cfg: Any) -> dict[str, tuple[str, Any]]:
    """The selectors to compare by name, each with its config key and config: `selector`, then
    `compare.*` (a name already taken is skipped). The studied selector is named by its config
    choice when that differs from its `name` (selector=greedy, a file of your --config-dir that
    extends bots), as `bots report` names runs."""
    out = {_selector_label(cfg): ("selector", cfg.selector)}
    for key, sel_cfg in (cfg.get("compare") or {}).items():
        if sel_cfg is not None:
            out.setdefault(str(sel_cfg.name), (f"compare.{key}", sel_cfg))
    return out


def _selector_label(cfg: Any) -> str:
    """`selector`'s config-group choice (from Hydra's runtime, or the composed config's hydra
    node when checked before the job runs), else its `name`."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    name = str(cfg.selector.name)
    if HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
    else:
        choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None) or {}
    choice = choices.get("selector")
    return str(choice) if choice else name


def _build(sel_cfg: Any, world: World, seed: int, group_size: int, key: str) -> Selector:
    sel = build_selector(sel_cfg, n_tasks=world.params.n_tasks, weak=world.weak,
                         strong=world.strong, seed=seed, group_size=group_size, key=key,
                         columns=world.columns, screening=True)
    check_screening(sel, group_size, "simulate.group_size", key)
    return sel


def run_one(
    world: World, selector: Selector, sim: SimParams, seed: int
) -> tuple[list[dict[str, Any]], Curve]:
    """Train a fresh learner with `selector`; return per-step rows and the eval curve.

    With `world.feedback_delay` = k, step t's outcomes reach the selector after step t+k's batch
    was selected (`selector/fed_back_step` says whose arrived at each step); what is still in
    flight when the budget ends arrives after the last step, in the last step's
    `time/selector_update`. A row's `train/*` values are its own batch's rollouts, its
    `selector/*` values the selector's after the feedback that arrived at that step.
    """
    delay = world.params.feedback_delay
    flight: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (step, ids, s, n)
    rng = np.random.default_rng([seed, 0x5EED])
    learner = Learner.start(world)
    explored = np.zeros(world.params.n_tasks, dtype=bool)
    rollouts = 0  # every simulated rollout, screening (SPEED) included
    screener = selector if isinstance(selector, ScreeningSelector) else None

    def draw(ids: np.ndarray, n: int) -> np.ndarray:
        """(len(ids), n) rewards in {0, 1} of the learner as it is now."""
        p = learner.success_prob(world, ids)
        return (rng.random((len(ids), n)) < p[:, None]).astype(np.float64)

    rows: list[dict[str, Any]] = []
    curve: Curve = [(0, learner.heldout_accuracy(world))]
    for step in range(1, sim.steps + 1):
        t0 = time.perf_counter()
        if screener is not None:  # SPEED's rounds (selection/speed.py), rollouts simulated inside
            screened = screen_rounds(screener, sim.batch_size, draw)
            ids = screened.ids
        else:
            ids = selector.select(sim.batch_size)
        t1 = time.perf_counter()
        if screener is not None:  # a kept task's screening rollouts are the first of its group
            rest = draw(ids, sim.group_size - screened.rewards.shape[1])
            rewards = np.concatenate([screened.rewards, rest], axis=1)
            rollouts += screened.rollouts + rest.size
        else:
            rewards = draw(ids, sim.group_size)
            rollouts += rewards.size
        successes = rewards.sum(axis=1)
        trials = np.full(len(ids), float(sim.group_size))
        learner.learn(world, ids, rewards, step)
        flight.append((step, ids, successes, trials))
        t2 = time.perf_counter()
        fed_back = None
        if len(flight) > delay:  # step t − k's feedback, now that step t's batch was selected
            fed_back, *feedback = flight.pop(0)
            selector.update(*feedback)
        if step == sim.steps:  # the budget is spent: what is still in flight arrives
            for _, *feedback in flight:
                selector.update(*feedback)
        t3 = time.perf_counter()
        explored[ids] = True
        row = {
            "step": step,
            "train/reward_mean": float(successes.sum() / trials.sum()),
            "train/etr": effective_task_ratio(successes, trials),
            "train/zero_variance_share": zero_variance_share(rewards),
            "train/rollouts": rollouts,
            "selector/capability": getattr(selector, "capability", None),
            **selector.metrics(),
            "selector/explored_share": float(explored.mean()),
            "time/select": t1 - t0,
            "time/selector_update": t3 - t2,
        }
        if delay:
            row["selector/fed_back_step"] = fed_back
        if step % sim.eval_every == 0 or step == sim.steps:
            acc = learner.heldout_accuracy(world)
            curve.append((step, acc))
            row["eval/accuracy"] = acc
        rows.append(row)
    return rows, curve


@dataclass
class Simulation:
    """A checked `bots simulate` config: what runs, on which worlds."""

    world: WorldParams
    sim: SimParams
    seed0: int
    configs: dict[str, tuple[str, Any]]  # selector name -> (config key, config)
    probe: World  # the first seed's world, on which every selector was built once


def check_config(cfg: Any) -> Simulation:
    """Every value of a `bots simulate` config checked (each selector built once on the first
    seed's world), before anything is written; a bad value is one `UserError` line."""
    check_range("lambda (forgetting factor)", cfg["lambda"], 0.0, 1.0)
    world_params = WorldParams.from_config(cfg.world)
    sim = SimParams.from_config(cfg.simulate, world_params)
    seed0 = check_int("seed", cfg.seed, lo=0)
    configs = selector_configs(cfg)
    for key, sel_cfg in configs.values():
        _check_success(key, sel_cfg)
    if not world_params.references:  # compared selectors that need references sit this out
        from bots_cli.selection.build import needs_references

        if needs_references(cfg.selector):
            raise InvalidValue(f"selector={cfg.selector.name} reads reference pass rates, and "
                               "world.references=false has none; choose a selector without "
                               "them (selector=mopps, uniform, or selector.rho=0), or set "
                               "world.references=true")
        skipped = [n for n, (key, c) in configs.items() if key != "selector"
                   and needs_references(c)]
        for name in skipped:
            del configs[name]
    if sim.baseline not in configs:
        raise InvalidValue(f"simulate.baseline ({sim.baseline!r}) must be one of the compared "
                           f"selectors: {', '.join(configs)}")
    # Build every selector once on a first world before running anything: bad values fail now.
    probe = World.generate(world_params, seed0)
    for key, sel_cfg in configs.values():
        sel = _build(sel_cfg, probe, seed0, sim.group_size, key)
        try:  # the batches in flight at once fit in its pool (offline_band's band may be small)
            for _ in range(world_params.feedback_delay + 1):
                sel.select(sim.batch_size)
        except InvalidValue as err:
            raise InvalidValue(f"{key}: {err}") from None
    return Simulation(world_params, sim, seed0, configs, probe)


def _check_success(key: str, sel_cfg: Any) -> None:
    """The simulated rollouts are successes (0 or 1) already: a rule mapping rewards to
    successes (`selector.success`) would change nothing, so setting one is refused."""
    success = sel_cfg.get("success") or {}
    for name, value in success.items():
        if value is not None:
            raise InvalidValue(f"{key}.success.{name}={value}: bots simulate's rollouts are "
                               "successes (0 or 1) already, so no reward is mapped; drop it "
                               "(it applies to bots train)")


def simulate(cfg: Any) -> dict[str, Any]:
    """Run every selector on `simulate.seeds` worlds; write curves, summary, plot; print a table."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    checked = check_config(cfg)
    world_params, sim, seed0 = checked.world, checked.sim, checked.seed0
    configs, probe = checked.configs, checked.probe
    skipped = [n for n in selector_configs(cfg) if n not in configs]
    if skipped:
        print(f"world.references=false: not comparing {', '.join(skipped)} (they read "
              "reference pass rates)")

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    rows: list[dict[str, Any]] = []
    curves: dict[str, dict[int, Curve]] = {name: {} for name in configs}
    started = time.perf_counter()
    for seed in range(seed0, seed0 + sim.seeds):
        world = probe if seed == seed0 else World.generate(world_params, seed)
        for name, (key, sel_cfg) in configs.items():
            selector = _build(sel_cfg, world, seed, sim.group_size, key)
            run_rows, curve = run_one(world, selector, sim, seed)
            rows += [{"selector": name, "seed": seed, **r} for r in run_rows]
            curves[name][seed] = curve
    summary = report.summarise(curves, rows, baseline=sim.baseline, steps=sim.steps,
                               seeds=sim.seeds)
    summary["wall_time_s"] = time.perf_counter() - started
    report.write_outputs(run_dir, rows, curves, summary, plot=sim.plot)
    report.print_table(summary, run_dir)
    return summary
