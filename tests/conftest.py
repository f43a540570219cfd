"""Suite-wide set-up: the client's own state goes to a folder of each test, and no test
may fail because the machine is busy.

Hypothesis fails an example that runs over its 200 ms deadline, which a loaded machine
turns into a failure of a correct test; property tests here check behaviour, not speed
(speed lives in bench/), so they run without a deadline.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("tumbler", deadline=None)
settings.load_profile("tumbler")


@pytest.fixture(scope="session", autouse=True)
def _client_state_of_this_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Module- and session-scoped fixtures run clients before any test's own folder exists:
    # they remember their knocks here, never in root's home.
    saved = os.environ.get("XDG_STATE_HOME")
    users = Path(saved or Path.home() / ".local" / "state") / "tumbler"
    before = _listing(users)
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("client-state"))
    yield
    if saved is None:
        del os.environ["XDG_STATE_HOME"]
    else:
        os.environ["XDG_STATE_HOME"] = saved
    assert _listing(users) == before, f"a test's client wrote to the user's own {users}"


def _listing(folder: Path) -> list[tuple[str, int]]:
    """What the folder holds, with modification times: what a knock there would change."""
    if not folder.is_dir():
        return []
    return sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())


@pytest.fixture(autouse=True)
def _client_state_of_this_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # `tumbler` remembers the knocks it sent (client.sentknocks) in the user's state
    # directory: a test must start with none, and must leave none in root's home.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "client-state"))
