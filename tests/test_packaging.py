"""The built wheel carries the configs and runs `bots` outside the source tree."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, SMALL


def test_wheel_installs_and_runs_outside_the_repo(tmp_path: Path) -> None:
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", *isolation, "-w", str(wheels), str(REPO)],
                   check=True, capture_output=True, cwd=tmp_path)
    [wheel] = wheels.glob("bots_cli-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    assert (site / "bots_cli" / "conf" / "simulate.yaml").is_file()
    assert (site / "bots_cli" / "conf" / "selector" / "bots.yaml").is_file()

    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import bots_cli; print(bots_cli.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(site)

    bots = site / "bin" / "bots"
    help_out = subprocess.run([sys.executable, str(bots), "--help"], cwd=work, env=env,
                              capture_output=True, text=True)
    assert help_out.returncode == 0
    assert "selector: adarft, bots, bots_calibrated," in help_out.stdout
    run = subprocess.run([sys.executable, str(bots), "simulate", *SMALL], cwd=work, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert list((work / "outputs" / "simulate").rglob("summary.json"))
