"""BOTS for verl ≥ 0.9 (and, without the one-update lag, for 0.7): a trainer subclass that feeds
the sampler and keeps its state in verl's checkpoints, and a task runner that launches it.

verl 0.8 removed the curriculum hook (`data.sampler.class_path`, which 0.9 silently ignores) and
the `sampler.update(batch)` call. What remains is `RayPPOTrainer(..., train_sampler=...)`, so:

- `BotsRayPPOTrainer` overrides three methods of verl's `RayPPOTrainer`:
  - `_update_actor(batch)`: after the actor update it hands the step's batch (rewards scored,
    `uid` and `extra_info` set) to the `BotsSampler`, before `fit` saves the step's checkpoint,
    and adds the selection metrics (`train/etr`, `selector/*`, ...) to the ones verl logs.
    Steps without an actor update (a critic warm-up, not used by GRPO) give no feedback.
  - `_save_checkpoint()`: writes the sampler's full state to `global_step_N/bots_sampler.pt`
    (temp file, then rename) before verl writes the rest and marks the step as the latest.
  - `_load_checkpoint()`: after verl's own resume, restores the sampler from that file. verl
    restores its dataloader (and so the sampler) only mid-epoch: at an epoch boundary it skips
    `data.pt` (`global_steps % len(train_dataloader) == 0`), which would restart BOTS from its
    prior.
- `BotsTaskRunner` is verl's RayPPOTrainer `TaskRunner` (`verl.trainer.main_ppo_v0` in 0.9, with
  `trainer.use_v1=false`; `verl.trainer.main_ppo` in 0.7). Its `run` is verl's, with the two names
  that function looks up, `create_rl_sampler` and `RayPPOTrainer`, answered by `BotsSampler` and
  `BotsRayPPOTrainer` while it runs. It patches the globals of the very function it calls, in the
  Ray actor's own process: Ray ships verl's TaskRunner class by value (its module name points at
  the Ray actor wrapper, not the class), and a function shipped by value looks names up in a fresh
  dict, not in its module, so patching the module (what an earlier version did) changed nothing
  and verl trained with its RandomSampler. The classes here are at module level, so Ray ships them
  by reference and the actor imports this module.
- When verl's TaskRunner has built both, the actor prints
  `bots: verl builds BotsSampler (selector=<name>, <N> tasks) and BotsRayPPOTrainer`; a launch that
  would end with another sampler or trainer stops with one line saying why.
- `python -m bots_cli.integrations.verl.main <verl overrides>` is verl's `main_ppo` with that
  runner (docs/integrations.md: "BOTS inside verl").

Tested with verl 0.9.1 (and the sampler with 0.7.1's factory); another version is refused in one
line (`SUPPORTED_VERL`). `make verl-check` runs verl's own `fit()` driver with BOTS in a local Ray
on CPU, with the GPU workers (actor and rollout server) stood in; a step on GPUs has not run on the
machines this project is developed on.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from bots_cli.errors import UserError
from bots_cli.integrations.verl.version import check_verl_version

check_verl_version()

import torch  # noqa: E402  (after the version check: verl pulls torch in anyway)
from verl.trainer.ppo.ray_trainer import RayPPOTrainer  # noqa: E402

from bots_cli.atomic import atomic_path  # noqa: E402
from bots_cli.integrations.verl.sampler import BotsSampler  # noqa: E402

SAMPLER_STATE = "bots_sampler.pt"  # the sampler's state, in verl's global_step_N/ folder


def runner_module() -> Any:
    """The module whose TaskRunner builds a RayPPOTrainer: `main_ppo_v0` in verl 0.9 (its
    `main_ppo` runs the v1 trainer), `main_ppo` in verl 0.7."""
    try:
        return importlib.import_module("verl.trainer.main_ppo_v0")
    except ImportError:
        return importlib.import_module("verl.trainer.main_ppo")


def _verl_task_runner() -> Any:
    """verl's TaskRunner class itself: 0.9 wraps it in a Ray actor class, 0.7 does not."""
    runner = runner_module().TaskRunner
    return getattr(runner, "__ray_actor_class__", runner)


def bots_rl_sampler(data_config: Any, dataset: Any) -> BotsSampler:
    """verl's `create_rl_sampler(data_config, dataset)`, answered with a `BotsSampler`."""
    return BotsSampler(data_source=dataset, data_config=data_config)


