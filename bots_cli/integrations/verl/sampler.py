"""`BotsSampler`: the train sampler verl's dataloader draws every batch from, chosen by BOTS.

verl builds it in two ways (`bots_cli.integrations.verl` says which version does which):

- verl ≤ 0.7, `data.sampler.class_path=pkg://bots_cli.integrations.verl.sampler` and
  `data.sampler.class_name=BotsSampler`: `create_rl_sampler` calls
  `BotsSampler(data_source=dataset, data_config=config.data)` and the trainer calls
  `sampler.update(batch=batch)` after each step (an `AbstractCurriculumSampler`);
- verl ≥ 0.9, through `BotsTaskRunner` (trainer.py), which hands it to `RayPPOTrainer` as
  `train_sampler`, feeds it from `_update_actor` and saves it in `global_step_N/bots_sampler.pt`.

Its settings are `data.sampler.*`: `selector` (a file of the project's `conf/selector/`, e.g.
`bots`, or a mapping with `name:` and overrides such as `lam: 0.5`), `group_size` (responses per
prompt: `${actor_rollout_ref.rollout.n}`; BOTS' `m` defaults to it), `seed`, the success rule
for rewards outside [0, 1] (`success_threshold` or `reward_range`), and `feedback_delay` (k ≥ 0,
default 0: each step's feedback reaches the selector after k more batches were selected, as in
asynchronous RL, docs/late-feedback.md; logged as `selector/fed_back_step`). The batch size is
`data.train_batch_size`. Row i of the dataset is selector index i; each row's `extra_info.index`
names it (the batch at the actor update still carries `extra_info`), and a row without one is
refused, since verl would silently call it task 0. Reference pass rates come from the rows'
`weak_pass_rate` / `strong_pass_rate` (columns or `extra_info` keys), as `bots export` writes
them.

Its selector, counters and metrics are a `SelectionRecord` (bots_cli/selection/record.py), the one
the native loop and the TRL adapter use: the same names (`train/etr`, `train/zero_variance_share`,
`selector/*`, ...) and the cumulative `train/rollouts` and `train/tokens` (the responses, and their
tokens, of the batches fed back: with a filter before the actor update, such as DAPO's, only what
reached it). A batch without a response mask counts 0 tokens, and the first one warns once. The
counters are in the sampler's state; a state saved before they existed continues them from 0 and
warns (verl keeps no records to rebuild them from).

Each batch is chosen when the dataloader asks for its first index, which with
`data.dataloader_num_workers=0` (required) is after the previous step's feedback arrived. The
sampler and its iterator are `Stateful`, so verl's `StatefulDataLoader` saves the selector's full
state (posterior, capability, random generator) in its checkpoints and restores it mid-epoch
instead of fast-forwarding (which would draw selections again); at an epoch boundary verl restores
no dataloader state, and `BotsRayPPOTrainer` restores the sampler from its own file.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from bots_cli.checks import check_int
from bots_cli.errors import UserError
from bots_cli.selection.feedback import SuccessRule
from bots_cli.selection.record import SelectionRecord


def _base_class() -> Any:
    """verl ≤ 0.7's curriculum interface where it exists (its factory asserts it), else a plain
    torch Sampler (verl 0.9 takes any)."""
    try:
        from verl.experimental.dataset.sampler import AbstractCurriculumSampler
    except ImportError:
        from torch.utils.data import Sampler

        return Sampler
    return AbstractCurriculumSampler


_Base: Any = _base_class()


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    """`cfg[key]` of a dict or an OmegaConf config (both have `get`), or `default`."""
    return default if cfg is None else cfg.get(key, default)


def selector_config(spec: Any) -> dict[str, Any]:
    """`data.sampler.selector`: a conf/selector/ option's name, or a mapping of its `name` and
    overrides, composed as Hydra does (`launch.compose_selector`)."""
    from omegaconf import OmegaConf

    from bots_cli.config import compose_selector

    if spec is None or isinstance(spec, str):
        name, overrides = spec or "bots", {}
    else:
        tree = OmegaConf.to_container(spec, resolve=True) if not isinstance(spec, dict) else spec
        assert isinstance(tree, dict)
        overrides = {str(k): v for k, v in tree.items() if k != "name"}
        name = str(tree.get("name", "bots"))
    try:
        # λ is the selector's `lam`, else conf/common.yaml's `lambda`, as in `bots train`.
        return compose_selector(name, overrides, lam=overrides.get("lam"))
    except UserError as err:
        raise UserError(f"data.sampler.selector: {err}") from None


def _rows_field(dataset: Any, key: str) -> list[Any] | None:
    """Column `key` of the dataset's rows, or their `extra_info[key]`, or None."""
    frame = getattr(dataset, "dataframe", dataset)
    names = getattr(frame, "column_names", None) or list(getattr(frame, "columns", []))
    if key in names:
        return list(frame[key])
    if "extra_info" in names:
        infos = list(frame["extra_info"])
        if all(isinstance(e, Mapping) and e.get(key) is not None for e in infos):
            return [e[key] for e in infos]
    return None


