"""Forward doors end to end: a router publishes a backend's port as Docker does (issue 15, item 4).

Clients A and B reach the router (the lab's server, 10.213.0.1 and fd00:213::1); on it,
iptables (nft or legacy, and ip6tables alike) DNATs TCP to PUBLISHED to the backend's
PORT behind it and filters FORWARD as Docker does (policy drop, DOCKER-USER first,
accepts to the backend's port). A real tumblerd on the router has a door with
`path = forward`; knocks come from the real `tumbler` client, and "can connect" is a new
TCP connection through the router that must get the backend's banner. Each backend is
proved over IPv4 and over IPv6, the other family of the same knocker staying closed.
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from pathlib import Path

import pytest

from tests.netns.netns import (
    OPEN_WAIT,
    Lab,
    Namespace,
    Topology,
    assert_reach,
    can_connect,
    wait_until,
)
from tests.netns.test_daemon_firewall import SECRET, Tumblerd, knock, sleep_until
from tumbler.lab.netns import BACKEND_NET, BACKEND_NET6

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


CLOSED = {"a4": False, "b4": False, "a6": False, "b6": False}
# The router's Docker-like rules are made with the iptables the backend uses (Docker on
# an nftables host uses iptables-nft).
ROUTER_TOOL = {
    "nftables": "iptables-nft",
    "iptables-nft": "iptables-nft",
    "iptables-legacy": "iptables-legacy",
}


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("backend", ["nftables", "iptables-nft", "iptables-legacy"])
def test_forward_door_guards_a_published_port(
    backend: str, family: int, lab: Lab, topology: Topology, tmp_path: Path
) -> None:
    topo = topology
    tool = ROUTER_TOOL[backend]
    be = lab.backend_behind(topo, PUBLISHED, PORT, tool)
    be.listen(PORT)
    # The path works without tumbler, on both families: what is closed below is closed
    # by the door.
    assert_reach(topo, PUBLISHED, {"a4": True, "b4": True, "a6": True, "b6": True})

    daemon = Tumblerd(topo, tmp_path, backend, [METRICS, forward_door()]).start()
    daemon.wait_log(f"door web: guarding forwarded tcp/{PUBLISHED}")
    assert_reach(topo, PUBLISHED, CLOSED)
    if backend == "nftables":
        chain = topo.server.run(["nft", "list", "chain", "inet", "tumbler", "forward"]).stdout
        assert "hook forward priority filter - 10" in chain, chain
    else:  # the jump sits in Docker's DOCKER-USER, ahead of Docker's own rules, both families
        for program in (tool, tool.replace("iptables", "ip6tables", 1)):
            jumps = topo.server.run([program, "-w", "5", "-S", "DOCKER-USER"]).stdout
            assert jumps.splitlines()[1].endswith("-j TUMBLER-FWD"), jumps
    # The guard matches the published port, not the backend's: the backend itself is untouched.
    assert can_connect(topo.server, f"{BACKEND_NET}.2", PORT, OPEN_WAIT)
    assert can_connect(topo.server, f"{BACKEND_NET6}2", PORT, OPEN_WAIT)

    router = topo.server4 if family == 4 else topo.server6
    knocker = topo.a4 if family == 4 else topo.a6
    knock(topo.a, router)
    opened = time.time()
    daemon.wait_log(f"opened tcp/{PUBLISHED} for {knocker} until")
    assert doors_open(topo, backend) == 1
    listed = daemon.cli("firewall", "list")
    assert knocker in listed and "web" in listed, listed
    # A alone, and only the address A knocked from: A's other family stays closed.
    assert_reach(topo, PUBLISHED, {**CLOSED, f"a{family}": True})

    sleep_until(opened + TIMEOUT - 0.5)
    wait_until(lambda: not can_connect(topo.a, router, PUBLISHED, 0.5), "A's door to close")
    assert time.time() - opened >= TIMEOUT - 0.5
    assert_reach(topo, PUBLISHED, CLOSED)
    assert daemon.alive()
    assert daemon.stop() == 0
    # Stopped, the guard stays: closed without a daemon, never open.
    assert_reach(topo, PUBLISHED, CLOSED)


def _ip6(tool: str) -> str:
    return tool.replace("iptables", "ip6tables", 1)


def _docker_user(ns: Namespace, tool: str) -> None:
    """DOCKER-USER as Docker makes it, jumped to first from FORWARD, in both families."""
    for program in (tool, _ip6(tool)):
        for rule in (
            ["-N", "DOCKER-USER"],
            ["-A", "DOCKER-USER", "-j", "RETURN"],
            ["-A", "FORWARD", "-j", "DOCKER-USER"],
        ):
            ns.run([program, "-w", "5", *rule])


def _ruleset(ns: Namespace, backend: str) -> list[str]:
    """The filter rules the kernel holds, without comments and packet counters."""
    if backend == "nftables":
        text = ns.run(["nft", "list", "ruleset"]).stdout
    else:
        tool = ROUTER_TOOL[backend]
        text = "".join(
            ns.run([f"{program}-save", "-t", "filter"]).stdout for program in (tool, _ip6(tool))
        )
    return [re.sub(r" \[\d+:\d+\]$", "", line) for line in text.splitlines() if line[:1] != "#"]


@pytest.mark.parametrize("backend", ["nftables", "iptables-nft", "iptables-legacy"])
def test_init_print_shows_the_forward_guard_init_applies(
    backend: str, topology: Topology, tmp_path: Path
) -> None:
    """`firewall init --print` with a forward door is a script that makes, in a fresh
    namespace, the very ruleset `firewall init` makes; `firewall remove` takes the guard away."""
    topo = topology
    daemon = Tumblerd(topo, tmp_path, backend, [forward_door(), forward_door("api", "api-secret")])
    if backend != "nftables":
        for ns in (topo.server, topo.a):
            _docker_user(ns, ROUTER_TOOL[backend])
    printed = daemon.cli("firewall", "init", "--print")
    assert _ruleset(topo.server, backend) == _ruleset(topo.a, backend)  # printing changed nothing
    if backend == "nftables":
        assert "chain forward {" in printed and "@fwd4_web accept" in printed, printed
        topo.a.run(["nft", "-f", "-"], input=printed)
    else:
        assert "-I DOCKER-USER 1 -m conntrack --ctstate NEW -j TUMBLER-FWD" in printed, printed
        assert "--ctorigdstport 8080 -m comment --comment tumbler-guard:api -j DROP" in printed
        for line in printed.splitlines():
            if not line.startswith("#"):
                topo.a.run(shlex.split(line))
    applied = daemon.cli("firewall", "init")
    assert f"door web: forwarded tcp/{PUBLISHED} guarded" in applied.splitlines(), applied
    assert _ruleset(topo.server, backend) == _ruleset(topo.a, backend)
    assert any("api" in line for line in _ruleset(topo.server, backend))

    daemon.cli("firewall", "remove")
    left = "\n".join(_ruleset(topo.server, backend))
    assert "fwd" not in left and "TUMBLER" not in left and "tumbler" not in left, left
    if backend != "nftables":  # Docker's own chain and jump stay
        assert "-A FORWARD -j DOCKER-USER" in left and "-A DOCKER-USER -j RETURN" in left, left
