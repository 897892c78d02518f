"""Both local providers, as fixtures: bubblewrap is skipped (with the reason) where it cannot run."""

import pytest

from envs.sandbox.bubblewrap import BubblewrapProvider
from envs.sandbox.fallback import SubprocessProvider


@pytest.fixture(params=["bubblewrap", "subprocess"])
def provider(request):
    if request.param == "subprocess":
        return SubprocessProvider()
    bubblewrap = BubblewrapProvider()
    reason = bubblewrap.unavailable_reason()
    if reason is not None:
        pytest.skip(f"bubblewrap cannot run here: {reason} (scripts/test.sh installs it)")
    return bubblewrap
