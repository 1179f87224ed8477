"""`make gpu-check`: a real architecture trained for a few steps by both trainers, on one GPU.

Builds a randomly initialised model of Qwen2.5-0.5B's shape from its config values (no
download; the byte-level tokenizer of the tiny world, so the vocabulary is 258 tokens rather
than Qwen's 151,936 and the embedding and output layers are that much smaller), then runs
`bots train trainer=native` and `bots train trainer=trl` on the arith domain for a few steps in
bf16 and prints, per trainer, the median step time, sampled tokens per second and peak GPU
memory (`system/gpu_peak_gb` in metrics.jsonl).

Without a GPU it is a dry run of the same commands: a two-layer model of the same widths in
fp32 for two steps, which checks the recipe, not the numbers.

    python benchmarks/gpu_check.py [--steps 5] [--out outputs/bench/gpu_check] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

# Qwen2.5-0.5B's config.json values (the layers; the vocabulary comes from our tokenizer).
QWEN25_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                  rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)


def build_model(out: Path, layers: int) -> Path:
    """A random model of that shape, saved as a Hugging Face directory with its tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from bots_cli.models.tiny import build_tokenizer, save_tokenizer

    tokenizer = build_tokenizer()
    config = Qwen2Config(**{**QWEN25_05B, "num_hidden_layers": layers},
                         vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    path = out / "model"
    model.save_pretrained(str(path))
    save_tokenizer(tokenizer, path)
    return path


def run(trainer: str, model: Path, out: Path, steps: int, gpu: bool) -> dict[str, float]:
    run_dir = out / trainer
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [str(Path(sys.executable).with_name("bots")), "train", f"trainer={trainer}",
           f"model.path={model}", "model.name=qwen2.5-0.5b-shape", "selector=uniform",
           f"train.steps={steps}", "train.eval_every=0", f"train.checkpoint_every={steps + 1}",
           "train.batch_size=16", "train.group_size=8", "train.lr=1e-6", "train.warmup_steps=0",
           "train.live=false", f"train.precision={'bf16-mixed' if gpu else 'fp32'}",
           "sampling.max_new_tokens=16", f"hydra.run.dir={run_dir}"]
    print("$ bots " + " ".join(cmd[1:]), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "time/step" in r][1:] or rows[-1:]  # the first step warms up
    step = statistics.median(r["time/step"] for r in rows)
    tokens = statistics.median(r["train/response_len"] * 16 * 8 / r["time/step"] for r in rows)
    return {"step_s": step, "tokens_per_s": tokens, "wall_s": wall,
            "peak_gb": max(r.get("system/gpu_peak_gb", float("nan")) for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default="outputs/bench/gpu_check")
    parser.add_argument("--dry-run", action="store_true", help="two layers, fp32, two steps")
    args = parser.parse_args()
    gpu = torch.cuda.is_available() and not args.dry_run
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    layers, steps = (QWEN25_05B["num_hidden_layers"], args.steps) if gpu else (2, 2)
    where = torch.cuda.get_device_name(0) if gpu else "CPU (dry run: the recipe, not the numbers)"
    print(f"gpu-check on {where}: Qwen2.5-0.5B shape with {layers} layers, {steps} steps, "
          f"16 tasks x 8 completions, 16 new tokens", flush=True)
    model = build_model(out, layers)
    results = {t: run(t, model, out, steps, gpu) for t in ("native", "trl")}
    print("\n| trainer | median step (s) | sampled tokens/s | peak GPU memory (GB) | wall (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | {r['peak_gb']:.2f} | "
              f"{r['wall_s']:.0f} |")
    (out / "gpu_check.json").write_text(json.dumps({"device": where, **results}, indent=1))


if __name__ == "__main__":
    main()
