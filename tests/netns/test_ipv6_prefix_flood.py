"""A flood from many addresses of one IPv6 /64 against a real tumblerd behind its own policy.

One /64 holds 2^64 addresses, so the kernel's per-source knock limit and the daemon's
new-source budget count an IPv6 source by its prefix. Client A floods well-shaped junk from
500 addresses of fd00:213:0:1::/64 (bound with net.ipv6.ip_nonlocal_bind in A's namespace);
client B, whose address is in another /64, knocks with the real client and its door opens.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.netns.netns import Topology, reach
from tests.netns.test_daemon_firewall import (
    KNOCK,
    PORT,
    SECRET,
    backend,
    door,
    knock,
    serve,
)

__all__ = ["backend"]  # the fixture, each backend in turn

FLOOD_PREFIX = "fd00:213:0:1::"
FLOOD_ADDRESSES = 500
PER_ADDRESS = 3

_FLOOD = """
import os, socket, sys
prefix, host = sys.argv[1], sys.argv[4]
count, per, port = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5])
for i in range(count):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind((f"{prefix}{i + 1:x}", 0))
    for _ in range(per):
        s.sendto(b"TUMBLER1: " + os.urandom(32).hex().encode(), (host, port))
    s.close()
"""


def test_a_flood_from_one_prefix_does_not_stop_a_knock_from_another(
    backend: str, topology: Topology, tmp_path: Path
) -> None:
    topo = topology
    daemon = serve(topo, tmp_path, backend, [door("ssh", SECRET)])

    # The kernel's knock limit keys IPv6 sources on their /64.
    if backend == "nftables":
        rules = topo.server.run(["nft", "list", "chain", "inet", "tumbler", "input"]).stdout
        assert f"udp dport {KNOCK} add @knock6 {{ ip6 saddr & ffff:ffff:ffff:ffff:: limit" in (
            rules
        ), rules
    else:
        tool = "ip6tables" + backend.removeprefix("iptables")
        rules = topo.server.run([tool, "-w", "5", "-S", "INPUT"]).stdout
        assert "--hashlimit-name tumbler_knock --hashlimit-srcmask 64" in rules, rules
        v4 = topo.server.run([tool.replace("ip6", "ip"), "-w", "5", "-S", "INPUT"]).stdout
        assert "hashlimit-srcmask" not in v4

    topo.a.run(["sysctl", "-qw", "net.ipv6.ip_nonlocal_bind=1"])
    flood = [sys.executable, "-c", _FLOOD, FLOOD_PREFIX, str(FLOOD_ADDRESSES)]
    topo.a.run([*flood, str(PER_ADDRESS), topo.server6, str(KNOCK)], timeout=60)

    assert reach(topo, PORT, "b6") == {"b6": False}
    knock(topo.b, topo.server6)
    daemon.wait_opened(topo.b6)
    assert reach(topo, PORT, "b6", "a6") == {"b6": True, "a6": False}

    # The flood reached the daemon's socket before B's knock, so it has all been counted.
    counters = daemon.counters()
    seen = sum(counters.get(k, 0) for k in ("malformed", "no-door", "shed"))
    assert 0 < seen < FLOOD_ADDRESSES * PER_ADDRESS  # per /128, every datagram would pass
    assert counters.get("accepted") == 1
    assert daemon.alive()
