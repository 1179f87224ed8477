"""One record of selection: what every trainer does with its selector, written once.

The native loop (train/loop.py), the TRL adapter (integrations/trl) and the verl sampler
(integrations/verl) each hold one `SelectionRecord` over their pool and keep only what their engine
needs (generating, gathering, batching). For every sampling round the record goes through

    select      the selector picks n tasks; the prediction at selection (the posterior mean
                α/(α+β) of each, NaN for selectors without a posterior) is kept for the records
    evidence    the round's rewards, one per completion with its task index, become each task's
                (successes, trials) by the success rule (DESIGN.md §1.6, feedback.py); a group is
                *informative* when its scored rewards are not all equal (a GRPO signal)
    update      the evidence goes to the selector (with `delay` k > 0, after k more steps'
                batches were selected: `end_step`, below)
    counters    `ever_selected` (tasks the selector has been told about), `rollouts` and `tokens`
                (every completion generated and its tokens, trained on or not; `spend` adds
                those no update reports, e.g. SPEED's screened-out candidates)

and then gives a step's selection metrics, under the names every trainer logs:

    train/etr                 ETR of every task of the step's evidence (all rounds)
    train/zero_variance_share share of the groups trained on whose rewards are all equal
    train/sampling_rounds     rounds the step took (1 without dynamic sampling)
    train/rollouts            completions generated so far (cumulative)
    train/tokens              completion tokens generated so far (cumulative)
    selector/explored_share   share of the pool the selector has been told about
    selector/posterior_mean_of_selected   mean prediction at selection (selectors with one)
    selector/*                the selector's own `metrics()`

With `delay` k > 0 (asynchronous RL's staleness on the selection side, DESIGN.md §1.8), every
round's evidence of step t is held back and goes to the selector, in the order it came, at the
`end_step()` of step t + k: after step t + k's batch was selected. Meanwhile the selector keeps
step t's tasks pending, so it never selects them again before their feedback arrives. What is
held back is part of the state (`feedback_in_flight`); the last k steps' evidence is still
held when a run ends.

Its state (`state_dict`) is the selector's full state with the counters; a state written before
the counters existed (an older checkpoint) continues them from the run's records where the
trainer keeps any (`recorded_costs`: the native loop and TRL read metrics.jsonl), and otherwise
from 0, with a warning that says so. Numpy only.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bots_cli.metrics import effective_task_ratio
from bots_cli.selection.dynamic import informative, posterior_means
from bots_cli.selection.feedback import SuccessRule, task_evidence
from bots_cli.selection.speed import refuse_screening

# The record's step metrics, in the order they are logged (selector/* follow).
METRICS = ("train/etr", "train/zero_variance_share", "train/sampling_rounds", "train/rollouts",
           "train/tokens", "selector/explored_share", "selector/posterior_mean_of_selected")
COUNTS = ("train/sampling_rounds", "train/rollouts", "train/tokens")  # whole numbers


@dataclass(frozen=True)
class Feedback:
    """One round's evidence as the selector receives it: `update(ids, successes, trials)`, or,
    when not one completion was scored, `release(tasks)`."""

    tasks: np.ndarray  # (m,) the round's tasks, scored or not
    ids: np.ndarray  # (k,) the tasks with a scored completion
    successes: np.ndarray  # (k,)
    trials: np.ndarray  # (k,)

    def deliver(self, selector: Any) -> None:
        if self.ids.size:
            selector.update(self.ids, self.successes, self.trials)
        elif self.tasks.size:  # not one scored completion: the round's tasks are free again
            selector.release(self.tasks)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k).copy() for k in ("tasks", "ids", "successes", "trials")}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Feedback:
        return cls(np.asarray(state["tasks"], dtype=np.int64),
                   np.asarray(state["ids"], dtype=np.int64),
                   np.asarray(state["successes"], dtype=np.float64),
                   np.asarray(state["trials"], dtype=np.float64))


@dataclass
class Evidence:
    """What the selector was told about one sampling round: its tasks in the order of their first
    completion (a task without one scored completion is left out, feedback.py)."""

    round: int  # 1-based within the step; 1 without dynamic sampling
    ids: np.ndarray  # (k,) task indices
    successes: np.ndarray  # (k,)
    trials: np.ndarray  # (k,) scored completions
    predicted: np.ndarray  # (k,) the posterior mean at selection (NaN: no posterior)
    informative: np.ndarray  # (k,) bool: the task's scored rewards are not all equal
    trained: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # (k,) bool: the group is in the batch the update trained on (`mark_trained`)

    def __post_init__(self) -> None:
        if len(self.trained) != len(self.ids):
            self.trained = np.zeros(len(self.ids), dtype=bool)


def mark_trained(rounds: Sequence[Evidence], group_tasks: Sequence[np.ndarray],
                 batch: Sequence[tuple[int, int]]) -> None:
    """Flag the evidence of the batch's groups: `batch` holds (round, group) pairs, and
    `group_tasks[r][j]` is the task of group j of round r (a group is found by its task, since a
    round's evidence leaves out a group without a single scored reward)."""
    for ev in rounds:
        ev.trained = np.zeros(len(ev.ids), dtype=bool)
    for r, j in batch:
        rounds[r].trained |= rounds[r].ids == int(group_tasks[r][j])


class SelectionRecord:
    """One selector over one pool: selecting, evidence, update, counters, metrics and state.

    `rule` turns rewards into successes (DESIGN.md §1.6; the default takes rewards in [0, 1]).
    `recorded_costs()` gives (rollouts, tokens) generated so far from the run's records; it is
    called only to load a state written before the counters were saved in it. `screening` says
    that the trainer runs a screening selector's rounds (speed.py); without it one is refused.
    `delay` k: each step's evidence reaches the selector k steps later (module docstring); a
    trainer calls `end_step` once per step (after its rounds were fed).
    """

    def __init__(self, selector: Any, rule: SuccessRule | None = None,
                 recorded_costs: Callable[[], tuple[int, int]] | None = None,
                 screening: bool = False, delay: int = 0) -> None:
        if not screening:  # the trainer does not run SPEED's screening rounds (speed.py)
            refuse_screening(selector)
        self.delay = delay
        self.steps_ended = 0  # trainer steps so far (`end_step`)
        self.in_flight: list[tuple[int, list[Feedback]]] = []  # (step, its rounds), oldest first
        self._this_step: list[Feedback] = []  # held back until `end_step`
        self.selector = selector
        self.rule = rule or SuccessRule()
        self.recorded_costs = recorded_costs
        self.ever_selected = np.zeros(self.n_tasks, dtype=bool)
        self.rollouts = 0  # completions generated so far
        self.tokens = 0  # their tokens
        self._at_selection = np.full(self.n_tasks, np.nan)  # each task's last prediction

    @property
    def n_tasks(self) -> int:
        return int(self.selector.n_tasks)

    # -- one round -----------------------------------------------------------------------------

    def select(self, n: int) -> np.ndarray:
        """n distinct task indices (int64); their prediction at selection is kept."""
        ids = np.asarray(self.selector.select(n), dtype=np.int64)
        self._at_selection[ids] = posterior_means(self.selector, ids)
        return ids

    def predicted(self, ids: np.ndarray) -> np.ndarray:
        """The prediction each task was last selected with (NaN: no posterior)."""
        return self._at_selection[np.asarray(ids, dtype=np.int64)].copy()

    def feed(self, tasks: np.ndarray, rewards: np.ndarray, tokens: int,
             round: int = 1) -> Evidence:
        """One round's outcome: `tasks` and `rewards` align over its completions (every one
        generated, NaN for an unscorable one), `tokens` is their total length. The evidence goes
        to the selector and the counters; returns it."""
        order = np.asarray(tasks, dtype=np.int64)
        scores = np.asarray(rewards, dtype=np.float64)
        ids, successes, trials = task_evidence(order, scores, self.rule)
        groups = [scores[(order == i) & ~np.isnan(scores)] for i in ids]
        feedback = Feedback(np.unique(order), ids, successes, trials)
        if self.delay:
            self._this_step.append(feedback)
        else:
            feedback.deliver(self.selector)
        self.ever_selected[ids] = True
        self.rollouts += int(order.size)
        self.tokens += int(tokens)
        return Evidence(round=round, ids=ids, successes=successes, trials=trials,
                        predicted=self.predicted(ids), informative=informative(groups))

    def end_step(self) -> int | None:
        """The end of a trainer's step t (counted here from 1, across resumes). With a delay k,
        step t's evidence goes in flight and step t − k's reaches the selector (every round, in
        order). Returns the step whose evidence arrived (None: none yet, or no delay)."""
        self.steps_ended += 1
        if not self.delay:
            return None
        self.in_flight.append((self.steps_ended, self._this_step))
        self._this_step = []
        if len(self.in_flight) <= self.delay:
            return None
        arrived, rounds = self.in_flight.pop(0)
        for feedback in rounds:
            feedback.deliver(self.selector)
        return arrived

    def spend(self, rollouts: int, tokens: int) -> None:
        """Completions generated that reach the selector through no `feed` (a screening
        selector's candidates that were screened and not trained on): counted all the same."""
        self.rollouts += int(rollouts)
        self.tokens += int(tokens)

    # -- one step ------------------------------------------------------------------------------

    def metrics(self, rounds: Sequence[Evidence]) -> dict[str, Any]:
        """A step's selection metrics (the module docstring), from its rounds' evidence with the
        groups trained on flagged."""
        successes = np.concatenate([ev.successes for ev in rounds]) if rounds else np.zeros(0)
        trials = np.concatenate([ev.trials for ev in rounds]) if rounds else np.zeros(0)
        signal = (np.concatenate([ev.informative[ev.trained] for ev in rounds]) if rounds
                  else np.zeros(0, dtype=bool))
        out: dict[str, Any] = {
            "train/etr": effective_task_ratio(successes, trials) if trials.size else np.nan,
            "train/zero_variance_share": float(1.0 - signal.mean()) if signal.size else np.nan,
            "train/sampling_rounds": len(rounds),
            "train/rollouts": self.rollouts,
            "train/tokens": self.tokens,
            "selector/explored_share": float(self.ever_selected.mean()),
        }
        out.update(self.selector.metrics())
        predicted = np.concatenate([ev.predicted for ev in rounds]) if rounds else np.zeros(0)
        if predicted.size and not np.isnan(predicted).all():  # selectors with a posterior
            out["selector/posterior_mean_of_selected"] = float(np.mean(predicted))
        return out

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The selector's full state, the counters, the pending predictions and (with a delay)
        the evidence in flight."""
        return {"selector": self.selector.state_dict(),
                "ever_selected": self.ever_selected.copy(),
                "rollouts": self.rollouts, "tokens": self.tokens,
                "at_selection": self._at_selection.copy(),
                "steps_ended": self.steps_ended,
                "feedback_in_flight": [(step, [f.state_dict() for f in rounds])
                                       for step, rounds in self.in_flight]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.selector.load_state_dict(copy.deepcopy(state["selector"]))
        self.ever_selected = np.asarray(state["ever_selected"], dtype=bool).copy()
        if "rollouts" in state:
            self.rollouts, self.tokens = int(state["rollouts"]), int(state["tokens"])
        elif self.recorded_costs is not None:  # written before the counters were saved
            self.rollouts, self.tokens = (int(v) for v in self.recorded_costs())
        else:
            warnings.warn("the state to resume from was written before train/rollouts and "
                          "train/tokens were saved in it, and this trainer keeps no records "
                          "to rebuild them from: both count from 0 at this resume",
                          stacklevel=2)
            self.rollouts = self.tokens = 0
        at = state.get("at_selection")
        self._at_selection = (np.full(self.n_tasks, np.nan) if at is None
                              else np.asarray(at, dtype=np.float64).copy())
        self.steps_ended = int(state.get("steps_ended", 0))
        self.in_flight = [(int(step), [Feedback.from_state(f) for f in rounds])
                          for step, rounds in state.get("feedback_in_flight", [])]
        self._this_step = []
