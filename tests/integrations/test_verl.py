"""BOTS inside verl, against verl's own code (0.9.1; the 0.7.1 factory side by side): its
RLHFDataset reads `bots export`'s parquet, its StatefulDataLoader draws from `BotsSampler`, a
DataProto built as verl's trainer builds one drives the feedback, and the sampler's state goes
through the dataloader's state_dict. `make test` runs this file in `.venv-verl` (verl pins a
transformers that TRL 1.16 cannot use); a real verl training step needs GPUs and is not run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("verl")

from omegaconf import OmegaConf
from torchdata.stateful_dataloader import StatefulDataLoader
from verl import DataProto
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

from bots_cli.errors import UserError
from bots_cli.integrations.verl.sampler import BotsSampler
from bots_cli.integrations.verl.trainer import (
    BotsRayPPOTrainer,
    BotsTaskRunner,
    check_config,
    task_runner_class,
)
from bots_cli.integrations.verl.version import check_verl_version
from bots_cli.models.tiny import build_tokenizer
from tests.conftest import REPO, run_bots
from tests.test_record import (  # noqa: F401 - the cross-trainer check of the selection record,
    test_the_verl_sampler_keeps_the_native_loops_record,  # run here, where verl is installed
)
from tests.trainworld import build, domain

B, N = 8, 4  # prompts per step, responses per prompt


@pytest.fixture(scope="module")
def exported(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    done = run_bots("export", *domain(world), *build(world), f"export.out_dir={out}",
                    f"export.profiles_dir={world / 'profiles'}", "export.splits=[train]",
                    cwd=out, timeout=600)
    assert done.returncode == 0, done.stderr
    return out / "train.parquet"


def rl_dataset(path: Path, tmp: Path) -> Any:
    tok = build_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    cfg = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 64,
                            "filter_overlong_prompts": False, "cache_dir": str(tmp / "cache")})
    return RLHFDataset(data_files=[str(path)], tokenizer=tok, config=cfg)


def data_config(**sampler: Any) -> Any:
    return OmegaConf.create({"train_batch_size": B, "dataloader_num_workers": 0,
                             "sampler": {"selector": {"name": "bots", "lam": 0.2},
                                         "group_size": N, "seed": 0, **sampler}})


def loader(ds: Any, sampler: Any) -> StatefulDataLoader:
    """As verl's RayPPOTrainer._create_dataloader builds it."""
    return StatefulDataLoader(ds, batch_size=B, num_workers=0, drop_last=True,
                              collate_fn=collate_fn, sampler=sampler)


def verl_batch(batch_dict: dict[str, Any], rewards: np.ndarray) -> DataProto:
    """A step's DataProto as RayPPOTrainer.fit builds it: the batch, a uid per prompt, repeated
    n times (interleaved), then the responses' token-level scores (the outcome reward on the last
    response token, zero elsewhere)."""
    batch = DataProto.from_single_dict(batch_dict)
    batch.non_tensor_batch["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(batch))],
                                             dtype=object)
    batch = batch.repeat(repeat_times=N, interleave=True)
    scores = torch.zeros(len(batch), 5)
    scores[:, -1] = torch.as_tensor(rewards, dtype=torch.float32)
    mask = (torch.arange(5) < 3).float().expand(len(batch), 5)  # 3 response tokens each
    return batch.union(DataProto.from_dict(tensors={"token_level_scores": scores,
                                                    "response_mask": mask}))


def test_the_dataloader_draws_the_selectors_batches(exported: Path, tmp_path: Path) -> None:
    ds = rl_dataset(exported, tmp_path)
    sampler = BotsSampler(data_source=ds, data_config=data_config())
    replay = BotsSampler(data_source=ds, data_config=data_config())
    assert sampler.selector.name == "bots" and sampler.selector.lam == 0.2
    rng = np.random.default_rng(0)
    for step, batch_dict in zip(range(3), loader(ds, sampler), strict=False):
        picked = replay.select_batch()
        assert batch_dict["index"].tolist() == picked, f"step {step}"
        rewards = rng.integers(0, 2, B * N)
        batch = verl_batch(batch_dict, rewards)
        sampler.update(batch)
        ids, successes, trials = sampler.last_feedback  # type: ignore[misc]
        assert ids.tolist() == picked  # the rows of the tasks, in batch order
        np.testing.assert_array_equal(successes, rewards.reshape(B, N).sum(1))
        np.testing.assert_array_equal(trials, np.full(B, N))
        replay.selector.update(ids, successes, trials)
        # the cost so far: every response fed back, 3 tokens each
        assert sampler.last_metrics["train/rollouts"] == (step + 1) * B * N
        assert sampler.last_metrics["train/tokens"] == 3 * (step + 1) * B * N
    np.testing.assert_array_equal(sampler.selector.alpha, replay.selector.alpha)


