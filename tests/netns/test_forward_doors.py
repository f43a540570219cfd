"""Forward doors end to end: a router publishes a backend's port as Docker does (issue 15, item 4).

Clients A and B reach the router (the lab's server, 10.213.0.1); iptables-nft on it DNATs
TCP to PUBLISHED to the backend's PORT behind it and filters FORWARD as Docker does (policy
drop, DOCKER-USER first, accepts to the backend's port). A real tumblerd on the router has
a door with `path = forward`; knocks come from the real `tumbler` client, and "can connect"
is a new TCP connection through the router that must get the backend's banner.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from tests.netns.netns import Lab, Topology, can_connect, wait_until
from tests.netns.test_daemon_firewall import SECRET, Tumblerd, knock, sleep_until

PUBLISHED = 8080  # the router's port the clients address
PORT = 80  # the backend's port behind the DNAT
TIMEOUT = 10  # long enough for the checks while open on a loaded machine
METRICS = "   metrics = 127.0.0.1:9675\n"  # a [common] key: the router's own loopback
_SCRAPE = """
import urllib.request
print(urllib.request.urlopen("http://127.0.0.1:9675/metrics", timeout=10).read().decode())
"""


def doors_open(topo: Topology, backend: str) -> float:
    """`tumbler_doors_open{backend=...}` scraped over HTTP inside the router's namespace."""
    text = topo.server.run([sys.executable, "-c", _SCRAPE]).stdout
    found = re.search(rf'^tumbler_doors_open{{backend="{backend}"}} (\S+)$', text, re.M)
    assert found, text
    return float(found[1])


def forward_door(name: str = "web", secret: str = SECRET) -> str:
    return (
        f"[door-{name}]\n"
        f"   secret = {secret}\n"
        f"   open = tcp/{PUBLISHED}\n"
        "   path = forward\n"
        f"   timeout = {TIMEOUT}\n"
    )


def reach(topo: Topology) -> dict[str, bool]:
    """Whether A and B can connect through the router to the published port."""
    return {
        "a": can_connect(topo.a, topo.server4, PUBLISHED, 0.5),
        "b": can_connect(topo.b, topo.server4, PUBLISHED, 0.5),
    }


@pytest.mark.parametrize("backend", ["nftables", "iptables-nft"])
def test_forward_door_guards_a_published_port(
    backend: str, lab: Lab, topology: Topology, tmp_path: Path
) -> None:
    topo = topology
    be = lab.backend_behind(topo, PUBLISHED, PORT)
    be.listen(PORT)
    # The path works without tumbler: what is closed below is closed by the door.
    assert reach(topo) == {"a": True, "b": True}

    daemon = Tumblerd(topo, tmp_path, backend, [METRICS, forward_door()]).start()
    daemon.wait_log(f"door web: guarding forwarded tcp/{PUBLISHED}")
    assert reach(topo) == {"a": False, "b": False}
    if backend == "nftables":
        chain = topo.server.run(["nft", "list", "chain", "inet", "tumbler", "forward"]).stdout
        assert "hook forward priority filter - 10" in chain, chain
    else:  # the jump sits in Docker's DOCKER-USER, ahead of Docker's own rules
        jumps = topo.server.run(["iptables-nft", "-w", "5", "-S", "DOCKER-USER"]).stdout
        assert jumps.splitlines()[1].endswith("-j TUMBLER-FWD"), jumps
    # The guard matches the published port, not the backend's: the backend itself is untouched.
    assert can_connect(topo.server, "10.214.0.2", PORT)

    knock(topo.a, topo.server4)
    opened = time.time()
    daemon.wait_log(f"opened tcp/{PUBLISHED} for {topo.a4} until")
    assert doors_open(topo, backend) == 1
    listed = daemon.cli("firewall", "list")
    assert topo.a4 in listed and "web" in listed, listed
    assert reach(topo) == {"a": True, "b": False}

    sleep_until(opened + TIMEOUT - 0.5)
    wait_until(lambda: not can_connect(topo.a, topo.server4, PUBLISHED, 0.5), "A's door to close")
    assert time.time() - opened >= TIMEOUT - 0.5
    assert reach(topo) == {"a": False, "b": False}
    assert daemon.alive()
    assert daemon.stop() == 0
    # Stopped, the guard stays: closed without a daemon, never open.
    assert reach(topo) == {"a": False, "b": False}
