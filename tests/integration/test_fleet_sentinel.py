"""A fleet on Redis Sentinel, failed over for real: the primary is SIGKILLed mid-service.

A primary, two replicas and three sentinels (`redis-server --sentinel`) on loopback, and two
real tumblerd sharing them with the default `replay_acks` (1 with Sentinel). Two replicas,
so that the failover leaves one behind to acknowledge new claims; with a single replica,
the promoted primary has none until the old one rejoins, and knocks are refused meanwhile.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.conftest import DOORS
from tests.integration.daemon import Tumblerd
from tests.integration.fleet import counters, running_fleet
from tests.integration.redislab import SentinelSet, info, replicas_online
from tests.waiting import wait_until
from tumbler.protocols.tumbler1 import make_knock, parse_datagram

SECRET = "open-pAsSwOrD"
OTHER_DOOR = "sentinel-secret"  # the conftest's second door
KEY = "tumbler:replay:"


@pytest.fixture
def fleet(tmp_path: Path, sentinels: SentinelSet) -> Iterator[list[Tumblerd]]:
    common = f"   replay = {sentinels.url}\n   replay_ack_timeout = 1\n"  # a loaded machine
    with running_fleet(tmp_path, DOORS, {"a": common, "b": common}) as daemons:
        yield daemons


def test_a_knock_accepted_before_a_failover_is_never_accepted_after_it(fleet, sentinels):
    a, b = fleet
    old = sentinels.primary
    for daemon in fleet:
        assert f"primary is 127.0.0.1:{old.port}" in daemon.log_text()

    # Accepted before the failover: WAIT made sure a replica holds the claim.
    # Three knocks that differ by door or address, not by minute, so that no minute boundary
    # during a slow run can push one out of the window; each stamped when it is sent.
    before = a.knock(SECRET, when=datetime.now(UTC) + timedelta(minutes=1))  # valid >= 60 s
    wait_until(a.lines, what="a to accept the knock")
    held = [r.port for r in sentinels.replicas if r.client().exists(KEY + _digest(before))]
    assert held, "no replica holds the accepted claim"

    watch = sentinels.sentinels[0].client().pubsub()
    watch.subscribe("+switch-master")
    wait_until(lambda: watch.get_message(timeout=0.1), what="the subscription to start")
    old.kill()

    # During the failover: refused, and logged once however many datagrams come.
    during = make_knock(SECRET, "::1", datetime.now(UTC))
    for _ in range(5):
        a.send(during, socket.AF_INET6).close()
        b.send(during, socket.AF_INET6).close()
    for daemon in fleet:
        wait_until(
            lambda d=daemon: counters(d).get("store-down", 0) == 5,
            what="the five knocks to be refused while the store is failing",
        )
    assert watch.get_message(timeout=0) is None, "the failover ended before the refusals"
    for daemon in fleet:
        log = daemon.log_text()
        assert log.count("refusing every knock until it is back") == 1
        assert log.count("refused, replay store failing") == 1
        assert "knock accepted" not in log.split("refusing every knock")[1]

    # The promotion, as Sentinel announces it.
    switched = wait_until(lambda: watch.get_message(timeout=0.5), what="+switch-master", timeout=30)
    _, _, old_port, _, new_port = switched["data"].decode().split()
    assert int(old_port) == old.port
    new = next(r for r in sentinels.replicas if r.port == int(new_port))
    watch.close()
    wait_until(lambda: replicas_online(new, 1), what="the other replica to follow the new primary")
    assert new.client().exists(KEY + _digest(before)), "the claim was lost in the failover"

    # After the promotion: each daemon finds the new primary by itself, no restart.
    changed = f"primary changed from 127.0.0.1:{old.port} to 127.0.0.1:{new.port} (failover)"
    for daemon in fleet:
        wait_until(
            lambda d=daemon: changed in d.log_text(),
            what=f"{daemon.folder.name} to log: {changed}",
        )
        assert "is back after" in daemon.log_text()
    after = b.knock(OTHER_DOOR)
    wait_until(b.lines, what="b to accept a new knock on the new primary", timeout=15)
    wait_until(
        lambda: (
            f"primary changed from 127.0.0.1:{old.port} to 127.0.0.1:{new.port}" in b.log_text()
        ),
        what="b to log the new primary",
    )
    a.send(after).close()
    wait_until(lambda: counters(a).get("replay", 0) >= 1, what="a to refuse b's knock")

    # The knock accepted before the kill: still a replay for both.
    replays = {d.folder.name: counters(d).get("replay", 0) for d in fleet}
    for daemon in fleet:
        daemon.send(before).close()
    for daemon in fleet:
        wait_until(
            lambda d=daemon: counters(d).get("replay", 0) == replays[d.folder.name] + 1,
            what=f"{daemon.folder.name} to refuse the pre-failover knock as a replay",
        )
    assert a.lines() == ["open-ssh 127.0.0.1 open-ssh 127.0.0.1"]
    assert b.lines() == ["sentinel 127.0.0.1"]
    assert info(new.client(), "replication")["role"] == "master"
    assert a.alive() and b.alive()


def _digest(datagram: bytes) -> str:
    return parse_datagram(datagram)
