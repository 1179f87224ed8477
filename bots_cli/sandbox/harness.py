"""The child side of the sandbox: the only code that runs next to an untrusted program.

It is started as `python -I -S -c <this file's source> <result fd>` inside the sandbox, reads one
job from stdin (the program's source, its entry point, the test *inputs* and the limits), caps
its own resources, runs the program and writes one JSON line per test to the result pipe:
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
import sys

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


def main() -> None:
    fd = int(sys.argv[1])
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
        os._exit(0)
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
    # Leave at once: threads or handlers the program left behind cannot delay the verdict.
    os._exit(0)


if __name__ == "__main__":
    main()
