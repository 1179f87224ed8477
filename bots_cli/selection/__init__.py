"""The selection core: Bayesian Online Task Selection, its baselines and published rivals.

Pure numpy: no torch, no model, no files, no network (DESIGN.md §3).
"""

from bots_cli.selection.adarft import AdarftSelector
from bots_cli.selection.base import Selector
from bots_cli.selection.baselines import Easy2HardSelector, OfflineBandSelector, UniformSelector
from bots_cli.selection.bots import BotsSelector
from bots_cli.selection.build import build_selector, needs_references
from bots_cli.selection.dps import DpsSelector
from bots_cli.selection.greso import GresoSelector
from bots_cli.selection.implicit import (
    ImplicitEvidence,
    InterpolationEvidence,
    batch_capability,
    interpolate_pass_rates,
)
from bots_cli.selection.learnability import LearnabilitySelector
from bots_cli.selection.pooled import GroupEvidence, NeighbourEvidence
from bots_cli.selection.posterior import posterior_mean, update_posterior
from bots_cli.selection.schedules import LamSchedule, RhoSchedule
from bots_cli.selection.speed import (
    Screened,
    ScreeningSelector,
    SpeedSelector,
    check_screening,
    refuse_screening,
    screen_rounds,
)

__all__ = [
    "AdarftSelector",
    "BotsSelector",
    "DpsSelector",
    "Easy2HardSelector",
    "GresoSelector",
    "GroupEvidence",
    "ImplicitEvidence",
    "InterpolationEvidence",
    "LamSchedule",
    "LearnabilitySelector",
    "NeighbourEvidence",
    "OfflineBandSelector",
    "RhoSchedule",
    "Screened",
    "ScreeningSelector",
    "Selector",
    "SpeedSelector",
    "UniformSelector",
    "batch_capability",
    "build_selector",
    "check_screening",
    "interpolate_pass_rates",
    "needs_references",
    "posterior_mean",
    "refuse_screening",
    "screen_rounds",
    "update_posterior",
]
