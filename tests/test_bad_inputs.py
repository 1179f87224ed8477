"""Bad inputs as users typed them: one line on stderr, exit code 2, no traceback, and nothing
written where the user did not ask (no run directory, no empty log, no rewritten .hydra files).

Every case here fails before a model is loaded, so each is a subprocess of about a second.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import SMALL, run_bots


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")} if root.exists() else set()


def one_line_error(out, start: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"error: {start}"), out.stderr
    return out.stderr.strip()


def fake_run(scratch: Path) -> Path:
    """A directory that looks like a `bots train` run: config.yaml and Hydra's .hydra/."""
    run = scratch / "run"
    (run / ".hydra").mkdir(parents=True)
    out = run_bots("train", "--cfg", "job", cwd=scratch)
    assert out.returncode == 0, out.stderr
    (run / "config.yaml").write_text(out.stdout)
    (run / ".hydra" / "overrides.yaml").write_text("- selector=bots\n")
    return run


# -- item 2: nothing is written where the user did not ask ------------------------------------

def test_a_rejected_value_leaves_no_run_directory(scratch: Path) -> None:
    out = run_bots("simulate", "lambda=2", cwd=scratch)
    one_line_error(out, "lambda (forgetting factor) must be in [0, 1], got 2")
    assert not (scratch / "outputs").exists()


def test_a_refused_start_in_an_existing_directory_keeps_it(scratch: Path) -> None:
    mine = scratch / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    out = run_bots("simulate", "lambda=2", f"hydra.run.dir={mine}", cwd=scratch)
    one_line_error(out, "lambda (forgetting factor)")
    assert (mine / "notes.txt").read_text() == "keep me"


def test_a_successful_run_leaves_no_empty_log(scratch: Path) -> None:
    out = run_bots("simulate", *SMALL, cwd=scratch)
    assert out.returncode == 0, out.stderr
    assert list(scratch.rglob("summary.json"))
    assert not [p for p in scratch.rglob("*.log") if p.stat().st_size == 0]


def test_a_sweep_with_one_bad_job_starts_none(scratch: Path) -> None:
    """Every job of a sweep is checked before the first starts (issue 23, item 7)."""
    out = run_bots("simulate", "-m", "lambda=0.1,2,0.3", *SMALL, cwd=scratch)
    one_line_error(out, "lambda (forgetting factor) must be in [0, 1], got 2 (job 1 of the "
                        "sweep: lambda=2); no job was started")
    assert not (scratch / "outputs").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["train.group_size=4,1"], "train.group_size must be ≥ 2, got 1: GRPO's advantages compare "
                               "the completions of one task with each other (job 1 of the "
                               "sweep: train.group_size=1)"),
    (["train.batch_size=4,6", "train.mini_batch_size=2,4"],  # only one combination is bad
     "train.mini_batch_size (4) must divide train.batch_size (6): each optimizer step takes an "
     "equal share of the batch (job 3 of the sweep: train.batch_size=6 "
     "train.mini_batch_size=4)"),
    (["experiment=demo", "train.lr=1e-5,-1"],  # the experiment sweeps selector=bots,uniform
     "train.lr must be > 0, got -1 (job 1 of the sweep: selector=bots train.lr=-1)"),
])
def test_every_job_of_a_training_sweep_is_checked_first(scratch: Path, args: list[str],
                                                        message: str) -> None:
    one_line_error(run_bots("train", "-m", *args, cwd=scratch), message)
    assert not (scratch / "outputs").exists()


def snapshot(root: Path) -> dict[str, bytes]:
    return {p: (root / p).read_bytes() for p in files_under(root) if (root / p).is_file()}


@pytest.mark.parametrize(("command", "extra"), [
    ("simulate", SMALL),
    ("train", ["train.steps=1"]),
    ("profile-refs", []),
    ("make-data", ["make_data.out_dir=somewhere"]),
])
def test_a_run_directory_that_holds_a_run_is_never_written_into(scratch: Path, command: str,
                                                                extra: list[str]) -> None:
    """Issue 23 items 4 and 5: hydra.run.dir naming another run is refused before Hydra writes
    its .hydra/ there; nothing of that run changes."""
    run = fake_run(scratch)
    before = snapshot(run)
    out = run_bots(command, *extra, f"hydra.run.dir={run}", cwd=scratch)
    message = one_line_error(out, f"hydra.run.dir={run} holds a run already")
    assert message.endswith(f"continue it with `bots train resume={run}`; choose a new "
                            "directory")
    assert snapshot(run) == before
    assert not (scratch / "outputs").exists() and not (scratch / "somewhere").exists()


def test_a_sweep_directory_that_holds_a_sweep_is_refused(scratch: Path) -> None:
    sweep = scratch / "sweep"
    out = run_bots("simulate", "-m", "lambda=0.1", *SMALL, f"hydra.sweep.dir={sweep}",
                   cwd=scratch)
    assert out.returncode == 0, out.stderr
    before = snapshot(sweep)
    out = run_bots("simulate", "-m", "lambda=0.3", *SMALL, f"hydra.sweep.dir={sweep}",
                   cwd=scratch)
    one_line_error(out, f"hydra.sweep.dir={sweep} holds a run already (multirun.yaml); choose "
                        "a new directory")
    assert snapshot(sweep) == before


