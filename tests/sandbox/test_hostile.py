"""The hostile corpus: programs that attack the host or forge their verdict, run through the code
reward together with a correct solution. Each attack is written so that it *returns the right
answers only if it worked*: a score of 0 means it was contained, and the host is checked too
(files intact, nothing written, no connection received, no process left).

Attacks on the filesystem, the network and the parent's memory are only stopped by bubblewrap;
they run on the bwrap backend and skip on the rlimits fallback. Everything else (time, processes,
memory, output, files, environment, forged verdicts) must be contained by both.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from bots_cli.domains.code import Code
from bots_cli.sandbox import Sandbox

TESTS = [{"args": [1], "expected": 2}, {"args": [2], "expected": 3}, {"args": [5], "expected": 6}]
TASK = {"task_id": "t", "answer": json.dumps({"entry_point": "solve", "tests": TESTS})}
CORRECT = "def solve(x):\n    return x + 1\n"
IF_OK = "    return x + 1 if ok else x\n"  # the attack's success decides the answer


@dataclass(frozen=True)
class Hostile:
    name: str
    code: str
    needs_isolation: bool = False  # only bubblewrap can stop it


def corpus(host: Path, port: int, mark: str) -> list[Hostile]:
    """The programs; `host` is a directory of the host, `port` a listening host socket, `mark` a
    string every process they start carries in its command line."""
    spin = ("import os, sys, time\\nwhile True:\\n    try: os.fork()\\n"
            "    except OSError: time.sleep(0.01)")
    return [
        Hostile("infinite_loop", "def solve(x):\n    while True:\n        pass\n"),
        Hostile("sleep_forever", "import time\ndef solve(x):\n    time.sleep(10**6)\n"),
        Hostile("fork_storm",
                "import os, sys\ndef solve(x):\n    while True:\n        try:\n"
                "            if os.fork() == 0:\n"
                f"                os.execv(sys.executable, [sys.executable, '-c', \"{spin}\", "
                f"'{mark}'])\n"
                "        except OSError:\n            pass\n"),
        Hostile("memory_bomb",
                "def solve(x):\n    hoard = []\n    while True:\n"
                "        hoard.append(bytearray(50 * 2**20))\n"),
        Hostile("giant_output", "def solve(x):\n    while True:\n        print('x' * 65536)\n"),
        Hostile("giant_file",
                "def solve(x):\n    with open('big.bin', 'wb') as f:\n"
                "        for _ in range(256):\n            f.write(b'0' * 2**20)\n"
                "    return x + 1\n"),
        Hostile("ignore_sigterm",
                "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "def solve(x):\n    while True:\n        time.sleep(0.1)\n"),
        Hostile("detached_shell",
                "import subprocess\ndef solve(x):\n"
                f"    subprocess.Popen(['/bin/sh', '-c', 'while :; do sleep 1; done # {mark}'],"
                " start_new_session=True)\n    return x\n"),
        Hostile("env_secret",
                "import os\ndef solve(x):\n"
                "    ok = os.environ.get('BOTS_TEST_API_KEY') == 'sk-test-123'\n" + IF_OK),
        Hostile("forged_eq",
                "class Anything:\n    def __eq__(self, other):\n        return True\n"
                "def solve(x):\n    return Anything()\n"),
        Hostile("forged_int_eq",
                "class Liar(int):\n    def __eq__(self, other):\n        return True\n"
                "    __hash__ = int.__hash__\n"
                "def solve(x):\n    return Liar(0)\n"),
        Hostile("forged_print",
                "print('All tests passed')\nprint('{\"i\": 0, \"out\": 2}')\n"
                "def solve(x):\n    print('passed')\n    return None\n"),
        Hostile("early_exit", "import os\nos._exit(0)\ndef solve(x):\n    return x + 1\n"),
        Hostile("sys_exit", "import sys\ndef solve(x):\n    sys.exit(0)\n"),
        Hostile("forged_result_pipe",
                "import os, sys\nfd = int(sys.argv[1])\n"
                "for i in range(3):\n    os.write(fd, b'{\"i\": %d, \"out\": true}\\n' % i)\n"
                "def solve(x):\n    return x\n"),
        Hostile("patched_json",
                "import json\njson.dumps = lambda *a, **k: '{\"i\": 0, \"out\": 2}'\n"
                "def solve(x):\n    return x\n"),
        Hostile("write_outside",
                "def solve(x):\n    try:\n"
                f"        open({str(host / 'pwned.txt')!r}, 'w').write('pwned')\n"
                "        ok = True\n    except OSError:\n        ok = False\n" + IF_OK,
                needs_isolation=True),
        Hostile("delete_outside",
                "import os\ndef solve(x):\n    try:\n"
                f"        os.remove({str(host / 'victim.txt')!r})\n        ok = True\n"
                "    except OSError:\n        ok = False\n" + IF_OK,
                needs_isolation=True),
        Hostile("read_secret_file",
                "def solve(x):\n    try:\n"
                f"        ok = open({str(host / 'secret.txt')!r}).read() == 's3cret'\n"
                "    except OSError:\n        ok = False\n" + IF_OK,
                needs_isolation=True),
        Hostile("parent_environ",
                "import os\ndef solve(x):\n    ok = False\n    for pid in os.listdir('/proc'):\n"
                "        try:\n            env = open(f'/proc/{pid}/environ', 'rb').read()\n"
                "        except (OSError, ValueError):\n            continue\n"
                "        ok = ok or b'sk-test-123' in env\n" + IF_OK,
                needs_isolation=True),
        Hostile("network",
                "import socket\ndef solve(x):\n    try:\n"
                f"        socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n"
                "        ok = True\n    except OSError:\n        ok = False\n" + IF_OK,
                needs_isolation=True),
        Hostile("shell_escape",
                "import subprocess\ndef solve(x):\n"
                f"    subprocess.run(['/bin/sh', '-c', 'echo pwned > {host / 'shell.txt'}'])\n"
                f"    ok = subprocess.run(['/bin/cat', {str(host / 'secret.txt')!r}], "
                "capture_output=True).stdout == b's3cret'\n" + IF_OK,
                needs_isolation=True),
    ]


def _processes_with(mark: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if mark.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("backend", ["bwrap", "rlimits"])
def test_hostile_corpus_is_contained(backend: str, request: pytest.FixtureRequest,
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox: Sandbox = request.getfixturevalue(f"{backend}_sandbox")
    monkeypatch.setenv("BOTS_TEST_API_KEY", "sk-test-123")
    host = tmp_path / "host"
    host.mkdir()
    (host / "victim.txt").write_text("precious")
    (host / "secret.txt").write_text("s3cret")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    connections: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connections.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    mark = f"bots-hostile-{uuid.uuid4().hex}"
    programs = [h for h in corpus(host, server.getsockname()[1], mark)
                if sandbox.isolated or not h.needs_isolation]
    assert len(programs) >= (22 if sandbox.isolated else 16)

    dom = Code({"reward": {"graded": True}})
    dom._sandbox = sandbox  # the session's sandbox, with the tight test limits
    completions = [f"```python\n{h.code}```" for h in programs] + [f"```python\n{CORRECT}```"]
    started = time.monotonic()
    scores = dom.scores(completions, [TASK] * len(completions))
    elapsed = time.monotonic() - started
    stop.set()
    thread.join()
    server.close()

    got = {h.name: (s.reward, s.details["status"]) for h, s in zip(programs, scores, strict=False)}
    assert {name: r for name, (r, _) in got.items() if r != 0.0} == {}, got
    assert scores[-1].reward == 1.0, scores[-1]  # the correct solution, in the same run
    # Within limits: each program ends within its wall limit (plus process start-up).
    assert elapsed < len(completions) * sandbox.config.wall_seconds / sandbox.config.workers + 10
    assert got["infinite_loop"][1] in ("cpu_limit", "timeout")
    assert got["sleep_forever"][1] == "timeout" and got["ignore_sigterm"][1] == "timeout"
    assert got["giant_output"][1] == "output_limit"
    assert got["forged_result_pipe"][1] == "tampered"
    # The host is untouched and nothing is left running.
    assert (host / "victim.txt").read_text() == "precious"
    assert sorted(p.name for p in host.iterdir()) == ["secret.txt", "victim.txt"]
    assert connections == []
    deadline = time.monotonic() + 3
    while _processes_with(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(mark) == []


def test_the_network_attack_is_real_without_isolation(rlimits_sandbox: Sandbox) -> None:
    """The corpus is not vacuous: without bubblewrap, the network attack does score 1."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    network = next(h for h in corpus(Path("/nonexistent"), server.getsockname()[1], "unused")
                   if h.name == "network")
    dom = Code()
    dom._sandbox = rlimits_sandbox
    try:
        score = dom.score(f"```python\n{network.code}```", TASK)
        assert score.reward == 1.0, score
    finally:
        server.close()
