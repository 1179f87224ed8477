"""The selection record (bots_cli/selection/record.py): unit tests, and one feedback through the
three trainers that use it.

The cross-trainer tests give the native loop, TRL's GRPOTrainer (`BotsGRPOTrainer`) and verl's
sampler (`BotsSampler`) the same pool, the same selector and the same rewards (a fixed table of
task × completion), each through its own code: the native loop's `Trainer.step` with its engine,
domain and policy update stood in; TRL's real generation, reward and logging path on the tiny
random model; verl's `DataProto` and `BotsSampler.update`. Each must log the same selection
metrics each step and save the same record state. The verl part runs in `.venv-verl`
(tests/integrations/test_verl.py imports it), the TRL part in `.venv`.
"""

from __future__ import annotations

import math
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from bots_cli.engines.base import Completion, SamplingParams
from bots_cli.selection import UniformSelector, build_selector
from bots_cli.selection.dynamic import sample_rounds
from bots_cli.selection.feedback import SuccessRule
from bots_cli.selection.record import METRICS, SelectionRecord, mark_trained
from bots_cli.train.loop import Trainer
from bots_cli.train.settings import TrainSettings
from tests.conftest import REPO

N, B, G, STEPS, LENGTH = 40, 2, 4, 3, 4  # pool, tasks per step, completions, steps, tokens each
REWARDS = np.random.default_rng(3).integers(0, 2, (N, G)).astype(np.float64)  # task × draw


def pass_rates() -> tuple[np.ndarray, np.ndarray]:
    weak = np.random.default_rng(7).uniform(0.0, 0.6, N)
    return weak, np.clip(weak + 0.3, 0.0, 1.0)


SELECTOR = {"name": "bots", "lam": 0.2}  # verl's data.sampler.selector; the others compose it


def bots_selector() -> Any:
    from bots_cli.integrations.verl.sampler import selector_config

    weak, strong = pass_rates()
    return build_selector(selector_config(SELECTOR), n_tasks=N, weak=weak, strong=strong, seed=0,
                          group_size=G)


def same(a: Any, b: Any, where: str = "state") -> None:
    """a equals b, recursively (arrays element by element, NaN equal to NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: {set(a) ^ set(b)}"
        for key in a:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind
                              == "f"), where
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def selection_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The record's metrics in a logged row (`selector/*` included), as floats."""
    return {k: float(v) for k, v in row.items() if k in METRICS or k.startswith("selector/")}


# -- the record itself ----------------------------------------------------------------------------


def test_feed_tells_the_selector_the_rules_evidence_and_counts_everything() -> None:
    record = SelectionRecord(bots_selector(), SuccessRule(threshold=0.5))
    ids = record.select(3)
    alpha, beta = record.selector.alpha.copy(), record.selector.beta.copy()
    tasks = np.repeat(ids, 4)
    rewards = np.array([0.9, 0.2, 0.7, 0.1,  0.0, 0.3, 0.2, 0.4,  np.nan, np.nan, np.nan, np.nan])
    ev = record.feed(tasks, rewards, tokens=30)
    assert ev.ids.tolist() == ids[:2].tolist()  # the third task had no scored completion
    assert ev.successes.tolist() == [2.0, 0.0] and ev.trials.tolist() == [4.0, 4.0]
    # informative by the rewards themselves (a GRPO signal), not by the success shares
    assert ev.informative.tolist() == [True, True]
    np.testing.assert_allclose(ev.predicted, alpha[ev.ids] / (alpha[ev.ids] + beta[ev.ids]))
    assert record.rollouts == 12 and record.tokens == 30  # every completion generated counts
    assert record.ever_selected.sum() == 2 and not ev.trained.any()


def test_step_metrics() -> None:
    record = SelectionRecord(bots_selector())
    rounds = []
    for draws in ([[1, 0, 1, 1], [1, 1, 1, 1]], [[0, 0, 0, 0], [0, 1, 0, 0]]):
        ids = record.select(2)
        rounds.append(record.feed(np.repeat(ids, 4), np.ravel(draws), tokens=8, round=len(rounds)
                                  + 1))
    # the batch: round 1's first group, round 2's second
    mark_trained(rounds, [r.ids for r in rounds], [(0, 0), (1, 1)])
    m = record.metrics(rounds)
    assert m["train/etr"] == 0.5 and m["train/zero_variance_share"] == 0.0
    assert (m["train/sampling_rounds"], m["train/rollouts"], m["train/tokens"]) == (2, 16, 16)
    assert m["selector/explored_share"] == 4 / N
    assert m["selector/posterior_mean_of_selected"] == pytest.approx(
        np.mean(np.concatenate([r.predicted for r in rounds])))
    assert "selector/capability" in m  # the selector's own metrics
    uniform = SelectionRecord(UniformSelector(N, seed=0))
    ids = uniform.select(2)
    ev = uniform.feed(np.repeat(ids, 2), np.array([1.0, 1.0, 0.0, 1.0]), tokens=4)
    mark_trained([ev], [ids], [(0, 0), (0, 1)])
    m = uniform.metrics([ev])
    assert "selector/posterior_mean_of_selected" not in m  # no posterior to predict with
    assert m["train/zero_variance_share"] == 0.5


