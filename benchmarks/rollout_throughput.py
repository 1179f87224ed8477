"""Rollout throughput of the `hf` engine on the tiny model: completions/s and tokens/s.

One generate call per measurement asks for `batch` completions: `batch / group` prompts (one-
and two-digit additions written here, like the arith world's) times a GRPO group of `group`
samples each, at temperature 1. The token budget is set so that each call is one `generate`
batch. The model is the tiny architecture (1.08M parameters), either warm-started here for a few
hundred steps on those additions (`--init warm`, the default: it answers a few digits and emits
EOS, like the real tiny policy) or randomly initialised (`--init random`: it almost never emits
EOS, so nearly every completion runs to `--max-new-tokens`, the worst case).

    python benchmarks/rollout_throughput.py [--batch 8 32 128 512] [--group 8] [--init warm]

Prints a markdown table: median over `--repeats` calls after one warm-up call.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bots_cli.engines.base import SamplingParams
from bots_cli.engines.hf import HFEngine
from bots_cli.models.build import build_tiny, shipped_recipe
from bots_cli.models.loading import load_tokenizer
from bots_cli.models.tiny import build_tokenizer, init_model


def addition_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        a, b = rng.randrange(100), rng.randrange(100)
        pairs.append((f"{a}+{b}=", str(a + b)))
    return pairs


def make_engine(init: str, warm_steps: int, workdir: Path) -> HFEngine:
    from transformers import AutoModelForCausalLM

    if init == "random":
        tok = build_tokenizer()
        return HFEngine(init_model(shipped_recipe().arch, tok, seed=0), tok)
    build = build_tiny(addition_pairs(5000), workdir / "tiny", warm_steps, warm_steps + 1, seed=0,
                       progress=True)  # the shipped recipe's architecture and warm start
    path = build.checkpoint("weak")
    return HFEngine(AutoModelForCausalLM.from_pretrained(str(path)).eval(), load_tokenizer(path))


def measure(engine: HFEngine, batch: int, group: int, max_new: int, repeats: int) -> dict:
    prompts = [p for p, _ in addition_pairs(max(1, batch // group), seed=batch)]
    engine.max_batch_tokens = 10**9  # one generate call per measurement
    times, tokens = [], []
    for r in range(repeats + 1):
        sampling = SamplingParams(temperature=1.0, max_new_tokens=max_new, seed=r)
        start = time.perf_counter()
        out = engine.generate(prompts, group, sampling)
        elapsed = time.perf_counter() - start
        if r:  # the first call warms caches and allocators up
            times.append(elapsed)
            tokens.append(sum(len(c.token_ids) for g in out for c in g))
    t = statistics.median(times)
    n = len(prompts) * group
    return {"batch": n, "seconds": t, "completions_s": n / t,
            "tokens_s": statistics.median(tokens) / t, "mean_len": statistics.mean(tokens) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32, 128, 512],
                        help="completions per generate call")
    parser.add_argument("--group", type=int, default=8, help="samples per prompt (GRPO group)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--init", choices=["warm", "random"], default="warm")
    parser.add_argument("--warm-steps", type=int, default=300,
                        help="warm-start steps of the model with --init warm")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.init, args.warm_steps, Path(tmp))
        rows = [measure(engine, b, args.group, args.max_new_tokens, args.repeats)
                for b in args.batch]
    device = next(engine.model.parameters()).device
    model = ("warm-started " + str(args.warm_steps) + " steps" if args.init == "warm"
             else "random init")
    print(f"hf engine, tiny model ({model}), {device}, {torch.get_num_threads()} torch threads, "
          f"{platform.processor() or platform.machine()}; temperature 1, group {args.group}, "
          f"max_new_tokens {args.max_new_tokens}, median of {args.repeats} calls\n")
    print("| completions per call | s per call | completions/s | tokens/s | mean tokens |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['batch']} | {r['seconds']:.3f} | {r['completions_s']:.0f} | "
              f"{r['tokens_s']:.0f} | {r['mean_len']:.1f} |")


if __name__ == "__main__":
    main()
