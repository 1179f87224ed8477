"""Every example in the README runs: shell blocks, `$ command` transcripts and Python blocks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text()
# A fence preceded by `<!-- test: slow -->` needs the full tiny world: it runs in `make test-slow`.
FENCES = re.findall(r"(<!-- test: slow -->\n)?```(\w+)\n(.*?)```", README, flags=re.DOTALL)
BLOCKS = [(lang, body) for _, lang, body in FENCES]
SLOW_BODIES = {body for slow, _, body in FENCES if slow}


SHELL_BLOCKS = [
    pytest.param([line.strip() for line in body.splitlines() if line.strip()],
                 marks=[pytest.mark.slow] if body in SLOW_BODIES else [])
    for lang, body in BLOCKS
    if lang == "bash" and not body.lstrip().startswith("make ")
]
TRANSCRIPTS = [
    (lines[0][2:], "\n".join(lines[1:]))
    for lang, body in BLOCKS
    if lang == "text" and body.startswith("$ ")
    for lines in [body.strip().splitlines()]
]
PYTHON_BLOCKS = [body for lang, body in BLOCKS if lang == "python"]
CONFIG_FILES = [body for lang, body in BLOCKS if lang == "yaml" and body.startswith("# myconf/")]


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_readme_has_examples_of_each_kind() -> None:
    assert SHELL_BLOCKS and TRANSCRIPTS and PYTHON_BLOCKS and CONFIG_FILES
    assert "make demo" in README and "make test" in README


@pytest.mark.parametrize("lines", SHELL_BLOCKS, ids=lambda lines: str(lines[0])[:40])
def test_shell_examples_run(lines: list[str], tmp_path: Path) -> None:
    for command in lines:  # one block shares a working directory, as in a terminal
        out = shell(command, tmp_path)
        assert out.returncode == 0, f"{command}\n{out.stderr[-2000:]}"


@pytest.mark.parametrize(("command", "expected"), TRANSCRIPTS)
def test_transcripts_match(command: str, expected: str, tmp_path: Path) -> None:
    out = shell(command, tmp_path)
    assert (out.stdout + out.stderr).strip() == expected.strip()


@pytest.mark.parametrize("code", PYTHON_BLOCKS)
def test_python_examples_run(code: str, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("body", CONFIG_FILES)
def test_config_files_compose(body: str, tmp_path: Path) -> None:
    """A config file shown as `# myconf/<group>/<name>.yaml` composes as `group=name`."""
    rel = Path(body.splitlines()[0][2:].strip())
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text(body)
    group, name = rel.parts[1], rel.stem
    command = {"domain": "make-data", "selector": "simulate"}[group]  # a command using the group
    out = shell(f"bots {command} --config-dir {rel.parts[0]} {group}={name} --cfg job", tmp_path)
    assert out.returncode == 0, out.stderr
