"""`bots train trainer=trl` end to end on the miniature world: TRL's GRPOTrainer, our records.

The same world, configs and checks as tests/test_train.py's native runs: records with the same
keys, a replay of the selections, SIGKILL and resume, two processes under torchrun and
accelerate launch, `bots evaluate` and `bots report` on the result, and every refusal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

pytest.importorskip("trl")

from bots_cli.errors import UserError
from bots_cli.references.table import read_profile
from bots_cli.selection.build import build_selector
from bots_cli.train.settings import TrainSettings
from bots_cli.train.trl.backend import plan_steps
from tests.conftest import REPO, run_bots
from tests.trainworld import (
    STEP_KEYS,
    assert_same_run,
    kill_and_resume,
    metrics,
    run_dirs,
    train_args,
    train_tasks,
)

TRL = "trainer=trl"


def trl_args(world: Path, *extra: str) -> list[str]:
    return [*train_args(world, TRL, "train.live=false"), *extra]


def selector_state(checkpoint: Path) -> dict:
    return torch.load(checkpoint / "bots_selector.pt", weights_only=False)


def test_trl_run_learns_and_writes_the_native_records(world: Path, tmp_path: Path) -> None:
    out = run_bots(*trl_args(world, "train.steps=6", "train.eval_every=3",
                             "train.checkpoint_every=3"), cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(tmp_path)
    rows = metrics(run)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5, 6]
    for row in rows[1:]:
        assert STEP_KEYS <= set(row), STEP_KEYS - set(row)
    assert {r["step"] for r in rows if "eval/accuracy" in r} == {0, 3, 6}
    assert any(r["train/grad_norm"] > 0 for r in rows[1:]), "no step had a learning signal"

    selections = pd.read_parquet(run / "selections.parquet")
    assert len(selections) == 6 * 8 and (selections["trials"] == 4).all()
    assert selections.groupby("step")["task_id"].nunique().eq(8).all()
    told = selections.groupby("step")["successes"].sum() / (8 * 4)
    assert np.allclose(told.to_numpy(), [r["train/reward_mean"] for r in rows[1:]])

    start = load_file(str(world / "models" / "arith" / "weak" / "model.safetensors"))
    end = load_file(str(run / "checkpoints" / "checkpoint-6" / "model.safetensors"))
    assert any(not torch.equal(start[k], end[k]) for k in end), "the weights did not change"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["trainer"] == "trl" and summary["processes"] == 1
    assert summary["eval_final"]["step"] == 6

    # bots evaluate reads TRL's checkpoints as steps 3 and 6.
    out = run_bots("evaluate", f"run={run}", "evaluate.n=2", "evaluate.max_tasks=10",
                   cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    evaluated = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evaluated] == [0, 3, 6]


def test_the_selector_was_told_exactly_each_batch(world: Path, tmp_path: Path) -> None:
    out = run_bots(*trl_args(world, "train.steps=4", "train.eval_every=0"), cwd=tmp_path,
                   timeout=600)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(tmp_path)
    cfg = OmegaConf.load(run / "config.yaml")
    ids = [t["task_id"] for t in train_tasks("train")]
    rates = [read_profile(world / "profiles" / "arith" / f"tiny-{r}.parquet")[0]
             .set_index("task_id")["pass_rate"].reindex(ids).to_numpy() for r in ("weak", "strong")]
    replay = build_selector(cfg.selector, n_tasks=len(ids), weak=rates[0], strong=rates[1],
                            seed=int(cfg.seed), group_size=4)
    for step, batch in pd.read_parquet(run / "selections.parquet").groupby("step", sort=True):
        picked = replay.select(8)
        assert [ids[i] for i in picked] == batch["task_id"].tolist(), f"step {step}"
        replay.update(picked, batch["successes"].to_numpy(), batch["trials"].to_numpy())
    saved = selector_state(run / "checkpoints" / "checkpoint-4")["selector"]
    assert np.array_equal(replay.alpha, saved["alpha"])
    assert np.array_equal(replay.beta, saved["beta"])


def test_sigkill_and_resume_equals_an_uninterrupted_run(world: Path, tmp_path: Path) -> None:
    a, b, output = kill_and_resume(lambda *extra: trl_args(world, *extra), tmp_path, 6,
                                   "checkpoint-3/bots_selector.pt", "train.eval_every=3",
                                   "train.checkpoint_every=3")
    assert "missing keys" not in output  # the tied lm_head is no missing key
    assert_same_run(a, b, timing=lambda key: "time" in key,
                    weights="checkpoints/checkpoint-6/model.safetensors",
                    selector=lambda run: selector_state(run / "checkpoints" / "checkpoint-6")[
                        "selector"])


def test_mini_batches_and_ppo_epochs_are_several_trl_steps_per_bots_step(world: Path,
                                                                         tmp_path: Path) -> None:
    """Two mini-batches × two PPO epochs = 4 TRL optimizer steps per selected batch, with a KL
    penalty (TRL's own reference copy): records and checkpoints still count selected batches."""
    out = run_bots(*trl_args(world, "train.steps=3", "train.eval_every=0",
                             "train.checkpoint_every=1", "train.mini_batch_size=4",
                             "train.ppo_epochs=2", "train.micro_batch_size=8",
                             "train.kl_coef=0.1"), cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(tmp_path)
    assert [r["step"] for r in metrics(run)] == [1, 2, 3]
    assert any(r["train/kl"] > 0 for r in metrics(run)), "the policy never left its start"
    assert pd.read_parquet(run / "selections.parquet").groupby("step").size().tolist() == [8] * 3
    names = sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*"))
    assert names == ["checkpoint-12", "checkpoint-4", "checkpoint-8"]
    assert [selector_state(run / "checkpoints" / n)["generations"] for n in names] == [3, 1, 2]


def _launcher(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    assert path is not None, f"{name} is installed with torch / accelerate"
    return path


@pytest.mark.parametrize("launch", [
    ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "bots_cli"],
    ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "-m", "bots_cli"],
], ids=["torchrun", "accelerate"])
def test_two_processes_one_run_directory_the_same_selections(world: Path, tmp_path: Path,
                                                             launch: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    before = {p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("bots-rank*")}
    out = subprocess.run([_launcher(launch[0]), *launch[1:],
                          *trl_args(world, "train.steps=4", "train.eval_every=2",
                                    "train.checkpoint_every=2")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    [run] = run_dirs(tmp_path)  # one run directory, written by process 0
    assert [p.name for p in (tmp_path / "outputs").rglob("metrics.jsonl")] == ["metrics.jsonl"]
    after = {p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("bots-rank*")}
    assert after <= before, "the other process's scratch directory was left behind"
    assert json.loads((run / "summary.json").read_text())["processes"] == 2
    for step in (2, 4):
        state = selector_state(run / "checkpoints" / f"checkpoint-{step}")
        digests = state["process_digests"]  # both processes' selector states, hashed
        assert len(digests) == 2 and digests[0] == digests[1]
    selections = pd.read_parquet(run / "selections.parquet")
    assert len(selections) == 4 * 8 and (selections["trials"] == 4).all()
    assert [r["step"] for r in metrics(run)] == [0, 1, 2, 3, 4]


def test_native_refuses_several_processes(world: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([_launcher("torchrun"), "--standalone", "--nproc_per_node", "2", "-m",
                          "bots_cli", *train_args(world, "train.steps=1")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode != 0
    assert "error: trainer=native runs in one process, but 2 were launched" in out.stderr


def test_report_compares_native_and_trl_runs(world: Path, tmp_path: Path) -> None:
    common = ("selector=uniform", "train.steps=4", "train.eval_every=2")
    for trainer in ("native", "trl"):
        out = run_bots(*train_args(world, f"trainer={trainer}", *common),
                       f"hydra.run.dir=runs/{trainer}", cwd=tmp_path, timeout=600)
        assert out.returncode == 0, out.stderr
    out = run_bots("report", "runs", "report.baseline='uniform trainer.name=native'",
                   cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    [summary] = (tmp_path / "outputs" / "report").rglob("summary.json")
    groups = json.loads(summary.read_text())["groups"]
    assert set(groups) == {"uniform trainer.name=native", "uniform trainer.name=trl"}


@pytest.mark.parametrize(("override", "message"), [
    ("+trainer.trl.vllm_host=x", "trainer.trl.vllm_host is not a setting of bots train"),
    ("+trainer.trl.args.learning_rate=0.1",
     "trainer.trl.args.learning_rate is set by bots from train.lr"),
    ("trainer.trl.vllm_mode=remote", "trainer.trl.vllm_mode must be colocate or server"),
    ("engine=vllm", "set trainer.trl.use_vllm=true for vLLM"),
    ("sampling.temperature=0", "GRPO has no signal to learn from"),
    ("train.micro_batch_size=5", "train.micro_batch_size (5) must divide the 32 completions"),
    ("trainer.trl.steps_per_generation=3", "trainer.trl.steps_per_generation (3) must be"),
    ("train.group_size=1", "train.group_size must be ≥ 2"),
])
def test_invalid_settings_fail_in_one_line(world: Path, tmp_path: Path, override: str,
                                           message: str) -> None:
    out = run_bots(*trl_args(world, override), cwd=tmp_path, timeout=600)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.strip().splitlines()
              if not line.startswith("note: ")]  # the miniature build's one-line data note
    assert len(errors) == 1 and message in errors[0], out.stderr
    assert not list((tmp_path / "outputs").rglob("checkpoint-*"))


def _settings(**train: object) -> TrainSettings:
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "train.yaml").train
    return TrainSettings.from_config(OmegaConf.merge(cfg, train))


def test_plan_maps_batches_onto_trl_steps() -> None:
    # 16 tasks × 8 completions = 128 per step; 2 processes take 64 each.
    plan = plan_steps(_settings(), None, 2)
    assert (plan.per_device_batch, plan.accumulation, plan.steps_per_generation,
            plan.optimizer_steps) == (64, 1, 1, 1)
    # Mini-batches of 4 tasks (4 optimizer steps a batch) of micro-batches of 8 completions.
    plan = plan_steps(_settings(mini_batch_size=4, micro_batch_size=8, ppo_epochs=2), None, 2)
    assert (plan.per_device_batch, plan.accumulation, plan.steps_per_generation,
            plan.optimizer_steps) == (8, 2, 8, 8)
    # steps_per_generation is TRL's way of saying the same micro-batch.
    same = plan_steps(_settings(mini_batch_size=4, ppo_epochs=2), 8, 2)
    assert same == plan
    with pytest.raises(UserError, match="must split evenly over the 3 processes"):
        plan_steps(_settings(), None, 3)
    with pytest.raises(UserError, match="set one of them"):
        plan_steps(_settings(micro_batch_size=16), 8, 2)


def _llama_style_model(root: Path) -> Path:
    """A random two-layer Llama whose tokenizer adds a BOS to every text it encodes (as Llama,
    Gemma and Mistral tokenizers do) and whose chat template writes one too (Llama 3's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    from bots_cli.models.tiny import byte_to_char

    core = Tokenizer(models.BPE(vocab={c: b for b, c in byte_to_char().items()}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(["<|begin_of_text|>", "<|eot_id|>", "<|pad|>",
                             "<|start_header_id|>", "<|end_header_id|>"])
    bos = core.token_to_id("<|begin_of_text|>")
    core.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", bos)])
    template = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
                "<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
                "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
                "{% endif %}")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
        pad_token="<|pad|>", padding_side="left", chat_template=template,
        clean_up_tokenization_spaces=False)
    assert tokenizer("1+1=")["input_ids"][0] == bos  # it adds a BOS to text
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=bos, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    path = root / "llama-style"
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


# `bots train` with every `generate` call's prompt (the unpadded ids the model conditions on)
# appended to $PROMPT_IDS: TRL's rollouts (model in training mode) and the held-out evaluation.
GENERATE_SPY = """
import json, os, sys
from transformers.generation.utils import GenerationMixin
original = GenerationMixin.generate
def generate(self, *args, **kwargs):
    ids, mask = kwargs["input_ids"].tolist(), kwargs["attention_mask"].tolist()
    with open(os.environ["PROMPT_IDS"], "a") as f:
        for row, keep in zip(ids, mask):
            f.write(json.dumps({"training": self.training,
                                "ids": [t for t, k in zip(row, keep) if k]}) + "\\n")
    return original(self, *args, **kwargs)
GenerationMixin.generate = generate
from bots_cli.cli.app import main
main()
"""


def test_trl_trains_on_the_prompt_tokens_evaluation_and_the_length_check_see(
        tmp_path: Path) -> None:
    """With a tokenizer that adds a BOS and a chat template that writes one, a task's prompt is
    the same token ids in TRL's rollouts, in the held-out evaluation and in the prompt-length
    check: one BOS, not two."""
    from bots_cli.models.context import prompt_lengths
    from bots_cli.models.loading import load_tokenizer, render_prompt_for_model

    model = _llama_style_model(tmp_path)
    tasks = tmp_path / "tasks.jsonl"
    pd.DataFrame(train_tasks("t")[:4]).to_json(tasks, orient="records", lines=True)
    spy = tmp_path / "prompt_ids.jsonl"
    out = subprocess.run(
        [sys.executable, "-c", GENERATE_SPY, "train", TRL, f"model.path={model}",
         "selector=uniform", f"domain.data.train={tasks}", f"domain.data.eval={tasks}",
         "train.steps=1", "train.batch_size=2", "train.group_size=2", "train.eval_every=1",
         "train.eval_tasks=4", "train.eval_n=1", "train.live=false", "sampling.max_new_tokens=2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PROMPT_IDS": str(spy)})
    assert out.returncode == 0, out.stderr[-3000:]
    calls = [json.loads(line) for line in spy.read_text().splitlines()]
    trained = {tuple(c["ids"]) for c in calls if c["training"]}
    evaluated = {tuple(c["ids"]) for c in calls if not c["training"]}
    assert len(trained) == 2 and len(evaluated) == 4  # the batch's tasks; the held-out ones

    tokenizer = load_tokenizer(model)
    from bots_cli.domains import load_domain

    dom = load_domain("arith", OmegaConf.load(REPO / "conf" / "domain" / "arith.yaml"))
    prompts = [render_prompt_for_model(tokenizer, dom.render_messages(task))
               for task in train_tasks("t")[:4]]
    lengths = dict(zip(prompts, prompt_lengths(prompts, tokenizer), strict=True))
    for ids in trained:
        assert ids.count(tokenizer.bos_token_id) == 1, tokenizer.decode(list(ids))
        assert ids in evaluated  # the same tokens as the evaluation of that task
        text = tokenizer.decode(list(ids))
        assert lengths[text] == len(ids)  # the length the start-up check measured
