"""Running untrusted programs against test inputs, with limits, and scoring the returned data.

`Sandbox.run` starts one program (see `isolation.py` for how it is confined and `harness.py` for
what runs inside), feeds it the job on stdin, reads its stdout/stderr (capped) and its per-test
results (one JSON line per test on a separate pipe) until it exits or the wall-clock limit passes,
then kills whatever is left of its process tree. `Sandbox.run_many` does this for many programs
with a bounded pool of threads (each thread waits on one child process, so threads suffice).
`count_passed` compares the returned data with the expected values in this process: the program
never sees them.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bots_cli.checks import check_int, check_range
from bots_cli.errors import InvalidValue
from bots_cli.sandbox.isolation import NOBODY, Launcher, find_launcher

_HARNESS = (Path(__file__).parent / "harness.py").read_text()
_MAX_RESULT_BYTES = 4 << 20  # a program returning more data than this per run is cut off
_GRACE_S = 0.5  # after the program exits, how long to wait for its pipes to close


@dataclass(frozen=True)
class SandboxConfig:
    """The `sandbox` section of a domain config. Its defaults and their meanings live in one
    place, conf/domain/code.yaml: `from_config` reads a partial section over them."""

    use_bwrap: bool
    require_isolation: bool
    bwrap_path: str | None
    python: str | None
    workers: int
    cpu_seconds: float
    wall_seconds: float
    memory_mb: int
    max_processes: int
    max_file_mb: int
    max_output_kb: int

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None = None) -> SandboxConfig:
        """Validated config: `cfg` over conf/domain/code.yaml's `sandbox` section; unknown keys
        are an error (a typo must not silently do nothing)."""
        from bots_cli.domains.base import default_config

        given = dict(cfg or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(given) - known)
        if unknown:
            raise InvalidValue(f"unknown sandbox setting(s) {', '.join(unknown)}; known: "
                               f"{', '.join(sorted(known))}")
        cfg = {**default_config("code")["sandbox"], **given}
        c = cls(**cfg)
        check_int("sandbox.workers", c.workers, lo=1)
        check_range("sandbox.cpu_seconds", c.cpu_seconds, 0, lo_open=True)
        check_range("sandbox.wall_seconds", c.wall_seconds, 0, lo_open=True)
        check_int("sandbox.memory_mb", c.memory_mb, lo=32)
        check_int("sandbox.max_processes", c.max_processes, lo=1)
        check_int("sandbox.max_file_mb", c.max_file_mb, lo=1)
        check_int("sandbox.max_output_kb", c.max_output_kb, lo=1)
        if c.require_isolation and not c.use_bwrap:
            raise InvalidValue("sandbox.require_isolation=true needs sandbox.use_bwrap=true "
                               "(isolation comes from bubblewrap)")
        return c

    def limits(self) -> dict[str, int]:
        """The limits the harness applies to itself inside the sandbox."""
        return {
            "cpu_seconds": max(1, math.ceil(self.cpu_seconds)),
            "memory_bytes": self.memory_mb << 20,
            "file_bytes": self.max_file_mb << 20,
            "max_processes": self.max_processes,
        }


_MISSING = object()


@dataclass
class RunResult:
    """What one program did. `outputs[i]` is test i's returned value (JSON data) if it returned."""

    status: str  # ok | timeout | cpu_limit | output_limit | result_limit | tampered | crashed
    outputs: list[Any]
    errors: list[str | None]
    returncode: int | None
    elapsed_s: float
    output: str = ""  # the first bytes of the program's stdout and stderr, for logs only
    isolated: bool = False
    detail: str = ""

    def returned(self, i: int) -> bool:
        return self.outputs[i] is not _MISSING


@dataclass(frozen=True)
class Job:
    code: str
    entry_point: str
    inputs: list[list[Any]]  # one argument list per test


class Sandbox:
    """Runs programs under the limits of `config`; probes the isolation once, at creation."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig.from_config()
        self.launcher: Launcher = find_launcher(
            use_bwrap=self.config.use_bwrap,
            require_isolation=self.config.require_isolation,
            bwrap_path=self.config.bwrap_path,
            python=self.config.python,
            tmpfs_bytes=self.config.max_file_mb << 20,
        )
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def isolated(self) -> bool:
        return self.launcher.isolated

    def run(self, code: str, entry_point: str, inputs: Sequence[Sequence[Any]]) -> RunResult:
        """Run `code`, call `entry_point(*args)` for each args in `inputs`, collect the results."""
        job = {"code": code, "entry_point": entry_point, "inputs": [list(a) for a in inputs],
               "limits": self.config.limits()}
        workdir = None if self.isolated else tempfile.mkdtemp(prefix="bots-sandbox-")
        try:
            if workdir is not None and os.geteuid() == 0:
                os.chown(workdir, NOBODY, NOBODY)
            return self._run(json.dumps(job).encode(), len(job["inputs"]), workdir)
        finally:
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)

    def run_many(self, jobs: Sequence[Job]) -> list[RunResult]:
        """Run many programs, at most `config.workers` at a time; results in the order of jobs."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.config.workers,
                                                thread_name_prefix="bots-sandbox")
        return list(self._pool.map(lambda j: self.run(j.code, j.entry_point, j.inputs), jobs))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _run(self, payload: bytes, n_tests: int, workdir: str | None) -> RunResult:
        cfg = self.config
        r_fd, w_fd = os.pipe()
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                self.launcher.command(_HARNESS, w_fd), pass_fds=(w_fd,),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                **self.launcher.popen_kwargs(workdir),
            )
        except BaseException:
            os.close(r_fd)
            raise
        finally:
            os.close(w_fd)
        assert proc.stdin is not None and proc.stdout is not None
        output, results = bytearray(), bytearray()
        status = "ok"
        try:
            status = _pump(proc, payload, r_fd, output, results,
                           deadline=started + cfg.wall_seconds,
                           max_output=cfg.max_output_kb << 10)
        finally:
            _kill_tree(proc, isolated=self.isolated)
            os.close(r_fd)
        elapsed = time.monotonic() - started
        outputs: list[Any] = [_MISSING] * n_tests
        errors: list[str | None] = [None] * n_tests
        detail = _parse_results(bytes(results), outputs, errors)
        if detail and status in ("ok", "crashed"):
            status = "tampered"
        if status == "tampered":  # unreadable result stream: nothing it reported counts
            outputs = [_MISSING] * n_tests
        elif status == "ok" and proc.returncode != 0:
            # bwrap reports a signal as 128 + signo; without it Popen gives -signo.
            cpu_killed = proc.returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU)
            status = "cpu_limit" if cpu_killed else "crashed"
        return RunResult(status, outputs, errors, proc.returncode, elapsed,
                         output[:2048].decode(errors="replace"), self.isolated, detail)