@pytest.mark.parametrize("value", ["", ".", "$PWD"])
def test_the_working_directory_is_no_run_directory(scratch: Path, value: str) -> None:
    value = value.replace("$PWD", str(scratch))
    out = run_bots("simulate", *SMALL, f"hydra.run.dir={value}", cwd=scratch)
    one_line_error(out, "hydra.run.dir")
    assert files_under(scratch) == set()


def test_resume_of_a_missing_directory_creates_nothing(scratch: Path) -> None:
    missing = scratch / "nonexistent"
    out = run_bots("train", f"resume={missing}", cwd=scratch)
    one_line_error(out, f"resume={missing}: no such run directory")
    assert not missing.exists() and not (scratch / "outputs").exists()


def test_resume_of_a_folder_that_is_not_a_run_writes_nothing_into_it(scratch: Path) -> None:
    folder = scratch / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"x")
    out = run_bots("train", f"resume={folder}", cwd=scratch)
    one_line_error(out, f"resume={folder}: no config.yaml there")
    (folder / "config.yaml").write_text("lambda: 0.1\nsimulate: {steps: 3}\n")
    out = run_bots("train", f"resume={folder}", cwd=scratch)
    one_line_error(out, f"resume={folder}: {folder / 'config.yaml'} is not the config of a "
                        "`bots train` run")
    assert files_under(folder) == {"a.jpg", "config.yaml"}


def test_a_refused_resume_leaves_the_run_as_it_was(scratch: Path) -> None:
    run = fake_run(scratch)
    before = {p: (run / p).read_bytes() for p in files_under(run) if (run / p).is_file()}
    out = run_bots("train", f"resume={run}", "selector=uniform", cwd=scratch)
    one_line_error(out, "selector cannot change when resuming")
    out = run_bots("train", f"resume={run}", cwd=scratch)  # no checkpoint: refused early
    one_line_error(out, f"{run} has no complete checkpoint to resume from")
    after = {p: (run / p).read_bytes() for p in files_under(run) if (run / p).is_file()}
    assert after == before  # .hydra/overrides.yaml not rewritten, no train.log
    assert not (scratch / "outputs").exists()


def test_evaluate_of_a_run_writes_no_directory_of_its_own(scratch: Path) -> None:
    run = fake_run(scratch)
    out = run_bots("evaluate", f"run={run}", "evaluate.steps=[100]", cwd=scratch)
    one_line_error(out, f"run {run} has no checkpoint at step 100")
    assert not (scratch / "outputs").exists()
    assert files_under(run) == {".hydra", ".hydra/overrides.yaml", "config.yaml"}
    out = run_bots("evaluate", f"run={scratch / 'nope'}", cwd=scratch)
    one_line_error(out, f"run={scratch / 'nope'}: no such run directory")
    assert not (scratch / "nope").exists()


@pytest.mark.parametrize(("command", "key"), [("evaluate", "run"), ("train", "resume")])
def test_a_sweep_over_runs_checks_every_run_before_the_first_job(scratch: Path, command: str,
                                                                 key: str) -> None:
    run = fake_run(scratch)
    before = snapshot(run)
    out = run_bots(command, "-m", f"{key}=run,nope", "evaluate.steps=[100]"
                   if command == "evaluate" else "train.steps=9", cwd=scratch)
    one_line_error(out, f"{key}=nope: no such run directory (job 1 of the sweep: {key}=nope); "
                        "no job was started")
    assert snapshot(run) == before and files_under(scratch / "outputs") == set()


# -- item 3: every bad input is one line, exit code 2 ------------------------------------------

@pytest.mark.parametrize(("command", "override", "message"), [
    ("train", "selector=bogus", "selector=bogus: no such option of selector (did you mean "
                                "bots?); options: adarft, bots, bots_calibrated, dps, easy2hard, "
                                "greso, implicit_only, learnability, mopps, offline_band, "
                                "speed, uniform"),
    ("train", "domain=bogus", "domain=bogus: no such option of domain; options: arith, code, "
                              "logic, math"),
    ("train", "model=bogus", "model=bogus: no such option of model; options: "),
    ("train", "train.bogus=1", "train.bogus is not a setting of bots train; `bots train --cfg "
                               "job` prints them all"),
    ("train", "train.stpes=5", "train.stpes is not a setting of bots train (did you mean "
                               "train.steps?)"),
    ("train", "selecter=bots", "selecter is not a setting of bots train (did you mean "
                               "selector?)"),
    ("train", "steps=5", "steps is not a setting of bots train (did you mean train.steps?)"),
    ("train", "selecter.rho=1", "selecter.rho is not a setting of bots train: it has no "
                                "section 'selecter' (did you mean selector?)"),
    ("train", "trainer=trl +trainer.trl.vllm_host=x",
     "+trainer.trl.vllm_host=x: trainer.trl.vllm_host is not a setting of bots train (did you "
     "mean trainer.trl.vllm_mode?); other keys go under trainer.trl.args"),
    ("train", "+train.bogus=1", "+train.bogus=1: train.bogus is not a setting of bots train"),
    ("train", "+selector.rhoo=0.2", "+selector.rhoo=0.2: selector.rhoo is not a setting of "
                                    "bots train (did you mean selector.rho?)"),
    ("train", "+train.steps=3", "+train.steps: train.steps is a setting already; set it "
                                "without the + (train.steps=...)"),
    ("profile-refs", "logger=none", "logger is not a config group of bots profile-refs; its "
                                    "groups: domain, engine, refs, sampling"),
    ("simulate", "lambda=0,1", "lambda=0,1: a comma makes a sweep; add -m"),
    ("simulate", "simulate.steps", "cannot read the override 'simulate.steps'"),
    ("simulate", "hydra.run.dir=/proc/x", "cannot create the run directory /proc/x "
                                          "(hydra.run.dir)"),
])
def test_bad_overrides_are_one_line(scratch: Path, command: str, override: str,
                                    message: str) -> None:
    one_line_error(run_bots(command, *override.split(), cwd=scratch), message)
    assert not (scratch / "outputs").exists()


