"""The two GPU parts of a verl 0.9.1 run, stood in at their RPC boundary so that verl's own
`RayPPOTrainer.fit()` driver runs BOTS on a CPU (`tests/integrations/verl_fit.py` launches it).

Where verl 0.9.1 stops on a CPU (checked on this project's 2-core machine, `trainer.device=cpu`):
1. `ResourcePoolManager.create_resource_pool` (`single_controller/ray/base.py` ~210) asks Ray for
   GPU bundles (`use_gpu=True` is hard-coded): "Total available GPUs 0 is less than total desired
   GPUs 1". A local Ray can declare a GPU it does not have (`ray_init.num_gpus=1`), and then
2. the actor worker (`workers/engine_workers.py` `ActorRolloutRefWorker.init_model` ->
   `TrainingWorker.__init__` -> `utils/distributed.py` `initialize_global_process_group_ray`)
   asks torch.distributed for NCCL: "Distributed package doesn't have NCCL built in";
3. the rollout is a vLLM, SGLang or TensorRT-LLM server (`RolloutReplicaRegistry`), none of which
   installs on a machine without a GPU.

So two things are stood in, and nothing else:
- `CpuActorRolloutWorker`: the actor/ref worker group's worker. Same registered methods, dispatch
  modes and meshes (`actor`, `ref`) as `ActorRolloutRefWorker`, returning the same TensorDict keys
  (`log_probs`, `entropy` as jagged tensors over the packed sequence, `metrics` with `mfu`). Its
  log-probs are the tiny model's real ones; `update_actor` does not train (no optimizer step: the
  policy stays the model it started from) and records what verl delivered to it.
- `CpuRolloutServer` / `CpuRolloutReplica`: the rollout server verl's agent loop sends token ids
  to, registered as rollout `bots_cpu`. It samples from the tiny model on the CPU. Each response is
  seeded by (weights version, prompt ids, how many times this version saw this prompt), so a
  resumed run regenerates exactly what an uninterrupted one does.

verl's own code does the rest in a local Ray: the TaskRunner actor, datasets and dataloader, the
agent loop workers, the reward loop workers (the project's verl reward function), `_get_gen_batch`,
the unions, `balance_batch`, the advantages, `_update_actor`, and `_save_checkpoint` /
`_load_checkpoint`.
"""

from __future__ import annotations

import json
import os
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import ray
import torch

from bots_cli.integrations.verl.trainer import BotsTaskRunner

RECORDS = "BOTS_VERL_RECORDS"  # environment variable: where the actor worker records its batches
SERVER = "bots_cpu_rollout_server_{}"  # the Ray name of replica i's server (one run per session)


def _load_model(path: str) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.eval()


