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
- `_calculate_rewards`: after TRL gathers every process's rewards, they go with every
  completion's task to the selection record (`bots_cli.selection.record`, the one every trainer
  uses: each task's successes and trials by the success rule, `selector.update`, the counters), on
  every process, before the next batch is selected;
- `_save_checkpoint` / `_load_optimizer_and_scheduler`: the selector's full state (posterior,
  capability estimate, random generator) is written into every checkpoint as `bots_selector.pt`
  (before `save_total_limit` removes older checkpoints) and restored on `resume_from_checkpoint`.

With `dynamic_sampling=True` (bots_cli/selection/dynamic.py: DAPO-style, the same rounds as the
native loop, `sample_rounds`) a generation batch runs in rounds: each round is one call of the
original `_generate_and_score_completions` on freshly selected tasks and one selector update; then
every process gathers the rounds' tensors, keeps the rows of the batch's groups (informative first)
and takes its own share back (batches.py), so TRL's buffering, shuffling and loss see an ordinary
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from bots_cli.checks import check_int
from bots_cli.errors import InvalidValue, UserError
from bots_cli.runs.checkpoints import TRL_STATE_FILE as STATE_FILE  # written into each checkpoint
from bots_cli.selection.feedback import SuccessRule
from bots_cli.selection.record import Evidence, SelectionRecord, mark_trained

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
    """What the selector was told about one sampling round of a generation batch: its
    `evidence` (tasks in selection order, successes, trials, the prediction at selection, which
    groups were informative and trained on, selection/record.py) and when and how long."""

    generation: int  # 1 for the first generation batch of the run
    global_step: int  # TRL's optimizer step when the batch was generated (it trains from +1)
    evidence: Evidence
    select_seconds: float
    update_seconds: float

    @property
    def round(self) -> int:  # the sampling round within the generation batch (dynamic sampling)
        return self.evidence.round

    @property
    def ids(self) -> np.ndarray:  # (S,) the tasks told about
        return self.evidence.ids

    @property
    def successes(self) -> np.ndarray:
        return self.evidence.successes

    @property
    def trials(self) -> np.ndarray:  # scored completions per task
        return self.evidence.trials

    @property
    def predicted(self) -> np.ndarray:  # posterior mean at selection (NaN: no posterior)
        return self.evidence.predicted

    @property
    def informative(self) -> np.ndarray:  # bool: the group's rewards are not all equal
        return self.evidence.informative

    @property
    def trained(self) -> np.ndarray:  # bool: the group is in the batch TRL trains on
        return self.evidence.trained