def test_filtered_responses_count_as_fewer_trials(exported: Path, tmp_path: Path) -> None:
    ds = rl_dataset(exported, tmp_path)
    sampler = BotsSampler(data_source=ds, data_config=data_config())
    batch_dict = next(iter(loader(ds, sampler)))
    batch = verl_batch(batch_dict, np.ones(B * N))
    kept = batch.select_idxs(np.arange(B * N) % N != 0)  # e.g. a rejection step dropped some
    sampler.update(kept)
    _, successes, trials = sampler.last_feedback  # type: ignore[misc]
    assert trials.tolist() == [N - 1] * B and successes.tolist() == [N - 1] * B


def test_a_batch_without_a_response_mask_counts_no_tokens_and_says_so_once(
        exported: Path, tmp_path: Path) -> None:
    ds = rl_dataset(exported, tmp_path)
    sampler = BotsSampler(data_source=ds, data_config=data_config())
    it = iter(loader(ds, sampler))
    for step in range(2):
        batch = verl_batch(next(it), np.ones(B * N))
        batch.pop(batch_keys=["response_mask"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sampler.update(batch)
        said = [w for w in caught if "train/tokens counts 0" in str(w.message)]
        assert len(said) == (1 if step == 0 else 0)
        assert sampler.last_metrics["train/tokens"] == 0
        assert sampler.last_metrics["train/rollouts"] == (step + 1) * B * N


def test_state_goes_through_the_dataloaders_state_dict(exported: Path, tmp_path: Path) -> None:
    ds = rl_dataset(exported, tmp_path)
    first = BotsSampler(data_source=ds, data_config=data_config())
    dl = loader(ds, first)
    it = iter(dl)
    for _ in range(2):
        first.update(verl_batch(next(it), np.arange(B * N) % 2))
    state = dl.state_dict()
    expected = next(it)["index"].tolist()

    second = BotsSampler(data_source=ds, data_config=data_config())
    resumed = loader(ds, second)
    resumed.load_state_dict(state)
    assert next(iter(resumed))["index"].tolist() == expected  # no selection was drawn again
    np.testing.assert_array_equal(second.selector.alpha, first.selector.alpha)
    assert (second.rollouts, second.tokens) == (first.rollouts, first.tokens) == (2 * B * N,
                                                                                  6 * B * N)


def test_the_trainer_feeds_the_sampler_once_per_step(exported: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """BotsRayPPOTrainer feeds at the actor update (before the checkpoint); verl 0.7's own hook
    delivering the same batch again afterwards changes nothing. (verl's whole fit() under Ray:
    test_verl_fit.py.)"""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    ds = rl_dataset(exported, tmp_path)
    def actor_update(self: Any, batch: Any) -> DataProto:  # the GPU workers' part, stood in for
        return DataProto.from_dict(tensors={}, meta_info={"metrics": {"actor/loss": 0.5}})

    monkeypatch.setattr(RayPPOTrainer, "_update_actor", actor_update)
    sampler = BotsSampler(data_source=ds, data_config=data_config())
    trainer = object.__new__(BotsRayPPOTrainer)  # its workers need GPUs: only the hook is used
    trainer.train_dataloader = loader(ds, sampler)
    batch = verl_batch(next(iter(trainer.train_dataloader)), np.ones(B * N))
    metrics = trainer._update_actor(batch).meta_info["metrics"]
    assert metrics["actor/loss"] == 0.5 and metrics["train/etr"] == 0.0  # every task solved
    assert metrics["train/zero_variance_share"] == 1.0 and "selector/capability" in metrics
    after_one = sampler.selector.state_dict()
    sampler.update(batch)
    np.testing.assert_array_equal(sampler.selector.state_dict()["alpha"], after_one["alpha"])


def test_ray_ships_the_task_runner_by_reference() -> None:
    """Ray pickles an actor class with cloudpickle; a class it can find by module and name goes
    by reference, so the actor imports this module (and verl's own) instead of a by-value copy
    whose functions look names up in a fresh dict (verl's TaskRunner is such a class: its module
    name points at Ray's wrapper)."""
    import pickle

    import cloudpickle
    from verl.trainer.main_ppo_v0 import TaskRunner

    protocol = cloudpickle.DEFAULT_PROTOCOL
    for cls in (BotsTaskRunner, BotsRayPPOTrainer):  # what plain pickle writes: a reference
        assert cloudpickle.dumps(cls, protocol=protocol) == pickle.dumps(cls, protocol=protocol)
    verl_class = TaskRunner.__ray_actor_class__
    with pytest.raises(pickle.PicklingError, match="not the same object"):
        pickle.dumps(verl_class, protocol=protocol)  # so cloudpickle ships it by value
    assert issubclass(BotsTaskRunner, verl_class)
    assert task_runner_class().__ray_metadata__.modified_class.__mro__[1] is BotsTaskRunner


def test_refusals(exported: Path, tmp_path: Path) -> None:
    import pandas as pd

    ds = rl_dataset(exported, tmp_path)
    with pytest.raises(UserError, match="dataloader_num_workers=0"):
        BotsSampler(data_source=ds, data_config=OmegaConf.merge(
            data_config(), {"dataloader_num_workers": 8}))
    with pytest.raises(UserError, match="no selector 'bogus'"):
        BotsSampler(data_source=ds, data_config=data_config(selector="bogus"))
    with pytest.raises(UserError, match=r"^data\.sampler\.feedback_delay must be ≥ 0"):
        BotsSampler(data_source=ds, data_config=data_config(feedback_delay=-1))
    rows = len(ds)
    with pytest.raises(UserError, match=rf"^data\.train_batch_size \({B}\) × \(data\.sampler\."
                       rf"feedback_delay \({rows // B}\) \+ 1\) is larger than the training data"):
        BotsSampler(data_source=ds, data_config=data_config(feedback_delay=rows // B))
    frame = pd.read_parquet(exported)
    frame["extra_info"] = [{**e, "index": None} if i == 5 else e
                           for i, e in enumerate(frame["extra_info"])]
    frame.to_parquet(tmp_path / "noindex.parquet")
    with pytest.raises(UserError, match=r"row 5 of the training data has no extra_info\.index"):
        BotsSampler(data_source=rl_dataset(tmp_path / "noindex.parquet", tmp_path),
                    data_config=data_config())
    with pytest.raises(UserError, match=r"verl 0\.8\.0 is installed"):
        check_verl_version("0.8.0")
    good = OmegaConf.create({"trainer": {"use_v1": False}, "data": data_config()})
    check_config(good)
    for key, value, message in [("trainer.use_v1", True, "trainer.use_v1=false"),
                                ("data.dataloader_num_workers", 8, "dataloader_num_workers=0"),
                                ("data.sampler", None, r"\+data\.sampler\.selector=bots"),
                                ("data.gen_batch_size", 2 * B, "remove data.gen_batch_size"),
                                ("algorithm.filter_groups.enable", True,
                                 "filter_groups.enable=true is ignored")]:
        bad = OmegaConf.create(OmegaConf.to_container(good))
        OmegaConf.update(bad, key, value)
        with pytest.raises(UserError, match=message):
            check_config(bad)


def test_verl_071s_factory_builds_the_sampler_from_class_path(exported: Path,
                                                              tmp_path: Path) -> None:
    """verl 0.7.1 side by side (`make test` installs it with --no-deps --target)."""
    side = Path(os.environ.get("BOTS_VERL071", REPO / ".venv-verl" / "verl071"))
    if not (side / "verl").is_dir():
        pytest.skip(f"verl 0.7.1 is not installed side by side at {side}")
    code = f"""
import verl
from omegaconf import OmegaConf
from verl.experimental.dataset.sampler import AbstractCurriculumSampler
from verl.trainer.main_ppo import create_rl_sampler
from tests.integrations.test_verl import data_config, rl_dataset
from pathlib import Path
assert verl.__version__ == "0.7.1", verl.__version__
cfg = OmegaConf.merge(data_config(), {{"shuffle": True, "sampler": {{
    "class_path": "pkg://bots_cli.integrations.verl.sampler", "class_name": "BotsSampler"}}}})
sampler = create_rl_sampler(cfg, rl_dataset(Path({str(exported)!r}), Path({str(tmp_path)!r})))
assert type(sampler).__name__ == "BotsSampler" and isinstance(sampler, AbstractCurriculumSampler)
# The task runner works with 0.7 too: it subclasses 0.7's TaskRunner, whose run looks up the
# names it answers.
from bots_cli.integrations.verl.trainer import BotsTaskRunner, runner_module, task_runner_class
import verl.trainer.main_ppo as m
base = getattr(m.TaskRunner, "__ray_actor_class__", m.TaskRunner)
assert runner_module() is m and issubclass(BotsTaskRunner, base)
assert set(["create_rl_sampler", "RayPPOTrainer"]) <= set(base.run.__globals__)
assert task_runner_class() is not None
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(side)])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def test_the_launcher_composes_verls_config_and_refuses_in_one_line(tmp_path: Path) -> None:
    """`python -m bots_cli.integrations.verl.main` is verl's main_ppo (its config, its overrides)
    with BOTS' checks first: each bad setting is one line and exit code 2, before Ray starts."""
    for overrides, message in [([], "add trainer.use_v1=false"),
                               (["trainer.use_v1=false"], "dataloader_num_workers=0"),
                               (["trainer.use_v1=false", "data.dataloader_num_workers=0"],
                                "+data.sampler.selector=bots")]:
        out = subprocess.run([sys.executable, "-m", "bots_cli.integrations.verl.main", *overrides],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
        errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert out.returncode == 2 and len(errors) == 1 and message in errors[0], out.stderr
