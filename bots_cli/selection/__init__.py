"""The selection core: Bayesian Online Task Selection and its baselines.

Pure numpy: no torch, no model, no files, no network (DESIGN.md §3).
"""

from bots_cli.selection.base import Selector
from bots_cli.selection.baselines import Easy2HardSelector, OfflineBandSelector, UniformSelector
from bots_cli.selection.bots import BotsSelector
from bots_cli.selection.build import build_selector, needs_references
from bots_cli.selection.implicit import (
    ImplicitEvidence,
    InterpolationEvidence,
    batch_capability,
    interpolate_pass_rates,
)
from bots_cli.selection.pooled import GroupEvidence, NeighbourEvidence
from bots_cli.selection.posterior import posterior_mean, update_posterior
from bots_cli.selection.schedules import LamSchedule, RhoSchedule

__all__ = [
    "BotsSelector",
    "Easy2HardSelector",
    "GroupEvidence",
    "ImplicitEvidence",
    "InterpolationEvidence",
    "LamSchedule",
    "NeighbourEvidence",
    "OfflineBandSelector",
    "RhoSchedule",
    "Selector",
    "UniformSelector",
    "batch_capability",
    "build_selector",
    "interpolate_pass_rates",
    "needs_references",
    "posterior_mean",
    "update_posterior",
]
