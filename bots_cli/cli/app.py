"""The `bots` command line: one Typer command per toolkit command, each a thin wrapper.

A command is a row of `COMMANDS`: the function it runs (`module:function`, imported only when
the command runs, so `bots --help` stays fast), its Hydra config, and examples for its help.
Adding a command means adding a row; the wrapper, the Hydra plumbing and the help are shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated

import typer

from bots_cli.cli.launch import INTERRUPTED_EXIT, launch
from bots_cli.config import config_dir


@dataclass(frozen=True)
class Command:
    name: str
    target: str  # "module:function", called with the composed config
    summary: str
    examples: list[str] = field(default_factory=list)
    paths_key: str | None = None  # bare arguments (no "=") become this list override
    check: str | None = None  # "module:function" validating a job's config (every job of -m)
    after_sweep: str | None = None  # "module:function" called with a finished sweep's directory


def paths_override(key: str, overrides: list[str]) -> list[str]:
    """`bots report a b x=1` -> ["x=1", "key=['a','b']"]: paths need no Hydra syntax."""
    paths = [o for o in overrides if "=" not in o]
    if not paths:
        return overrides
    quoted = ",".join("'" + p.replace("\\", "\\\\").replace("'", "\\'") + "'" for p in paths)
    return [o for o in overrides if "=" in o] + [f"{key}=[{quoted}]"]


COMMANDS = [
    Command(
        name="simulate",
        target="bots_cli.simulate.run:simulate",
        check="bots_cli.simulate.run:check_config",
        after_sweep="bots_cli.simulate.report:sweep_summary",
        summary="Compare task selectors on a synthetic learner in seconds (no model, no GPU).",
        examples=[
            "bots simulate",
            "bots simulate selector=mopps lambda=0.3",
            "bots simulate selector.rho=0.5 simulate.seeds=5",
            "bots simulate -m lambda=0,0.05,0.1,0.3,1",
            "bots simulate --cfg job",
        ],
    ),
    Command(
        name="make-data",
        target="bots_cli.domains.make_data:make_data",
        summary="Generate a domain's train/eval task tables (seeded; rewrites data/<domain>/).",
        examples=[
            "bots make-data domain=logic make_data.out_dir=mydata/logic",
            "bots make-data domain=arith domain.generate.n_train=20000 "
            "make_data.out_dir=mydata/arith",
            "bots make-data domain=arith",
        ],
    ),
    Command(
        name="profile-refs",
        target="bots_cli.references.profile:profile_refs",
        summary="Per-task pass rates of the weak and strong reference models (resumable).",
        examples=[
            "bots profile-refs domain=arith",
            "bots profile-refs domain=arith profile.max_tasks=500 profile.n=8",
            "bots profile-refs domain=logic refs=qwen engine=vllm",
        ],
    ),
    Command(
        name="train",
        target="bots_cli.train.command:train",
        check="bots_cli.train.command:check_config",
        summary="GRPO finetuning with a task selector choosing every batch (resumable).",
        examples=[
            "bots train",
            "bots train selector=uniform train.steps=200",
            "bots train resume=outputs/train/<date>/<time>",
            "bots train -m lambda=0.05,0.1,0.3",
            "bots train model=qwen7b refs=qwen selector=bots lambda=0.5 engine=vllm",
            "bots train trainer=trl train.steps=50",
            "torchrun --standalone --nproc_per_node 2 -m bots_cli train trainer=trl",
        ],
    ),
    Command(
        name="evaluate",
        target="bots_cli.evaluation.command:evaluate",
        summary="Evaluate a run's checkpoints (or a model) on held-out tasks: avg@k, pass@k.",
        examples=[
            "bots evaluate run=outputs/train/<date>/<time>",
            "bots evaluate run=outputs/train/<date>/<time> evaluate.steps=[0,400] evaluate.n=16",
            "bots evaluate model=tiny model.checkpoint=strong",
            "bots evaluate model=qwen7b domain=math engine=vllm",
        ],
    ),
    Command(
        name="report",
        target="bots_cli.analysis.report:report",
        summary="Compare training runs with a baseline: TTB, BSF, ETR table, report.md, plots.",
        examples=[
            "bots report outputs/multirun/train/<date>/<time>",
            "bots report outputs/train/<date>/<run a> outputs/train/<date>/<run b>",
            "bots report outputs/multirun/train/<date>/<time> report.baseline=uniform",
        ],
        paths_key="report.runs",
    ),
    Command(
        name="inspect",
        target="bots_cli.analysis.inspect:inspect",
        summary="What a run's selector chose: levels over training, pass rates, repeats, "
                "calibration.",
        examples=[
            "bots inspect outputs/train/<date>/<time>",
            "bots inspect outputs/multirun/train/<date>/<time> inspect.column=domain",
            "bots inspect outputs/train/<date>/<time> inspect.windows=10",
        ],
        paths_key="inspect.runs",
    ),
    Command(
        name="export",
        target="bots_cli.integrations.export:export",
        summary="Write a domain's task tables for verl (parquet) or TRL (jsonl), with pass rates.",
        examples=[
            "bots export domain=arith format=verl export.out_dir=exports/arith",
            "bots export domain=logic format=trl export.out_dir=exports/logic",
        ],
    ),
    Command(
        name="build-tiny",
        target="bots_cli.models.build_command:build_tiny_command",
        summary="Check (or build) the tiny world's weak and strong checkpoints (shipped in data/).",
        examples=[
            "bots build-tiny",
            "bots build-tiny build.verify=true",
            "bots build-tiny model.build.weak_steps=2000 model.build.strong_steps=4000",
            "bots build-tiny build.force=true model.build.seed=1",
        ],
    ),
]


def config_groups() -> dict[str, list[str]]:
    """Config groups under conf/ and their options, read from the directory tree (no Hydra)."""
    root = config_dir()
    groups: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root)
        if len(rel.parts) > 1:
            groups.setdefault("/".join(rel.parts[:-1]), []).append(path.stem)
    return groups


def _block(title: str, lines: list[str]) -> str:
    """A help paragraph that click prints as is (\\b stops it from re-wrapping the lines)."""
    return "\b\n" + title + "\n" + "\n".join(f"  {line}" for line in lines)


def _groups_help() -> str:
    groups = [f"{group}: {', '.join(options)}" for group, options in config_groups().items()]
    return _block("Config groups (choose with group=option):", groups)


class CfgPart(str, Enum):
    job = "job"
    hydra = "hydra"
    all = "all"


OVERRIDES_HELP = "Hydra overrides: key=value, group=option, +key=value, ~key."


def _register(app: typer.Typer, cmd: Command) -> None:
    epilog = _block("Examples:", cmd.examples) + "\n\n" + _groups_help()
    arguments = OVERRIDES_HELP
    if cmd.paths_key:
        arguments = (f"Run directories, or directories above runs such as a sweep (bare "
                     f"arguments, no '='; they fill {cmd.paths_key}), then {OVERRIDES_HELP}")

    def run(
        overrides: Annotated[
            list[str] | None,
            typer.Argument(help=OVERRIDES_HELP, show_default=False),
        ] = None,
        multirun: Annotated[
            bool, typer.Option("--multirun", "-m", help="Sweep: one job per combination of "
                               "comma-separated values (lambda=0,0.1,1).")
        ] = False,
        cfg: Annotated[
            CfgPart | None,
            typer.Option("--cfg", "-c", help="Print the composed config and exit."),
        ] = None,
        resolve: Annotated[
            bool, typer.Option("--resolve", help="With --cfg: resolve interpolations.")
        ] = False,
        config_dir_: Annotated[
            str | None,
            typer.Option("--config-dir", help="An extra directory of configs (your own "
                         "experiment files) to search before the built-in ones."),
        ] = None,
    ) -> None:
        launch(
            cmd.name,
            cmd.target,
            paths_override(cmd.paths_key, list(overrides or [])) if cmd.paths_key
            else list(overrides or []),
            multirun=multirun,
            cfg_part=cfg.value if cfg else None,
            resolve=resolve,
            extra_config_dir=config_dir_,
            check=cmd.check,
            after_sweep=cmd.after_sweep,
        )

    # The annotations are strings (postponed evaluation) read in this module's globals, so the
    # command's own argument help is set as an evaluated annotation.
    run.__annotations__["overrides"] = Annotated[
        list[str] | None, typer.Argument(help=arguments, show_default=False)]
    app.command(cmd.name, help=cmd.summary, epilog=epilog)(run)


def build_app() -> typer.Typer:
    examples = [e for cmd in COMMANDS for e in cmd.examples[:2]]
    app = typer.Typer(
        name="bots",
        help="BOTS: Bayesian Online Task Selection for reinforcement finetuning of LLMs.",
        epilog=_block("Examples:", examples) + "\n\n" + _groups_help(),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    @app.callback()
    def _root() -> None:
        """BOTS: Bayesian Online Task Selection for reinforcement finetuning of LLMs.

        Every command takes Hydra overrides (key=value, group=option), -m for sweeps and --cfg
        to print its config. Runs are written to outputs/<command>/<date>/<time>/.
        """

    for cmd in COMMANDS:
        _register(app, cmd)
    return app


app = build_app()


def main() -> None:
    try:
        app()
    finally:
        _quiet_interrupt_at_exit()


def _quiet_interrupt_at_exit() -> None:
    """Once the command is over, Ctrl-C only ends the process: pressed while the interpreter
    runs its exit handlers (wandb, logging, temporary files), it would print "Exception ignored
    in atexit callback ... KeyboardInterrupt" and a traceback. The command has said what it did
    already; the process leaves at once with the interrupted exit code, 130."""
    import contextlib
    import os
    import signal
    import sys
    import threading

    def leave(signum: int, frame: object) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a stream closed by then
                stream.flush()
        os._exit(INTERRUPTED_EXIT)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, leave)
