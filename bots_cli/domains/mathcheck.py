"""Math answer equivalence that is bounded in time and safe under threads and processes.

`math-verify` (sympy underneath) decides that `\\frac{1}{2}`, `0.5` and `1/2` agree, but a
pathological answer (`9^{9^{9^9}}`) can keep sympy busy for minutes, and its own timeout uses
SIGALRM, which only works in a process's main thread. So verification runs in a few worker
processes (spawned, so they inherit no threads or locks): a call sends (gold, answer) to a free
worker and waits at most `timeout_s`; a worker that does not answer in time is killed and
replaced, and the answer scores 0. A pool created before a fork is never used by the child
(it makes its own). Plain numbers (integers, decimals, fractions) are compared exactly in-process
first, which covers the generated tasks without any IPC.
"""

from __future__ import annotations

import os
import queue
import re
import threading
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


def _worker(conn: Any) -> None:
    """Worker process loop: (gold, answer) in, bool out. Runs in its own main thread."""
    from math_verify import parse, verify

    conn.send("ready")
    while True:
        try:
            gold, answer = conn.recv()
        except EOFError:
            return
        try:
            ok = bool(verify(parse(f"\\boxed{{{gold}}}"), parse(f"\\boxed{{{answer}}}")))
        except Exception:  # math-verify raises on odd input; odd input is simply not equal
            ok = False
        conn.send(ok)


class MathChecker:
    """Equivalence of a gold answer and a model answer, in at most `timeout_s` seconds."""

    def __init__(self, timeout_s: float = 5.0, workers: int = 2) -> None:
        self.timeout_s = timeout_s
        self.workers = workers
        self._pid = os.getpid()
        self._idle: queue.Queue[Any] = queue.Queue()
        self._started = 0
        self._lock = threading.Lock()

    def equivalent(self, gold: str, answer: str) -> bool:
        if _clean(gold) == _clean(answer):
            return True
        g, a = as_fraction(gold), as_fraction(answer)
        if g is not None and a is not None:
            return g == a
        return self._remote(gold, answer)

    def _remote(self, gold: str, answer: str) -> bool:
        worker = self._acquire()
        proc, conn = worker
        try:
            conn.send((gold, answer))
            if conn.poll(self.timeout_s):
                ok = bool(conn.recv())
                self._idle.put(worker)
                return ok
        except (EOFError, OSError):
            pass
        # Too slow (or dead): kill it; the next call starts a fresh one.
        proc.kill()
        proc.join()
        conn.close()
        with self._lock:
            self._started -= 1
        return False

    def _acquire(self) -> tuple[Any, Any]:
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

    def _spawn(self) -> tuple[Any, Any]:
        """A new worker, ready (math-verify imported) before the first timed call."""
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child,), daemon=True,
                           name="bots-math-verify")
        proc.start()
        child.close()
        if not parent.poll(_STARTUP_S) or parent.recv() != "ready":
            proc.kill()
            proc.join()
            raise RuntimeError(f"math-verify worker did not start within {_STARTUP_S:.0f} s")
        return proc, parent

    def close(self) -> None:
        """Stop the idle workers (busy ones are stopped when their call returns)."""
        while True:
            try:
                proc, conn = self._idle.get_nowait()
            except queue.Empty:
                return
            conn.close()
            proc.kill()
            proc.join()
            with self._lock:
                self._started -= 1