class DatasetColumns(Mapping[str, Any]):
    """The training data's columns as the groups and knn plug-ins read them: a top-level column,
    or a field every row's `extra_info` has (`extra_info.level`, say)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        frame = getattr(dataset, "dataframe", dataset)
        self.names = list(getattr(frame, "column_names", None) or getattr(frame, "columns", []))

    def __getitem__(self, key: str) -> Any:
        values = _rows_field(self.dataset, key)
        if values is None:
            raise KeyError(key)
        return values

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _rows_field(self.dataset, key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def _pass_rates(dataset: Any, role: str) -> np.ndarray | None:
    """The `role` reference's pass rate of every row, or None unless every row has one."""
    values = _rows_field(dataset, f"{role}_pass_rate")
    if values is None or any(v is None for v in values):
        return None
    rates = np.asarray(values, dtype=np.float64)
    return None if np.isnan(rates).any() else rates


def dataset_task_index(dataset: Any) -> np.ndarray:
    """Every row's `extra_info.index` (its task number), refusing a row without one."""
    frame = getattr(dataset, "dataframe", dataset)
    names = getattr(frame, "column_names", None) or list(getattr(frame, "columns", []))
    infos = list(frame["extra_info"]) if "extra_info" in names else [None] * len(frame)
    index = []
    for row, info in enumerate(infos):
        value = info.get("index") if isinstance(info, Mapping) else None
        if value is None:
            raise UserError(f"row {row} of the training data has no extra_info.index: verl would "
                            "count its responses as task 0; write the data with `bots export "
                            "format=verl` or give every row extra_info.index")
        index.append(int(value))
    out = np.asarray(index, dtype=np.int64)
    if np.unique(out).size != out.size:
        raise UserError("extra_info.index repeats in the training data: every row must be one "
                        "task with its own index")
    return out