def test_a_group_without_evidence_is_not_trained_evidence() -> None:
    record = SelectionRecord(UniformSelector(N, seed=0))
    ids = record.select(2)
    ev = record.feed(np.repeat(ids, 2), np.array([np.nan, np.nan, 0.0, 1.0]), tokens=4)
    mark_trained([ev], [ids], [(0, 0), (0, 1)])
    assert ev.ids.tolist() == [ids[1]] and ev.trained.tolist() == [True]
    assert record.metrics([ev])["train/zero_variance_share"] == 0.0


def test_a_round_without_one_scored_completion_frees_its_tasks() -> None:
    record = SelectionRecord(UniformSelector(N, seed=0))
    ids = record.select(2)
    ev = record.feed(np.repeat(ids, 2), np.full(4, np.nan), tokens=4)
    assert ev.ids.size == 0 and record.rollouts == 4 and not record.selector.pending.any()


def test_state_round_trip_and_the_rule_for_states_without_counters() -> None:
    record = SelectionRecord(bots_selector())
    for _ in range(3):
        ids = record.select(B)
        record.feed(np.repeat(ids, G), REWARDS[ids].ravel(), tokens=B * G * LENGTH)
    pending = record.select(B)  # selected, feedback not yet in: its predictions are kept
    state = record.state_dict()
    again = SelectionRecord(bots_selector())
    again.load_state_dict(state)
    same(again.state_dict(), state)
    np.testing.assert_array_equal(again.predicted(pending), record.predicted(pending))

    old = {k: v for k, v in state.items() if k not in ("rollouts", "tokens", "at_selection")}
    rebuilt = SelectionRecord(bots_selector(), recorded_costs=lambda: (24, 96))
    rebuilt.load_state_dict(old)  # a checkpoint from before the counters: the run's records
    assert (rebuilt.rollouts, rebuilt.tokens) == (24, 96)
    unknown = SelectionRecord(bots_selector())
    with pytest.warns(UserWarning, match="count from 0"):
        unknown.load_state_dict(old)
    assert (unknown.rollouts, unknown.tokens) == (0, 0)


def test_sample_rounds_refills_until_the_batch_is_informative() -> None:
    asked: list[int] = []
    script = iter([[True, False, False, False], [True, True, False, False], [True]])

    def sample(n: int) -> np.ndarray:
        asked.append(n)
        return np.asarray(next(script)[:n])

    batch = sample_rounds(sample, batch_size=4, pool=10, max_rounds=3)
    # 1 of 4 informative: ask for 3 / (1/4) = 12, capped at 4; then 3 of 8 → 1 / (3/8) → 3
    assert asked == [4, 4, 3]
    assert batch == [(0, 0), (1, 0), (1, 1), (2, 0)]
    one = sample_rounds(lambda n: np.zeros(n, dtype=bool), 4, 10, max_rounds=1)
    assert one == [(0, 0), (0, 1), (0, 2), (0, 3)]  # dynamic sampling off: one round, all of it


# -- the same feedback through the three trainers ------------------------------------------------


class TableDomain:
    """A domain whose reward of a completion is REWARDS[task, draw], the draw read from the
    completion's text."""

    reward_timeouts = 0

    def rewards(self, texts: list[str], rows: list[Any]) -> list[float]:
        return [float(REWARDS[int(row["index"]), int(text)]) for text, row in
                zip(texts, rows, strict=True)]


class TableEngine:
    """An engine whose completion j of a prompt is the text `j`, LENGTH tokens long."""

    def wake_up(self) -> None: ...
    def sleep(self) -> None: ...
    def load_weights(self, model: Any) -> None: ...

    def generate(self, prompts: list[str], n: int, sampling: SamplingParams) -> list[list[Any]]:
        return [[Completion(str(j), tuple(range(LENGTH)), "length") for j in range(n)]
                for _ in prompts]


