"""Running a command function under Hydra: config composition, run directories, sweeps.

The CLI hands each command's overrides here; Hydra's own `main` does the rest, so every Hydra
feature (multirun sweeps, launchers such as submitit, `--cfg`, `hydra.*` overrides) works as
documented by Hydra. A `UserError` raised by a command becomes one line on stderr and exit code 2.

Before Hydra runs, the overrides are composed here once (`overrides.check_overrides`): a bad
group option, an unknown key or an unparsable override is one line and exit 2, and nothing is
written. The run directory (or a sweep's directory) is then fixed and created here, so that a
start refused with a `UserError` removes what it created and leaves nothing behind; a directory
that existed before (`hydra.run.dir=...`) is never removed. `bots train resume=<run>` and `bots
evaluate run=<run>` write into that run only, and leave its .hydra/ files as its start wrote them;
so does every job of a sweep over runs (`bots evaluate -m run=a,b`): each job's directory is its
run (Hydra's sweep directory is a scratch one, removed at exit), and every run is checked before
the first job starts.
The job log is opened on its first record only: a command that logs nothing leaves no empty
`<command>.log`.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bots_cli.config import config_dir
from bots_cli.errors import UserError
from bots_cli.runs.groups import train_run_dir

USER_ERROR_EXIT = 2
# What a start writes into a run directory; a refused start that wrote nothing else is removed.
_START_FILES = (".hydra", "config.yaml")


def _secondary_process() -> bool:
    """Whether this is one of a distributed launch's processes other than process 0."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("RANK", "0") != "0"


# Commands that write into an existing training run named by a key (`bots train resume=<run>`,
# `bots evaluate run=<run>`): Hydra's run directory is that run, not a new one.
INTO_RUN = {"train": "resume", "evaluate": "run"}


def _continue(run_dir: Path) -> str:
    """How to continue a directory's run when it is a `bots train` run, else nothing."""
    try:
        train_run_dir("resume", run_dir)
    except UserError:
        return ""
    return f"; continue it with `bots train resume={run_dir}`"


def fail(err: UserError) -> None:
    """Report a user error as one line and exit with USER_ERROR_EXIT."""
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(USER_ERROR_EXIT) from None


@dataclass
class RunDirs:
    """The directory this launch writes to, and what of it existed before the launch."""

    root: Path | None = None  # the run directory, or the sweep directory with -m
    created: list[Path] = field(default_factory=list)  # directories made here, outermost first
    existing: set[str] = field(default_factory=set)  # entries of `root` before the launch

    def create(self, root: Path | str, what: str) -> None:
        """Make `root` (and its missing parents), or a one-line error naming `what` set it.
        A command writes only into a directory that is new or its own: the working directory
        and a directory that holds a run already (its config.yaml, Hydra's .hydra/ or a sweep's
        multirun.yaml) are refused before anything is written."""
        if not str(root).strip():
            raise UserError(f"{what} is empty; give the run a directory of its own, or leave "
                            f"{what} out for outputs/<command>/<date>/<time>")
        root = Path(os.path.abspath(root))
        if root == Path(os.getcwd()):
            raise UserError(f"{what}={root} is the working directory; give the run a "
                            "directory of its own")
        held = [n for n in (*_START_FILES, "multirun.yaml") if (root / n).exists()]
        if held:
            raise UserError(f"{what}={root} holds a run already ({held[0]}){_continue(root)}; "
                            "choose a new directory")
        missing = [p for p in [root, *root.parents] if not p.exists()][::-1]
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create the run directory {root} ({what}): "
                            f"{err.strerror or err}") from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise UserError(f"cannot write to the run directory {root} ({what})")
        self.root, self.created = root, missing
        self.existing = set() if missing else {p.name for p in root.iterdir()}

    def discard_job(self, job_dir: Path) -> None:
        """Remove a refused job's directory when this launch created it and it holds only what
        a start writes (a directory with results, or one that existed before, is kept)."""
        if self.root is None:
            return
        job_dir = Path(os.path.abspath(job_dir))
        if job_dir == self.root:
            new = bool(self.created)
        elif job_dir.parent == self.root:
            new = bool(self.created) or job_dir.name not in self.existing
        else:
            return
        if new and job_dir.is_dir() and all(
            p.name in _START_FILES or (p.suffix == ".log" and p.stat().st_size == 0)
            for p in job_dir.iterdir()
        ):
            shutil.rmtree(job_dir, ignore_errors=True)

    def discard_empty(self) -> None:
        """After a failed launch: remove the directories made here that are left empty (a
        sweep's directory counts as empty when only Hydra's multirun.yaml is in it)."""
        for d in reversed(self.created):
            if not d.is_dir():
                continue
            entries = [p.name for p in d.iterdir()]
            if d == self.root and entries == ["multirun.yaml"]:
                (d / "multirun.yaml").unlink()
                entries = []
            if entries:
                return
            d.rmdir()


