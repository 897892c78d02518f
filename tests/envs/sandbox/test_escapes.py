"""The escape suite against both local providers: bubblewrap contains every attempt; the fallback's
outcomes are asserted as they are (``envs.sandbox.escapes.FALLBACK_EXPECTED``, docs/python-tool.md)."""

import socket

import pytest

from envs.sandbox.escapes import CASES, Host, fallback_expected, run_case


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_escape_attempt(provider, case):
    result = run_case(provider, case)
    assert result.still_runs, f"{provider.name}: the session could not run code after {case.name!r}"
    expected = True if provider.name == "bubblewrap" else fallback_expected(case.name)
    if expected is None:
        pytest.skip(f"{provider.name}: {case.name!r} depends on this machine ({result.observation})")
    assert result.contained == expected, f"{provider.name}: {case.name}: {result.observation}"


def test_the_host_counts_a_connection_that_closed_before_it_was_asked():
    """CI once judged a loopback connection 'refused' because the accepting thread had not run yet."""
    host = Host()
    host.start_server()
    try:
        assert host.count_connections() == 0
        for _ in range(3):
            socket.create_connection(("127.0.0.1", host.port), timeout=1).close()
        assert host.count_connections() == 3
    finally:
        host.cleanup()
