"""`bots build-tiny`: build (or find cached) the tiny world's checkpoints, check them greedily.

Apart from `bots_cli.models.build` because the check runs the checkpoints on an engine: the
engines load models through `bots_cli.models.loading`, which builds them with `models.build`, so
the build itself must not import the engines.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bots_cli.atomic import write_json
from bots_cli.checks import check_int
from bots_cli.errors import UserError
from bots_cli.models import checkpoints
from bots_cli.models.build import (
    CHECKPOINTS,
    TinyBuild,
    TinySettings,
    domain_pairs,
    ensure_tiny,
    recipe_key,
)
from bots_cli.models.tiny import build_tokenizer


def exact_match_rate(engine_cfg: Any, model_cfg: Any, pairs: Sequence[tuple[str, str]],
                     max_new_tokens: int) -> float:
    """Share of `pairs` whose greedy completion equals the answer (a sanity check of a build)."""
    from bots_cli.engines import SamplingParams, build_engine

    with build_engine(engine_cfg, model_cfg) as engine:
        outs = engine.generate([p for p, _ in pairs], 1,
                               SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens))
    hits = [o[0].text.strip() == a.strip() for o, (_, a) in zip(outs, pairs, strict=True)]
    return sum(hits) / max(1, len(hits))


def build_tiny_command(cfg: Any) -> dict[str, Any]:
    """`bots build-tiny`: build (or find cached) the tiny world's weak and strong checkpoints;
    with `build.verify=true`, rebuild them in a temporary directory and compare the weights."""
    from hydra.core.hydra_config import HydraConfig
    from rich.console import Console
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-file save/load bars would bury the warm-start bar
    settings = TinySettings.from_config(cfg.model)
    n_eval = check_int("build.eval_pairs", cfg.build.eval_pairs, lo=0)
    verify, force = bool(cfg.build.get("verify", False)), bool(cfg.build.force)
    if verify and force:
        raise UserError("build.verify=true rebuilds in a temporary directory and compares with "
                        "the installed build; it does not go with build.force=true")
    if verify:
        summary = verify_tiny(cfg.model)
    else:
        build = ensure_tiny(cfg.model, force=force, progress=True)
        summary, table = _checked(cfg, settings, build, n_eval)
        Console().print(table)
    write_json(Path(HydraConfig.get().runtime.output_dir) / "summary.json", summary)
    if verify and not summary["bit_for_bit"]:
        differ = [n for n, c in summary["checkpoints"].items()
                  if c["installed_sha256"] != c["rebuilt_sha256"]]
        raise UserError(f"the rebuilt {' and '.join(differ)} weights differ from "
                        f"{summary['build_dir']} (another torch version or CPU rounds "
                        "differently); the shipped profiles were measured on the installed ones")
    return summary


def _checked(cfg: Any, settings: TinySettings, build: TinyBuild, n_eval: int) -> tuple[Any, Any]:
    """The summary and table of a build, with each checkpoint's greedy exact-match rate."""
    from omegaconf import OmegaConf
    from rich.table import Table

    # The check runs on held-out tasks: the eval split, which the warm start never saw.
    held_out = domain_pairs(settings.domain, None, build_tokenizer(), split="eval")
    sample = random.Random(settings.seed).sample(held_out, min(n_eval, len(held_out)))
    longest = max((len(a.encode()) for _, a in sample), default=1) + 1
    n_pairs = build.results.get("pairs")
    table = Table(title=f"tiny world ({build.results.get('parameters', 0):,} parameters, "
                        + (f"{n_pairs:,} " if n_pairs else "")
                        + f"{settings.domain} pairs)" + (" - cached build" if build.reused else ""))
    for col in ("checkpoint", "steps", "final loss", f"greedy exact match ({len(sample)} eval)",
                "directory"):
        table.add_column(col, justify="left" if col in ("checkpoint", "directory") else "right")
    summary: dict[str, Any] = {"build_dir": str(build.build_dir), "reused": build.reused,
                               "fingerprint": checkpoints.build_fingerprint(build.build_dir),
                               "checkpoints": {}}
    for name in CHECKPOINTS:
        res = build.results.get(name, {})
        acc = None
        if sample:  # the checkpoint as a plain model directory, on the configured engine
            ckpt_cfg = OmegaConf.merge(cfg.model, {"path": str(build.checkpoint(name))})
            acc = exact_match_rate(cfg.engine, ckpt_cfg, sample, longest)
        summary["checkpoints"][name] = {**res, "greedy_exact_match": acc}
        loss = res.get("final_loss")
        table.add_row(name, str(res.get("steps", "?")), "-" if loss is None else f"{loss:.3f}",
                      "-" if acc is None else f"{acc:.3f}", str(build.checkpoint(name)))
    return summary, table


def verify_tiny(model_cfg: Any) -> dict[str, Any]:
    """Rebuild the installed tiny build from its recipe in a temporary directory and compare each
    checkpoint's weights (SHA-256 of model.safetensors); a difference is a one-line error."""
    from rich.console import Console

    settings = TinySettings.from_config(model_cfg)
    installed = settings.build_dir
    if not checkpoints.matching_build(installed, recipe_key(settings), CHECKPOINTS):
        raise UserError(f"{installed} holds no build of this recipe to verify; build it with "
                        "`bots build-tiny`")
    with tempfile.TemporaryDirectory(prefix="bots-verify-") as scratch:
        rebuilt = ensure_tiny(model_cfg, progress=True, out_dir=Path(scratch) / installed.name)
        theirs = checkpoints.weights_sha256(rebuilt.build_dir, CHECKPOINTS)
    ours = checkpoints.weights_sha256(installed, CHECKPOINTS)
    same = {name: ours[name] == theirs[name] for name in CHECKPOINTS}
    summary = {"build_dir": str(installed), "bit_for_bit": all(same.values()),
               "checkpoints": {n: {"installed_sha256": ours[n], "rebuilt_sha256": theirs[n]}
                               for n in CHECKPOINTS}}
    Console(soft_wrap=True).print(f"{installed}: " + ", ".join(
        f"{n} {'bit-for-bit the same' if same[n] else 'DIFFERS'} ({ours[n][:12]})"
        for n in CHECKPOINTS))
    return summary
