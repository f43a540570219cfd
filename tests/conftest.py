"""Suite-wide set-up: the client's own state goes to a folder of each test, and no test
may fail because the machine is busy.

Hypothesis fails an example that runs over its 200 ms deadline, which a loaded machine
turns into a failure of a correct test; property tests here check behaviour, not speed
(speed lives in bench/), so they run without a deadline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("tumbler", deadline=None)
settings.load_profile("tumbler")


@pytest.fixture(autouse=True)
def _client_state_of_this_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # `tumbler` remembers the knocks it sent (client.sentknocks) in the user's state
    # directory: a test must start with none, and must leave none in root's home.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "client-state"))
