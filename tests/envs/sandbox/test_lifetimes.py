"""A sandbox never outlives its session, its owner object, or a SIGKILL of the process that owns it."""

import gc
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from envs.sandbox import SandboxLimits


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


def _wait_until(condition, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


OWNER = textwrap.dedent("""
    import sys
    from envs.sandbox import SandboxLimits, get_provider
    sandbox = get_provider(sys.argv[1]).open(SandboxLimits(wall_s=120, episode_s=0))
    sandbox.start()
    print(sandbox._process.directory.name, flush=True)
    sandbox.run("import subprocess, time\\nsubprocess.Popen(['/bin/sleep', '777.' + %r], start_new_session=True)\\ntime.sleep(100)")
""")


@pytest.mark.slow
def test_sigkill_of_the_owner_leaves_no_sandbox_process(provider, tmp_path):
    token = str(os.getpid()) + str(time.monotonic_ns())[-6:]
    owner = subprocess.Popen([sys.executable, "-c", OWNER % token, provider.name], stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    try:
        session = owner.stdout.readline().strip()
        assert session.startswith("agentr1-sandbox-")
        assert _wait_until(lambda: bool(_processes_mentioning("777." + token))), "the code's child never started"
        assert _processes_mentioning(session), "no sandbox process found while it runs"
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        assert _wait_until(lambda: not _processes_mentioning(session) and not _processes_mentioning("777." + token)), \
            f"left running: {_processes_mentioning(session) + _processes_mentioning('777.' + token)}"
        leftover = Path(tempfile.gettempdir()) / session
        assert leftover.exists()  # nobody closed it; the next session started anywhere deletes it
        with provider.open(SandboxLimits(wall_s=5)) as sandbox:
            sandbox.start()
        assert not leftover.exists()
    finally:
        if owner.poll() is None:
            owner.kill()


def test_close_stops_every_process_and_deletes_the_scratch_directory(provider):
    sandbox = provider.open(SandboxLimits(wall_s=5, episode_s=0), persistent=True)
    assert sandbox.run("open('note.txt', 'w').write('kept')").ok
    assert sandbox.run("open('note.txt').read()").value == "'kept'"  # files persist within the session
    directory = sandbox._process.directory
    pid = sandbox.pid
    sandbox.close()
    assert not directory.exists()
    assert _wait_until(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z")
    assert sandbox.run("1").status == "unavailable"  # a closed session runs nothing, and says so
    sandbox.close()  # idempotent


def test_a_forgotten_session_is_closed_by_its_finaliser(provider):
    sandbox = provider.open(SandboxLimits(wall_s=5, episode_s=0))
    assert sandbox.run("1").ok
    directory = sandbox._process.directory
    del sandbox
    gc.collect()
    assert not _processes_mentioning(directory.name) and not directory.exists()


def test_a_supervisor_that_dies_while_idle_is_replaced_without_charging_the_code(provider):
    sandbox = provider.open(SandboxLimits(wall_s=5, episode_s=0), persistent=True)
    try:
        assert sandbox.run("x = 1").ok
        sandbox._process.proc.kill()
        sandbox._process.proc.wait()
        result = sandbox.run("2 + 2")
        assert result.ok and result.value == "4" and result.state_lost
    finally:
        sandbox.close()