def command_function(target: str) -> Any:
    """The function `module:function` names (its module imported now)."""
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def run_command_function(target: str, cfg: Any, dirs: RunDirs | None = None,
                         lists: set[str] | None = None) -> Any:
    """Import `module:function` and call it with the composed config (its list settings given
    one bare value made lists: `overrides.as_lists`), reporting user errors; a refused start's
    new run directory is removed."""
    from bots_cli.cli.overrides import as_lists

    try:
        func = command_function(target)
        as_lists(cfg, lists or set())
        return func(cfg)
    except UserError as err:
        if dirs is not None:
            from hydra.core.hydra_config import HydraConfig

            dirs.discard_job(Path(HydraConfig.get().runtime.output_dir))
        fail(err)
    except KeyboardInterrupt:
        interrupted(cfg)


INTERRUPTED_EXIT = 130  # what a shell reports for a process stopped by Ctrl-C (128 + SIGINT)


def interrupted(cfg: Any) -> None:
    """Ctrl-C: one line saying where the work is and how to continue, then exit 130."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    command, run_dir = hc.job.name, hc.runtime.output_dir
    if command == "train":
        where = Path(str(cfg.get("resume") or run_dir))
        if _has_checkpoint(where):
            hint = f"`bots train resume={where}` continues from its last checkpoint"
        else:
            hint = (f"it had saved no checkpoint yet, so there is nothing to resume; start it "
                    f"again (its partial records are in {where})")
    elif command in ("profile-refs", "evaluate"):
        hint = "the same command resumes where it stopped"
    else:
        hint = f"its run directory is {run_dir}"
    print(f"interrupted: bots {command} stopped; {hint}", file=sys.stderr)
    raise SystemExit(INTERRUPTED_EXIT) from None


def check_jobs(check: Any, jobs: list[tuple[list[str], Any]], lists: set[str]) -> None:
    """Run a command's config check on every job of a sweep; the first refusal is one line
    naming the job, and no job has run."""
    from bots_cli.cli.overrides import as_lists

    shared = set.intersection(*(set(o) for o, _ in jobs)) if jobs else set()
    for number, (job_overrides, cfg) in enumerate(jobs):
        try:
            as_lists(cfg, lists)
            check(cfg)
        except UserError as err:
            swept = " ".join(o for o in job_overrides if o not in shared) or "no overrides"
            fail(UserError(f"{err} (job {number} of the sweep: {swept}); no job was started"))


def _has_checkpoint(run_dir: Path) -> bool:
    """Whether a training run holds a complete checkpoint of either trainer (looked up by file
    name only: no torch import while the process is being interrupted)."""
    root = run_dir / "checkpoints"
    return any(root.glob("step_*/state.pt")) or any(root.glob("checkpoint-*/bots_selector.pt"))


def into_run_sweep(key: str, overrides: list[str], jobs: list[tuple[list[str], Any]]) -> list[str]:
    """A sweep whose jobs write into the runs `key` names (`bots evaluate -m run=a,b`): the
    overrides with those runs made absolute paths (a job's directory is its run, whatever the
    working directory); [] when no job names a run (a sweep of new runs). Every run is checked
    first: a missing one is one line naming its job, and no job has started."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    named = [cfg.get(key) not in (None, "") for _, cfg in jobs]
    if not any(named):
        return []
    shared = set.intersection(*(set(o) for o, _ in jobs))
    for number, (job_overrides, cfg) in enumerate(jobs):
        swept = " ".join(o for o in job_overrides if o not in shared) or "no overrides"
        where = f"(job {number} of the sweep: {swept}); no job was started"
        if not named[number]:
            raise UserError(f"{key} is not set {where}: in a sweep over runs every job names "
                            "its run")
        try:
            train_run_dir(key, cfg.get(key))
        except UserError as err:
            raise UserError(f"{err} {where}") from None

    def absolute(value: Any) -> str:
        return _quote(os.path.abspath(os.path.expanduser(str(value))))

    out, found = [], False
    for line in overrides:
        if line.split("=", 1)[0].lstrip("+~") != key:
            out.append(line)
            continue
        parsed = OverridesParser.create().parse_override(line)
        values = (list(parsed.sweep_string_iterator()) if parsed.is_discrete_sweep()
                  else [parsed.value()])
        out.append(f"{parsed.get_key_element()}=" + ",".join(absolute(v) for v in values))
        found = True
    if not found:  # set by a config file, not on the command line
        distinct = {str(cfg.get(key)) for _, cfg in jobs}
        if len(distinct) > 1:
            raise UserError(f"the sweep's jobs name different runs through a config file; give "
                            f"them on the command line: -m {key}=<run>,<run>")
        out.append(f"{key}={absolute(distinct.pop())}")
    return out


