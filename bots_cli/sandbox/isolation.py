"""How a sandboxed program is started: bubblewrap when it works here, resource limits otherwise.

With bubblewrap (`bwrap`) the program runs in new user, pid, network, ipc, uts and cgroup
namespaces with no capabilities, an empty environment, read-only system directories (`/usr` and
the interpreter's own prefix, nothing else of the host), a fresh size-capped tmpfs as its working
directory and `/tmp`, and `--die-with-parent`: killing bwrap kills the pid namespace and with it
every process the program started. Without bubblewrap the program gets the same resource limits
and a scrubbed environment, but it can read the user's files and reach the network; that fallback
is announced with a warning, and `sandbox.require_isolation: true` refuses it.

Whether bubblewrap works is not guessed from its presence: `find_launcher` runs a probe program
through the exact command used later (user namespaces can be disabled by the kernel, AppArmor or
a container runtime even where `bwrap` is installed).

When bots runs as root the program runs as `nobody` (uid 65534): RLIMIT_NPROC is not enforced
for root, so a fork storm would otherwise be unlimited, and root could read every file in the
fallback.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bots_cli.errors import UserError

log = logging.getLogger("bots.sandbox")

NOBODY = 65534
WORKDIR = "/sandbox"  # the program's working directory inside bubblewrap
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_PROBE = "import json, resource, sys; sys.stdout.write('bots-sandbox-ok')"
_PROBE_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Launcher:
    """The command prefix that starts the sandboxed interpreter, and what it isolates."""

    isolated: bool  # True: bubblewrap namespaces; False: resource limits only
    python: str  # interpreter path (inside the sandbox, which mirrors the host path)
    bwrap: str | None = None
    extra_ro: tuple[str, ...] = ()  # host dirs bound read-only besides /usr (interpreter prefix)
    tmpfs_bytes: int = 8 << 20  # size of the working dir and /tmp inside bubblewrap

    def command(self, script: str, result_fd: int) -> list[str]:
        """argv that runs `python -I -S -c script result_fd` in the sandbox."""
        py = [self.python, "-I", "-S", "-c", script, str(result_fd)]
        if not self.isolated:
            return py
        assert self.bwrap is not None
        size = str(self.tmpfs_bytes)
        argv = [
            self.bwrap, "--unshare-all", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--clearenv",
            "--setenv", "PATH", _SAFE_PATH, "--setenv", "HOME", WORKDIR,
            "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8",
            "--ro-bind", "/usr", "/usr",
        ]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            path = Path(top)
            if path.is_symlink():
                argv += ["--symlink", os.readlink(top), top]
            elif path.is_dir():
                argv += ["--ro-bind", top, top]
        argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        for prefix in self.extra_ro:
            argv += ["--ro-bind", prefix, prefix]
        argv += [
            "--proc", "/proc", "--dev", "/dev",
            "--size", size, "--tmpfs", "/tmp",
            "--size", size, "--tmpfs", WORKDIR, "--chdir", WORKDIR,
        ]
        return argv + py

    def popen_kwargs(self, workdir: str | None) -> dict[str, Any]:
        """Keyword arguments for `subprocess.Popen`: user, environment and working directory."""
        kw: dict[str, Any] = {"start_new_session": True}
        if os.geteuid() == 0:
            kw.update(user=NOBODY, group=NOBODY, extra_groups=[])
        if self.isolated:
            kw.update(cwd="/", env={"PATH": _SAFE_PATH})
        else:
            assert workdir is not None
            kw.update(cwd=workdir, env={"PATH": _SAFE_PATH, "HOME": workdir, "TMPDIR": workdir,
                                        "LANG": "C.UTF-8"})
        return kw


def interpreter_candidates(configured: str | None) -> list[tuple[str, tuple[str, ...]]]:
    """(interpreter, read-only prefixes it needs) to try, best first.

    The interpreter running bots comes first (same Python version), without its virtualenv: the
    program must not see the project's site-packages. System interpreters under /usr follow, for
    when the first lives somewhere the sandbox user cannot read (e.g. pyenv under /root).
    """
    if configured:
        exe = os.path.realpath(configured)
        return [(exe, _prefixes(exe, str(Path(exe).parent.parent)))]
    out: list[tuple[str, tuple[str, ...]]] = []
    base = os.path.realpath(sys.executable)
    out.append((base, _prefixes(base, sys.base_prefix)))
    for exe in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(exe):
            real = os.path.realpath(exe)
            out.append((real, _prefixes(real, str(Path(real).parent.parent))))
    unique: dict[str, tuple[str, ...]] = {}
    for exe, prefixes in out:
        unique.setdefault(exe, prefixes)
    return list(unique.items())


def _prefixes(exe: str, prefix: str) -> tuple[str, ...]:
    prefix = os.path.realpath(prefix)
    if exe.startswith("/usr/") or not exe.startswith(prefix + os.sep):
        return ()
    return (prefix,)


def _probe(launcher: Launcher) -> str | None:
    """Run a trivial program exactly as real programs run; None if it worked, else why not."""
    r, w = os.pipe()
    try:
        proc = subprocess.run(
            launcher.command(_PROBE, w), pass_fds=(w,), capture_output=True,
            timeout=_PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL,
            **{k: v for k, v in launcher.popen_kwargs("/").items() if k != "start_new_session"},
        )
    except (OSError, subprocess.SubprocessError) as err:
        return f"{type(err).__name__}: {err}"
    finally:
        os.close(r)
        os.close(w)
    if proc.returncode == 0 and proc.stdout == b"bots-sandbox-ok":
        return None
    detail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
    return f"exit code {proc.returncode}: {detail[-1] if detail else 'no output'}"


def find_launcher(
    *, use_bwrap: bool, require_isolation: bool, bwrap_path: str | None,
    python: str | None, tmpfs_bytes: int,
) -> Launcher:
    """The best working launcher for this machine, probed; warns when isolation is off."""
    candidates = interpreter_candidates(python)
    problems: list[str] = []
    if use_bwrap:
        bwrap = shutil.which(bwrap_path or "bwrap")
        if bwrap is None:
            problems.append(f"bubblewrap not found ({bwrap_path or 'bwrap'} is not on PATH; "
                            "install the Debian/Ubuntu package `bubblewrap`)")
        else:
            for exe, prefixes in candidates:
                launcher = Launcher(True, exe, bwrap, prefixes, tmpfs_bytes)
                why = _probe(launcher)
                if why is None:
                    log.info("sandbox: bubblewrap isolation on (%s, interpreter %s)", bwrap, exe)
                    return launcher
                problems.append(f"bwrap with {exe} failed: {why}")
    else:
        problems.append("sandbox.use_bwrap is false")
    reason = "; ".join(problems)
    if require_isolation:
        raise UserError(f"sandbox.require_isolation is true but bubblewrap isolation is "
                        f"unavailable here ({reason}); install bubblewrap and allow user "
                        f"namespaces, or set domain.sandbox.require_isolation=false")
    for exe, _ in candidates:
        launcher = Launcher(False, exe, None, (), tmpfs_bytes)
        if _probe(launcher) is None:
            log.warning(
                "sandbox: filesystem and network isolation are OFF (%s). Model-written code runs "
                "with resource limits only and can read your files and reach the network; set "
                "domain.sandbox.require_isolation=true to refuse instead.", reason)
            return launcher
    raise UserError(f"no Python interpreter can run sandboxed programs here "
                    f"(tried {', '.join(c[0] for c in candidates)}); set domain.sandbox.python")
