"""Version 2 knocks through real firewall doors, end to end in network namespaces.

The set-up of test_daemon_firewall.py (server, clients A and B, each backend in turn, the
real `tumblerd firewall init`, the real daemon and the real `tumbler` client), with doors
that take v2 keys: a knock opens for its sender only, and a copy of it sent from another
host, a second copy, or a knock made for another realm opens nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.netns import test_daemon_firewall as base
from tests.netns.netns import Namespace, Topology, reach
from tests.netns.test_daemon_firewall import (
    KNOCK,
    PORT,
    TUMBLER,
    addresses,
    openings,
    send,
    serve,
)
from tests.waiting import wait_until
from tumbler.protocols import tumbler2

KEY = bytes(range(1, 33))
KEY_TEXT = tumbler2.encode_key(KEY)
REALM = "lab.example"

backend = base.backend  # each firewall backend in turn, as for v1 doors


def door2(name: str, key_text: str = KEY_TEXT, timeout: float = 60) -> str:
    return (
        f"[door-{name}]\n"
        "   protocol = 2\n"
        f"   key = {key_text}\n"
        f"   open = tcp/{PORT}\n"
        f"   timeout = {timeout:g}\n"
    )


def knock2(ns: Namespace, host: str, realm: str = REALM) -> bytes:
    """Knock with the real client and a tumbler2:// URL; return the datagram it sent."""
    where = f"[{host}]" if ":" in host else host
    query = f"?realm={realm}" if realm else ""
    proc = ns.run([*TUMBLER, "-v", "--open", f"tumbler2://{KEY_TEXT}@{where}:{KNOCK}/{query}"])
    sent = [line for line in proc.stderr.splitlines() if line.startswith("datagram")]
    assert len(sent) == 1, proc.stderr
    data = bytes.fromhex(sent[0].split(None, 1)[1])
    assert tumbler2.is_v2(data)
    return data


def test_v2_knock_opens_for_its_sender_only(
    backend: str, topology: Topology, tmp_path: Path
) -> None:
    topo = topology
    # The first "door" continues the [common] section serve() writes. The door stays open
    # a minute, so nothing below depends on how fast a loaded machine runs it.
    daemon = serve(topo, tmp_path, backend, [f"   realm = {REALM}\n", door2("ssh")])
    assert reach(topo, PORT) == {"a4": False, "b4": False, "a6": False, "b6": False}

    data = knock2(topo.a, topo.server4)
    daemon.wait_opened(topo.a4)
    assert reach(topo, PORT) == {"a4": True, "b4": False, "a6": False, "b6": False}

    knock2(topo.a, topo.server6)
    daemon.wait_opened(topo.a6)
    assert reach(topo, PORT, "a6", "b6", "b4") == {"a6": True, "b6": False, "b4": False}
    assert addresses(openings(topo, backend)) == [topo.a4, topo.a6]

    send(topo.b, topo.server4, data)  # A's knock, from B
    send(topo.a, topo.server4, data)  # A's knock, again
    knock2(topo.b, topo.server4, realm="other.example")  # B, for another realm
    wait_until(
        lambda: (c := daemon.counters()).get("bad-mac") == 2 and c.get("replay") == 1,
        "the copies and the other realm's knock to be refused",
    )
    assert daemon.counters()["accepted"] == 2
    assert addresses(openings(topo, backend)) == [topo.a4, topo.a6]
    assert reach(topo, PORT, "b4", "b6") == {"b4": False, "b6": False}
    assert daemon.alive()


def test_v2_knock_from_a_skewed_clock_is_refused_and_reported(
    backend: str, topology: Topology, tmp_path: Path
) -> None:
    topo = topology
    daemon = serve(topo, tmp_path, backend, [door2("ssh")])
    data = tumbler2.build(KEY, time.time() - 187, bytes(16), topo.a4, "")
    send(topo.a, topo.server4, data)
    daemon.wait_log("clock off by -18")
    assert "window 60 s" in daemon.log_text()
    assert daemon.counters()["clock-skew"] == 1
    assert openings(topo, backend) == []
    assert reach(topo, PORT, "a4") == {"a4": False}
