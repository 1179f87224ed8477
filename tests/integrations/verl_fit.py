"""One verl 0.9.1 run with BOTS on a CPU: verl's `run_ppo` -> a local Ray -> the task runner as a
Ray actor -> `RayPPOTrainer.fit()`, with only the GPU workers stood in (`verl_standins.py`).

    python -m tests.integrations.verl_fit --data TRAIN.parquet --out DIR --steps N [--resume]

composes verl's own `ppo_trainer` config, as `python -m bots_cli.integrations.verl.main` does,
with the overrides below; checkpoints go to DIR/ckpt, verl's metrics to DIR/metrics.jsonl (its
`file` logger), what the actor worker received to DIR/actor_updates.jsonl. One run per process:
each starts and stops its own Ray.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "data" / "models" / "tiny" / "arith" / "weak"
# The tiny model's tokenizer has no chat template (bots renders its prompts itself); verl's agent
# loop applies one to the exported conversational prompts: the plain concatenation of the turns.
CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
REWARD = REPO / "bots_cli" / "integrations" / "verl" / "reward.py"
BATCH, GROUP = 8, 4  # prompts per step, responses per prompt


def policy_model(root: Path) -> Path:
    """The shipped tiny weak model, copied under `root` with a chat template (done once)."""
    import shutil

    model = root / "policy"
    if not model.is_dir():
        shutil.copytree(TINY, root / "policy.tmp", dirs_exist_ok=True)
        config = json.loads((root / "policy.tmp" / "tokenizer_config.json").read_text())
        config["chat_template"] = CHAT_TEMPLATE
        (root / "policy.tmp" / "tokenizer_config.json").write_text(json.dumps(config))
        (root / "policy.tmp").rename(model)
    return model


def overrides(data: Path, out: Path, steps: int, resume: bool, extra: list[str]) -> list[str]:
    return [
        "trainer.use_v1=false", "data.dataloader_num_workers=0",
        "+data.sampler.selector.name=bots", "+data.sampler.selector.lam=0.2",
        f"+data.sampler.group_size={GROUP}", "+data.sampler.seed=3",
        f"data.train_files={data}", f"data.val_files={data}",
        f"data.train_batch_size={BATCH}", "data.max_prompt_length=64",
        "data.max_response_length=8",
        f"actor_rollout_ref.model.path={policy_model(data.parent)}",
        f"actor_rollout_ref.rollout.n={GROUP}",
        "actor_rollout_ref.rollout.name=bots_cpu", "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={BATCH}",
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={BATCH}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={BATCH}",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={BATCH}",
        "actor_rollout_ref.actor.use_kl_loss=true", "algorithm.adv_estimator=grpo",
        "reward.num_workers=1",
        f"reward.custom_reward_function.path={REWARD}",
        "reward.custom_reward_function.name=compute_score",
        "trainer.device=cpu", "trainer.n_gpus_per_node=1", "trainer.nnodes=1",
        "trainer.logger=[console,file]", "trainer.val_before_train=false", "trainer.test_freq=-1",
        f"trainer.total_training_steps={steps}", "trainer.total_epochs=100", "trainer.save_freq=1",
        f"trainer.default_local_dir={out / 'ckpt'}",
        f"trainer.resume_mode={'auto' if resume else 'disable'}",
        # A local Ray with the GPU verl's resource pool asks for declared (the stand-ins use none).
        "ray_kwargs.ray_init.num_cpus=4", "+ray_kwargs.ray_init.num_gpus=1",
        *extra,
    ]


def compose(args: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from verl.trainer import main_ppo

    with initialize_config_dir(str(Path(main_ppo.__file__).parent / "config"), version_base=None):
        return hydra_compose("ppo_trainer", overrides=args)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("extra", nargs="*")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.update({"VERL_FILE_LOGGER_PATH": str(args.out / "metrics.jsonl"),
                       "BOTS_VERL_RECORDS": str(args.out),
                       "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                       "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})

    import ray
    from verl.trainer import main_ppo

    from bots_cli.integrations.verl.trainer import check_config
    from tests.integrations.verl_standins import CpuTaskRunner

    config = compose(overrides(args.data, args.out, args.steps, args.resume, args.extra))
    check_config(config)
    main_ppo.auto_set_device(config)
    main_ppo.run_ppo(config, task_runner_class=ray.remote(num_cpus=1)(CpuTaskRunner))
    ray.shutdown()


if __name__ == "__main__":
    main()
