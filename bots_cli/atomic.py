"""Atomic writes: a reader (or a resumed run) never sees half a file or half a directory."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    The rename is atomic on POSIX file systems. On error, and on SIGTERM meanwhile, the
    temporary file is removed and `path` keeps its previous content; the temporary file of a
    process killed outright (SIGKILL) is removed by the next `atomic_path` of the same `path`.
    The temporary name (`.<name>.<pid>.tmp`) ends in `.tmp`: writers that pick a format from the
    extension (matplotlib, some pandas writers) must be told the format.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    for leftover in path.parent.glob(f"{prefix}*.tmp"):
        pid = leftover.name[len(prefix):-len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            leftover.unlink(missing_ok=True)
    tmp = path.with_name(f"{prefix}{os.getpid()}.tmp")
    with _sigterm_raises():
        try:
            yield tmp
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)


def writable_dir(path: Path | str, key: str) -> Path:
    """`path` as a directory this process can write files into, checked before a command loads
    or computes anything: a file in its place, a directory that cannot be made and a read-only
    one are each one `UserError` line naming `key`. Nothing is left behind: a missing directory
    is not made here (its writers make it, `atomic_path`), its nearest existing parent is tried
    instead, with a file created and removed at once."""
    from bots_cli.errors import UserError

    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"{key}={path} is a file, not a directory; choose a directory")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{key}={path}: cannot create it ({existing} is a file); choose another "
                        "directory")
    probe = existing / f".bots-write-test.{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as err:
        what = "write there" if existing == out else f"create it in {existing}"
        raise UserError(f"{key}={path}: cannot {what} ({err.strerror or err}); choose a "
                        "directory you can write to") from None
    return out


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a new empty directory beside `path`; it replaces `path` only if the block succeeds.

    The temporary directory is `.<name>.tmp-<pid>-<random>`. It is removed when the block raises
    and when the process gets SIGTERM meanwhile (the signal is then delivered as usual, once the
    directory is gone). A process killed outright (SIGKILL) cannot clean up: the next
    `atomic_dir` on the same `path` removes the temporary directories of processes that no longer
    run. A directory cannot be renamed over a non-empty one, so an existing `path` is first moved
    aside (`.<name>.old-<pid>`): a reader sees the old directory, then for an instant none, then
    the new one, never a partial one. Everything in it gets the umask's permissions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    with _sigterm_raises():  # outermost: the directory is removed before the signal ends us
        tmp = _new_dir(path.parent, f".{path.name}.tmp-{os.getpid()}-")
        try:
            yield tmp
            follow_umask(tmp)  # safetensors and torch writers make their files 0600
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove what `atomic_dir(path)` of a process that no longer runs left beside `path`, and
    return it. A moved-aside old directory whose replacement never arrived is put back."""
    path, removed = Path(path), []
    for kind in ("old", "tmp"):
        prefix = f".{path.name}.{kind}-"
        for leftover in sorted(path.parent.glob(f"{prefix}*")):
            pid = leftover.name[len(prefix):].split("-")[0]
            if not pid.isdigit() or _running(int(pid)):
                continue
            if kind == "old" and not path.exists():
                os.replace(leftover, path)  # killed between the two renames
            else:
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover)
    return removed


def follow_umask(root: Path) -> None:
    """Give `root` and everything under it the permissions the umask gives new files (0644 and
    0755 under umask 022): some writers, safetensors among them, create their files 0600."""
    mask = os.umask(0)
    os.umask(mask)
    for where, _, files in os.walk(root):
        os.chmod(where, 0o777 & ~mask)
        for name in files:
            file = os.path.join(where, name)
            executable = os.stat(file).st_mode & 0o100
            os.chmod(file, (0o777 if executable else 0o666) & ~mask)


def _new_dir(parent: Path, prefix: str) -> Path:
    """A new directory `<parent>/<prefix><random>`, made with the umask (mkdtemp's is 0700)."""
    while True:
        candidate = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class _Terminated(BaseException):
    """SIGTERM arrived inside `_sigterm_raises`: unwinds the block so its cleanup runs."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception for the duration of the block (main thread only: signal
    handlers cannot be set elsewhere), then deliver it again with the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, previous)
        signal.raise_signal(signal.SIGTERM)  # the default handler ends the process here
        raise SystemExit(128 + signal.SIGTERM) from None  # a handler that returned
    finally:
        signal.signal(signal.SIGTERM, previous)