def test_bad_overrides_are_refused_with_cfg_too(scratch: Path) -> None:
    one_line_error(run_bots("train", "+train.bogus=1", "--cfg", "job", cwd=scratch),
                   "+train.bogus=1: train.bogus is not a setting")
    one_line_error(run_bots("simulate", "-m", "selector=bots,bogus", "--cfg", "job",
                            cwd=scratch), "selector=bogus: no such option of selector")


def test_plus_keys_pass_through_free_form_sections(scratch: Path) -> None:
    out = run_bots("train", "trainer=trl", "+trainer.trl.args.mask_truncated_completions=true",
                   "+domain.columns.source=origin", "--cfg", "job", cwd=scratch)
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["trainer"]["trl"]["args"] == {"mask_truncated_completions": True}
    assert cfg["domain"]["columns"]["source"] == "origin"


def test_a_config_group_added_with_plus_is_no_unknown_key(scratch: Path) -> None:
    exp = scratch / "myconf" / "experiment"
    exp.mkdir(parents=True)
    (exp / "short.yaml").write_text("# @package _global_\nsimulate:\n  steps: 7  # shorter\n")
    out = run_bots("simulate", "--config-dir", "myconf", "+experiment=short", "--cfg", "job",
                   cwd=scratch)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout)["simulate"]["steps"] == 7


def test_make_data_into_a_file_is_one_line(scratch: Path) -> None:
    (scratch / "afile").write_text("")
    out = run_bots("make-data", "make_data.out_dir=afile", cwd=scratch)
    one_line_error(out, "make_data.out_dir=afile is a file, not a directory")
    out = run_bots("make-data", "make_data.out_dir=/proc/x", cwd=scratch)
    one_line_error(out, "make_data.out_dir=/proc/x: cannot create it")
    assert files_under(scratch) == {"afile"}


@pytest.mark.parametrize(("args", "message"), [
    (["-m", "lambda=0,1", "--cfg", "job"], "--cfg prints the config of one job: drop -m"),
    (["-m", "selector=glob(zz*)"], "selector=glob(zz*): the sweep has no values"),
    (["-m", "simulate.steps=interval(1,2)"], "simulate.steps=interval(1,2): Hydra's basic "
                                             "sweeper runs lists of values only"),
])
def test_sweeps_hydra_cannot_run_are_one_line(scratch: Path, args: list[str],
                                              message: str) -> None:
    one_line_error(run_bots("simulate", *args, cwd=scratch), message)
    assert not (scratch / "outputs").exists()


def test_glob_sweeps_over_config_groups_still_run(scratch: Path) -> None:
    out = run_bots("simulate", "-m", "selector=glob(u*)", *SMALL, cwd=scratch)
    assert out.returncode == 0, out.stderr
    [job] = [p.parent for p in scratch.rglob("summary.json")]
    assert yaml.safe_load((job / "config.yaml").read_text())["selector"]["name"] == "uniform"


