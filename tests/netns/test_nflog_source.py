"""The NFLOG source end to end: real nftables rules, a real netlink group, real SYNs.

Two namespaces of a lab (tumbler.lab) joined by a veth pair: the client sends TCP SYNs and UDP
datagrams to closed ports of the server, whose `inet tumbler_seq` table logs them to an
NFLOG group read by `NflogReader`, created inside the server namespace.
"""

from __future__ import annotations

import ctypes
import os
import select
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass

import pytest

from tumbler.actions.firewall.runner import Runner
from tumbler.actions.firewall.seqlog import install_rules, remove_rules
from tumbler.events import ConnectionAttempt
from tumbler.lab.netns import Lab
from tumbler.sources.nflog import NflogReader

pytestmark = pytest.mark.netns

CLONE_NEWNET = 0x40000000
GROUP = 8675
SERVER4, CLIENT4, NOISY4 = "10.77.0.1", "10.77.0.2", "10.77.0.3"
SERVER6, CLIENT6 = "fd00:77::1", "fd00:77::2"


def _needs_root() -> None:
    problem = None
    if os.geteuid() != 0:
        problem = "needs root for network namespaces and nftables"
    elif shutil.which("ip") is None or shutil.which("nft") is None:
        problem = "needs the ip and nft programs"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem} (CI must run netns tests)")
        pytest.skip(problem)


@dataclass
class Pair:
    server: str
    client: str

    def runner(self) -> Runner:
        return Runner(prefix=("ip", "netns", "exec", self.server))

    def reader(self, **kwargs: object) -> NflogReader:
        """An NflogReader whose socket lives in the server namespace."""
        result: list[NflogReader | BaseException] = []

        def make() -> None:  # setns() moves only this short-lived thread
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                with open(f"/run/netns/{self.server}") as handle:
                    if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                result.append(NflogReader(GROUP, **kwargs))  # type: ignore[arg-type]
            except BaseException as exc:
                result.append(exc)

        thread = threading.Thread(target=make)
        thread.start()
        thread.join()
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def knock(self, targets: list[tuple[str, str, int]], source: str | None = None) -> None:
        """From the client: a SYN (tcp) or a datagram (udp) to each (proto, host, port)."""
        code = textwrap.dedent(
            """
            import socket, sys, time
            source = sys.argv[1] or None
            for item in sys.argv[2:]:
                proto, host, port = item.split(",")
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
                with socket.socket(family, kind) as s:
                    if source:
                        s.bind((source, 0))
                    if proto == "tcp":
                        s.setblocking(False)
                        s.connect_ex((host, int(port)))
                        time.sleep(0.01)
                    else:
                        s.sendto(b"knock", (host, int(port)))
            """
        )
        args = [f"{p},{h},{n}" for p, h, n in targets]
        subprocess.run(
            ["ip", "netns", "exec", self.client, sys.executable, "-c", code, source or "", *args],
            check=True,
            timeout=30,
        )


@pytest.fixture
def pair(lab: Lab) -> Pair:
    """Server and client namespaces of the lab, joined by one veth pair."""
    _needs_root()
    server, client = lab.namespace("s"), lab.namespace("c")
    server.ip("link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", client.name)
    for ns, dev, v4, v6 in (
        (server, "veth0", SERVER4, SERVER6),
        (client, "veth1", CLIENT4, CLIENT6),
    ):
        ns.ip("addr", "add", f"{v4}/24", "dev", dev)
        ns.ip("addr", "add", f"{v6}/64", "dev", dev, "nodad")
        ns.ip("link", "set", dev, "up")
    client.ip("addr", "add", f"{NOISY4}/24", "dev", "veth1")
    return Pair(server.name, client.name)


def collect(reader: NflogReader, count: int, timeout: float = 5.0) -> list[ConnectionAttempt]:
    events: list[ConnectionAttempt] = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        ready, _, _ = select.select([reader], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            events.extend(reader.read())
    return events


def drain(reader: NflogReader, quiet: float = 0.3) -> list[ConnectionAttempt]:
    """Everything that arrives until the socket has been quiet for `quiet` seconds."""
    events: list[ConnectionAttempt] = []
    while select.select([reader], [], [], quiet)[0]:
        events.extend(reader.read())
    return events


def test_reader_sees_attempts_in_order_ipv4_and_ipv6(pair: Pair) -> None:
    install_rules(GROUP, runner=pair.runner())
    try:
        with pair.reader() as reader:
            targets = [
                ("tcp", SERVER4, 42),
                ("tcp", SERVER4, 196),
                ("udp", SERVER4, 500),
                ("tcp", SERVER4, 69),
                ("tcp", SERVER6, 42),
                ("udp", SERVER6, 501),
                ("tcp", SERVER6, 69),
            ]
            pair.knock(targets)
            events = collect(reader, len(targets))
            events += drain(reader)
    finally:
        remove_rules(runner=pair.runner())
    seen = [(e.proto, e.dest, e.port) for e in events]
    # a SYN may be resent if the RST is slow; count each knock once, keep order
    unique = [item for i, item in enumerate(seen) if i == 0 or item != seen[i - 1]]
    assert unique == [(p, h, n) for p, h, n in targets]
    assert {e.source for e in events} == {CLIENT4, CLIENT6}
    assert all(e.src_port for e in events)


def test_ports_hint_logs_only_knocking_sources(pair: Pair) -> None:
    install_rules(GROUP, [("tcp", 42), ("tcp", 196)], runner=pair.runner())
    try:
        with pair.reader() as reader:
            pair.knock([("tcp", SERVER4, 80), ("tcp", SERVER4, 81)])  # not knocking: unseen
            assert drain(reader) == []
            pair.knock([("tcp", SERVER4, 42), ("tcp", SERVER4, 80), ("tcp", SERVER4, 196)])
            events = collect(reader, 3) + drain(reader)
    finally:
        remove_rules(runner=pair.runner())
    ports = [e.port for e in events]
    assert [p for i, p in enumerate(ports) if i == 0 or p != ports[i - 1]] == [42, 80, 196]


def test_flood_is_cut_and_reported_as_unseen(pair: Pair) -> None:
    install_rules(GROUP, runner=pair.runner(), rate=5, burst=10, hold=30)
    try:
        with pair.reader() as reader:
            pair.knock([("udp", SERVER4, port) for port in range(1000, 1100)], source=NOISY4)
            pair.knock([("udp", SERVER4, 42)], source=CLIENT4)  # another source is unaffected
            events = collect(reader, 12) + drain(reader)
    finally:
        remove_rules(runner=pair.runner())
    noisy = [e for e in events if e.source == NOISY4]
    assert 10 <= len(noisy) <= 15
    assert [e.port for e in noisy].count(0) == 1
    assert noisy[-1].port == 0  # after the reset, nothing more from the flooder
    assert [(e.source, e.port) for e in events if e.source != NOISY4] == [(CLIENT4, 42)]


def test_rules_removed_and_group_released(pair: Pair) -> None:
    install_rules(GROUP, runner=pair.runner())
    remove_rules(runner=pair.runner())
    listing = subprocess.run(
        ["ip", "netns", "exec", pair.server, "nft", "list", "ruleset"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "tumbler_seq" not in listing.stdout
    # a closed reader frees the group for the next one
    pair.reader().close()
    pair.reader().close()
