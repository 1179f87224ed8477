"""`BotsGRPOTrainer`: TRL's GRPOTrainer with a BOTS selector (or any baseline) choosing its tasks.

Tested with TRL 1.16 (`TESTED_TRL`); it relies on these GRPOTrainer methods, overridden with a
call to the original in each:

- `_get_train_sampler`: yields *slots* 0..S-1 in RepeatSampler's layout (each slot repeated
  `num_generations` times, the block repeated `num_iterations × steps_per_generation` times), so
  TRL's batching, sharding across processes and buffering stay exactly as they are;
- `_generate_and_score_completions`: at each generation batch, `selector.select(S)` picks the
  tasks and every slot's row is replaced by its task's row. Selecting here, not in the sampler,
  matters: accelerate's dataloader fetches one batch ahead, so a sampler would choose batch t+1
  before batch t's rewards reached the selector;
- `_calculate_rewards`: after TRL gathers every process's rewards, each task's successes and
  trials (`bots_cli.selection.feedback`, one rule for every trainer) go to `selector.update`, on
  every process, before the next batch is selected;
- `_save_checkpoint` / `_load_optimizer_and_scheduler`: the selector's full state (posterior,
  capability estimate, random generator) is written into every checkpoint as `bots_selector.pt`
  (before `save_total_limit` removes older checkpoints) and restored on `resume_from_checkpoint`.

With `dynamic_sampling=True` (bots_cli/selection/dynamic.py: DAPO-style, the same rule as the native
loop) a generation batch runs in rounds: each round is one call of the original
`_generate_and_score_completions` on freshly selected tasks and one selector update; then every
process gathers the rounds' tensors, keeps the rows of the batch's groups (informative first) and
takes its own share back (batches.py), so TRL's buffering, shuffling and loss see an ordinary
batch. A group is found by its task, not by its place in the round's feedback (which leaves out a
group without a single reward). Text-only: a round carrying image tensors is refused.

Every process builds the same selector (same seed) and receives the same gathered feedback, so
the selections agree; each generation batch checks that they do and stops with an error if not
(e.g. a selector seeded with the process rank).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bots_cli.errors import InvalidValue, UserError
from bots_cli.runs.checkpoints import TRL_STATE_FILE as STATE_FILE  # written into each checkpoint
from bots_cli.selection.feedback import SuccessRule, task_evidence

TESTED_TRL = (">=1.16.0", "<1.17")  # the TRL range this adapter was tested with (bots-cli[trl])


class UnsupportedVersion(UserError, ImportError):
    """The installed engine is outside the range an adapter was tested with."""


def check_trl_version(version: str | None = None) -> str:
    """The installed TRL version, or one line saying which range to install."""
    from packaging.specifiers import SpecifierSet

    if version is None:
        try:
            import trl
        except ImportError:
            raise UnsupportedVersion("TRL is not installed: pip install 'bots-cli[trl]'") from None
        version = str(trl.__version__)
    wanted = ",".join(TESTED_TRL)
    if version not in SpecifierSet(wanted):
        raise UnsupportedVersion(f"TRL {version} is installed, but BotsGRPOTrainer is tested with "
                                 f"trl{wanted}: pip install 'trl{wanted}' (or 'bots-cli[trl]')")
    return version


check_trl_version()

import torch  # noqa: E402 - after the version check, so a wrong TRL fails in one line
from torch.utils.data import Sampler  # noqa: E402
from trl import GRPOTrainer  # noqa: E402


class SlotSampler(Sampler[int]):
    """RepeatSampler's layout over `n_slots` placeholder rows; the tasks are chosen later.

    One generation batch reads rows 0..n_slots-1 of the dataset, each `mini_repeat_count` times,
    and the block is repeated `repeat_count` times (TRL reuses one generation for several
    steps). Its length is one epoch of the pool, as RepeatSampler's is.
    """

    def __init__(self, n_tasks: int, n_slots: int, mini_repeat_count: int,
                 repeat_count: int) -> None:
        self.n_tasks, self.n_slots = n_tasks, n_slots
        self.mini_repeat_count, self.repeat_count = mini_repeat_count, repeat_count

    def __iter__(self) -> Iterator[int]:
        block = [s for s in range(self.n_slots) for _ in range(self.mini_repeat_count)]
        for _ in range(self.n_tasks // self.n_slots):
            for _ in range(self.repeat_count):
                yield from block

    def __len__(self) -> int:
        return ((self.n_tasks // self.n_slots) * self.n_slots * self.mini_repeat_count
                * self.repeat_count)


@dataclass
class Feedback:
    """What the selector was told about one generation batch (its tasks in selection order)."""

    generation: int  # 1 for the first generation batch of the run
    global_step: int  # TRL's optimizer step when the batch was generated (it trains from +1)
    ids: np.ndarray  # (S,) selected task indices
    successes: np.ndarray  # (S,) per task
    trials: np.ndarray  # (S,) scored completions per task
    select_seconds: float
    update_seconds: float
    predicted: np.ndarray  # (S,) posterior mean at selection (NaN: no posterior)
    informative: np.ndarray  # (S,) bool: the group's rewards are not all equal
    round: int = 1  # the sampling round within the generation batch (dynamic sampling)
    trained: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # (S,) bool:
    # the group is in the batch TRL trains on (set once the generation batch is complete)


class BotsGRPOTrainer(GRPOTrainer):
    """A `trl.GRPOTrainer` whose every generation batch is chosen by `selector`.

    Selector index i is row i of `train_dataset` (a map-style dataset whose `task_id_column`
    holds a unique id per row). `success_threshold` or `reward_range` map rewards outside [0, 1]
    onto successes (DESIGN.md §1.6); by default a reward must lie in [0, 1] and counts as that
    share of a success. The reward judged is TRL's combined one: the weighted sum of the reward
    functions; a completion every reward function returned None for counts in no trial.

    `dynamic_sampling=True` refills each generation batch with informative groups, in at most
    `max_rounds` rounds (the module docstring; bots_cli/selection/dynamic.py).

    Besides TRL's own metrics it logs, through TRL's logging (so wandb, tensorboard, ... see
    them; wandb adds its `train/` prefix to every name), `etr` (of every task selected, all
    rounds), `zero_variance_share` (of the batch trained on), `sampling_rounds`, the
    cumulative `rollouts` and `tokens` (completions and completion tokens generated),
    `selector/explored_share` and, for BOTS, `selector/capability` and
    `selector/posterior_mean_of_selected`. It needs `remove_unused_columns=False` (TRL's
    default) and checkpoints on generation-batch boundaries (`save_steps`).
    """

    args: Any  # a trl.GRPOConfig (typed as transformers' TrainingArguments upstream)
    model: Any
    train_dataset: Any

    def __init__(self, *args: Any, selector: Any, task_id_column: str = "task_id",
                 success_threshold: float | None = None,
                 reward_range: tuple[float, float] | None = None,
                 dynamic_sampling: bool = False, max_rounds: int = 4, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from bots_cli.selection.dynamic import DynamicSampling

        self.dynamic_sampling = DynamicSampling.from_config(
            {"enabled": dynamic_sampling, "max_rounds": max_rounds})
        self.selector = selector
        self.task_id_column = task_id_column
        self.success_rule = SuccessRule(threshold=success_threshold, reward_range=reward_range,
                                        key="BotsGRPOTrainer(success_threshold/reward_range)")
        self._check_dataset()
        self.n_slots = self.args.generation_batch_size // self.num_generations
        if self.n_slots > self.selector.n_tasks:
            raise ValueError(f"a generation batch holds {self.n_slots} tasks (generation_batch_size"
                             f" {self.args.generation_batch_size} / num_generations "
                             f"{self.num_generations}), more than the {self.selector.n_tasks} "
                             "tasks of train_dataset; lower the batch size")
        self._check_save_steps()
        self.ever_selected = np.zeros(self.selector.n_tasks, dtype=bool)
        self.feedback: list[Feedback] = []  # every generation batch's feedback, in order
        self._batch_tasks: np.ndarray | None = None  # this process's task per completion
        self._select_seconds = 0.0
        self._round = 1  # the sampling round being generated
        self.generations = 0  # generation batches so far (one bots step each)
        self.rollouts = self.tokens = 0  # completions and completion tokens generated so far
        self.resumed_costs: tuple[int, int] | None = None  # for checkpoints without the counts

    # -- checks --------------------------------------------------------------------------------

    def _check_dataset(self) -> None:
        from torch.utils.data import IterableDataset

        ds = self.train_dataset
        if ds is None or isinstance(ds, IterableDataset) or not hasattr(ds, "column_names"):
            raise ValueError("BotsGRPOTrainer needs a map-style datasets.Dataset as train_dataset:"
                             " the selector addresses its rows by index")
        if self.task_id_column not in ds.column_names:
            raise ValueError(f"train_dataset has no column {self.task_id_column!r} (columns: "
                             f"{', '.join(ds.column_names)}); pass task_id_column=<its id column>")
        if self.args.remove_unused_columns:
            raise InvalidValue(f"BotsGRPOTrainer needs GRPOConfig(remove_unused_columns=False) "
                               f"(TRL's default): remove_unused_columns=True drops the "
                               f"{self.task_id_column!r} column it finds each row's task by")
        ids = [str(t) for t in ds[self.task_id_column]]
        self.index = {t: i for i, t in enumerate(ids)}
        if len(self.index) != len(ids):
            dup = Counter(ids).most_common(1)[0][0]
            raise ValueError(f"train_dataset's {self.task_id_column!r} column repeats {dup!r}: "
                             "every row must be one task with a unique id")
        if len(ids) != self.selector.n_tasks:
            raise ValueError(f"the selector was built for {self.selector.n_tasks} tasks, but "
                             f"train_dataset has {len(ids)} rows: build it with n_tasks="
                             f"{len(ids)} (selector index i is row i)")

    @property
    def group_size(self) -> int:
        """Completions per task (TRL's num_generations; GRPOConfig always sets it)."""
        assert self.num_generations is not None
        return int(self.num_generations)

    def optimizer_steps_per_boundary(self) -> int:
        """The fewest optimizer steps that end on a generation-batch boundary: a batch lasts
        g = steps_per_generation × num_iterations micro-batches and an optimizer step takes
        gradient_accumulation_steps (a) of them, so optimizer step N ends a batch when N·a is a
        multiple of g, i.e. when N is a multiple of g / gcd(g, a)."""
        from math import gcd

        generate_every = self.args.steps_per_generation * self.num_iterations
        return generate_every // gcd(generate_every, self.args.gradient_accumulation_steps)

    def _check_save_steps(self) -> None:
        """A checkpoint between two generation batches would lose the rest of the batch on
        resume (TRL does not save its buffer), so checkpoints must fall on batch boundaries."""
        every = self.optimizer_steps_per_boundary()
        steps = self.args.save_steps
        strategy = getattr(self.args.save_strategy, "value", self.args.save_strategy)
        if every > 1 and strategy == "steps" and steps >= 1 and int(steps) % every:
            raise ValueError(
                f"save_steps ({steps}) must be a multiple of {every}: a generation batch lasts "
                f"steps_per_generation × num_iterations = "
                f"{self.args.steps_per_generation * self.num_iterations} micro-batches and an "
                f"optimizer step takes gradient_accumulation_steps = "
                f"{self.args.gradient_accumulation_steps}, so a batch ends only every {every} "
                "optimizer steps (TRL does not save a half-used batch: a resumed run would lose "
                "its rest)")

    # -- selection -----------------------------------------------------------------------------

    def _get_train_sampler(self, dataset: Any = None) -> Sampler[int]:
        return SlotSampler(self.selector.n_tasks, self.n_slots, self.args.num_generations,
                           self.num_iterations * self.args.steps_per_generation)

    def _select(self, n: int) -> np.ndarray:
        """The next round's n tasks: the same on every process, or an error."""
        start = time.perf_counter()
        ids = np.asarray(self.selector.select(n), dtype=np.int64)
        self._select_seconds = time.perf_counter() - start
        if self.accelerator.num_processes > 1:
            mine = torch.as_tensor(ids, device=self.accelerator.device)
            every = self.accelerator.gather(mine).view(self.accelerator.num_processes, -1)
            if not bool((every == mine).all()):
                raise RuntimeError("the processes' selectors chose different tasks: build the "
                                   "selector with the same seed on every process (not the rank)"
                                   " and give it the same train_dataset")
        return ids

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.model.training:
            self._batch_tasks = None
            return super()._generate_and_score_completions(inputs)
        slots = [self.index[str(row[self.task_id_column])] for row in inputs]
        if max(slots) >= self.n_slots:  # the dataloader was not built from SlotSampler
            raise RuntimeError("BotsGRPOTrainer received rows that are not its slots: the train "
                               "dataloader must use the trainer's own _get_train_sampler")
        first = len(self.feedback)
        self.generations += 1
        self._round = 1
        chosen = self._select(self.n_slots)
        output = self._generate_round(chosen, np.asarray(slots))
        if self.dynamic_sampling.enabled:
            output = self._dynamic_batch(output, chosen)
        else:
            self.feedback[-1].trained = np.ones(len(self.feedback[-1].ids), dtype=bool)
        self._log_selection_metrics(self.feedback[first:])
        return output

    def _generate_round(self, chosen: np.ndarray, slots: np.ndarray) -> dict[str, Any]:
        """TRL's generation and scoring of one round: slot j of this process's rows gets task
        chosen[j]; the selector hears the round's feedback from `_calculate_rewards`."""
        self._batch_tasks = chosen[slots]
        rows = [self.train_dataset[int(i)] for i in self._batch_tasks]
        return super()._generate_and_score_completions(rows)

    def _dynamic_batch(self, first: dict[str, Any], first_tasks: np.ndarray) -> dict[str, Any]:
        """More rounds until `n_slots` informative groups are in hand (or `max_rounds`), then
        this process's share of the batch made of them (dynamic.py's rule). `first_tasks`:
        round 1's task of each group of rows, in row order."""
        from math import gcd

        from bots_cli.selection.dynamic import batch_groups, refill_size

        G, P = self.group_size, self.accelerator.num_processes
        rounds = [self.feedback[-1]]
        outputs = [first]
        tasks = [first_tasks]  # each round's task of each group of rows, in row order
        kept, generated = int(rounds[0].informative.sum()), self.n_slots
        while len(rounds) < self.dynamic_sampling.max_rounds and kept < self.n_slots:
            # n·G completions split over P processes in whole rows
            n = refill_size(self.n_slots - kept, kept, generated, self.n_slots,
                            self.selector.n_tasks, multiple=P // gcd(G, P))
            self._round = len(rounds) + 1
            rank = self.accelerator.process_index
            local = np.arange(n * G // P) + rank * (n * G // P)  # this process's global rows
            tasks.append(self._select(n))
            outputs.append(self._generate_round(tasks[-1], local // G))
            rounds.append(self.feedback[-1])
            kept += int(rounds[-1].informative.sum())
            generated += n
        # Groups are matched to their rows by task, not by position: a round's feedback leaves
        # out a group without a single reward (task_evidence), which is not informative.
        where = [(r, j) for r, row_tasks in enumerate(tasks) for j in range(len(row_tasks))]
        signal = np.concatenate([np.isin(row_tasks, fb.ids[fb.informative])
                                 for row_tasks, fb in zip(tasks, rounds, strict=True)])
        chosen = batch_groups(signal, self.n_slots)
        for fb in rounds:
            fb.trained = np.zeros(len(fb.ids), dtype=bool)
        for c in chosen:
            r, j = where[c]
            rounds[r].trained |= rounds[r].ids == tasks[r][j]
        from bots_cli.integrations.trl.batches import merge_rounds

        sequence_is = str(getattr(self, "vllm_importance_sampling_mode", "")).startswith("seq")
        return merge_rounds(outputs, [where[c] for c in chosen], G, self.accelerator,
                            self._tokenizer.pad_token_id, sequence_is)

    # -- feedback ------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any,
                           completion_ids_list: Any) -> torch.Tensor:
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions,
                                                      completion_ids_list)  # (B_global, F)
        if self.model.training and self._batch_tasks is not None:
            self._feed_back(rewards_per_func, completion_ids_list)
        return rewards_per_func

    def _feed_back(self, rewards_per_func: torch.Tensor, completion_ids_list: Any) -> None:
        """Each task's successes and trials from the gathered rewards, to the selector; the
        round's completions and tokens are counted."""
        from accelerate.utils import gather

        from bots_cli.selection.dynamic import informative, posterior_means

        start = time.perf_counter()
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        combined = (rewards_per_func * weights).nansum(dim=1)
        combined[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan  # unscorable
        local = torch.as_tensor(self._batch_tasks, device=rewards_per_func.device)
        # Aligned with the gathered rewards, process by process.
        order = gather(local).cpu().numpy().astype(np.int64)
        lengths = torch.as_tensor([len(ids) for ids in completion_ids_list],
                                  device=rewards_per_func.device)
        self.rollouts += int(order.size)
        self.tokens += int(gather(lengths).sum().item())
        flat = combined.double().cpu().numpy()
        ids, successes, trials = task_evidence(order, flat, self.success_rule)  # selection order
        predicted = posterior_means(self.selector, ids)  # the belief the round was chosen with
        self.selector.update(ids, successes, trials)
        self.ever_selected[ids] = True
        self._batch_tasks = None
        groups = [flat[(order == i) & ~np.isnan(flat)] for i in ids]
        self.feedback.append(Feedback(
            generation=self.generations, global_step=self.state.global_step, ids=ids,
            successes=successes, trials=trials, select_seconds=self._select_seconds,
            update_seconds=time.perf_counter() - start, round=self._round, predicted=predicted,
            informative=informative(groups)))

    def _log_selection_metrics(self, rounds: list[Feedback]) -> None:
        """One generation batch's selection metrics, through TRL's logging (cumulative counts
        as their latest value, as TRL logs `num_tokens`)."""
        from bots_cli.metrics import effective_task_ratio

        m = self._metrics["train"]
        # ETR of every task selected (all rounds); zero-variance share of the batch trained on
        m["etr"].append(effective_task_ratio(np.concatenate([fb.successes for fb in rounds]),
                                             np.concatenate([fb.trials for fb in rounds])))
        signal = np.concatenate([fb.informative[fb.trained] for fb in rounds])
        m["zero_variance_share"].append(float(1.0 - signal.mean()))
        m["sampling_rounds"].append(float(len(rounds)))
        m["rollouts"] = [float(self.rollouts)]
        m["tokens"] = [float(self.tokens)]
        m["selector/explored_share"].append(float(self.ever_selected.mean()))
        for key, value in self.selector.metrics().items():
            m[key].append(value)
        predicted = np.concatenate([fb.predicted for fb in rounds])
        if not np.isnan(predicted).all():
            m["selector/posterior_mean_of_selected"].append(float(np.mean(predicted)))

    # -- checkpoints ---------------------------------------------------------------------------

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # transformers deletes checkpoints beyond save_total_limit at the end of its own
        # _save_checkpoint; it waits until the selector is in the new one, so a crash in between
        # never leaves the run without a complete checkpoint.
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        digests = self._selector_digests()  # also waits until every process's part is on disk
        if self.args.should_save:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

            run_dir = self._get_output_dir(trial=trial)
            folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            self.save_selector(os.path.join(folder, STATE_FILE), digests)
            rotate_checkpoints(output_dir=run_dir, save_total_limit=limit, use_mtime=True,
                               best_model_checkpoint=self.state.best_model_checkpoint)

    def _selector_digests(self) -> list[str]:
        """Every process's selector state, hashed; they must all be equal."""
        from accelerate.utils import gather_object

        mine = hashlib.sha256(pickle.dumps((self.selector.state_dict(),
                                            self.ever_selected.tobytes()))).hexdigest()
        every = gather_object([mine]) if self.accelerator.num_processes > 1 else [mine]
        if len(set(every)) > 1:
            raise RuntimeError("the processes' selector states differ: every process must build "
                               "the same selector (same seed) and feed it the gathered rewards")
        return list(every)

    def save_selector(self, path: str, digests: list[str] | None = None) -> None:
        """The selector's full state, atomically (written last: it marks a whole checkpoint).
        `digests` (one per process, all equal) records that every process held this state."""
        tmp = f"{path}.{os.getpid()}.tmp"
        torch.save({"format": 1, "selector": self.selector.state_dict(),
                    "ever_selected": self.ever_selected.copy(),
                    "generations": self.generations,
                    "rollouts": self.rollouts, "tokens": self.tokens,
                    "global_step": int(self.state.global_step),
                    "process_digests": digests or []}, tmp)
        os.replace(tmp, path)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self.load_selector(os.path.join(checkpoint, STATE_FILE))

    def load_selector(self, path: str) -> None:
        if not os.path.isfile(path):
            raise ValueError(f"{path} is missing: this checkpoint was not written by "
                             "BotsGRPOTrainer (or not completely), so the selector's posterior "
                             "cannot be restored; resume from a complete BotsGRPOTrainer "
                             "checkpoint")
        state = torch.load(path, weights_only=False)
        self.selector.load_state_dict(state["selector"])
        self.ever_selected = np.asarray(state["ever_selected"], dtype=bool).copy()
        self.generations = int(state["generations"])
        if "rollouts" in state:
            self.rollouts, self.tokens = int(state["rollouts"]), int(state["tokens"])
        elif self.resumed_costs is not None:  # a checkpoint from before the counts existed
            self.rollouts, self.tokens = self.resumed_costs
