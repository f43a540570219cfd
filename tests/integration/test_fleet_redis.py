"""A fleet sharing its replay cache in a real redis-server: two real tumblerd on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.conftest import DOORS
from tests.integration.daemon import Tumblerd
from tests.integration.fleet import race, running_fleet
from tests.integration.redislab import RedisServer
from tests.waiting import wait_until
from tumbler.decisions.replay.local import MemoryReplayCache
from tumbler.decisions.replay.redis import RedisReplayCache

SECRET = "open-pAsSwOrD"


@pytest.fixture
def fleet(tmp_path: Path, redis_server: RedisServer) -> Iterator[list[Tumblerd]]:
    """Server `a` fails closed; server `b` falls back to memory when Redis is down."""
    common = f"   replay = {redis_server.url}\n"
    commons = {"a": common, "b": common + "   replay_fallback = memory\n"}
    with running_fleet(tmp_path, DOORS, commons) as daemons:
        yield daemons


def test_a_datagram_accepted_by_one_is_refused_by_the_other(fleet, redis_server):
    a, b = fleet
    when = datetime.now(UTC)
    data = a.knock(SECRET, when=when)
    wait_until(a.lines, what="server a to open")
    b.send(data).close()
    wait_until(lambda: "rejected datagrams: replay 1" in b.log_text(), what="b to count a replay")
    assert b.lines() == []
    assert "knock accepted" not in b.log_text()
    assert redis_server.client().dbsize() == 1

    b.knock(SECRET, when=when + timedelta(minutes=1))  # a fresh knock, inside the window
    wait_until(b.lines, what="server b to open for a fresh knock")
    assert b.lines() == ["open-ssh 127.0.0.1 open-ssh 127.0.0.1"]
    assert a.lines() == ["open-ssh 127.0.0.1 open-ssh 127.0.0.1"]


def test_redis_down_fails_closed_without_fallback_and_falls_back_with_one(fleet, redis_server):
    a, b = fleet
    redis_server.stop()

    a.knock(SECRET)
    wait_until(lambda: "replay store failing" in a.log_text(), what="a to refuse the knock")
    assert "refusing every knock" in a.log_text()

    b.knock(SECRET)
    wait_until(b.lines, what="b to open from its local fallback")
    log = b.log_text()
    assert "WARNING replay store redis redis://127.0.0.1" in log
    assert "local memory store" in log

    # a refused the knock when it decided it (awaited above): no command can follow.
    assert "knock accepted" not in a.log_text()
    assert a.lines() == []
    assert a.alive() and b.alive()


# -- the store itself against the real server: atomicity, TTL, recovery ------------------------


def test_two_caches_racing_each_digest_have_exactly_one_winner(redis_server):
    caches = [RedisReplayCache(redis_server.url) for _ in range(2)]
    digests = [f"{i:064x}" for i in range(200)]
    wins = race(caches, digests)
    assert sorted(wins[0] + wins[1]) == sorted(digests)
    assert not set(wins[0]) & set(wins[1])


def test_keys_expire_by_themselves_with_the_slack(redis_server):
    cache = RedisReplayCache(redis_server.url)
    assert cache.claim("d" * 64, time.time() + 60, time.time())
    ttl = redis_server.client().pttl("tumbler:replay:" + "d" * 64)
    assert 85_000 < ttl <= 90_000
    cache.close()


def test_local_claims_made_during_an_outage_reach_redis_when_it_is_back(redis_server):
    fallback = MemoryReplayCache()
    cache = RedisReplayCache(redis_server.url, fallback=fallback, retry_interval=0.0)
    redis_server.stop()
    assert cache.claim("e" * 64, time.time() + 60, time.time()) is True
    assert not cache.up
    redis_server.start()  # same port, empty: it saves nothing
    cache.prune(time.time())
    assert cache.up
    other = RedisReplayCache(redis_server.url)
    assert (
        other.claim("e" * 64, time.time() + 60, time.time()) is False
    )  # another server refuses it now
    other.close()
    cache.close()
