"""Fixtures of the fleet tests: a Redis deployment, and real tumblerd sharing it.

`redis_server`, `sentinels` and `cluster` start a deployment from redislab for one test and
stop it after, even when the test fails; `running_fleet` starts one tumblerd per name with
that name's `[common]` lines (its replay URL among them) and stops them all after. The
fixtures are registered for every integration test by conftest.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.daemon import Tumblerd
from tests.integration.redislab import ClusterSet, RedisServer, SentinelSet, redis_binary
from tumbler.daemon.control import request
from tumbler.decisions.replay.redis import RedisReplayCache


@contextmanager
def running_fleet(folder: Path, doors: str, commons: Mapping[str, str]) -> Iterator[list[Tumblerd]]:
    """One started tumblerd per name of `commons`, each in `folder/NAME`, in that order."""
    daemons = []
    for name, common in commons.items():
        (folder / name).mkdir()
        daemons.append(Tumblerd(folder / name, doors, common=common))
    try:
        for daemon in daemons:
            daemon.start()
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()


def counters(daemon: Tumblerd) -> dict[str, int]:
    """The daemon's outcome counters, asked over its control socket."""
    answer = request(str(daemon.folder / "control.sock"), {"command": "status"})
    return dict(answer["counters"])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """One redis-server, no persistence."""
    server = RedisServer(redis_binary(), tmp_path / "redis")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    """A primary, two replicas in sync, three sentinels that see them all."""
    deployment = SentinelSet(tmp_path / "redis")
    try:
        yield deployment.start()
    finally:
        deployment.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterSet]:
    """Three primaries, each with its replica online, the cluster ok on every node."""
    deployment = ClusterSet(tmp_path / "redis")
    try:
        yield deployment.start()
    finally:
        deployment.stop()


def race(caches: Sequence[RedisReplayCache], digests: Sequence[str]) -> list[list[str]]:
    """Each cache claims every digest, all at once, one thread each; the digests each won.

    The caches are closed after the race.
    """
    wins: list[list[str]] = [[] for _ in caches]
    expires = time.time() + 120

    def run(n: int) -> None:
        for digest in digests:
            if caches[n].claim(digest, expires, time.time()):
                wins[n].append(digest)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(caches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for cache in caches:
        cache.close()
    return wins
