"""SharedValues: one build per key across threads, parallel builds across keys, failures not remembered."""

import threading
import time

import pytest

from envs.core.shared import SharedValues


def test_one_build_per_key_however_many_threads_ask_at_once():
    shared, builds, barrier = SharedValues(), [], threading.Barrier(16)
    results = []

    def build():
        builds.append(1)
        time.sleep(0.05)  # long enough for every thread to arrive while the build runs
        return object()

    def ask():
        barrier.wait()
        results.append(shared.get("k", build))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len({id(r) for r in results}) == 1 and "k" in shared and len(shared) == 1


def test_different_keys_build_in_parallel():
    shared, inside = SharedValues(), threading.Barrier(2, timeout=5)

    def build(key):
        inside.wait()  # both builds must be running at once, or this times out
        return key

    threads = [threading.Thread(target=lambda k=k: shared.get(k, lambda: build(k))) for k in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not inside.broken and len(shared) == 2


def test_a_failed_build_is_retried_by_the_next_caller():
    shared = SharedValues()

    def fail():
        raise OSError("disk unplugged")

    with pytest.raises(OSError):
        shared.get("k", fail)
    assert "k" not in shared and shared.get("k", lambda: 3) == 3
    shared.clear()
    assert len(shared) == 0 and shared.get("k", lambda: 4) == 4
