"""A fleet on a real Redis Cluster: three primaries, each with a replica, on loopback.

Each claim is one key, so claims shard over the primaries; with the default `replay_acks`
(1 for a Cluster) each is also held by its primary's replica before it counts.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from tests.integration.conftest import DOORS
from tests.integration.daemon import Tumblerd
from tests.integration.fleet import counters, race, running_fleet
from tests.integration.redislab import ClusterSet, RedisServer, cluster_ok, info, replicas_online
from tests.waiting import wait_until
from tumbler.decisions.replay.redis import RedisReplayCache
from tumbler.decisions.replay.redisurl import RedisAccess
from tumbler.protocols.tumbler1 import parse_datagram

SECRET = "open-pAsSwOrD"
OTHER_DOOR = "sentinel-secret"  # the conftest's second door
KEY = "tumbler:replay:"


def test_claims_shard_over_the_primaries_with_one_winner_each(cluster):
    # A second for the replicas, not 250 ms: the test machine is shared and often loaded.
    caches = [RedisReplayCache(cluster.url, access=RedisAccess(ack_timeout=1.0)) for _ in range(2)]
    assert all(c.acks == 1 and c.up for c in caches)
    digests = [f"{i:064x}" for i in range(300)]
    wins = race(caches, digests)
    assert sorted(wins[0] + wins[1]) == sorted(digests)
    assert not set(wins[0]) & set(wins[1])
    on_primaries = [p.client().dbsize() for p in cluster.primaries]
    assert all(n > 0 for n in on_primaries), on_primaries  # sharded, not all on one node
    assert sum(on_primaries) == len(digests)
    # Each claim counted only once its primary's replica held it (WAIT 1).
    assert sum(r.client().dbsize() for r in cluster.replicas) == len(digests)


@pytest.fixture
def fleet(tmp_path: Path, cluster: ClusterSet) -> Iterator[list[Tumblerd]]:
    common = f"   replay = {cluster.url}\n   replay_ack_timeout = 1\n"  # a loaded machine
    with running_fleet(tmp_path, DOORS, {"a": common, "b": common}) as daemons:
        yield daemons


def test_a_fleet_on_a_cluster_accepts_each_knock_once(fleet, cluster):
    a, b = fleet
    # Knocks that differ by door or address, each stamped when sent: no minute boundary
    # during a slow run can push one out of the window.
    plan = [(a, b, SECRET, socket.AF_INET), (b, a, SECRET, socket.AF_INET6)]
    plan += [(a, b, OTHER_DOOR, socket.AF_INET)]
    for n, (first, second, secret, family) in enumerate(plan):
        address = "127.0.0.1" if family == socket.AF_INET else "::1"
        data = first.knock(secret, address, family=family)
        wait_until(lambda f=first, n=n: len(f.lines()) == (2 if n == 2 else 1), what="a knock")
        second.send(data, family).close()
        wait_until(
            lambda s=second, n=n: counters(s).get("replay", 0) == (2 if n == 2 else 1),
            what="the other server to refuse the same datagram as a replay",
        )
    assert len(a.lines()) == 2 and len(b.lines()) == 1
    assert sum(p.client().dbsize() for p in cluster.primaries) == 3
    assert all(counters(d).get("store-down", 0) == 0 for d in fleet)


def replica_holds(replica: RedisServer, key: str) -> bool:
    """EXISTS on a cluster replica, which answers MOVED unless the connection says READONLY."""
    pipe = replica.client().pipeline(transaction=False)
    pipe.execute_command("READONLY")
    pipe.exists(key)
    return bool(pipe.execute()[1])


def acknowledged(primary: RedisServer, key: str) -> bool:
    """A write to `key` (unchanged: XX KEEPTTL) that a replica confirms within a second."""
    pipe = primary.client().pipeline(transaction=False)
    pipe.set(key, b"1", xx=True, keepttl=True)
    pipe.wait(1, 1000)
    return bool(pipe.execute()[1] >= 1)


def test_a_claim_survives_the_failover_of_its_primary(fleet, cluster):
    a, b = fleet
    before = a.knock(SECRET, when=datetime.now(UTC) + timedelta(minutes=1))  # valid >= 60 s
    wait_until(a.lines, what="a to accept the knock")
    key = KEY + parse_datagram(before)
    finder = RedisCluster(host="127.0.0.1", port=cluster.primaries[0].port)
    port = finder.get_node_from_key(key).port
    finder.close()
    owner = next(p for p in cluster.primaries if p.port == port)
    assert owner.client().exists(key)
    replica = next(
        r
        for r in cluster.replicas
        if info(r.client(), "replication").get("master_port") == owner.port
    )
    assert replica_holds(replica, key), "WAIT 1 returned before the replica held the claim"

    owner.kill()
    b.send(before).close()  # b never saw it: its claim goes to the dead primary
    wait_until(lambda: counters(b).get("store-down", 0) == 1, what="b to refuse it, store down")
    assert info(replica.client(), "replication").get("role") == "slave", "failover too early"
    wait_until(
        lambda: info(replica.client(), "replication").get("role") == "master",
        what="the cluster to promote the dead primary's replica",
        timeout=30,
    )
    for node in cluster.nodes:
        if node is not owner:
            wait_until(lambda n=node: cluster_ok(n), what=f"node {node.port} to see the cluster ok")

    # b finds the new topology by itself, without a knock or a restart.
    wait_until(lambda: "is back after" in b.log_text(), what="b to find the store back")
    assert replica.client().exists(key)  # a primary now: no READONLY needed

    # The knock accepted before the kill is still a replay, for the server that never took it.
    b.send(before).close()
    wait_until(lambda: counters(b).get("replay", 0) == 1, what="b to refuse the old knock")

    # The promoted replica has no replica of its own, so with replay_acks 1 the claims of
    # its slots are refused until the dead primary comes back, as its replica.
    owner.start()
    wait_until(lambda: replicas_online(replica, 1), what="the old primary to rejoin as replica")
    wait_until(lambda: acknowledged(replica, key), what="the rejoined replica to acknowledge")
    after = b.knock(OTHER_DOOR)
    wait_until(b.lines, what="b to accept a new knock after the failover")
    a.send(after).close()
    wait_until(lambda: counters(a).get("replay", 0) == 1, what="a to refuse b's knock")
    assert a.lines() == ["open-ssh 127.0.0.1 open-ssh 127.0.0.1"]
    assert b.lines() == ["sentinel 127.0.0.1"]