def _quote(value: str) -> str:
    """A value as a Hydra override literal: single-quoted, with \\ and ' escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


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
    check: str | None = None,
    after_sweep: str | None = None,
) -> None:
    """Compose `conf/<config_name>.yaml` with `overrides` and run `target` (or a sweep of it).
    `check` (`module:function`, called with a job's config) validates every job of a sweep
    before the first one starts; `after_sweep` (called with the sweep's directory) sums up a
    finished sweep."""
    from bots_cli.cli.overrides import compose_overrides, file_logging, resolved_dir

    name = config_name or command.replace("-", "_")
    extra = None
    if extra_config_dir:
        extra = Path(extra_config_dir).expanduser().resolve()
        if not extra.is_dir():
            fail(UserError(f"--config-dir {extra_config_dir}: no such directory"))
    try:
        composition = compose_overrides(command, name, overrides, conf_dir=config_dir(),
                                        multirun=multirun, extra_dir=extra)
    except UserError as err:
        fail(err)
    composed = composition.first
    if multirun and cfg_part:
        fail(UserError("--cfg prints the config of one job: drop -m, or give each swept key "
                       "one value"))
    if multirun and check and not cfg_part:
        check_jobs(command_function(check), composition.jobs, composition.lists)

    key = INTO_RUN.get(command)
    into = composed.get(key) if key and composed is not None else None
    dirs = RunDirs()
    writes = cfg_part is None
    runs_swept: list[str] = []
    if multirun and key and writes:
        try:
            runs_swept = into_run_sweep(key, overrides, composition.jobs)
        except UserError as err:
            fail(err)
    argv = [f"bots {command}", *(runs_swept or overrides), f"hydra.job.name={command}"]
    try:
        if _secondary_process() and not multirun:
            # Under torchrun / accelerate launch, process 0 owns the run directory and tells the
            # others where it is; their own Hydra output goes to a scratch directory, removed
            # at exit.
            scratch = tempfile.mkdtemp(prefix=f"bots-rank{os.environ.get('RANK')}-")
            atexit.register(shutil.rmtree, scratch, ignore_errors=True)
            argv += [f"hydra.run.dir={scratch}", "hydra.output_subdir=null"]
        elif into not in (None, "") and not multirun:
            # A resumed (or evaluated) run is written in its own directory rather than a new
            # one; its .hydra/ files stay those of its start (a refused resume changes nothing).
            run_dir = train_run_dir(str(key), into)
            argv += [f"hydra.run.dir={_quote(str(run_dir))}", "hydra.output_subdir=null"]
        elif runs_swept:
            # Each job's directory is the run it names (an absolute path: os.path.join keeps it);
            # Hydra's multirun.yaml goes to a scratch sweep directory, removed at exit.
            scratch = tempfile.mkdtemp(prefix=f"bots-{command}-sweep-")
            atexit.register(shutil.rmtree, scratch, ignore_errors=True)
            argv += [f"hydra.sweep.dir={_quote(scratch)}", f"hydra.sweep.subdir=${{{key}}}",
                     "hydra.output_subdir=null"]
        elif writes:
            dir_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
            root = resolved_dir(composed, dir_key)
            if root is not None:
                # Fixed here (the timestamp resolved once), so this launch knows what it made.
                dirs.create(root, dir_key)
                argv.append(f"{dir_key}={_quote(str(dirs.root))}")
    except UserError as err:
        fail(err)
    if file_logging(composed):
        argv.append("++hydra.job_logging.handlers.file.delay=true")  # no empty <command>.log
    if multirun:
        argv.append("--multirun")
    if cfg_part:
        argv += ["--cfg", cfg_part]
        if resolve:
            argv.append("--resolve")
    if extra is not None:
        argv += ["--config-dir", str(extra)]

    import hydra

    @hydra.main(config_path=str(config_dir()), config_name=name, version_base="1.3")
    def _task(cfg: Any) -> Any:
        return run_command_function(target, cfg, dirs, composition.lists)

    saved = sys.argv
    sys.argv = argv
    ok = False
    try:
        _task()
        ok = True
    finally:
        sys.argv = saved
        if not ok:
            dirs.discard_empty()
    if multirun and after_sweep and dirs.root is not None:
        command_function(after_sweep)(dirs.root)
