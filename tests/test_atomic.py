"""Atomic writes leave either the old file or the new one, never a partial one."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bots_cli.atomic import (
    atomic_dir,
    atomic_path,
    follow_umask,
    remove_stale_temporaries,
    write_json,
    write_text,
)


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


# -- atomic_dir -------------------------------------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has finished (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_a_directory_is_replaced_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "build"
    target.mkdir()
    (target / "stale").write_text("from the previous build")
    with atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".build.tmp-{os.getpid()}-")
        assert not target.joinpath("new").exists()  # nothing shows before the block succeeds
        (tmp / "new").write_text("whole")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["build"]


def test_a_failed_directory_write_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "build"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as tmp:
        (tmp / "half").write_text("half")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["build"]
    assert [p.name for p in target.iterdir()] == ["old"]


def test_leftovers_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead, target = dead_pid(), tmp_path / "build"
    (tmp_path / f".build.tmp-{dead}-abcd").mkdir()  # a build killed with SIGKILL
    (tmp_path / f".build.tmp-{os.getppid()}-abcd").mkdir()  # a concurrent build, still running
    (tmp_path / f".other.tmp-{dead}-abcd").mkdir()  # another target's: not ours to judge
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".build.tmp-{os.getppid()}-abcd", f".other.tmp-{dead}-abcd", "build"]


def test_a_directory_moved_aside_by_a_killed_process_is_put_back(tmp_path: Path) -> None:
    old = tmp_path / f".build.old-{dead_pid()}"  # killed between its two renames
    old.mkdir()
    (old / "weights").write_text("the previous build")
    assert remove_stale_temporaries(tmp_path / "build") == []
    assert (tmp_path / "build" / "weights").read_text() == "the previous build"


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"),
                         [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_new_directories_and_fixed_files_follow_the_umask(tmp_path: Path, umask: int,
                                                          file_mode: int, dir_mode: int) -> None:
    previous = os.umask(umask)
    try:
        with atomic_dir(tmp_path / "build") as tmp:
            (tmp / "sub").mkdir()
            secret = tmp / "sub" / "weights"
            secret.write_text("w")
            secret.chmod(0o600)  # as safetensors writes its files
            follow_umask(tmp)
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "build").rglob("*")}
    assert modes == {"sub": dir_mode, "weights": file_mode}
    assert stat.S_IMODE((tmp_path / "build").stat().st_mode) == dir_mode


def test_sigterm_removes_the_temporary_directory_then_ends_the_process(tmp_path: Path) -> None:
    code = ("import sys, time\nfrom pathlib import Path\nfrom bots_cli.atomic import atomic_dir\n"
            "with atomic_dir(Path(sys.argv[1])) as tmp:\n"
            "    (tmp / 'half').write_text('half')\n    print('ready', flush=True)\n"
            "    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "build")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    assert [p.name.split("-")[0] for p in tmp_path.iterdir()] == [".build.tmp"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM  # still ends as SIGTERM says
    assert list(tmp_path.iterdir()) == []
