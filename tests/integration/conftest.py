from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Tumblerd
from tests.integration.fleet import cluster, redis_server, sentinels  # noqa: F401 (fixtures)

DOORS = """\
[door-open-ssh]
   secret = open-pAsSwOrD
   command = echo "%NAME% %IP% $TUMBLER_DOOR $TUMBLER_IP" >> OUT
[door-sentinel]
   secret = sentinel-secret
   command = echo "%NAME% %IP%" >> OUT
"""


def _host_tables() -> str | None:
    """The host's nftables tables, where this test may read them (root, nft installed)."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        return None
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return listed.stdout if listed.returncode == 0 else None


@pytest.fixture(autouse=True)
def host_firewall_untouched() -> Iterator[None]:
    """Integration tests run in the host's own network namespace: none may change its firewall.

    Doors that open the firewall are tested in namespaces of their own (tests/netns).
    """
    before = _host_tables()
    yield
    after = _host_tables()
    assert after == before, f"the host's nftables tables changed: {before!r} -> {after!r}"


@pytest.fixture
def tumblerd(tmp_path: Path) -> Iterator[Tumblerd]:
    daemon = Tumblerd(tmp_path, DOORS)
    daemon.start()
    yield daemon
    daemon.stop()