class NativeLoop(Trainer):
    """The native loop's `step` and `save`, with its engine, domain and policy update stood
    in (they need a model)."""

    def __init__(self, run_dir: Path) -> None:  # no super().__init__: no model, no pool files
        conf = OmegaConf.load(REPO / "conf" / "train.yaml").train
        self.cfg, self.run_dir = None, run_dir
        self.settings = TrainSettings.from_config(OmegaConf.merge(
            conf, {"batch_size": B, "group_size": G, "steps": STEPS}))
        self.sampling = SamplingParams(max_new_tokens=LENGTH)
        self.domain = TableDomain()
        self.pool = pd.DataFrame({"task_id": [f"t{i}" for i in range(N)], "index": range(N)})
        self.task_ids = list(self.pool["task_id"])
        self.record = SelectionRecord(bots_selector(), SuccessRule())
        self.engine = TableEngine()
        self.scheduler = types.SimpleNamespace(get_last_lr=lambda: [0.0],
                                               state_dict=lambda: {})
        self.optimizer = types.SimpleNamespace(state_dict=lambda: {})
        saver = types.SimpleNamespace(save_pretrained=lambda path: Path(path).mkdir(exist_ok=True))
        self.model = self.tokenizer = saver
        self.elapsed = 0.0

    def prompt(self, i: int) -> tuple[str, list[int]]:
        return f"task {i}", [i]

    def _update(self, prompts: Any, groups: Any, rewards: np.ndarray) -> dict[str, float]:
        return {"loss": 0.0}


def native_run(tmp_path: Path) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Each step's selection metrics and the record state of the last checkpoint."""
    loop = NativeLoop(tmp_path / "native")
    rows = [selection_metrics(loop.step(step)[0]) for step in range(1, STEPS + 1)]
    loop.save(STEPS)
    saved = torch.load(tmp_path / "native" / "checkpoints" / f"step_{STEPS}" / "state.pt",
                       weights_only=False)
    return rows, {"selector": saved["selector"],
                  **{k: v for k, v in saved["trainer"].items() if k != "elapsed"}}


def test_the_trl_adapter_keeps_the_native_loops_record(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    from transformers import TrainerCallback

    from bots_cli.train.trl.records import RENAMED
    from tests.integrations.trl_world import make_trainer

    class Draws:
        """TRL's reward function: completion j of a task's group scores REWARDS[task, j]."""

        __name__ = "table"

        def __call__(self, completions: list[str], task_id: list[str], **_: Any) -> list[float]:
            seen: dict[str, int] = {}
            out = []
            for t in task_id:
                out.append(float(REWARDS[int(t[1:]), seen.get(t, 0)]))
                seen[t] = seen.get(t, 0) + 1
            return out

    class Logged(TrainerCallback):
        def __init__(self) -> None:
            self.rows: list[dict[str, Any]] = []

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
                   **kw: Any) -> None:
            if logs and "etr" in logs:
                self.rows.append({RENAMED.get(k, k): v for k, v in logs.items()})

    trainer = make_trainer(tmp_path / "trl", sel=bots_selector(), reward=Draws(),
                           per_device_train_batch_size=B * G, num_generations=G,
                           max_completion_length=LENGTH, max_steps=STEPS,
                           generation_kwargs={"min_new_tokens": LENGTH})  # LENGTH tokens each
    logged = Logged()
    trainer.add_callback(logged)
    trainer.train()
    trainer.save_selector(str(tmp_path / "bots_selector.pt"))
    saved = torch.load(tmp_path / "bots_selector.pt", weights_only=False)

    rows, state = native_run(tmp_path)
    assert [selection_metrics(r) for r in logged.rows] == rows
    same({k: saved[k] for k in state}, state)


def test_the_verl_sampler_keeps_the_native_loops_record(tmp_path: Path) -> None:
    pytest.importorskip("verl")
    from verl import DataProto

    from bots_cli.integrations.verl.sampler import BotsSampler

    weak, strong = pass_rates()
    data = pd.DataFrame({"extra_info": [{"index": i} for i in range(N)],
                         "weak_pass_rate": weak, "strong_pass_rate": strong})
    config = OmegaConf.create({"train_batch_size": B, "dataloader_num_workers": 0,
                               "sampler": {"selector": SELECTOR, "group_size": G, "seed": 0}})
    sampler = BotsSampler(data_source=data, data_config=config)
    rows = []
    for step in range(STEPS):
        picked = sampler.select_batch()
        # a step's batch as RayPPOTrainer.fit builds it: a uid per prompt, repeated G times
        # (interleaved), the outcome reward on the last of LENGTH response tokens
        batch = DataProto.from_single_dict({
            "input_ids": torch.zeros(B, 2, dtype=torch.long),
            "extra_info": np.array([{"index": i} for i in picked], dtype=object),
            "uid": np.array([f"{step}-{i}" for i in picked], dtype=object)})
        batch = batch.repeat(repeat_times=G, interleave=True)
        scores = torch.zeros(B * G, LENGTH)
        scores[:, -1] = torch.as_tensor(REWARDS[picked].ravel(), dtype=torch.float32)
        batch = batch.union(DataProto.from_dict(tensors={
            "token_level_scores": scores, "response_mask": torch.ones(B * G, LENGTH)}))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a mask is there: no warning about tokens
            sampler.update(batch)
        rows.append(selection_metrics(sampler.last_metrics))

    native_rows, state = native_run(tmp_path)
    assert rows == native_rows
    saved = sampler.state_dict()  # what BotsRayPPOTrainer writes to bots_sampler.pt
    same({k: saved[k] for k in state}, state)
