"""Every example in the README and in docs/ runs: shell blocks, `$ command` transcripts, Python
blocks and config files; the README stays short and every docs page is in the site's nav."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

README_MAX_LINES = 250
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TEXTS = {page.relative_to(REPO).as_posix(): page.read_text() for page in PAGES}
README = TEXTS["README.md"]

# A fence preceded by `<!-- test: slow -->` needs the full tiny world: it runs in `make test-slow`.
# `text` fences are shown, not run (GPU commands, placeholders), unless they are `$ ` transcripts.
FENCE = re.compile(r"(<!-- test: slow -->\n)?```(\w+)\n(.*?)```", flags=re.DOTALL)
BLOCKS = [(name, bool(slow), lang, body)
          for name, text in TEXTS.items() for slow, lang, body in FENCE.findall(text)]


def _id(name: str, first_line: str) -> str:
    return f"{name}:{first_line.strip()[:40]}"


SHELL_BLOCKS = [
    pytest.param([line.strip() for line in body.splitlines() if line.strip()],
                 marks=[pytest.mark.slow] if slow else [], id=_id(name, body.splitlines()[0]))
    for name, slow, lang, body in BLOCKS
    if lang == "bash" and not body.lstrip().startswith("make ")
]
TRANSCRIPTS = [
    pytest.param(lines[0][2:], "\n".join(lines[1:]), id=_id(name, lines[0]))
    for name, _, lang, body in BLOCKS
    if lang == "text" and body.startswith("$ ")
    for lines in [body.strip().splitlines()]
]
PYTHON_BLOCKS = [
    pytest.param(body, marks=[pytest.mark.slow] if slow else [], id=_id(name, body.splitlines()[0]))
    for name, slow, lang, body in BLOCKS if lang == "python"
]
CONFIG_FILES = [
    pytest.param(body, id=_id(name, body.splitlines()[0]))
    for name, _, lang, body in BLOCKS if lang == "yaml" and body.startswith("# myconf/")
]


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_pages_have_examples_of_each_kind() -> None:
    assert SHELL_BLOCKS and TRANSCRIPTS and PYTHON_BLOCKS and CONFIG_FILES
    assert "make demo" in README and "make test" in README
    # Every language a page uses is one this test knows how to treat (a typo runs nothing).
    assert {lang for _, _, lang, _ in BLOCKS} <= {"bash", "text", "python", "yaml"}


def test_the_readme_is_short() -> None:
    lines = README.count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move reference text to docs/")


def _nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def test_every_docs_page_is_in_the_nav() -> None:
    """mkdocs.yml's nav and docs/ agree both ways (`mkdocs build --strict` says so too, through
    `validation.nav.omitted_files: warn`; this holds it where mkdocs is not installed)."""
    nav = _nav_pages(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"])
    pages = {p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md")}
    assert sorted(pages - set(nav)) == [], "docs pages missing from mkdocs.yml's nav"
    assert sorted(set(nav) - pages) == [], "nav entries without a page"


# Paths in backticks that name the project's own files: `bots_cli/...`, `conf/...`, `tests/...`.
PATH = re.compile(r"`((?:bots_cli|conf|tests|benchmarks|data)/[\w./-]*)`")


@pytest.mark.parametrize("name", list(TEXTS))
def test_named_paths_and_links_exist(name: str) -> None:
    """Every project path a page names in backticks exists (placeholders like `<domain>` and
    brace lists are not paths), and every relative link leads to a file."""
    page = REPO / name
    missing = [p for p in PATH.findall(TEXTS[name]) if not (REPO / p).exists()]
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", TEXTS[name])
    missing += [link for link in links if "://" not in link and not (page.parent / link).exists()]
    assert missing == []


@pytest.mark.parametrize("lines", SHELL_BLOCKS)
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