def _pump(proc: Any, payload: bytes, result_fd: int, output: bytearray, results: bytearray,
          *, deadline: float, max_output: int) -> str:
    """Feed stdin, drain stdout and results until the program ends; a status if it was stopped."""
    sel = selectors.DefaultSelector()
    stdin_fd, out_fd = proc.stdin.fileno(), proc.stdout.fileno()
    for fd in (stdin_fd, out_fd, result_fd):
        os.set_blocking(fd, False)
    sel.register(stdin_fd, selectors.EVENT_WRITE)
    sel.register(out_fd, selectors.EVENT_READ)
    sel.register(result_fd, selectors.EVENT_READ)
    sent, open_reads, exited_at = 0, 2, None
    try:
        while open_reads:
            now = time.monotonic()
            if now >= deadline:
                return "timeout"
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > _GRACE_S:
                break  # something it left behind holds the pipes; the kill below ends it
            for key, _ in sel.select(timeout=min(0.05, deadline - now)):
                fd = key.fd
                if fd == stdin_fd:
                    try:
                        sent += os.write(fd, payload[sent:sent + 65536])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # it closed its stdin: it gets no more input
                        sent = len(payload)
                    if sent >= len(payload):
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(fd)
                    open_reads -= 1
                    continue
                if fd == out_fd:
                    output += chunk
                    if len(output) > max_output:
                        return "output_limit"
                else:
                    results += chunk
                    if len(results) > _MAX_RESULT_BYTES:
                        return "result_limit"
        remaining = max(0.0, deadline - time.monotonic())
        try:
            proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            return "timeout"
        return "ok"
    finally:
        sel.close()
        if not proc.stdin.closed:
            try:
                proc.stdin.close()
            except OSError:
                pass


def _kill_tree(proc: Any, *, isolated: bool) -> None:
    """Kill the program and everything it started; wait until the direct child is reaped.

    With bubblewrap, killing bwrap's process group brings down the pid namespace (its init has
    --die-with-parent; when a namespace's init dies the kernel kills every process in it). In the
    fallback, descendants are found through /proc before the group is killed, so that children
    which left the process group are killed too.
    """
    victims = set() if isolated else _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _descendants(root: int) -> set[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out: set[int] = set()
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _parse_results(data: bytes, outputs: list[Any], errors: list[str | None]) -> str:
    """Fill outputs/errors from the result stream; a non-empty string if the stream is invalid."""
    n = len(outputs)
    seen: set[int] = set()
    for line in data.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            return "result stream is not JSON lines"
        if not isinstance(rec, dict) or not isinstance(rec.get("i"), int) or isinstance(
                rec.get("i"), bool) or ("out" in rec) == ("error" in rec) or len(rec) != 2:
            return "result record has the wrong shape"
        i = rec["i"]
        if i == -1 and "error" in rec:  # the program failed to load: every test failed
            for k in range(n):
                errors[k] = str(rec["error"])
            continue
        if not 0 <= i < n or i in seen:
            return f"result record for test {i} is out of range or repeated"
        seen.add(i)
        if "out" in rec:
            outputs[i] = rec["out"]
        else:
            errors[i] = str(rec["error"])
    return ""


def same_value(got: Any, expected: Any) -> bool:
    """Equality of JSON data: floats to 1e-9 relative, bool distinct from int, exact types."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(got) is type(expected) and got == expected
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        if isinstance(expected, int) and isinstance(got, int):
            return got == expected
        return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(
            same_value(g, e) for g, e in zip(got, expected, strict=True))
    if isinstance(expected, dict):
        return isinstance(got, dict) and got.keys() == expected.keys() and all(
            same_value(got[k], expected[k]) for k in expected)
    return type(got) is type(expected) and got == expected


def count_passed(result: RunResult, expected: Sequence[Any]) -> int:
    """How many tests returned exactly the expected data (0 if the result stream was invalid)."""
    if len(expected) != len(result.outputs):
        raise ValueError(f"{len(expected)} expected values for {len(result.outputs)} tests")
    return sum(result.returned(i) and same_value(result.outputs[i], e)
               for i, e in enumerate(expected))


__all__ = ["Job", "RunResult", "Sandbox", "SandboxConfig", "count_passed", "same_value"]
