"""Env servers for the server tests: real ``python -m envs serve`` processes on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("websockets")

ROOT = Path(__file__).resolve().parents[3]


class ServerProcess:
    """``python -m envs serve ARGS`` in a subprocess; ``url`` once it listens.

    One worker process unless ``ARGS`` say ``--processes N``: most tests are about the protocol, and
    one process starts fastest; the tests of the whole-server guarantees run two.
    """

    def __init__(self, *args: str, port: int = 0):
        self.args = [*args, "--port", str(port), *([] if "--processes" in args else ["--processes", "1"])]
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.output = ""

    def start(self, timeout: float = 90.0) -> ServerProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        # Output goes to a file, not a pipe: a chatty server must never block on a full pipe.
        self.log = tempfile.NamedTemporaryFile("w+", prefix="envs-serve-", suffix=".log")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "envs", "serve", *self.args], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"on (http://\S+) ", Path(self.log.name).read_text())
            if found:
                self.url = found.group(1)
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {Path(self.log.name).read_text()}")
            time.sleep(0.05)
        else:
            raise RuntimeError("server did not start in time")
        while time.monotonic() < deadline:  # the socket is bound before uvicorn serves: wait for /health
            try:
                self.get("/health")
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server never answered /health")

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def log_bytes(self) -> int:
        """How much the server has written to its log so far."""
        return Path(self.log.name).stat().st_size

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def active_sessions(self, expect: int | None = None, timeout: float = 5.0) -> int:
        """The server's session count; with ``expect``, wait up to ``timeout`` for it to get there."""
        deadline = time.monotonic() + timeout
        while True:
            active = self.get("/agentr1/status")["active_sessions"]
            if expect is None or active == expect or time.monotonic() > deadline:
                return active
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:  # stop() may run twice: in a test, then at teardown
            self.output = Path(self.log.name).read_text()
            self.log.close()
        return self.proc.returncode


def _factory():
    started: list[ServerProcess] = []

    def start(*args: str, port: int = 0) -> ServerProcess:
        server = ServerProcess(*args, port=port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server_factory():
    """Start servers; every one is stopped at the end of the test."""
    yield from _factory()


@pytest.fixture(scope="module")
def module_server_factory():
    """Start servers shared by a test module (one process per module keeps the tests fast)."""
    yield from _factory()