def test_ctrl_c_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) stops a command with one line saying where its work is, no traceback."""
    import signal
    import subprocess
    import time

    from tests.conftest import BOTS

    def as_in_a_terminal() -> None:  # a background job (CI under `&`) inherits SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([str(BOTS), "simulate", "simulate.steps=1000000", "simulate.seeds=1"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=as_in_a_terminal)
    def started() -> bool:  # simulate's own config.yaml (not Hydra's): inside the command
        return any(p.parent.name != ".hydra" for p in (tmp_path / "outputs").rglob("config.yaml"))

    deadline = time.monotonic() + 120
    while not started():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [err.strip()] and "Traceback" not in err
    assert err.startswith("interrupted: bots simulate stopped; its run directory is ")


# -- issue 23 item 1: one bare value for a list setting is a list of that value ---------------

@pytest.mark.parametrize(("command", "overrides", "message"), [
    ("evaluate", ["evaluate.domains=bogus"], "evaluate.domains: no domain 'bogus' (known: "),
    ("evaluate", ["evaluate.steps=4"], "evaluate.steps=[4] picks checkpoints of a training run, "
                                       "and no run=<dir> is given"),
    ("train", ["train.levels=99"], "train.levels: no task of the train split has level 99"),
    ("simulate", ["selector.prior=abc"], "selector.prior must be a pair (a0, b0), got ('abc',)"),
    ("simulate", ["compare.mopps.prior=7"], "compare.mopps.prior must be a pair (a0, b0)"),
    ("train", ["train.levels={a: 1}"], "train.levels is a list, not a section; write "
                                        "train.levels=[a,b]"),
])
def test_a_bare_value_for_a_list_setting_is_one_element(scratch: Path, command: str,
                                                         overrides: list[str],
                                                         message: str) -> None:
    one_line_error(run_bots(command, *overrides, cwd=scratch), message)
    assert not (scratch / "outputs").exists()


def test_a_bare_split_exports_that_split(scratch: Path) -> None:
    out = run_bots("export", "export.splits=eval", "export.out_dir=out",
                   "export.references=none", cwd=scratch)
    assert out.returncode == 0, out.stderr
    assert files_under(scratch / "out") == {"eval.parquet"}


def test_list_settings_of_every_command_take_a_bare_value() -> None:
    """The class, in-process: every setting whose default is a list (or that NULL_LISTS names)
    becomes a one-element list, whichever command and config group it belongs to."""
    from bots_cli.cli.overrides import as_lists, compose_overrides
    from bots_cli.config import config_dir

    cases = {
        "train": ["sampling.stop=STOP1", "train.betas=0.9", "logger=wandb", "logger.tags=mine",
                  "trainer=trl", "trainer.trl.report_to=tensorboard", "train.levels=5",
                  "selector.success.reward_range=1", "model.build.level_weights=2"],
        "evaluate": ["evaluate.steps=abc", "evaluate.domains=logic"],
        "export": ["export.splits=train"],
        "report": ["report.runs=some/run"],
    }
    for command, overrides in cases.items():
        composed = compose_overrides(command, command, overrides, conf_dir=config_dir())
        cfg = composed.first
        as_lists(cfg, composed.lists)
        for override in overrides:
            key, value = override.split("=")
            if key in ("logger", "trainer"):
                continue
            got = cfg
            for part in key.split("."):
                got = got[part]
            assert list(got) == [yaml.safe_load(value)], (command, key, got)


# -- issue 23 items 6, 8, 11: a setting that would be silently wrong or ignored is refused ------

@pytest.mark.parametrize(("command", "override", "message"), [
    ("train", "selector.success.threshold=2", "selector.success.threshold=2: the domains' "
                                              "rewards lie in [0, 1], so every completion "
                                              "would count as a failure"),
    ("train", "selector.success.threshold=0", "selector.success.threshold=0: the domains' "
                                              "rewards lie in [0, 1], so every completion "
                                              "would count as a success"),
    ("simulate", "selector.success.threshold=0.5", "selector.success.threshold=0.5: bots "
                                                   "simulate's rollouts are successes (0 or 1) "
                                                   "already"),
    ("simulate", "compare.uniform.success.reward_range=[0,2]",
     "compare.uniform.success.reward_range=[0, 2]: bots simulate's rollouts are successes"),
    ("train", "sampling.temperature=0", "sampling.temperature=0 gives every completion of a "
                                        "group the same text"),
    ("train", "trainer=trl sampling.temperature=0", "sampling.temperature=0 gives every "
                                                    "completion of a group the same text"),
    ("train", "model.dtype=int8", "model.dtype=int8: bots train sets the policy's dtype from "
                                  "train.precision"),
    ("train", "model.dtype=float16", "model.dtype=float16: bots train sets the policy's dtype"),
    # SPEED's screening runs in the native loop only, within the group, and not on top of
    # dynamic sampling
    ("train", "trainer=trl selector=speed", "selector.name=speed: this selector screens "
                                            "candidates with 4 extra rollouts each before every "
                                            "batch, a protocol only bots simulate and the native "
                                            "bots train run; trainer=trl and the verl adapter "
                                            "cannot"),
    ("train", "selector=speed train.group_size=4", "selector.screen_rollouts (4) must be < "
                                                   "train.group_size (4): a kept task's "
                                                   "screening rollouts are the first of its "
                                                   "group"),
    ("train", "selector=speed train.dynamic_sampling.enabled=true",
     "selector=speed and train.dynamic_sampling both buy a batch of informative groups"),
    # late feedback is not for dynamic sampling's refills
    ("train", "trainer=trl train.feedback_delay=2 train.dynamic_sampling.enabled=true",
     "train.feedback_delay=2 with train.dynamic_sampling: refill rounds need the feedback"),
    ("train", "train.feedback_delay=1 train.dynamic_sampling.enabled=true",
     "train.feedback_delay=1 with train.dynamic_sampling: refill rounds need the feedback"),
    ("train", "train.feedback_delay=-1", "train.feedback_delay must be ≥ 0"),
])
def test_settings_that_would_be_wrong_or_ignored_are_refused(scratch: Path, command: str,
                                                             override: str,
                                                             message: str) -> None:
    one_line_error(run_bots(command, *override.split(), cwd=scratch), message)
    assert not (scratch / "outputs").exists()


# -- issue 23 item 2: a run is one seed however it is reached ---------------------------------

def _hand_made_run(path: Path, selector: str, scores: list[float],
                   config: dict | None = None) -> Path:
    """A training run as `bots report` reads it: config.yaml (a whole `bots train` config when
    given) and metrics.jsonl."""
    import json

    path.mkdir(parents=True)
    config = config or {"train": {}, "selector": {}}
    config.update(seed=0, train={**config["train"], "steps": 30},
                  selector={**config["selector"], "name": selector})
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [{"step": step, "train/etr": 0.5, "train/zero_variance_share": 0.5,
             "selector/explored_share": 1.0, "time/select": 0.01, "time/selector_update": 0.01,
             "time/step": 1.0, "eval/accuracy": score}
            for step, score in zip((0, 10, 20, 30), scores, strict=True)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("named", [
    ["sweep", "sweep/1"],            # a sweep and one of its jobs
    ["sweep", "sweep"],              # a directory twice
    ["sweep/0", "sweep/1", "sweep/./1", "link"],  # a job by two spellings, and a symlink to it
])
def test_report_counts_a_run_reached_twice_once(scratch: Path, named: list[str]) -> None:
    import json

    _hand_made_run(scratch / "sweep" / "0", "uniform", [0.1, 0.2, 0.3, 0.6])
    _hand_made_run(scratch / "sweep" / "1", "bots", [0.1, 0.4, 0.6, 0.6])
    (scratch / "link").symlink_to(scratch / "sweep" / "1")
    out = run_bots("report", *named, "report.plot=false", "report.chosen=false", cwd=scratch)
    assert out.returncode == 0, out.stderr
    [summary] = list((scratch / "outputs").rglob("summary.json"))
    groups = json.loads(summary.read_text())["groups"]
    assert {name: len(g["ttb_100"]["values"]) for name, g in groups.items()} == {"uniform": 1,
                                                                              "bots": 1}
    assert "0.67?" in out.stdout  # one seed: a single draw, marked as such


# -- issue 23 item 3: the shipped tiny build is never replaced by another recipe --------------

def test_another_tiny_recipe_builds_beside_the_shipped_one() -> None:
    from omegaconf import OmegaConf

    from bots_cli.config import config_dir
    from bots_cli.models.build import TinySettings

    cfg = OmegaConf.load(config_dir() / "model" / "tiny.yaml")
    shipped = TinySettings.from_config(cfg).build_dir
    assert shipped.name == "arith"
    for key, value in [("weak_steps", 5), ("strong_steps", 10_000), ("seed", 1), ("lr", 0.01)]:
        other = cfg.copy()
        other.build[key] = value
        beside = TinySettings.from_config(other).build_dir
        assert beside.parent == shipped.parent and beside.name.startswith("arith-")
        assert beside == TinySettings.from_config(other).build_dir  # the same recipe, one place
    elsewhere = cfg.copy()
    elsewhere.build.update(dir="/somewhere", weak_steps=5)
    assert TinySettings.from_config(elsewhere).build_dir == Path("/somewhere/arith")


def test_a_tiny_build_without_warm_start_steps_is_refused(scratch: Path) -> None:
    out = run_bots("build-tiny", "model.build.weak_steps=0", cwd=scratch)
    one_line_error(out, "model.build.weak_steps must be ≥ 1, got 0")
    assert not (scratch / "outputs").exists()


# -- issue 23 item 9: a run whose records do not match its checkpoint is not resumed -----------

@pytest.mark.parametrize(("records", "held"), [
    ({}, "metrics.jsonl is missing"),
    ({"metrics": [0, 1]}, "metrics.jsonl stops at step 1"),
    ({"metrics": [0, 1, 2]}, "selections.parquet is missing"),
    ({"metrics": [0, 1, 2], "selections": [1]}, "selections.parquet stops at step 1"),
])
def test_resume_refuses_records_that_stop_before_the_checkpoint(scratch: Path, records: dict,
                                                                held: str) -> None:
    import json

    import pandas as pd

    run = fake_run(scratch)
    _checkpoint(run, 2)  # well-formed files (below): only the records are wrong
    if "metrics" in records:
        (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n"
                                                   for s in records["metrics"]))
    if "selections" in records:
        pd.DataFrame({"step": records["selections"], "task_id": "t"}).to_parquet(
            run / "selections.parquet")
    before = snapshot(run)
    out = run_bots("train", f"resume={run}", cwd=scratch)
    one_line_error(out, f"{run / held}, but the checkpoint to resume from is of step 2: the "
                        "run's records do not match it; restore it from a copy, or start a new "
                        "run")
    assert snapshot(run) == before


# -- issue 23 items 10, 11: evaluate refuses what would score 0 or be ignored ------------------

def test_evaluate_refuses_prompts_longer_than_the_context(scratch: Path) -> None:
    out = run_bots("evaluate", "model=tiny", "domain=logic", "evaluate.max_tasks=4", cwd=scratch)
    one_line_error(out, "task 'logic-eval-00000' (logic eval split): its prompt is ")
    assert "but the model's context of 512 tokens leaves 0 for it" in out.stderr
    assert not (scratch / "outputs").exists()


@pytest.mark.parametrize(("override", "instead"), [
    ("model=qwen7b", "evaluate a model without run="),
    ("model.checkpoint=strong", "evaluate a model without run="),
    ("domain=logic", "evaluate.domains=[...]"),
    ("sampling.temperature=0", "evaluate.temperature=..."),
])
def test_evaluate_of_a_run_refuses_what_the_run_brings(scratch: Path, override: str,
                                                       instead: str) -> None:
    run = fake_run(scratch)
    before = snapshot(run)
    out = run_bots("evaluate", f"run={run}", override, cwd=scratch)
    group = override.split("=")[0].split(".")[0]
    one_line_error(out, f"{override}: with run=<dir> the run's own {group} is evaluated, so "
                        f"this would be ignored; drop it (use {instead})")
    assert snapshot(run) == before


# -- issue 23, tracebacks: an output directory that cannot take files is one line -------------

@pytest.mark.parametrize("command", ["profile-refs profile.dir", "export export.out_dir",
                                     "make-data make_data.out_dir"])
@pytest.mark.parametrize(("where", "message"), [
    ("afile", "=afile is a file, not a directory; choose a directory"),
    ("/proc/x", "=/proc/x: cannot create it"),
    ("/proc", "=/proc: cannot write there"),  # exists, but takes no files (even for root)
])
def test_an_output_directory_that_takes_no_files_is_one_line(scratch: Path, command: str,
                                                             where: str, message: str) -> None:
    name, key = command.split()
    (scratch / "afile").write_text("")
    one_line_error(run_bots(name, f"{key}={where}", cwd=scratch), f"{key}{message}")
    assert files_under(scratch) == {"afile"}


@pytest.mark.parametrize(("splits", "message"), [
    ("[]", "export.splits is empty: nothing to export; name the splits, e.g. "
           "export.splits=[train,eval]"),
    ("[train,valid]", "export.splits: no split 'valid' (splits: train, eval)"),
])
def test_export_of_no_split_or_an_unknown_one_is_one_line(scratch: Path, splits: str,
                                                          message: str) -> None:
    one_line_error(run_bots("export", f"export.splits={splits}", "export.out_dir=out",
                            cwd=scratch), message)
    assert files_under(scratch) == set()


# -- issue 23, tracebacks: a damaged checkpoint names its file and the intact one before it ----

def _checkpoint(run: Path, step: int) -> Path:
    """A checkpoint directory with well-formed (tiny) files: state.pt a zip archive as torch
    writes them, model/model.safetensors one float32 tensor."""
    import json
    import struct
    import zipfile

    ckpt = run / "checkpoints" / f"step_{step}"
    (ckpt / "model").mkdir(parents=True)
    with zipfile.ZipFile(ckpt / "state.pt", "w") as archive:
        archive.writestr("state/data.pkl", b"x" * 64)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (ckpt / "model" / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header
                                                       + b"\0" * 8)
    (ckpt / "model" / "config.json").write_text("{}")
    return ckpt


@pytest.mark.parametrize(("file", "damage", "why"), [
    ("state.pt", "truncate", "is damaged (not a whole torch file: truncated or replaced?)"),
    ("state.pt", "garbage", "is damaged (not a whole torch file: truncated or replaced?)"),
    ("model/model.safetensors", "truncate", "is damaged (shorter than its header says: "
                                            "truncated?)"),
    ("model/model.safetensors", "garbage", "is damaged (its safetensors header does not read)"),
])
def test_a_damaged_checkpoint_names_the_file_and_the_intact_one(scratch: Path, file: str,
                                                                damage: str, why: str) -> None:
    run = fake_run(scratch)
    _checkpoint(run, 2)
    latest = _checkpoint(run, 4)
    path = latest / file
    data = path.read_bytes()
    path.write_bytes(data[:-4] if damage == "truncate" else b"garbage" * 9)
    before = snapshot(run)
    out = run_bots("train", f"resume={run}", cwd=scratch)
    one_line_error(out, f"{path} {why}; the checkpoint of step 2 ({run / 'checkpoints/step_2'}) "
                        f"is intact: move {latest} aside (e.g. mv {latest} {latest}.damaged) to "
                        "resume from step 2")
    if file.startswith("model"):
        out = run_bots("evaluate", f"run={run}", "evaluate.steps=[4]", cwd=scratch)
        one_line_error(out, f"{path} {why}; leave step 4 out of evaluate.steps (intact "
                            "checkpoints: 2; step 0 is the starting model)")
    assert snapshot(run) == before
    (run / "checkpoints" / "step_2" / "state.pt").write_bytes(b"")
    out = run_bots("train", f"resume={run}", cwd=scratch)
    one_line_error(out, f"{path} {why}; no earlier checkpoint is intact: start a new run")


# -- issue 23, tracebacks: trainer=trl options TRL would refuse mid-start ----------------------

@pytest.mark.parametrize(("override", "message"), [
    ("+trainer.trl.args.bogus_field=1", "trainer.trl.args.bogus_field is not a field of TRL's "
                                        "GRPOConfig; see `help(trl.GRPOConfig)`"),
    ("+trainer.trl.args.mask_truncated_completion=true",
     "trainer.trl.args.mask_truncated_completion is not a field of TRL's GRPOConfig (did you "
     "mean mask_truncated_completions?)"),
    ("trainer.trl.deepspeed=/nonexistent.json", "trainer.trl.deepspeed=/nonexistent.json: no "
                                                "such file"),
    ("trainer.trl.deepspeed=bad.json", "trainer.trl.deepspeed=bad.json: not a JSON file"),
    ("trainer.trl.report_to=tensorboardx", "trainer.trl.report_to: 'tensorboardx' is not a "
                                           "logger transformers knows; known: azure_ml, "),
    ("trainer.trl.report_to=[wandb,none]", "trainer.trl.report_to: none stands alone"),
])
def test_trl_options_trl_would_refuse_are_one_line(scratch: Path, override: str,
                                                   message: str) -> None:
    (scratch / "bad.json").write_text("{")
    out = run_bots("train", "trainer=trl", override, cwd=scratch)
    one_line_error(out, message)
    assert files_under(scratch) == {"bad.json"}


def test_trl_with_vllm_but_without_it_is_one_line(scratch: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    out = run_bots("train", "trainer=trl", "trainer.trl.use_vllm=true", cwd=scratch)
    one_line_error(out, "trainer.trl.use_vllm=true needs vLLM, which is not installed")
    assert files_under(scratch) == set()


def test_ctrl_c_while_exiting_is_no_traceback(tmp_path: Path) -> None:
    """Issue 23: Ctrl-C landing in the exit handlers (here one that interrupts itself) ends the
    process with 130, without "Exception ignored in atexit callback ... KeyboardInterrupt"."""
    import subprocess
    import sys

    code = ("import atexit, os, signal, sys, time\n"
            "atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(5)))\n"
            "sys.argv = ['bots', 'simulate', '--cfg', 'job']\n"
            "from bots_cli.cli.app import main\n"
            "main()\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 130, out.stderr
    assert out.stderr == "" and "seeds:" in out.stdout  # the command's output is all there


# -- issue 23, unclear messages ---------------------------------------------------------------

@pytest.mark.parametrize(("command", "args", "message"), [
    ("simulate", ["simulate.baseline=é"], "cannot read the override 'simulate.baseline=é': "
     "LexerNoViableAltException: simulate.baseline=é; quote the value: "
     "\"simulate.baseline='é'\" (single quotes for Hydra inside double quotes for the shell)"),
    ("simulate", ["simulate.baseline=a=b"], "cannot read the override 'simulate.baseline=a=b':"
     " mismatched input '=' expecting <EOF>; quote the value: \"simulate.baseline='a=b'\""),
    ("simulate", ["~lambda"], "~lambda: bots simulate reads lambda; set it (lambda=...) instead "
                              "of deleting it"),
    ("simulate", ["~selector"], "~selector: bots simulate needs a selector; choose another "
                                "option (selector=...) instead of deleting it"),
    ("simulate", ["world.references=false"], "selector=bots reads reference pass rates, and "
                                             "world.references=false has none"),
    ("train", ["selector.implicit.name=knn", "selector.implicit.k=0"],
     "selector.implicit.k must be ≥ 1, got 0"),
    ("train", ["trainer=trl", "trainer.trl.bogus=1"], "trainer.trl.bogus is not a setting of "
                                                      "bots train; other keys go under "
                                                      "trainer.trl.args"),
    ("train", ["train.levels=[]"], "train.levels=[] keeps no task; list the levels to train on"),
    ("train", ["model.checkpoint=medium"], "checkpoint=medium (model.checkpoint, or "
                                           "refs.weak.checkpoint / refs.strong.checkpoint): the "
                                           "tiny model's checkpoints are weak, strong"),
    ("train", ["domain.data.train=$SCRATCH/adir"], "task file $SCRATCH/adir is a directory; "
                                                   "point domain.data.<split> at a .jsonl or "
                                                   ".parquet file"),
])
def test_messages_say_what_is_wrong_and_what_to_do(scratch: Path, command: str,
                                                   args: list[str], message: str) -> None:
    (scratch / "adir").mkdir()
    args = [a.replace("$SCRATCH", str(scratch)) for a in args]
    one_line_error(run_bots(command, *args, cwd=scratch), message.replace("$SCRATCH",
                                                                          str(scratch)))
    assert files_under(scratch) == {"adir"}


def test_a_damaged_run_among_good_ones_still_gets_a_report(scratch: Path) -> None:
    config = yaml.safe_load(run_bots("train", "--cfg", "job", cwd=scratch).stdout)
    good = _hand_made_run(scratch / "good", "uniform", [0.1, 0.2, 0.3, 0.6])
    other = _hand_made_run(scratch / "other", "bots", [0.1, 0.4, 0.6, 0.6], config)
    (other / "selections.parquet").write_text("garbage")
    torn = _hand_made_run(scratch / "torn", "bots", [0.1, 0.4, 0.6, 0.6])
    (torn / "metrics.jsonl").write_text('{"step": 0}\n{torn\n{"step": 1}\n')
    out = run_bots("report", str(good), str(other), str(torn), "report.plot=false", cwd=scratch)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and list((scratch / "outputs").rglob("report.md"))
    assert f"warning: skipping {torn}: " in out.stderr
    assert (f"warning: no 'what was chosen' section for bots: {other / 'selections.parquet'} "
            "cannot be read (ArrowInvalid)") in out.stderr
    out = run_bots("report", str(torn), cwd=scratch)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == ("error: no run to report: every training "
                                                   "run found (1) was skipped (the warnings "
                                                   "above say why)")


def test_a_null_cell_is_named_by_its_row(scratch: Path) -> None:
    rows = [f'{{"task_id": "t{i}", "prompt": "{i}+1=", "answer": {i + 1}}}' for i in range(10)]
    rows[7] = '{"task_id": "t7", "prompt": "7+1=", "answer": null}'
    (scratch / "tasks.jsonl").write_text("\n".join(rows) + "\n")
    out = run_bots("train", f"domain.data.train={scratch / 'tasks.jsonl'}", cwd=scratch)
    one_line_error(out, f"{scratch / 'tasks.jsonl'}: row 8 has no answer (null); every task "
                        "needs one")


def test_an_interruption_before_the_first_chunk_promises_no_file(tmp_path: Path,
                                                                 capsys) -> None:
    from bots_cli.evaluation.scoring import score_in_chunks

    def score(idx: list[int], seed: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score_in_chunks("profile", [True] * 600, 256, 0, score, lambda rows: None,
                        tmp_path / "weak.parquet")
    err = capsys.readouterr().err
    assert ("profile: interrupted before its first chunk of 256 tasks was saved: nothing is in "
            f"{tmp_path / 'weak.parquet'} yet") in err
    assert "are saved in" not in err


def test_ctrl_c_before_the_first_checkpoint_promises_no_resume(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    from tests.conftest import BOTS

    def as_in_a_terminal() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([str(BOTS), "train", "train.live=false"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_in_a_terminal)
    deadline = time.monotonic() + 120
    while not [p for p in (tmp_path / "outputs").rglob("config.yaml") if p.parent.name != ".hydra"]:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    [line] = err.strip().splitlines()
    assert line.startswith("interrupted: bots train stopped; it had saved no checkpoint yet, so "
                           "there is nothing to resume; start it again"), line
    # Not on a terminal, the seconds of loading before step 0 are not silent either.
    assert out.startswith("bots train: bots · tiny on arith: loading the pool, the selector and "
                          "the model"), out


# -- issue 23, friction: what commands write follows the umask and leaves no temporary file ---

def test_make_data_files_follow_the_umask_and_clear_a_killed_run_s_temporary(
        scratch: Path) -> None:
    import os
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid names no running process now
    out_dir = scratch / "tables"
    out_dir.mkdir()
    stale = out_dir / f".train.jsonl.{dead.pid}.tmp"  # what a SIGKILLed make-data leaves
    stale.write_text("half a table")
    previous = os.umask(0o022)
    try:
        out = run_bots("make-data", "domain.generate.n_train=50", "domain.generate.n_eval=20",
                       f"make_data.out_dir={out_dir}", cwd=scratch)
    finally:
        os.umask(previous)
    assert out.returncode == 0, out.stderr
    assert files_under(out_dir) == {"train.jsonl", "eval.jsonl"}
    assert {(p.stat().st_mode & 0o777) for p in out_dir.iterdir()} == {0o644}


def test_sigterm_while_writing_leaves_no_temporary_file(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    code = ("import os, signal, time\n"
            "from pathlib import Path\n"
            "from bots_cli.atomic import atomic_path\n"
            f"with atomic_path(Path({str(tmp_path / 'out.txt')!r})) as tmp:\n"
            "    tmp.write_text('half')\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    time.sleep(30)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == -signal.SIGTERM, out.stderr
    assert list(tmp_path.iterdir()) == []


def test_files_in_an_atomic_directory_follow_the_umask(tmp_path: Path) -> None:
    import os

    from bots_cli.atomic import atomic_dir

    previous = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "step_1") as tmp:
            (tmp / "model.safetensors").write_bytes(b"x")
            (tmp / "model.safetensors").chmod(0o600)  # as safetensors writes its files
    finally:
        os.umask(previous)
    assert (tmp_path / "step_1" / "model.safetensors").stat().st_mode & 0o777 == 0o644


def test_a_selector_of_your_config_dir_is_named_by_its_file(scratch: Path) -> None:
    import json

    (scratch / "myconf" / "selector").mkdir(parents=True)
    (scratch / "myconf" / "selector" / "greedy.yaml").write_text(
        "defaults:\n  - bots\n  - _self_\nmode: greedy  # posterior mean\n")
    out = run_bots("simulate", "--config-dir", "myconf", "selector=greedy", *SMALL, cwd=scratch)
    assert out.returncode == 0, out.stderr
    [summary] = list(scratch.rglob("summary.json"))
    groups = json.loads(summary.read_text())
    assert "greedy" in json.dumps(groups) and " greedy " in out.stdout
    assert '"bots"' not in json.dumps(groups)  # bots itself is not compared by default


def test_a_simulate_sweep_ends_with_one_table_of_its_jobs(scratch: Path) -> None:
    import json

    out = run_bots("simulate", "-m", "lambda=0.1,0.5", *SMALL, cwd=scratch)
    assert out.returncode == 0, out.stderr
    [sweep] = list((scratch / "outputs" / "multirun" / "simulate").glob("*/*"))
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [(j["job"], j["swept"]) for j in summary["jobs"]] == [("0", "lambda=0.1"),
                                                                 ("1", "lambda=0.5")]
    assert summary["jobs"][1]["summary"] == json.loads((sweep / "1" / "summary.json").read_text())
    tail = out.stdout[out.stdout.index("bots simulate sweep: 2 jobs"):]
    assert "lambda=0.1   bots" in tail and "lambda=0.5   uniform*" in tail
    # bots report says where a simulate sweep's comparison is, rather than "no training run"
    one_line_error(run_bots("report", str(sweep), cwd=scratch),
                   f"{sweep}: bots simulate runs, not training runs: each one's table and "
                   "summary.json are its report")


def test_report_warns_when_groups_were_evaluated_on_different_held_out_sets(
        scratch: Path) -> None:
    uniform = {"train": {"eval_tasks": 200, "eval_n": 4}, "selector": {}}
    bots = {"train": {"eval_tasks": 40, "eval_n": 4}, "selector": {}}
    _hand_made_run(scratch / "runs" / "u", "uniform", [0.1, 0.2, 0.3, 0.6], uniform)
    _hand_made_run(scratch / "runs" / "b", "bots", [0.1, 0.4, 0.6, 0.6], bots)
    out = run_bots("report", "runs", "report.plot=false", "report.chosen=false", cwd=scratch)
    assert out.returncode == 0, out.stderr
    assert ("warning: the runs' eval/accuracy were measured on different held-out sets "
            "(train.eval_tasks: 200, 40): their scores do not compare") in out.stderr
    (scratch / "runs" / "b" / "config.yaml").write_text(
        (scratch / "runs" / "b" / "config.yaml").read_text().replace("40", "200"))
    out = run_bots("report", "runs", "report.plot=false", "report.chosen=false", cwd=scratch)
    assert out.returncode == 0 and "warning" not in out.stderr, out.stderr