class _BatchIterator(Iterator[int]):
    """One epoch of selected batches; its position is part of the dataloader's state."""

    def __init__(self, sampler: BotsSampler) -> None:
        self.sampler = sampler
        self.batches_done = 0
        self.batch: list[int] = []
        self.position = 0

    def __next__(self) -> int:
        if self.position == len(self.batch):
            if self.batches_done == self.sampler.batches_per_epoch:
                raise StopIteration
            self.batch = self.sampler.select_batch()
            self.batches_done += 1
            self.position = 0
        self.position += 1
        return self.batch[self.position - 1]

    def state_dict(self) -> dict[str, Any]:
        return {"batches_done": self.batches_done, "batch": list(self.batch),
                "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches_done = int(state["batches_done"])
        self.batch = [int(i) for i in state["batch"]]
        self.position = int(state["position"])


class BotsSampler(_Base):
    """verl's train sampler; its selector is `self.selector` (any `bots_cli.selection` one)."""

    def __init__(self, data_source: Any, data_config: Any) -> None:
        from bots_cli.integrations.verl.version import check_verl_version
        from bots_cli.selection.build import build_selector

        check_verl_version()

        if int(_get(data_config, "dataloader_num_workers", 0) or 0) != 0:
            raise UserError("BotsSampler needs data.dataloader_num_workers=0: worker processes "
                            "fetch batches ahead, before the previous step's feedback arrives")
        cfg = _get(data_config, "sampler", {}) or {}
        self.data_source = data_source
        self.batch_size = int(_get(data_config, "train_batch_size"))
        self.task_index = dataset_task_index(data_source)  # row -> task number
        self.row_of = {int(t): r for r, t in enumerate(self.task_index)}
        n = len(self.task_index)
        if self.batch_size > n:
            raise UserError(f"data.train_batch_size ({self.batch_size}) is larger than the "
                            f"training data ({n} rows)")
        sel_cfg = selector_config(_get(cfg, "selector", "bots"))
        weak, strong = (_pass_rates(data_source, role) for role in ("weak", "strong"))
        group = _get(cfg, "group_size")
        selector = build_selector(
            sel_cfg, n_tasks=n, seed=int(_get(cfg, "seed", 0) or 0), weak=weak, strong=strong,
            group_size=None if group is None else int(group), key="data.sampler.selector",
            columns=DatasetColumns(data_source))
        threshold, span = _get(cfg, "success_threshold"), _get(cfg, "reward_range")
        delay = check_int("data.sampler.feedback_delay", _get(cfg, "feedback_delay", 0) or 0,
                          lo=0)
        if self.batch_size * (delay + 1) > n:
            raise UserError(f"data.train_batch_size ({self.batch_size}) × (data.sampler."
                            f"feedback_delay ({delay}) + 1) is larger than the training data "
                            f"({n} rows): a task whose feedback is pending is not selected "
                            "again, so that many must be free")
        # The selector, its counters and the selection metrics (selection/record.py). verl keeps
        # no records to rebuild the counters from: a state without them continues from 0, saying so.
        self.record = SelectionRecord(selector, SuccessRule(
            threshold=None if threshold is None else float(threshold),
            reward_range=None if span is None else (float(span[0]), float(span[1])),
            key="data.sampler (success_threshold / reward_range)"), delay=delay)
        self.batches_per_epoch = n // self.batch_size
        self._last_fed: frozenset[str] | None = None  # uids of the batch fed back last
        self.last_feedback: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.last_metrics: dict[str, float] = {}
        self._said_no_tokens = False  # the warning for a batch without response tokens, once

    @property
    def selector(self) -> Any:
        return self.record.selector

    @property
    def rollouts(self) -> int:  # responses fed back so far
        return self.record.rollouts

    @property
    def tokens(self) -> int:  # their response tokens
        return self.record.tokens

    # -- the sampler ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[int]:
        return _BatchIterator(self)

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def select_batch(self) -> list[int]:
        return [int(i) for i in self.record.select(self.batch_size)]

    # -- feedback ------------------------------------------------------------------------------

    def update(self, batch: Any) -> None:
        """One step's feedback from verl's batch (a DataProto): responses grouped by `uid`, each
        group's task from `extra_info["index"]` (`batch_task_index`), each response's outcome
        score summed over its tokens (`token_level_scores`, the reward on the last response
        token). verl trains on every group fed back."""
        uids = [str(u) for u in batch.non_tensor_batch["uid"]]
        fed = frozenset(uids)
        if fed == self._last_fed:
            return  # the same step delivered twice (BotsRayPPOTrainer and verl ≤ 0.7's hook)
        index = batch_task_index(batch)
        task_of: dict[str, int] = {}
        for uid, task in zip(uids, index.tolist(), strict=True):  # a group is one task's
            if task_of.setdefault(uid, task) != task:
                raise ValueError(f"the responses of uid {uid} carry two task indices "
                                 f"({task_of[uid]} and {task})")
        unknown = set(index.tolist()) - self.row_of.keys()
        if unknown:
            raise ValueError(f"the batch has responses of task index {min(unknown)}, which no "
                             "row of the training data has: the batch and the sampler's dataset "
                             "disagree")
        rows = np.asarray([self.row_of[int(t)] for t in index], dtype=np.int64)
        scores = batch.batch["token_level_scores"].sum(-1).double().cpu().numpy()  # (B·n,)
        evidence = self.record.feed(rows, scores, self._response_tokens(batch))
        fed_back = self.record.end_step()  # with feedback_delay k: step − k's evidence arrives
        evidence.trained[:] = True
        self._last_fed = fed
        self.last_feedback = (evidence.ids, evidence.successes, evidence.trials)
        self.last_metrics = self.record.metrics([evidence])
        if fed_back is not None:
            self.last_metrics["selector/fed_back_step"] = fed_back

    def _response_tokens(self, batch: Any) -> int:
        """The batch's response tokens; a batch without a response mask counts none, and the
        first such batch says so (train/tokens then undercounts)."""
        tokens = response_tokens(batch)
        if tokens is None:
            if not self._said_no_tokens:
                warnings.warn("bots: verl's batch has neither response_mask nor responses with "
                              "an attention_mask, so its response tokens are not known: "
                              "train/tokens counts 0 for it and for every such batch (said once)",
                              stacklevel=3)
                self._said_no_tokens = True
            return 0
        return tokens

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {**self.record.state_dict(),
                "last_fed": sorted(self._last_fed) if self._last_fed is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.record.load_state_dict(state)
        last = state.get("last_fed")
        self._last_fed = None if last is None else frozenset(last)


def batch_task_index(batch: Any) -> np.ndarray:
    """The task number of every response in a verl batch, from its `extra_info["index"]`.

    That is what reaches the actor update: `RayPPOTrainer._get_gen_batch` moves every other
    non-tensor key (`index` among them) into the generation batch, and verl's agent loop copies
    them back only when it scores without reward-loop workers, which is not the default. verl ≤ 0.7
    keeps `index` in the batch; it is used when `extra_info` is absent."""
    keys = batch.non_tensor_batch
    if "extra_info" in keys:
        infos = keys["extra_info"]
        if all(isinstance(e, Mapping) and e.get("index") is not None for e in infos):
            return np.asarray([int(e["index"]) for e in infos], dtype=np.int64)
    if "index" in keys:
        return np.asarray(keys["index"]).astype(np.int64)
    raise ValueError("the batch's responses carry no task number (neither extra_info['index'] "
                     "nor index): train on data written by `bots export format=verl`")


def response_tokens(batch: Any) -> int | None:
    """The response tokens of a verl batch: its `response_mask` (set by RayPPOTrainer.fit), else
    the response part of `attention_mask`; None when the batch has neither."""
    tensors = batch.batch
    if "response_mask" in tensors.keys():
        return int(tensors["response_mask"].sum().item())
    if "responses" in tensors.keys() and "attention_mask" in tensors.keys():
        width = tensors["responses"].shape[-1]
        return int(tensors["attention_mask"][:, -width:].sum().item())
    return None