class CpuRolloutServer:
    """A vLLM server's token-in, token-out `generate`, on the CPU, with its control methods."""

    def __init__(self, model_path: str, response_length: int) -> None:
        torch.set_num_threads(1)
        self.model = _load_model(model_path)
        self.eos = self.model.generation_config.eos_token_id
        self.response_length = response_length
        self.version = 0  # the global step of the weights, as update_weights reports it
        self.seen: Counter[tuple[int, tuple[int, ...]]] = Counter()

    def generate(self, request_id: str, prompt_ids: list[int], sampling_params: dict[str, Any],
                 image_data: Any = None, video_data: Any = None, **_: Any) -> Any:
        from verl.workers.rollout.replica import TokenOutput

        key = (self.version, tuple(int(t) for t in prompt_ids))
        draw = self.seen[key]
        self.seen[key] += 1
        seed = zlib.crc32(json.dumps([key[0], list(key[1]), draw]).encode())
        generator = torch.Generator().manual_seed(seed)
        temperature = float(sampling_params.get("temperature", 1.0))
        ids = torch.tensor([list(key[1])])
        tokens: list[int] = []
        log_probs: list[float] = []
        with torch.no_grad():
            for _ in range(self.response_length):
                logits = self.model(ids).logits[0, -1].float()
                logp = torch.log_softmax(logits, -1)
                if temperature == 0:
                    token = int(logits.argmax())
                else:
                    probs = torch.softmax(logits / temperature, -1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                tokens.append(token)
                log_probs.append(float(logp[token]))
                if token == self.eos:
                    break
                ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        return TokenOutput(token_ids=tokens,
                           log_probs=log_probs if sampling_params.get("logprobs") else None,
                           stop_reason="completed", extra_fields={"global_steps": self.version})

    def set_version(self, global_steps: int) -> None:
        self.version = int(global_steps)

    # Control methods the replica and the checkpoint manager call: no GPU memory to free here.
    def wake_up(self) -> None: ...
    def sleep(self) -> None: ...
    def abort_all_requests(self, reject_request: bool = False) -> None: ...
    def resume_generation(self) -> None: ...
    def clear_kv_cache(self) -> None: ...
    def release_kv_cache(self) -> None: ...
    def resume_kv_cache(self) -> None: ...
    def start_profile(self, **_: Any) -> None: ...
    def stop_profile(self) -> None: ...


def replica_class() -> type:
    from verl.workers.rollout.replica import RolloutReplica

    class CpuRolloutReplica(RolloutReplica):
        """One `CpuRolloutServer` per replica, launched beside the hybrid workers."""

        async def launch_servers(self) -> None:
            server = ray.remote(num_cpus=0)(CpuRolloutServer).options(
                name=SERVER.format(self.replica_rank)).remote(
                str(self.model_config.path), int(self.config.response_length))
            self.servers = [server]
            self._server_handle = server
            self._server_address = SERVER.format(self.replica_rank)

    return CpuRolloutReplica


def _worker_base() -> type:
    from verl.single_controller.base import Worker

    return Worker


def _register(**kwargs: Any) -> Any:
    from verl.single_controller.base.decorator import register

    return register(**kwargs)


def _mesh(name: str) -> Any:
    from verl.single_controller.base.decorator import make_nd_compute_dataproto_dispatch_fn

    return make_nd_compute_dataproto_dispatch_fn(mesh_name=name)


def _one_to_all() -> Any:
    from verl.single_controller.base.decorator import Dispatch

    return Dispatch.ONE_TO_ALL


class CpuActorRolloutWorker(_worker_base()):  # type: ignore[misc]
    """`ActorRolloutRefWorker`'s RPC surface on a CPU (module docstring)."""

    def __init__(self, config: Any, role: str, distillation_config: Any = None, **_: Any) -> None:
        super().__init__()
        self.config = config
        self.role = role
        self.version = 0

    @_register(dispatch_mode=_one_to_all())
    def init_model(self) -> None:
        torch.set_num_threads(1)
        self.model = _load_model(str(self.config.model.path))
        self._register_dispatch_collect_info("actor", dp_rank=self.rank, is_collect=True)
        if "ref" in self.role:
            self._register_dispatch_collect_info("ref", dp_rank=self.rank, is_collect=True)

    def _log_probs(self, data: Any) -> Any:
        """Per packed token: log p(next token) and the entropy, as the engine's infer_batch."""
        from verl.utils import tensordict_utils as tu

        log_probs, entropy = [], []
        with torch.no_grad():
            for seq in data["input_ids"].unbind():
                logp = torch.log_softmax(self.model(seq[None]).logits[0].float(), -1)
                following = torch.roll(seq, -1)
                log_probs.append(logp.gather(-1, following[:, None])[:, 0])
                entropy.append(-(logp.exp() * logp).sum(-1))
        return tu.get_tensordict(
            tensor_dict={"log_probs": torch.nested.as_nested_tensor(log_probs, layout=torch.jagged),
                         "entropy": torch.nested.as_nested_tensor(entropy, layout=torch.jagged)},
            non_tensor_dict={"metrics": {"mfu": 0.0}})

    @_register(dispatch_mode=_mesh("actor"))
    def compute_log_prob(self, data: Any) -> Any:
        return self._log_probs(data)

    @_register(dispatch_mode=_mesh("ref"))
    def compute_ref_log_prob(self, data: Any) -> Any:
        return self._log_probs(data)

    @_register(dispatch_mode=_mesh("actor"))
    def update_actor(self, data: Any) -> Any:
        from verl.utils import tensordict_utils as tu

        scores = data["token_level_scores"].sum(-1).tolist()
        record = {"step": self.version + 1, "uid": [str(u) for u in tu.get(data, "uid")],
                  "task": [int(e["index"]) for e in tu.get(data, "extra_info")],
                  "score": [float(s) for s in scores]}
        with open(Path(os.environ[RECORDS]) / "actor_updates.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        metrics = {"loss": 0.0, "pg_loss": 0.0, "grad_norm": 0.0, "lr": 0.0, "mfu": 0.0}
        return tu.get_tensordict(tensor_dict={}, non_tensor_dict={"metrics": metrics})

    @_register(dispatch_mode=_one_to_all())
    def save_checkpoint(self, local_path: str, hdfs_path: Any = None, global_step: int = 0,
                        max_ckpt_to_keep: Any = None) -> None:
        Path(local_path).mkdir(parents=True, exist_ok=True)
        (Path(local_path) / "standin.json").write_text(json.dumps({"global_step": global_step}))

    @_register(dispatch_mode=_one_to_all())
    def load_checkpoint(self, local_path: str, hdfs_path: Any = None,
                        del_local_after_load: bool = False) -> None:
        json.loads((Path(local_path) / "standin.json").read_text())

    @_register(dispatch_mode=_one_to_all(), blocking=False)
    def update_weights(self, global_steps: int | None = None, mode: str = "auto") -> None:
        """The naive (colocated) weight sync: the rollout server now serves step `global_steps`."""
        self.version = int(global_steps or 0)
        ray.get(ray.get_actor(SERVER.format(0)).set_version.remote(self.version))


class CpuTaskRunner(BotsTaskRunner):
    """`BotsTaskRunner` with the stood-in actor worker and the `bots_cpu` rollout registered."""

    def add_actor_rollout_worker(self, config: Any) -> Any:
        from verl.single_controller.ray import RayWorkerGroup
        from verl.trainer.ppo.ray_trainer import Role
        from verl.trainer.ppo.utils import need_reference_policy

        role = Role.ActorRolloutRef if need_reference_policy(config) else Role.ActorRollout
        self.role_worker_mapping[role] = ray.remote(CpuActorRolloutWorker)
        self.mapping[role] = "global_pool"
        return CpuActorRolloutWorker, RayWorkerGroup

    def run(self, config: Any) -> Any:
        from verl.workers.rollout.replica import RolloutReplicaRegistry

        RolloutReplicaRegistry.register("bots_cpu", replica_class)
        return super().run(config)
