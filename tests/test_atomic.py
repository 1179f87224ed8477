"""Atomic writes leave either the old file or the new one, never a partial one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots_cli.atomic import atomic_path, write_json, write_text


def test_success_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    write_text(target, "one")
    write_json(target, {"x": 1})
    assert target.read_text() == '{\n  "x": 1\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_failure_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