class BotsRayPPOTrainer(RayPPOTrainer):
    """RayPPOTrainer whose `BotsSampler` is fed every step and saved with every checkpoint."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sampler = self.train_dataloader.sampler
        if not isinstance(sampler, BotsSampler):
            raise UserError(f"verl built the train sampler {type(sampler).__name__}, not "
                            "BotsSampler: launch with python -m bots_cli.integrations.verl.main")
        print(f"bots: verl builds BotsSampler (selector={sampler.selector.name}, "
              f"{len(sampler.task_index)} tasks) and {type(self).__name__}", flush=True)

    @property
    def bots_sampler(self) -> BotsSampler:
        sampler = self.train_dataloader.sampler
        assert isinstance(sampler, BotsSampler)
        return sampler

    def _update_actor(self, batch: Any) -> Any:
        output = super()._update_actor(batch)
        self.bots_sampler.update(batch)
        # verl logs the actor output's metrics: the selection's go with them.
        metrics = getattr(output, "meta_info", {}).get("metrics")
        if isinstance(metrics, dict):
            metrics.update(self.bots_sampler.last_metrics)
        return output

    def _save_checkpoint(self) -> None:
        # First ours, then verl's: verl marks the step as the latest last, so a crash in between
        # leaves the previous step as the latest, complete checkpoint.
        folder = Path(self.config.trainer.default_local_dir) / f"global_step_{self.global_steps}"
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / SAMPLER_STATE) as tmp:
            torch.save(self.bots_sampler.state_dict(), tmp)
        super()._save_checkpoint()

    def _load_checkpoint(self) -> Any:
        out = super()._load_checkpoint()
        if self.global_steps == 0:  # nothing to resume (a fresh start or resume_mode=disable)
            return out
        folder = self._resumed_folder()
        path = os.path.join(folder, SAMPLER_STATE)
        if not os.path.isfile(path):
            raise UserError(f"{folder} has no {SAMPLER_STATE}: BOTS' posterior would restart from "
                            "its prior; resume from a checkpoint that BotsRayPPOTrainer saved, or "
                            "start afresh with trainer.resume_mode=disable")
        self.bots_sampler.load_state_dict(torch.load(path, weights_only=False))
        return out

    def _resumed_folder(self) -> str:
        """The global_step_N folder verl's `_load_checkpoint` just resumed from."""
        trainer = self.config.trainer
        if trainer.resume_mode == "resume_path":
            folder = str(trainer.resume_from_path)
        else:
            folder = os.path.join(str(trainer.default_local_dir),
                                  f"global_step_{self.global_steps}")
        return folder if os.path.isabs(folder) else os.path.join(os.getcwd(), folder)


_ANSWERED = {"create_rl_sampler": bots_rl_sampler, "RayPPOTrainer": BotsRayPPOTrainer}


class BotsTaskRunner(_verl_task_runner()):  # type: ignore[misc]
    """verl's TaskRunner, whose `run` builds BOTS' sampler and trainer (module docstring)."""

    def __init__(self) -> None:
        # Written out: a Ray actor (2.60) whose class inherits verl's `__init__` fails in it with
        # "super(type, obj): obj must be an instance or subtype of type"; one of its own does not.
        super().__init__()

    def run(self, config: Any) -> Any:
        check_config(config)
        verl_run = _verl_task_runner().run  # verl's own function, as imported in this process
        names = verl_run.__globals__
        missing = sorted(set(_ANSWERED) - names.keys())
        if missing:
            raise UserError(f"verl's TaskRunner.run no longer looks up {', '.join(missing)}: BOTS "
                            "cannot give it BotsSampler and BotsRayPPOTrainer; use verl==0.9.1")
        saved = {name: names[name] for name in _ANSWERED}
        names.update(_ANSWERED)
        try:
            return verl_run(self, config)
        finally:
            names.update(saved)


def task_runner_class() -> Any:
    """`BotsTaskRunner` as the Ray actor class verl's `run_ppo` starts."""
    import ray

    return ray.remote(num_cpus=1)(BotsTaskRunner)


def check_config(config: Any) -> None:
    """One line for each verl setting BOTS cannot work with (before Ray starts)."""
    if config.trainer.get("use_v1", False):
        raise UserError("BOTS drives verl's RayPPOTrainer: add trainer.use_v1=false (verl's v1 "
                        "trainer has no train_sampler)")
    data = config.data
    if int(data.get("dataloader_num_workers", 0) or 0) != 0:
        raise UserError("BOTS needs data.dataloader_num_workers=0: worker processes fetch "
                        "batches before the previous step's feedback arrives")
    if data.get("sampler") is None:
        raise UserError("BOTS reads its settings from data.sampler: add +data.sampler.selector="
                        "bots +data.sampler.group_size=${actor_rollout_ref.rollout.n}")
    gen = data.get("gen_batch_size")
    if gen is not None and int(gen) != int(data.train_batch_size):
        raise UserError(f"data.gen_batch_size ({gen}) differs from data.train_batch_size "
                        f"({data.train_batch_size}): verl's dataloader would draw BOTS' batches "
                        "before the previous step's feedback; remove data.gen_batch_size")
    filter_groups = config.get("algorithm", {}).get("filter_groups") or {}
    if filter_groups.get("enable", False):
        raise UserError("algorithm.filter_groups.enable=true is ignored by verl's RayPPOTrainer "
                        "(only its DAPO recipe filters groups): set it to false")
