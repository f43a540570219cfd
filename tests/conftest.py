"""Suite-wide set-up: the client's own state goes to a folder of each test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _client_state_of_this_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # `tumbler` remembers the knocks it sent (client.sentknocks) in the user's state
    # directory: a test must start with none, and must leave none in root's home.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "client-state"))
