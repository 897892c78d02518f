"""Sessions: notebook semantics, fresh versus persistent state, limits, the episode budget, statuses."""

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

import envs.sandbox as sandbox_package
from envs.sandbox import SandboxLimits, SandboxUnavailable, get_provider
from envs.sandbox.base import clean_text, trim_output
from envs.sandbox.bubblewrap import BubblewrapProvider
from envs.sandbox.fallback import SubprocessProvider

FAST = SandboxLimits(wall_s=1, cpu_s=1, episode_s=0, max_output_chars=200)


def test_a_cell_prints_and_returns_the_value_of_its_last_expression(provider):
    with provider.open(FAST) as sandbox:
        result = sandbox.run("import math\nprint('primes:', [p for p in range(20) if all(p % d for d in range(2, p))][2:])\n"
                             "math.comb(10, 3)")
    assert result.ok and result.stdout == "primes: [2, 3, 5, 7, 11, 13, 17, 19]\n" and result.value == "120"


def test_errors_come_back_as_a_traceback_of_the_code_only(provider):
    with provider.open(FAST) as sandbox:
        result = sandbox.run("def f(n):\n    return 1 / n\nprint('before')\nf(0)")
        syntax = sandbox.run("x = (1 +")
    assert result.status == "error" and result.stdout == "before\n"
    assert result.error.startswith("Traceback") and 'File "<cell>", line 4' in result.error
    assert result.error.endswith("ZeroDivisionError: division by zero") and "runner" not in result.error
    assert syntax.status == "error" and "SyntaxError" in syntax.error


def test_fresh_sessions_forget_variables_but_keep_scratch_files(provider):
    with provider.open(FAST) as sandbox:
        assert sandbox.run("x = 5\nopen('f.txt', 'w').write('data')").ok
        assert "NameError" in sandbox.run("x").error
        assert sandbox.run("open('f.txt').read()").value == "'data'"


def test_persistent_sessions_keep_variables_until_the_interpreter_is_stopped(provider):
    with provider.open(FAST, persistent=True) as sandbox:
        assert sandbox.run("x = 5").ok
        assert sandbox.run("x * 2").value == "10"
        interrupted = sandbox.run("import time\ntime.sleep(30)")  # an exception first: x survives
        assert interrupted.status == "timeout" and not interrupted.state_lost
        assert sandbox.run("x").value == "5"
        stopped = sandbox.run("import signal\nfor s in (signal.SIGUSR1, signal.SIGXCPU):\n    signal.signal(s, signal.SIG_IGN)\n"
                              "while True:\n    pass")  # code that will not stop is killed
        assert stopped.status in ("timeout", "cpu_limit") and stopped.state_lost
        assert "NameError" in sandbox.run("x").error


def test_cpu_time_limit_stops_busy_code_before_the_wall_clock(provider):
    limits = SandboxLimits(wall_s=20, cpu_s=1, episode_s=0)
    with provider.open(limits) as sandbox:
        result = sandbox.run("while True:\n    pass")
    assert result.status == "cpu_limit" and result.seconds < 10


def test_the_episode_budget_shortens_calls_then_refuses_them(provider):
    with provider.open(SandboxLimits(wall_s=5, cpu_s=5, episode_s=1.0)) as sandbox:
        first = sandbox.run("import time\ntime.sleep(10)")
        assert first.status == "timeout" and first.seconds < 3
        refused = sandbox.run("1 + 1")
    assert refused.status == "episode_budget" and "spent" in refused.detail


def test_output_is_capped_head_and_tail(provider):
    with provider.open(FAST) as sandbox:
        result = sandbox.run("for i in range(5000):\n    print(i)")
    assert result.ok and result.stdout.startswith("0\n1\n") and result.stdout.endswith("4998\n4999\n")
    assert "output cut" in result.stdout and len(result.stdout) < 300 and result.stdout_bytes == 23890


def test_code_that_exits_its_process_is_reported(provider):
    with provider.open(FAST) as sandbox:
        exited = sandbox.run("import os\nos._exit(3)")
        assert exited.status == "exited" and exited.detail == "exit status 3"
        assert sandbox.run("import sys\nsys.exit(0)").ok


def test_limits_are_validated():
    with pytest.raises(ValueError, match="wall_s"):
        SandboxLimits(wall_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        SandboxLimits(memory_mb=16)
    with pytest.raises(ValueError, match="unknown sandbox limit"):
        SandboxLimits.from_mapping({"wall": 3})
    assert SandboxLimits.from_mapping({"wall_s": 3}).wall_s == 3


def test_a_missing_bubblewrap_is_unavailable_and_auto_falls_back_with_a_warning(monkeypatch, caplog):
    missing = BubblewrapProvider(bwrap="/nonexistent/bwrap")
    assert not missing.available()
    sandbox = missing.open(FAST)
    result = sandbox.run("1")
    assert result.status == "unavailable" and result.infra and "cannot start" in result.detail
    sandbox.close()
    monkeypatch.setattr("envs.sandbox.bubblewrap.shutil.which", lambda name: None)
    with pytest.raises(SandboxUnavailable, match="not installed"):
        get_provider("bubblewrap")
    sandbox_package._warned.clear()
    with caplog.at_level(logging.WARNING):
        fallback = get_provider("auto")
    assert isinstance(fallback, SubprocessProvider)
    assert "does not protect against" in caplog.text and "network" in caplog.text
    with pytest.raises(ValueError, match="unknown sandbox"):
        get_provider("docker")


@given(st.text(), st.text(), st.integers(0, 10**9), st.booleans(), st.integers(1, 500))
def test_trimmed_output_is_printable_and_bounded(head, tail, total, complete, max_chars):
    text = trim_output(head, tail, total, complete, max_chars)
    assert all(ch in "\n\t" or ch.isprintable() or not ch.isascii() for ch in text)
    assert len(text) <= max_chars + 80
    if complete and len(clean_text(head + tail)) <= max_chars:
        assert text == clean_text(head + tail)


def test_reset_starts_a_clean_episode_in_the_same_sandbox(provider):
    with provider.open(SandboxLimits(wall_s=1, cpu_s=1, episode_s=30), persistent=True) as sandbox:
        assert sandbox.run("import os, subprocess\nx = 1\nos.makedirs('d/e')\nopen('d/e/f', 'w').write('1')\n"
                           "os.chmod('d/e', 0)\nos.chmod('d', 0)\nsubprocess.Popen(['/bin/sleep', '300'])").ok
        assert sandbox.run("import time\ntime.sleep(5)").status == "timeout"
        pid, used = sandbox.pid, sandbox.time_used
        sandbox.reset()
        assert sandbox.pid == pid and sandbox.time_used == 0  # kept warm, with a new time budget
        after = sandbox.run("import os\nprint(sorted(os.listdir('.')))\n'x' in globals()")
        assert after.ok and after.stdout == "[]\n" and after.value == "False"  # no files, no variables
        assert not after.state_lost and sandbox.time_used < used


def test_preloaded_modules_are_imported_once_yet_every_call_starts_clean(provider):
    probe = "import sys\n'decimal' in sys.modules"  # the supervisor itself never imports decimal
    with provider.open(FAST) as plain, provider.open(FAST, preload=("decimal", "no_such_module")) as preloaded:
        assert plain.run(probe).value == "False"
        assert preloaded.run(probe).value == "True"
        assert preloaded.run("import decimal\nx = decimal.Decimal(1) / 3").ok
        assert "NameError" in preloaded.run("x").error
