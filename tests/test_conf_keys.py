"""Every leaf key under conf/ is read by the code that owns its section.

A key nobody reads is a setting that silently does nothing (a user changes it and nothing moves),
which is worse than no setting. The check is static: a key counts as read when the modules that
own its section access it by name (`cfg.key`, `cfg["key"]`, or the name as a string, as in a
tuple of keys). Sections map to their owners below; a key outside every owner's text fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PKG = ROOT / "bots_cli"

# conf file (relative to conf/; `*` = every file of a group) -> the modules that read its keys.
OWNERS: dict[str, tuple[str, ...]] = {
    "build_tiny.yaml": ("models",),
    "common.yaml": ("cli/launch.py", "config.py", "seeds.py", "train", "simulate", "references",
                    "evaluation"),
    "evaluate.yaml": ("evaluation",),
    "export.yaml": ("integrations/export.py", "references", "models"),
    "make_data.yaml": ("domains/make_data.py",),
    "profile_refs.yaml": ("references",),
    "report.yaml": ("analysis",),
    "inspect.yaml": ("analysis",),
    "simulate.yaml": ("simulate",),
    "train.yaml": ("train",),
    "domain/*": ("domains", "sandbox/runner.py", "train", "references", "evaluation"),
    "engine/*": ("engines",),
    "logger/*": ("runs/records.py",),
    "model/*": ("models",),
    "refs/*": ("references",),
    "sampling/*": ("engines",),
    "selector/*": ("selection",),
    "trainer/*": ("train",),
    "experiment/*": ("train", "cli/launch.py", "config.py", "seeds.py"),
    "selector/success/*": ("train", "selection", "integrations"),
}
HYDRA_READS = ("hydra",)  # top-level sections Hydra itself reads
# Keys read under a computed name: the pattern the owner's code uses instead.
COMPUTED = {("generate", "n_train"): r"n_\{split\}", ("generate", "n_eval"): r"n_\{split\}"}


def _owner(path: Path) -> tuple[str, ...]:
    rel = path.relative_to(CONF)
    key = str(rel) if rel.parent == Path(".") else f"{rel.parent}/*"
    if key not in OWNERS:
        raise AssertionError(f"conf/{rel} has no owner in OWNERS: say which modules read it")
    return OWNERS[key]


@cache
def _source(owners: tuple[str, ...]) -> str:
    texts = []
    for owner in owners:
        where = PKG / owner
        files = sorted(where.rglob("*.py")) if where.is_dir() else [where]
        texts += [f.read_text() for f in files]
    return "\n".join(texts)


def _leaves(node: object, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(node, dict) and node:
        for k, v in node.items():
            if not prefix and k in ("defaults", *HYDRA_READS):
                continue
            yield from _leaves(v, (*prefix, str(k)))
    elif prefix:
        yield prefix


CASES = [(p, leaf) for p in sorted(CONF.rglob("*.yaml"))
         for leaf in _leaves(yaml.safe_load(p.read_text()) or {})]


def test_every_conf_file_is_covered() -> None:
    assert len(CASES) > 150  # the walk found the configs
    for path in sorted(CONF.rglob("*.yaml")):
        _owner(path)


@pytest.mark.parametrize("path,leaf", CASES, ids=[f"{p.relative_to(CONF)}:{'.'.join(k)}"
                                                   for p, k in CASES])
def test_every_leaf_key_is_read(path: Path, leaf: tuple[str, ...]) -> None:
    key = leaf[-1]
    pattern = rf"\.{re.escape(key)}\b|[\"']{re.escape(key)}[\"']"
    if leaf[0] in ("columns",) and len(leaf) == 2:  # the task-table schema: read as a mapping
        pattern = rf"[\"']{re.escape(key)}[\"']"
    pattern = COMPUTED.get(leaf[-2:], pattern)
    found = re.search(pattern, _source(_owner(path))) is not None
    assert found, (
        f"conf/{path.relative_to(CONF)}: {'.'.join(leaf)} is not read by "
        f"{', '.join(_owner(path))}; wire it or remove it")
