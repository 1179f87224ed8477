"""A small TRL world for the adapter's tests: a random ~0.1M-parameter Qwen2 with the byte
tokenizer (no download), 40 prompts, and a reward function that records what it scored.

Run as a script (`torchrun ... trl_world.py OUT_DIR SEED_MODE`) it trains a few steps in every
process and writes each process's selections and selector state to OUT_DIR; SEED_MODE `same`
seeds every process's selector alike, `rank` seeds it with the process rank (a user's mistake
the adapter must catch).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bots_cli.models.tiny import TinyArch, build_tokenizer, init_model
from bots_cli.selection import BotsSelector

ARCH = TinyArch(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                max_positions=64)
N_TASKS = 40


class RecordingReward:
    """Scores a completion 1 when its length is odd (a random model gives mixed groups) and
    remembers every (task id, reward) it returned."""

    def __init__(self, value: Any = None) -> None:
        self.__name__ = "odd_length"
        self.calls: list[tuple[list[str], list[float]]] = []
        self.value = value  # a fixed reward instead, e.g. one outside [0, 1]

    def __call__(self, completions: list[str], task_id: list[str], **_: Any) -> list[float]:
        rewards = [float(len(c) % 2) if self.value is None else float(self.value)
                   for c in completions]
        self.calls.append((list(task_id), rewards))
        return rewards


def selector(seed: int = 0, n: int = N_TASKS, cls: type = BotsSelector) -> Any:
    rng = np.random.default_rng(7)
    weak = rng.uniform(0.0, 0.6, n)
    return cls(n, weak=weak, strong=np.clip(weak + 0.3, 0, 1), lam=0.2, rho=0.2, m=4, seed=seed)


def dataset(n: int = N_TASKS, ids: list[str] | None = None) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"task_id": ids or [f"t{i}" for i in range(n)],
                              "prompt": [f"{i}+{i % 7}=" for i in range(n)]})


def make_trainer(out_dir: Path, sel: Any = None, reward: Any = None, ds: Any = None,
                 trainer_cls: Any = None, **config: Any) -> Any:
    from trl import GRPOConfig

    from bots_cli.integrations.trl import BotsGRPOTrainer

    tokenizer = build_tokenizer()
    settings = dict(output_dir=str(out_dir), per_device_train_batch_size=8, num_generations=4,
                    max_completion_length=4, max_steps=3, learning_rate=1e-3, report_to=[],
                    bf16=False, use_cpu=True, save_strategy="no", logging_steps=1,
                    disable_tqdm=True, seed=0)
    settings.update(config)
    return (trainer_cls or BotsGRPOTrainer)(
        model=init_model(ARCH, tokenizer, seed=0), reward_funcs=reward or RecordingReward(),
        args=GRPOConfig(**settings), train_dataset=ds if ds is not None else dataset(),
        processing_class=tokenizer, selector=sel if sel is not None else selector())


def main(out_dir: str, seed_mode: str) -> None:
    from accelerate import PartialState

    state = PartialState(cpu=True)
    rank = state.process_index
    trainer = make_trainer(Path(out_dir) / "trl", sel=selector(rank if seed_mode == "rank" else 0),
                           per_device_train_batch_size=4, max_steps=3)
    trainer.train()
    result = {"selections": [fb.ids.tolist() for fb in trainer.feedback],
              "alpha": trainer.selector.alpha.tolist(), "beta": trainer.selector.beta.tolist(),
              "rng": str(trainer.selector.state_dict()["rng"]), "processes": state.num_processes}
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
