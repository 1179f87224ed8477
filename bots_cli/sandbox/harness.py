"""The child side of the sandbox: the only code that runs next to an untrusted program.

It is started as `python -I -S -c <this file's source> <result fd>` inside the sandbox. A
supervisor process forks the child that reads one job from stdin (the program's source, its
entry point, the test *inputs* and the limits), caps its own resources, runs the program and
writes one JSON line per test to the result pipe:
``{"i": 0, "out": <return value as JSON>}`` or ``{"i": 0, "error": "TypeError: ..."}``.

Why the verdict cannot be forged from here: the expected outputs never enter the sandbox; the
parent compares the returned *data* with them. A return value that is not plain JSON data (an
object with a custom ``__eq__``) fails to serialise; an int or list subclass serialises to its
plain value; printing "passed" goes to stdout, which the parent never interprets; exiting early
leaves tests without results, which count as failures. The program can write to the result pipe
itself, but without the expected values the most it can achieve is garbage, which the parent
rejects. Only the standard library is used: the sandbox sees no site-packages.
"""

import json
import os
import resource
import signal
import sys
import time

_PR_SET_CHILD_SUBREAPER = 36  # prctl option (linux/prctl.h)
_ERROR_CHARS = 300  # keep error messages short: they are logged, never interpreted


def _set_limits(limits: dict) -> None:
    """Cap this process and everything it starts; hard limits cannot be raised again."""
    cpu = int(limits["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at soft, SIGKILL at hard
    mem = int(limits["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    fsize = int(limits["file_bytes"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    nproc = int(limits["max_processes"])
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def _send(fd: int, record: dict) -> None:
    data = (json.dumps(record, allow_nan=False) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:_ERROR_CHARS]


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            out.append(pid)
            todo.append(pid)
    return out


def _reap_all() -> None:
    """Kill every remaining descendant (orphans come to us: we are a subreaper), reap them."""
    for _ in range(100):
        victims = _descendants(os.getpid())
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        if not victims:
            return
        time.sleep(0.005)


def _run(fd: int) -> None:
    job = json.loads(sys.stdin.buffer.read())
    _set_limits(job["limits"])
    # stdin is spent; the program gets an empty one instead of the job.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    inputs = job["inputs"]
    # Not "__main__": a program's own `if __name__ == "__main__":` demo block does not run.
    namespace: dict = {"__name__": "__program__", "__builtins__": __builtins__}
    try:
        exec(compile(job["code"], "<program>", "exec"), namespace)
        func = namespace[job["entry_point"]]
    except BaseException as err:  # the program failed before any test: every test fails
        _send(fd, {"i": -1, "error": _describe(err)})
        return
    del job
    for i, args in enumerate(inputs):
        try:
            # A fresh copy of the inputs for each test: a program mutating its arguments
            # cannot affect the next test.
            out = func(*json.loads(json.dumps(args)))
            record = {"i": i, "out": out}
            json.dumps(record, allow_nan=False)  # not JSON data: fails here, as an error
        except BaseException as err:  # SystemExit and KeyboardInterrupt count as failures too
            record = {"i": i, "error": _describe(err)}
        _send(fd, record)


def main() -> None:
    """Supervise: the program runs in a child; afterwards every process it left is killed.

    The supervisor is a child subreaper, so processes the program detaches (double fork,
    setsid) are re-parented to it rather than to init, and it can find and kill them. Under
    bubblewrap the pid namespace does this too; without bubblewrap this is what does it.
    """
    fd = int(sys.argv[1])
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: detached processes may escape; the parent still kills the group
    pid = os.fork()
    if pid == 0:
        try:
            _run(fd)
        finally:
            # Leave at once: threads or handlers the program left cannot delay the verdict.
            os._exit(0)
    os.close(0)
    _, status = os.waitpid(pid, 0)
    _reap_all()
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)  # killed by signal s: 128 + s, like a shell


if __name__ == "__main__":
    main()
