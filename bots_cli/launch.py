"""Running a command function under Hydra: config composition, run directories, sweeps.

The CLI hands each command's overrides here; Hydra's own `main` does the rest, so every Hydra
feature (multirun sweeps, launchers such as submitit, `--cfg`, `hydra.*` overrides) works as
documented by Hydra. A `UserError` raised by a command becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bots_cli.errors import UserError

USER_ERROR_EXIT = 2


def config_dir() -> Path:
    """The Hydra config directory: conf/, shipped in the package as bots_cli/conf."""
    return Path(__file__).resolve().parent / "conf"


def _secondary_process() -> bool:
    """Whether this is one of a distributed launch's processes other than process 0."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("RANK", "0") != "0"


def run_command_function(target: str, cfg: Any) -> Any:
    """Import `module:function` and call it with the composed config, reporting user errors."""
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return func(cfg)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT) from None


def launch(
    command: str,
    target: str,
    overrides: list[str],
    *,
    config_name: str | None = None,
    multirun: bool = False,
    cfg_part: str | None = None,
    resolve: bool = False,
    extra_config_dir: str | None = None,
) -> None:
    """Compose `conf/<config_name>.yaml` with `overrides` and run `target` (or a sweep of it)."""
    import hydra

    argv = [f"bots {command}", *overrides, f"hydra.job.name={command}"]
    resume = [o.split("=", 1)[1] for o in overrides if o.startswith("resume=")]
    if _secondary_process() and not multirun:
        # Under torchrun / accelerate launch, process 0 owns the run directory and tells the
        # others where it is; their own Hydra output goes to a scratch directory, removed at exit.
        scratch = tempfile.mkdtemp(prefix=f"bots-rank{os.environ.get('RANK')}-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        argv += [f"hydra.run.dir={scratch}", "hydra.output_subdir=null"]
    elif resume and resume[-1] not in ("", "null") and not multirun:
        # A resumed run continues in its own directory rather than starting a new one.
        argv.append(f"hydra.run.dir={resume[-1]}")
    if multirun:
        argv.append("--multirun")
    if cfg_part:
        argv += ["--cfg", cfg_part]
        if resolve:
            argv.append("--resolve")
    if extra_config_dir:
        argv += ["--config-dir", str(Path(extra_config_dir).resolve())]

    @hydra.main(
        config_path=str(config_dir()),
        config_name=config_name or command.replace("-", "_"),
        version_base="1.3",
    )
    def _task(cfg: Any) -> Any:
        return run_command_function(target, cfg)

    saved = sys.argv
    sys.argv = argv
    try:
        _task()
    finally:
        sys.argv = saved
