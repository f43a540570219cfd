"""A fleet of two real tumblerd sharing one key and realm, and its replay cache in redis-server.

A v2 knock accepted by one server is a replay to the other; the claim is the knock's MAC.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Tumblerd
from tests.integration.fleet import counters, running_fleet
from tests.integration.redislab import RedisServer
from tests.waiting import wait_until
from tumbler.protocols import tumbler2

KEY = bytes(range(50, 82))
REALM = "fleet.example"
DOORS = f"""\
[door-fleet]
   key = {tumbler2.encode_key(KEY)}
   command = echo "%NAME% %IP%" >> OUT
"""


@pytest.fixture
def fleet(tmp_path: Path, redis_server: RedisServer) -> Iterator[list[Tumblerd]]:
    common = f"   replay = {redis_server.url}\n   realm = {REALM}\n"
    with running_fleet(tmp_path, DOORS, {"a": common, "b": common}) as daemons:
        yield daemons


def test_a_v2_knock_accepted_by_one_server_is_a_replay_to_the_other(
    fleet: list[Tumblerd],
    redis_server: RedisServer,
) -> None:
    a, b = fleet
    data = tumbler2.build(KEY, time.time(), secrets.token_bytes(16), "127.0.0.1", REALM)
    a.send(data).close()
    wait_until(a.lines, what="server a to open")
    b.send(data).close()
    wait_until(lambda: counters(b).get("replay") == 1, what="b to count a replay")
    assert b.lines() == [] and "accepted" not in counters(b)
    claims = [k.decode() for k in redis_server.client().keys("*")]
    assert len(claims) == 1 and tumbler2.parse(data).mac.hex() in claims[0]

    fresh = tumbler2.build(KEY, time.time(), secrets.token_bytes(16), "127.0.0.1", REALM)
    b.send(fresh).close()  # a fresh knock (its own nonce) is no replay
    wait_until(b.lines, what="server b to open for a fresh knock")
    assert b.lines() == ["fleet 127.0.0.1"]
