"""A fleet sharing its replay cache in a real redis-server: two real tumblerd on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import DOORS
from tests.integration.daemon import Tumblerd
from tests.waiting import wait_until
from tumbler.decisions.replay.local import MemoryReplayCache
from tumbler.decisions.replay.redis import RedisReplayCache

SECRET = "open-pAsSwOrD"


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A throwaway redis-server on loopback: no persistence, its files in a temp folder."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.port = free_tcp_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        with open(self.folder / "redis.log", "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)

        def answers() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        try:
            wait_until(answers, what="redis-server to answer")
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=1)

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed, and CI must run the fleet tests")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(binary, folder).start()
    yield server
    server.stop()


@pytest.fixture
def fleet(tmp_path: Path, redis_server: RedisServer) -> Iterator[list[Tumblerd]]:
    """Server `a` fails closed; server `b` falls back to memory when Redis is down."""
    common = f"   replay = {redis_server.url}\n"
    daemons = []
    for name, extra in (("a", ""), ("b", "   replay_fallback = memory\n")):
        folder = tmp_path / name
        folder.mkdir()
        daemons.append(Tumblerd(folder, DOORS, common=common + extra))
    try:
        for daemon in daemons:
            daemon.start()
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()


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

    time.sleep(0.3)  # a's refused knock had time to run a command, if it were going to
    assert a.lines() == []
    assert a.alive() and b.alive()


# -- the store itself against the real server: atomicity, TTL, recovery ------------------------


def test_two_caches_racing_each_digest_have_exactly_one_winner(redis_server):
    caches = [RedisReplayCache(redis_server.url) for _ in range(2)]
    digests = [f"{i:064x}" for i in range(200)]
    wins: list[list[str]] = [[], []]
    expires = time.time() + 120

    def run(n: int) -> None:
        for digest in digests:
            if caches[n].claim(digest, expires, time.time()):
                wins[n].append(digest)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for cache in caches:
        cache.close()
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
