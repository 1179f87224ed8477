"""BOTS for verl ≥ 0.9 (and, without the one-update lag, for 0.7): a trainer subclass that feeds
the sampler and a task runner that launches it.

verl 0.8 removed the curriculum hook (`data.sampler.class_path`, which 0.9 silently ignores) and
the `sampler.update(batch)` call. What remains is `RayPPOTrainer(..., train_sampler=...)`, so:

- `BotsRayPPOTrainer` overrides one method, `_update_actor(batch)`: after the actor update it
  hands the step's batch (rewards scored, `uid` and `index` set) to the `BotsSampler`, before
  `fit` saves the step's checkpoint, so a saved sampler state holds that step's feedback, and adds
  `train/etr`, `train/zero_variance_share`, `selector/explored_share` and `selector/capability`
  to the metrics verl logs for the step. (verl
  0.7's own hook calls `update` after saving: one update behind on resume; the sampler ignores
  that second delivery of a batch it already has.) Steps without an actor update (a critic
  warm-up, not used by GRPO) give no feedback.
- `BotsTaskRunner` is verl's RayPPOTrainer `TaskRunner` (`verl.trainer.main_ppo_v0` in 0.9, with
  `trainer.use_v1=false`; `verl.trainer.main_ppo` in 0.7) with two names of that module swapped
  while it runs, in its own Ray actor process: `create_rl_sampler` builds a `BotsSampler` and
  `RayPPOTrainer` is `BotsRayPPOTrainer`. Everything else is verl's.
- `python -m bots_cli.integrations.verl.main <verl overrides>` is verl's `main_ppo` with that
  runner (README: "BOTS inside verl").

Tested with verl 0.9.1 (and the sampler with 0.7.1's factory); another version is refused in one
line (`SUPPORTED_VERL`). A real training step needs GPUs and a vLLM/SGLang rollout: it has not run
on the machines this project is developed on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from bots_cli.errors import UserError
from bots_cli.integrations.verl.version import check_verl_version


def trainer_class() -> type:
    """`BotsRayPPOTrainer`, built on the installed verl's RayPPOTrainer."""
    check_verl_version()
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    from bots_cli.integrations.verl.sampler import BotsSampler

    class BotsRayPPOTrainer(RayPPOTrainer):
        """RayPPOTrainer whose `BotsSampler` is fed every step, before the step is saved."""

        def _update_actor(self, batch: Any) -> Any:
            output = super()._update_actor(batch)
            sampler = getattr(self.train_dataloader, "sampler", None)
            if isinstance(sampler, BotsSampler):
                sampler.update(batch)
                # verl logs the actor output's metrics: the selection's go with them.
                metrics = getattr(output, "meta_info", {}).get("metrics")
                if isinstance(metrics, dict):
                    metrics.update(sampler.last_metrics)
            return output

    return BotsRayPPOTrainer


def bots_rl_sampler(data_config: Any, dataset: Any) -> Any:
    """verl's `create_rl_sampler(data_config, dataset)`, answered with a `BotsSampler`."""
    from bots_cli.integrations.verl.sampler import BotsSampler

    return BotsSampler(data_source=dataset, data_config=data_config)


def runner_module() -> Any:
    """The module whose TaskRunner builds a RayPPOTrainer: `main_ppo_v0` in verl 0.9 (its
    `main_ppo` runs the v1 trainer), `main_ppo` in verl 0.7."""
    import importlib

    try:
        return importlib.import_module("verl.trainer.main_ppo_v0")
    except ImportError:
        return importlib.import_module("verl.trainer.main_ppo")


@contextlib.contextmanager
def bots_in_task_runner() -> Iterator[None]:
    """While it runs, verl's RayPPOTrainer TaskRunner builds our sampler and our trainer."""
    module = runner_module()
    saved = (module.create_rl_sampler, module.RayPPOTrainer)
    module.create_rl_sampler, module.RayPPOTrainer = bots_rl_sampler, trainer_class()
    try:
        yield
    finally:
        module.create_rl_sampler, module.RayPPOTrainer = saved


def task_runner_class() -> Any:
    """`BotsTaskRunner`: verl's TaskRunner (a Ray actor), run inside `bots_in_task_runner`."""
    check_verl_version()
    import ray

    runner = runner_module().TaskRunner
    # 0.9 defines it as a Ray actor (the plain class is behind it), 0.7 as a plain class.
    base: Any = getattr(runner, "__ray_actor_class__", runner)

    class BotsTaskRunner(base):
        def run(self, config: Any) -> Any:
            check_config(config)
            with bots_in_task_runner():
                return super().run(config)

    return ray.remote(num_cpus=1)(BotsTaskRunner)


def check_config(config: Any) -> None:
    """One line for each verl setting BOTS cannot work with."""
    if config.trainer.get("use_v1", False):
        raise UserError("BOTS drives verl's RayPPOTrainer: add trainer.use_v1=false (verl's v1 "
                        "trainer has no train_sampler)")
    if int(config.data.get("dataloader_num_workers", 0) or 0) != 0:
        raise UserError("BOTS needs data.dataloader_num_workers=0: worker processes fetch "
                        "batches before the previous step's feedback arrives")
    if config.data.get("sampler") is None:
        raise UserError("BOTS reads its settings from data.sampler: add +data.sampler.selector="
                        "bots +data.sampler.group_size=${actor_rollout_ref.rollout.n}")
