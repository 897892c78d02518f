"""The escape suite against both local providers: bubblewrap contains every attempt; the fallback's
outcomes are asserted as they are (``envs.sandbox.escapes.FALLBACK_EXPECTED``, docs/python-tool.md)."""

import pytest

from envs.sandbox.escapes import CASES, fallback_expected, run_case


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_escape_attempt(provider, case):
    result = run_case(provider, case)
    assert result.still_runs, f"{provider.name}: the session could not run code after {case.name!r}"
    expected = True if provider.name == "bubblewrap" else fallback_expected(case.name)
    if expected is None:
        pytest.skip(f"{provider.name}: {case.name!r} depends on this machine ({result.observation})")
    assert result.contained == expected, f"{provider.name}: {case.name}: {result.observation}"
