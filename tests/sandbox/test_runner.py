"""The sandbox's plumbing: results, comparison, limits, configuration and the fallback."""

from __future__ import annotations

import logging
import time

import pytest

from bots_cli.errors import InvalidValue, UserError
from bots_cli.sandbox import Job, Sandbox, SandboxConfig, count_passed, same_value

ADD = "def add(a, b):\n    return a + b\n"


def test_correct_program_returns_its_outputs(sandbox: Sandbox) -> None:
    res = sandbox.run(ADD, "add", [[1, 2], [3, 4], ["x", "y"]])
    assert res.status == "ok"
    assert res.outputs == [3, 7, "xy"]
    assert count_passed(res, [3, 7, "xy"]) == 3
    assert count_passed(res, [3, 8, "xy"]) == 2


def test_errors_are_per_test_and_load_errors_fail_everything(sandbox: Sandbox) -> None:
    res = sandbox.run("def f(x):\n    return 10 // x\n", "f", [[2], [0], [5]])
    assert count_passed(res, [5, None, 2]) == 2
    assert res.errors[1] is not None and "ZeroDivisionError" in res.errors[1]
    res = sandbox.run("def f(x) return x", "f", [[1], [2]])
    assert count_passed(res, [1, 2]) == 0
    assert all(e and "SyntaxError" in e for e in res.errors)
    res = sandbox.run("def g(x):\n    return x\n", "f", [[1]])  # wrong entry point
    assert count_passed(res, [1]) == 0 and "KeyError" in (res.errors[0] or "")


def test_mutating_arguments_does_not_leak_into_the_next_test(sandbox: Sandbox) -> None:
    code = "seen = []\ndef f(xs):\n    xs.append(1)\n    return len(xs)\n"
    res = sandbox.run(code, "f", [[[0]], [[0]]])
    assert res.outputs == [2, 2]


def test_main_guard_of_the_program_does_not_run(sandbox: Sandbox) -> None:
    code = ADD + "if __name__ == '__main__':\n    print(add(input(), 1))\n"
    assert count_passed(sandbox.run(code, "add", [[1, 1]]), [2]) == 1


def test_environment_is_scrubbed(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTS_TEST_TOKEN", "tok-123")
    res = sandbox.run("import os\ndef env():\n    return dict(os.environ)\n", "env", [[]])
    env = res.outputs[0]
    assert "BOTS_TEST_TOKEN" not in env
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "PWD", "LC_CTYPE"}


def test_run_many_keeps_order_and_runs_in_parallel(sandbox: Sandbox) -> None:
    jobs = [Job(f"import time\ndef f(x):\n    time.sleep(0.3)\n    return x * {k}\n", "f", [[k]])
            for k in range(6)]
    started = time.monotonic()
    results = sandbox.run_many(jobs)
    elapsed = time.monotonic() - started
    assert [r.outputs[0] for r in results] == [k * k for k in range(6)]
    # 6 programs sleeping 0.3 s each on 2 workers: about 1 s, where one at a time takes > 1.8 s.
    assert elapsed < 1.7


@pytest.mark.parametrize(("got", "expected", "same"), [
    (3, 3, True), (3, 4, False), (3.0000000001, 3.0, True), (3, 3.0, True), (0.1 + 0.2, 0.3, True),
    (True, 1, False), (1, True, False), (True, True, True), ("1", 1, False), (None, None, True),
    ([1, [2, 3]], [1, [2, 3]], True), ([1, 2], [1, 2, 3], False), ({"a": 1}, {"a": 1}, True),
    ({"a": 1}, {"a": 1, "b": 2}, False), ([1.0, 2], [1, 2], True),
])
def test_same_value(got: object, expected: object, same: bool) -> None:
    assert same_value(got, expected) is same


def test_config_validation_names_the_setting() -> None:
    with pytest.raises(InvalidValue, match=r"sandbox\.workers"):
        SandboxConfig.from_config({"workers": 0})
    with pytest.raises(InvalidValue, match="unknown sandbox setting"):
        SandboxConfig.from_config({"wall_second": 3})
    with pytest.raises(InvalidValue, match="require_isolation"):
        SandboxConfig.from_config({"use_bwrap": False, "require_isolation": True})
    assert SandboxConfig.from_config({"workers": 3}).workers == 3


def test_require_isolation_refuses_without_bubblewrap() -> None:
    cfg = SandboxConfig.from_config({"require_isolation": True,
                                     "bwrap_path": "/nonexistent/bwrap"})
    with pytest.raises(UserError, match="require_isolation is true but bubblewrap isolation is "
                                        "unavailable"):
        Sandbox(cfg)


def test_fallback_warns_that_isolation_is_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bots.sandbox"):
        sb = Sandbox(SandboxConfig.from_config({"bwrap_path": "/nonexistent/bwrap"}))
    assert not sb.isolated
    assert "isolation are OFF" in caplog.text and "require_isolation" in caplog.text
    assert count_passed(sb.run(ADD, "add", [[2, 2]]), [4]) == 1


def test_bwrap_program_sees_an_empty_private_world(bwrap_sandbox: Sandbox) -> None:
    code = ("import os, socket\n"
            "def look():\n"
            "    s = socket.socket()\n"
            "    s.settimeout(1)\n"
            "    try:\n"
            "        s.connect(('1.1.1.1', 53)); net = 'up'\n"
            "    except OSError:\n"
            "        net = 'down'\n"
            "    return {'cwd': os.getcwd(), 'files': os.listdir('.'),"
            " 'root': sorted(os.listdir('/')), 'net': net, 'pid': os.getpid(),"
            " 'home': os.path.exists('/root') or "
            "os.path.exists('/home'), 'work': os.path.exists('/work')}\n")
    out = bwrap_sandbox.run(code, "look", [[]]).outputs[0]
    assert out["cwd"] == "/sandbox" and out["files"] == []
    assert out["net"] == "down"
    assert out["pid"] < 10  # a fresh pid namespace
    assert not out["home"] and not out["work"]
    assert set(out["root"]) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc",
                                "proc", "dev", "tmp", "sandbox"}
