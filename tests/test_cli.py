"""The `bots` command line, run as a user runs it: a subprocess in an empty directory."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import SMALL, run_bots

HEAVY = ("torch", "transformers", "wandb", "pandas", "vllm")


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("config.yaml") if p.parent.name != ".hydra")


def test_importing_the_cli_stays_light() -> None:
    code = ("import sys, bots_cli.cli.app; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_lists_commands_examples_and_config_groups(scratch: Path) -> None:
    out = run_bots("--help", cwd=scratch)
    assert out.returncode == 0
    assert "simulate" in out.stdout and "bots simulate" in out.stdout
    assert re.search(r"selector: .*bots.*easy2hard.*implicit_only.*mopps.*offline_band.*uniform",
                     out.stdout)
    sub = run_bots("simulate", "--help", cwd=scratch)
    assert sub.returncode == 0
    assert "--multirun" in sub.stdout and "--cfg" in sub.stdout
    assert "bots simulate -m lambda=" in sub.stdout and "selector: " in sub.stdout


def test_run_directory_layout_and_lambda_reaching_the_selector(scratch: Path) -> None:
    out = run_bots("simulate", "lambda=0.37", *SMALL, cwd=scratch)
    assert out.returncode == 0, out.stderr
    [run] = run_dirs(scratch / "outputs")
    rel = run.relative_to(scratch).as_posix()
    assert re.fullmatch(r"outputs/simulate/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}-\d{6}", rel), rel
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["selector"]["lam"] == 0.37 and cfg["compare"]["mopps"]["lam"] == 0.37
    assert {"summary.json", "curves.parquet"} <= {p.name for p in run.iterdir()}
    assert not list(scratch.rglob("*.log"))  # simulate logs nothing: no empty simulate.log
    assert "bots" in out.stdout and "uniform" in out.stdout  # the comparison table


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lambda=1.5", "error: lambda (forgetting factor) must be in [0, 1], got 1.5"),
        ("lambda=abc", "error: lambda (forgetting factor) must be a number, got 'abc'"),
        ("selector.rho=-0.2", "error: selector.rho (implicit-evidence weight ρ) must be in "
                              "[0, 1], got -0.2"),
        ("selector.target=1", "error: selector.target (target success probability p*) must be "
                              "in (0, 1), got 1"),
        ("selector.mode=best", "error: selector.mode must be one of thompson, greedy, softmax, "
                               "got 'best'"),
        ("compare.mopps.rho=0.5", "error: compare.mopps.rho: mopps is BOTS with rho = 0"),
        ("simulate.group_size=1", "error: simulate.group_size must be ≥ 2, got 1"),
        ("simulate.baseline=random", "error: simulate.baseline ('random') must be one of the "
                                     "compared selectors"),
        ("world.n_tasks=0", "error: world.n_tasks must be ≥ 1, got 0"),
    ],
)
def test_bad_values_exit_with_one_line_and_no_traceback(scratch, override, message) -> None:
    out = run_bots("simulate", override, cwd=scratch)
    assert out.returncode == 2
    assert out.stderr.startswith(message), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr + out.stdout
    assert not list(scratch.rglob("summary.json"))  # rejected before any work
    assert not (scratch / "outputs").exists()  # and its run directory removed


@pytest.mark.parametrize(("override", "message"), [
    ("lamda=0.3", "error: lamda is not a setting of bots simulate (did you mean lambda?)"),
    ("selector=best", "error: selector=best: no such option of selector"),
    ("simulate.steps", "error: cannot read the override 'simulate.steps'"),
])
def test_unknown_keys_and_options_fail_without_traceback(scratch, override, message) -> None:
    out = run_bots("simulate", override, cwd=scratch)
    assert out.returncode == 2
    assert out.stderr.startswith(message) and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr + out.stdout
    assert not (scratch / "outputs").exists()


def test_multirun_makes_one_directory_per_value(scratch: Path) -> None:
    out = run_bots("simulate", "-m", "lambda=0,0.1,1", *SMALL, cwd=scratch)
    assert out.returncode == 0, out.stderr
    jobs = run_dirs(scratch / "outputs")
    assert len(jobs) == 3
    sweep = jobs[0].parent
    assert re.fullmatch(r"outputs/multirun/simulate/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}-\d{6}",
                        sweep.relative_to(scratch).as_posix())
    assert [j.name for j in jobs] == ["0", "1", "2"]
    lams = [yaml.safe_load((j / "config.yaml").read_text())["selector"]["lam"] for j in jobs]
    assert lams == [0, 0.1, 1]
    for job in jobs:
        assert json.loads((job / "summary.json").read_text())["selectors"]["bots"]


def test_cfg_job_prints_the_config_and_runs_nothing(scratch: Path) -> None:
    out = run_bots("simulate", "--cfg", "job", "--resolve", "lambda=0.2", cwd=scratch)
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["lambda"] == 0.2 and cfg["selector"]["lam"] == 0.2
    assert not (scratch / "outputs").exists()


def test_extra_config_dir_adds_experiment_files(scratch: Path) -> None:
    exp = scratch / "myconf" / "selector"
    exp.mkdir(parents=True)
    (exp / "bots_greedy.yaml").write_text(
        "defaults:\n  - bots\n  - _self_\nmode: greedy  # posterior mean instead of a sample\n"
    )
    out = run_bots("simulate", "--config-dir", "myconf", "selector=bots_greedy", "--cfg", "job",
                   cwd=scratch)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout)["selector"]["mode"] == "greedy"


def example_cases() -> list[tuple[str, list[str], bool]]:
    from bots_cli.cli.app import COMMANDS, paths_override

    cases = []
    for cmd in COMMANDS:
        for example in cmd.examples:
            words = shlex.split(example)
            words = words[words.index(cmd.name) + 1:]  # torchrun ... -m bots_cli train ...
            multirun = "-m" in words
            words = [w for w in words if w not in ("-m", "--cfg", "job")]
            words = [w.replace("<date>", "2025-01-01").replace("<time>", "12-00-00")
                     .replace("<run a>", "a").replace("<run b>", "b") for w in words]
            args = paths_override(cmd.paths_key, words) if cmd.paths_key else words
            cases.append((cmd.name, args, multirun))
    return cases


@pytest.mark.parametrize(("command", "overrides", "multirun"), example_cases(),
                         ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_every_help_example_composes(command: str, overrides: list[str], multirun: bool) -> None:
    from bots_cli.cli.overrides import check_overrides
    from bots_cli.config import config_dir

    assert check_overrides(command, command.replace("-", "_"), overrides, conf_dir=config_dir(),
                           multirun=multirun) is not None


def test_report_help_calls_its_arguments_run_directories(scratch: Path) -> None:
    out = run_bots("report", "--help", cwd=scratch)
    assert out.returncode == 0
    assert "Run directories, or directories above runs" in " ".join(out.stdout.split())
    train = run_bots("train", "--help", cwd=scratch)
    assert "Run directories" not in train.stdout and "Hydra overrides" in train.stdout


def test_python_module_entry_point(scratch: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "bots_cli", "--help"], cwd=scratch,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "simulate" in out.stdout


def test_a_sweep_over_runs_writes_into_each_run(world: Path, tmp_path: Path) -> None:
    """`bots evaluate -m run=a,b`: each job's results (and log) go into its run, named relative
    to the working directory; no Hydra sweep folder, no job directories, no new .hydra/."""
    from tests.trainworld import build, domain

    composed = run_bots("train", "--cfg", "job", *domain(world), *build(world), cwd=tmp_path)
    assert composed.returncode == 0, composed.stderr
    for name in ("a", "b"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "config.yaml").write_text(composed.stdout)
    out = run_bots("evaluate", "-m", "run=runs/a,runs/b", "evaluate.steps=[0]", "evaluate.n=1",
                   "evaluate.max_tasks=4", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    for name in ("a", "b"):
        run = tmp_path / "runs" / name
        rows = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [0] and "eval/arith/accuracy" in rows[0]
        assert not (run / ".hydra").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # no outputs/multirun/...
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["a", "b"]
