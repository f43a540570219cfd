from __future__ import annotations

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


@pytest.fixture
def tumblerd(tmp_path: Path) -> Iterator[Tumblerd]:
    daemon = Tumblerd(tmp_path, DOORS)
    daemon.start()
    yield daemon
    daemon.stop()