class BotsGRPOTrainer(GRPOTrainer):
    """A `trl.GRPOTrainer` whose every generation batch is chosen by `selector`.

    Selector index i is row i of `train_dataset` (a map-style dataset whose `task_id_column`
    holds a unique id per row). `success_threshold` or `reward_range` (or a whole `success_rule`)
    map rewards outside [0, 1] onto successes (DESIGN.md §1.6); by default a reward must lie in
    [0, 1] and counts as that share of a success. The reward judged is TRL's combined one: the
    weighted sum of the reward functions; a completion every reward function returned None for
    counts in no trial.

    `dynamic_sampling=True` refills each generation batch with informative groups, in at most
    `max_rounds` rounds (the module docstring; bots_cli/selection/dynamic.py).
    `feedback_delay=k` gives the selector each generation batch's evidence k batches late, after
    the batch k later was selected, as asynchronous RL would (docs/late-feedback.md; logged as
    `selector/fed_back_step`); not with dynamic sampling.

    Besides TRL's own metrics it logs, through TRL's logging (so wandb, tensorboard, ... see
    them; wandb adds its `train/` prefix to every name), `etr` (of every task selected, all
    rounds), `zero_variance_share` (of the batch trained on), `sampling_rounds`, the
    cumulative `rollouts` and `tokens` (completions and completion tokens generated),
    `selector/explored_share` and, for BOTS, `selector/capability` and
    `selector/posterior_mean_of_selected` (the selection record's metrics, the names every trainer
    logs). The counters are in every checkpoint; `recorded_costs()` gives them for a checkpoint
    written before they were (`bots train` reads its metrics.jsonl). It needs
    `remove_unused_columns=False` (TRL's default) and checkpoints on generation-batch boundaries
    (`save_steps`).
    """

    args: Any  # a trl.GRPOConfig (typed as transformers' TrainingArguments upstream)
    model: Any
    train_dataset: Any

    def __init__(self, *args: Any, selector: Any, task_id_column: str = "task_id",
                 success_threshold: float | None = None,
                 reward_range: tuple[float, float] | None = None,
                 success_rule: SuccessRule | None = None,
                 dynamic_sampling: bool = False, max_rounds: int = 4,
                 recorded_costs: Callable[[], tuple[int, int]] | None = None,
                 feedback_delay: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from bots_cli.selection.dynamic import DynamicSampling

        self.dynamic_sampling = DynamicSampling.from_config(
            {"enabled": dynamic_sampling, "max_rounds": max_rounds})
        self.task_id_column = task_id_column
        if success_rule is None:
            success_rule = SuccessRule(threshold=success_threshold, reward_range=reward_range,
                                       key="BotsGRPOTrainer(success_threshold/reward_range)")
        elif success_threshold is not None or reward_range is not None:
            raise ValueError("BotsGRPOTrainer: pass success_rule, or success_threshold / "
                             "reward_range, not both")
        # The selector, its counters and the selection metrics (selection/record.py);
        # `recorded_costs` continues the counters of a checkpoint written before they were saved.
        delay = check_int("feedback_delay", feedback_delay, lo=0)
        if delay and self.dynamic_sampling.enabled:
            raise InvalidValue("BotsGRPOTrainer: feedback_delay with dynamic_sampling: a refill "
                               "round needs the feedback of the round before; set one of them "
                               "off")
        self.record = SelectionRecord(selector, success_rule, recorded_costs, delay=delay)
        self._check_dataset()
        self.n_slots = self.args.generation_batch_size // self.num_generations
        if self.n_slots * (delay + 1) > self.selector.n_tasks:
            raise ValueError(f"a generation batch holds {self.n_slots} tasks (generation_batch_size"
                             f" {self.args.generation_batch_size} / num_generations "
                             f"{self.num_generations}), and {delay + 1} batches (feedback_delay "
                             f"{delay} in flight and the next) need more than the "
                             f"{self.selector.n_tasks} tasks of train_dataset; lower the batch "
                             "size" + (" or the delay" if delay else ""))
        self._check_save_steps()
        self.feedback: list[Feedback] = []  # every sampling round's feedback, in order
        self._batch_tasks: np.ndarray | None = None  # this process's task per completion
        self._select_seconds = 0.0
        self._round = 1  # the sampling round being generated
        self.generations = 0  # generation batches so far (one bots step each)

    @property
    def selector(self) -> Any:
        return self.record.selector

    @property
    def success_rule(self) -> SuccessRule:
        return self.record.rule

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
        ids = self.record.select(n)
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
        from math import gcd

        from bots_cli.selection.dynamic import sample_rounds

        first = len(self.feedback)
        self.generations += 1
        G, P = self.group_size, self.accelerator.num_processes
        outputs: list[dict[str, Any]] = []
        tasks: list[np.ndarray] = []  # each round's task of each group of rows, in row order

        def sample(n: int) -> np.ndarray:
            """One round of n tasks: round 1 fills the dataloader's slots, a refill splits its
            n·G completions over the processes in whole rows."""
            self._round = len(outputs) + 1
            tasks.append(self._select(n))
            if outputs:
                share = n * G // P
                rows = (np.arange(share) + self.accelerator.process_index * share) // G
            else:
                rows = np.asarray(slots)
            outputs.append(self._generate_round(tasks[-1], rows))
            fb = self.feedback[-1]
            # A group is found by its task: the round's evidence leaves out a group without a
            # single reward, which is not informative.
            return np.isin(tasks[-1], fb.ids[fb.informative])

        batch = sample_rounds(sample, self.n_slots, self.selector.n_tasks,
                              self.dynamic_sampling.rounds, multiple=P // gcd(G, P))
        rounds = self.feedback[first:]
        fed_back = self.record.end_step()  # with feedback_delay k: batch − k's evidence arrives
        mark_trained([fb.evidence for fb in rounds], tasks, batch)
        self._log_selection_metrics(rounds, fed_back)
        if not self.dynamic_sampling.enabled:
            return outputs[0]
        from bots_cli.integrations.trl.batches import merge_rounds

        sequence_is = str(getattr(self, "vllm_importance_sampling_mode", "")).startswith("seq")
        return merge_rounds(outputs, batch, G, self.accelerator, self._tokenizer.pad_token_id,
                            sequence_is)

    def _generate_round(self, tasks: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        """TRL's generation and scoring of one round: row j of this process gets task
        tasks[rows[j]]; the selector hears the round's feedback from `_calculate_rewards`."""
        self._batch_tasks = tasks[rows]
        inputs = [self.train_dataset[int(i)] for i in self._batch_tasks]
        return super()._generate_and_score_completions(inputs)

    # -- feedback ------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any,
                           completion_ids_list: Any) -> torch.Tensor:
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions,
                                                      completion_ids_list)  # (B_global, F)
        if self.model.training and self._batch_tasks is not None:
            self._feed_back(rewards_per_func, completion_ids_list)
        return rewards_per_func

    def _feed_back(self, rewards_per_func: torch.Tensor, completion_ids_list: Any) -> None:
        """The round's gathered rewards, with every completion's task, to the selection record
        (evidence, selector update, counters)."""
        from accelerate.utils import gather

        start = time.perf_counter()
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        combined = (rewards_per_func * weights).nansum(dim=1)
        combined[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan  # unscorable
        local = torch.as_tensor(self._batch_tasks, device=rewards_per_func.device)
        # Aligned with the gathered rewards, process by process.
        order = gather(local).cpu().numpy().astype(np.int64)
        lengths = torch.as_tensor([len(ids) for ids in completion_ids_list],
                                  device=rewards_per_func.device)
        evidence = self.record.feed(order, combined.double().cpu().numpy(),
                                    int(gather(lengths).sum().item()), round=self._round)
        self._batch_tasks = None
        self.feedback.append(Feedback(
            generation=self.generations, global_step=self.state.global_step, evidence=evidence,
            select_seconds=self._select_seconds, update_seconds=time.perf_counter() - start))

    def _log_selection_metrics(self, rounds: list[Feedback], fed_back: int | None) -> None:
        """One generation batch's selection metrics, through TRL's logging: the record's names
        without `train/` (wandb adds it), cumulative counts as their latest value (as TRL logs
        `num_tokens`); `selector/fed_back_step`, the batch whose evidence arrived (a delay)."""
        m = self._metrics["train"]
        if fed_back is not None:
            m["selector/fed_back_step"] = [float(fed_back)]
        for key, value in self.record.metrics([fb.evidence for fb in rounds]).items():
            name = key.removeprefix("train/")
            if key in ("train/rollouts", "train/tokens"):
                m[name] = [float(value)]
            else:
                m[name].append(float(value))

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

        mine = hashlib.sha256(pickle.dumps(self.record.state_dict())).hexdigest()
        every = gather_object([mine]) if self.accelerator.num_processes > 1 else [mine]
        if len(set(every)) > 1:
            raise RuntimeError("the processes' selector states differ: every process must build "
                               "the same selector (same seed) and feed it the gathered rewards")
        return list(every)

    def save_selector(self, path: str, digests: list[str] | None = None) -> None:
        """The selector's full state, atomically (written last: it marks a whole checkpoint).
        `digests` (one per process, all equal) records that every process held this state."""
        tmp = f"{path}.{os.getpid()}.tmp"
        torch.save({"format": 1, **self.record.state_dict(), "generations": self.generations,
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
        self.record.load_state_dict(state)
        self.generations = int(state["generations"])
