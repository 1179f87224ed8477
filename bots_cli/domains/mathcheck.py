"""Math answer equivalence that is bounded in time and safe under threads and processes.

`math-verify` (sympy underneath) decides that `\\frac{1}{2}`, `0.5` and `1/2` agree, but a
pathological answer (`9^{9^{9^9}}`) can keep sympy busy for minutes, and its own timeout uses
SIGALRM, which only works in a process's main thread. So verification runs in a few worker
processes (fresh interpreters, so they inherit no threads or locks): a call sends (gold, answer)
to a free worker and waits at most `timeout_s`; a worker that does not answer in time is killed and
replaced, and the answer scores 0. A pool created before a fork is never used by the child
(it makes its own). Plain numbers (integers, decimals, fractions) are compared exactly in-process
first, which covers the generated tasks without any IPC.
"""

from __future__ import annotations

import json
import os
import queue
import re
import select
import threading
import weakref
from fractions import Fraction
from typing import Any

_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:/[+-]?\d+)?$")
_STARTUP_S = 120.0  # a worker imports sympy once; slow disks and busy CPUs can take a while
_LATEX_FRAC = re.compile(r"^([+-]?)\\[dt]?frac\{([+-]?\d+)\}\{([+-]?\d+)\}$")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces balanced; None if absent."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


def _clean(s: str) -> str:
    s = s.strip().strip("$").strip()
    for junk in ("\\!", "\\,", "\\;", "\\ ", "\\left", "\\right", " "):
        s = s.replace(junk, "")
    s = s.replace("{,}", "").rstrip(".")
    return s


def as_fraction(s: str) -> Fraction | None:
    """`s` as an exact number if it is a plain integer, decimal or fraction (a/b, \\frac{a}{b})."""
    s = _clean(s)
    m = _LATEX_FRAC.match(s)
    if m:
        s = f"{m.group(1)}{m.group(2)}/{m.group(3)}"
    if len(s) > 60 or not _NUMBER.match(s):
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def serve() -> None:
    """Worker process loop: JSON [gold, answer] lines in, "1"/"0" lines out (main thread)."""
    import json
    import sys

    from math_verify import parse, verify

    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        gold, answer = json.loads(line)
        try:
            ok = bool(verify(parse(f"\\boxed{{{gold}}}"), parse(f"\\boxed{{{answer}}}")))
        except Exception:  # math-verify raises on odd input; odd input is simply not equal
            ok = False
        out.write("1\n" if ok else "0\n")
        out.flush()


class MathChecker:
    """Equivalence of a gold answer and a model answer, in at most `timeout_s` seconds."""

    def __init__(self, timeout_s: float = 5.0, workers: int = 2) -> None:
        self.timeout_s = timeout_s
        self.workers = workers
        self._pid = os.getpid()
        self._idle: queue.Queue[Any] = queue.Queue()
        self._started = 0
        self._lock = threading.Lock()
        self.timeouts = 0  # comparisons that ran out of time (or whose worker died): scored 0
        # Idle workers are stopped when the checker is collected or the interpreter exits.
        weakref.finalize(self, _stop_idle, self._idle)

    def equivalent(self, gold: str, answer: str) -> bool:
        if _clean(gold) == _clean(answer):
            return True
        g, a = as_fraction(gold), as_fraction(answer)
        if g is not None and a is not None:
            return g == a
        return self._remote(gold, answer)

    def _remote(self, gold: str, answer: str) -> bool:
        worker = self._acquire()
        try:
            worker.stdin.write(json.dumps([gold, answer]) + "\n")
            worker.stdin.flush()
            if _readable(worker.stdout, self.timeout_s):
                reply = worker.stdout.readline()
                if reply in ("1\n", "0\n"):
                    self._idle.put(worker)
                    return reply == "1\n"
        except (OSError, ValueError):
            pass
        # Too slow, or dead: kill it; the next call starts a fresh one.
        _stop(worker)
        with self._lock:
            self._started -= 1
            self.timeouts += 1
        return False

    def _acquire(self) -> Any:
        while True:
            with self._lock:
                if os.getpid() != self._pid:  # forked: the parent's workers are not ours
                    self._pid, self._idle, self._started = os.getpid(), queue.Queue(), 0
                try:
                    return self._idle.get_nowait()
                except queue.Empty:
                    pass
                spawn = self._started < self.workers
                if spawn:
                    self._started += 1
            if spawn:
                try:
                    return self._spawn()
                except BaseException:
                    with self._lock:
                        self._started -= 1
                    raise
            try:  # all busy: wait for one (re-checking, since a killed one frees a slot)
                return self._idle.get(timeout=0.1)
            except queue.Empty:
                continue

    def _spawn(self) -> Any:
        """A new worker process, ready (math-verify imported) before its first timed call.

        A plain subprocess rather than multiprocessing: spawn-mode multiprocessing re-imports
        the caller's main script, which breaks scripts without a `__main__` guard.
        """
        import subprocess
        import sys

        proc = subprocess.Popen(
            [sys.executable, "-c", "from bots_cli.domains.mathcheck import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        assert proc.stdout is not None
        if not _readable(proc.stdout, _STARTUP_S) or proc.stdout.readline() != "ready\n":
            _stop(proc)
            raise RuntimeError(f"math-verify worker did not start within {_STARTUP_S:.0f} s")
        return proc

    def close(self) -> None:
        """Stop the idle workers (busy ones are stopped when their call returns)."""
        stopped = _stop_idle(self._idle)
        with self._lock:
            self._started -= stopped


def _stop_idle(idle: queue.Queue[Any]) -> int:
    stopped = 0
    while True:
        try:
            worker = idle.get_nowait()
        except queue.Empty:
            return stopped
        _stop(worker)
        stopped += 1


def _readable(stream: Any, timeout: float) -> bool:
    ready, _, _ = select.select([stream], [], [], timeout)
    return bool(ready)


def _stop(proc: Any) -> None:
    proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass
