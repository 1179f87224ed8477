"""`SpeedSelector`: SPEED-RL's screening (arXiv 2506.09016; code Zanette-Labs/speed-rl), and the
screening protocol a trainer follows to run it.

SPEED spends a few cheap rollouts on each candidate before committing the full group: a
candidate whose n0 screening rollouts are neither all successes nor all failures is kept, its
screening rollouts become the first n0 of its group, and the trainer samples the other G − n0.
One training step (`screen_rounds` runs its rounds; the trainer supplies the rollouts):

    round r      C = ⌈c·B⌉ candidates from the shuffled walk through the pool (`select(C)`),
                 n0 rollouts each; kept: 0 < s_k < n0 (`screen`); the first still needed are
                 taken, the rest released (`release`)
    rounds end   when B candidates are taken, or after `max_rounds` rounds; then the last round's
                 equal-reward candidates fill the batch up to B, in order
    the batch    each taken task gets G − n0 more rollouts; `update` reports its whole group

Rollouts spent per step: n0·Σ_r C_r for screening plus (G − n0)·B for the continuations; a
trainer running this selector counts both in `train/rollouts` and `train/tokens`.

The protocol (`ScreeningSelector`): `screen_rollouts` (n0), `max_rounds`, `screen_size(B)` (C),
`screen(ids, successes, trials)` (the keep decision; it records the screening, and the
candidates stay pending), and the base's `release(ids)` (candidates that will not be trained
on are free again, with no evidence). A runner that does not follow it must not build the
selector: `build_selector(..., screening=False)`, every trainer's way, refuses it in one line
(`refuse_screening`, which an adapter handed a ready selector calls too); `bots simulate` and
the native `bots train` run it (`check_screening` checks that n0 leaves room in the group).

Departures from the official code (docs/rivals.md): surplus kept candidates of a round are
released rather than buffered for the next step; when the rounds run out the batch is filled
from the last round's other candidates (the code raises an error); the keep rule is
0 < s < n0 on the summed rewards, which for graded rewards keeps a group of equal non-zero
rewards that the code's std > 0 would drop.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bots_cli.checks import check_int, check_range
from bots_cli.errors import InvalidValue
from bots_cli.selection.base import Selector
from bots_cli.selection.rivals import EpochWalk, check_same_settings


class ScreeningSelector(Selector):
    """A selector that screens its candidates with a few rollouts before the batch is fixed."""

    screen_rollouts: int  # n0: rollouts per candidate in a screening round
    max_rounds: int  # screening rounds per training step at most

    @abstractmethod
    def screen_size(self, batch_size: int) -> int:
        """C: candidates to screen per round for a batch of `batch_size`."""

    @abstractmethod
    def screen(self, ids: Any, successes: Any, trials: Any) -> np.ndarray:
        """(len(ids),) bool: which screened candidates to keep. `ids` are pending candidates
        from `select`; they stay pending until `update` (trained) or `release` (not: the
        base's, which frees them with no evidence)."""


class SpeedSelector(ScreeningSelector):
    """SPEED: keep the candidates whose screening rollouts were neither all right nor all wrong."""

    name = "speed"

    def __init__(self, n_tasks: int, *, screen_ratio: float, screen_rollouts: int,
                 max_rounds: int, seed: int = 0) -> None:
        """Hyperparameters as in conf/selector/speed.yaml, which holds their defaults."""
        super().__init__(n_tasks, seed)
        self.screen_ratio = check_range(
            "screen_ratio (candidates per screening round, as a multiple of the batch size)",
            screen_ratio, 1.0)
        self.screen_rollouts = check_int("screen_rollouts (n0, rollouts per candidate)",
                                         screen_rollouts, lo=2)
        self.max_rounds = check_int("max_rounds (screening rounds per step)", max_rounds, lo=1)
        self.walk = EpochWalk(self.n_tasks, self.rng)
        self.screened = 0  # candidates screened so far
        self.kept = 0  # of which kept

    def screen_size(self, batch_size: int) -> int:
        return int(np.ceil(self.screen_ratio * batch_size))

    def screen(self, ids: Any, successes: Any, trials: Any) -> np.ndarray:
        ids_a, s, n = self.check_feedback(ids, successes, trials)
        if not self.pending[ids_a].all():
            raise InvalidValue("screen: only pending candidates (from select) can be screened")
        keep = (s > 0) & (s < n)
        self.screened += ids_a.shape[0]
        self.kept += int(keep.sum())
        return keep

    def metrics(self) -> dict[str, float]:
        """`selector/screen_kept_share`: share of the candidates screened so far that were kept."""
        if not self.screened:
            return {}
        return {"selector/screen_kept_share": self.kept / self.screened}

    def _select(self, batch_size: int) -> np.ndarray:
        return self.walk.take(batch_size, self.pending, self.rng)[0]

    def _hparams(self) -> dict[str, Any]:
        return {"screen_ratio": self.screen_ratio, "screen_rollouts": self.screen_rollouts,
                "max_rounds": self.max_rounds}

    def _extra_state(self) -> dict[str, Any]:
        return {"hparams": self._hparams(), "walk": self.walk.state_dict(),
                "screened": self.screened, "kept": self.kept}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        check_same_settings(state["hparams"], self._hparams())
        self.walk.load_state_dict(state["walk"])
        self.screened, self.kept = int(state["screened"]), int(state["kept"])


def refuse_screening(selector: Selector, key: str = "selector") -> None:
    """One line for a runner that does not run the screening protocol and was handed a selector
    that needs it (`build_selector` calls it unless told `screening=True`; an adapter handed a
    ready selector can call it too)."""
    if isinstance(selector, ScreeningSelector):
        raise InvalidValue(f"{key}.name={selector.name}: this selector screens candidates with "
                           f"{selector.screen_rollouts} extra rollouts each before every batch, "
                           "a protocol only bots simulate and the native bots train run; "
                           "trainer=trl and the verl adapter cannot, so choose another selector "
                           "(or trainer=native)")


def check_screening(selector: Selector, group_size: int, group_key: str,
                    key: str = "selector") -> None:
    """A screening selector's n0 must leave room in the group: a kept task's screening rollouts
    are the first n0 of its `group_size` (named `group_key` in the message). Others pass."""
    if isinstance(selector, ScreeningSelector) and selector.screen_rollouts >= group_size:
        raise InvalidValue(f"{key}.screen_rollouts ({selector.screen_rollouts}) must be < "
                           f"{group_key} ({group_size}): a kept task's screening rollouts are "
                           "the first of its group")


@dataclass(frozen=True)
class Screened:
    """One step's screening: the batch, its screening rewards, and what screening cost."""

    ids: np.ndarray  # (b,) the batch, b ≤ batch_size (smaller only when the pool runs short)
    rewards: np.ndarray  # (b, n0) the batch's screening rewards, the first n0 of each group
    rollouts: int  # screening rollouts generated this step, kept or not
    rounds: int  # screening rounds run


def screen_rounds(selector: ScreeningSelector, batch_size: int,
                  rollout: Callable[[np.ndarray, int], np.ndarray],
                  select: Callable[[int], np.ndarray] | None = None) -> Screened:
    """Run one step's screening rounds (module docstring); `rollout(ids, n)` returns (len(ids),
    n) success shares in [0, 1] (NaN: an unscorable completion, left out of the candidate's
    trials; a candidate with none scored is not kept). `select(C)` picks the candidates (default
    `selector.select`; a trainer passes its selection record's). The batch's tasks stay pending:
    the trainer samples their other G − n0 rollouts and reports each whole group with
    `selector.update`."""
    n0 = selector.screen_rollouts
    pick = selector.select if select is None else select
    ids: list[np.ndarray] = []
    rewards: list[np.ndarray] = []
    have = spent = rounds = 0
    while have < batch_size and rounds < selector.max_rounds:
        rounds += 1
        free = selector.n_tasks - int(selector.pending.sum())
        cands = np.asarray(pick(min(selector.screen_size(batch_size), free)), dtype=np.int64)
        got = np.asarray(rollout(cands, n0), dtype=np.float64)  # (C, n0)
        spent += got.size
        trials = (~np.isnan(got)).sum(axis=1).astype(np.float64)
        scored = trials > 0
        keep = np.zeros(cands.shape[0], dtype=bool)
        if scored.any():
            keep[scored] = selector.screen(cands[scored], np.nansum(got[scored], axis=1),
                                           trials[scored])
        take = np.flatnonzero(keep)[: batch_size - have]
        if rounds == selector.max_rounds and have + take.shape[0] < batch_size:
            filler = np.flatnonzero(~keep)[: batch_size - have - take.shape[0]]
            take = np.sort(np.concatenate([take, filler]))
        unused = np.ones(cands.shape[0], dtype=bool)
        unused[take] = False
        selector.release(cands[unused])
        ids.append(cands[take])
        rewards.append(got[take])
        have += take.shape[0]
    return Screened(np.concatenate(ids), np.concatenate(rewards), spent, rounds)
