"""Firewall backends against real kernels, in namespaces: a default-closed server, A and B.

Each test builds its own server/A/B topology, so nftables, iptables-nft and
iptables-legacy never share a namespace. The backend is called directly (the
daemon's end-to-end tests drive it through knocks); its commands run inside the
server namespace through a runner prefixed with `ip netns exec`.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.netns.capture import Capture
from tests.netns.netns import OPEN_WAIT, Lab, Namespace, Topology, assert_reach, can_connect
from tests.waiting import wait_until
from tumbler.actions.firewall import (
    FirewallBackend,
    IptablesBackend,
    IptablesLegacyBackend,
    get_backend,
)
from tumbler.actions.firewall.runner import CommandResult, Runner
from tumbler.errors import FirewallError
from tumbler.ports import PortSpec

PORT = 2222
KNOCK = 8675
OPEN = (PortSpec("tcp", PORT, PORT),)
SHORT = 5  # seconds an opening lasts where its timeout is tested; connections are checked
# once, right after it opens, and its end is awaited as an event (the kernel's element or
# the rule gone), never as a lucky delay
LONG = 60  # seconds an opening lasts that must stay open while a test works
CLOSE_WAIT = SHORT + 30
BACKENDS = ["nftables", "iptables-nft", "iptables-legacy"]


class Tamper(Runner):
    """A runner that spoils a batch the way a kernel refusal would, or renames a binary."""

    def __init__(
        self, base: Runner, spoil: bool = False, rename: dict[str, str] | None = None
    ) -> None:
        super().__init__(base.prefix, base.timeout)
        self.spoil = spoil
        self.rename = rename or {}

    def run(
        self, argv: Sequence[str], input: str | None = None, check: bool = True
    ) -> CommandResult:
        argv = [self.rename.get(argv[0], argv[0]), *argv[1:]]
        if self.spoil and input is not None and argv[0] == "nft":
            # The kernel refuses to delete an element that is not there, at the very end.
            doc = json.loads(input)
            ghost = {"concat": ["10.213.0.99", "tcp", 9]}
            set_ref = {"family": "inet", "table": "tumbler", "name": "open4"}
            doc["nftables"].append({"delete": {"element": {**set_ref, "elem": [ghost]}}})
            input = json.dumps(doc)
        elif self.spoil and input is not None:
            input = input.replace("COMMIT", "-D TUMBLER -s 10.213.0.99/32 -j ACCEPT\nCOMMIT")
        return super().run(argv, input, check)


def make(
    name: str, topo: Topology, tmp_path: Path, runner: Runner | None = None
) -> FirewallBackend:
    runner = runner or topo.server.runner()
    if name == "iptables-legacy":
        reason = IptablesLegacyBackend.probe(runner)
        if reason is not None:
            pytest.skip(f"iptables-legacy unusable on this kernel: {reason}")
    return get_backend(name, state_path=str(tmp_path / "state.sqlite"), runner=runner)


@pytest.fixture(params=BACKENDS)
def closed(
    request: pytest.FixtureRequest, topology: Topology, tmp_path: Path
) -> tuple[FirewallBackend, Topology]:
    """A default-closed server (the backend's own `init`) with a TCP listener on PORT."""
    backend = make(request.param, topology, tmp_path)
    backend.init_policy(KNOCK)
    topology.server.listen(PORT)
    return backend, topology


def tumbler_rules(backend: FirewallBackend, ns: Namespace) -> dict[int, int]:
    """How many tumbler rules or elements each family holds in the kernel."""
    if isinstance(backend, IptablesBackend):
        counts = {}
        for version in (4, 6):
            out = ns.run([backend.tool(version), "-S", "TUMBLER"], check=False).stdout
            counts[version] = sum("tumbler:" in line for line in out.splitlines())
        return counts
    counts = {4: 0, 6: 0}
    for version in (4, 6):
        out = ns.run(["nft", "-j", "list", "set", "inet", "tumbler", f"open{version}"], check=False)
        if out.returncode == 0:
            sets = [i["set"] for i in json.loads(out.stdout)["nftables"] if "set" in i]
            counts[version] = len(sets[0].get("elem", []))
    return counts


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def test_open_refresh_expire(closed: tuple[FirewallBackend, Topology]) -> None:
    backend, topo = closed
    assert_reach(topo, PORT, {"a4": False, "b4": False, "a6": False, "b6": False})

    t0 = time.time()
    for address in (topo.a4, topo.a6):
        assert backend.open("ssh", address, OPEN, SHORT, t0) == pytest.approx(t0 + SHORT)
    assert_reach(topo, PORT, {"a4": True, "b4": False, "a6": True, "b6": False})
    listed = backend.list_open(time.time())
    assert [(e.address, e.door, e.ports) for e in listed] == [
        (topo.a4, "ssh", f"tcp/{PORT}"),
        (topo.a6, "ssh", f"tcp/{PORT}"),
    ]
    assert all(t0 + SHORT - 1 <= e.expires <= time.time() + SHORT for e in listed)

    if isinstance(backend, IptablesBackend):
        # The daemon's clock drives iptables: refresh at t0+10, then step time.
        for address in (topo.a4, topo.a6):
            backend.open("ssh", address, OPEN, SHORT, t0 + 10)
        assert tumbler_rules(backend, topo.server) == {4: 1, 6: 1}
        assert backend.expire(t0 + SHORT) == []
        assert_reach(topo, PORT, {"a4": True, "a6": True})
        assert [e.address for e in backend.expire(t0 + 10 + SHORT + 1)] == [topo.a4, topo.a6]
    else:
        # The kernel's clock drives nftables: a refresh 2.5 s later moves the elements'
        # expiry (the kernel reports it in whole seconds), and then they go by themselves.
        sleep_until(t0 + 2.5)
        for address in (topo.a4, topo.a6):
            backend.open("ssh", address, OPEN, SHORT, time.time())
        assert tumbler_rules(backend, topo.server) == {4: 1, 6: 1}
        listed = backend.list_open(time.time())
        assert all(e.expires > t0 + SHORT + 1 for e in listed), (t0, listed)
        wait_until(
            lambda: tumbler_rules(backend, topo.server) == {4: 0, 6: 0},
            "the refreshed elements to time out",
            CLOSE_WAIT,
        )
        assert time.time() > t0 + SHORT + 1  # they outlived their first expiry
    assert_reach(topo, PORT, {"a4": False, "a6": False})
    assert backend.list_open(time.time()) == []


def test_flush_and_close(closed: tuple[FirewallBackend, Topology]) -> None:
    backend, topo = closed
    now = time.time()
    for address in (topo.a4, topo.a6, topo.b4):
        backend.open("ssh", address, OPEN, 60, now)
    assert [e.address for e in backend.close(topo.b4, now=now)] == [topo.b4]
    assert_reach(topo, PORT, {"a4": True, "b4": False})
    assert len(backend.flush(now)) == 2
    assert tumbler_rules(backend, topo.server) == {4: 0, 6: 0}
    assert_reach(topo, PORT, {"a4": False, "a6": False})
    assert backend.list_open(time.time()) == []


@pytest.mark.parametrize("name", BACKENDS)
def test_rejected_change_leaves_nothing(name: str, topology: Topology, tmp_path: Path) -> None:
    make(name, topology, tmp_path).init_policy(KNOCK)
    topology.server.listen(PORT)
    spoiled = make(name, topology, tmp_path, Tamper(topology.server.runner(), spoil=True))
    ports = (*OPEN, PortSpec("udp", 5000, 5001))
    for address in (topology.a4, topology.a6):
        with pytest.raises(FirewallError):
            spoiled.open("ssh", address, ports, 30, time.time())
    assert tumbler_rules(spoiled, topology.server) == {4: 0, 6: 0}
    assert spoiled.list_open(time.time()) == []
    assert_reach(topology, PORT, {"a4": False, "a6": False})


@pytest.mark.parametrize("name", BACKENDS)
def test_missing_binary(name: str, topology: Topology, tmp_path: Path) -> None:
    binary = "nft" if name == "nftables" else name
    runner = Tamper(topology.server.runner(), rename={binary: f"{binary}-not-installed"})
    backend = get_backend(name, state_path=str(tmp_path / "s.sqlite"), runner=runner)
    with pytest.raises(FirewallError, match="not-installed"):
        backend.open("ssh", topology.a4, OPEN, 30, time.time())
    assert backend.list_open(time.time()) == []
    assert tumbler_rules(backend, topology.server) == {4: 0, 6: 0}


DAEMON = """
import sys, time
from tumbler.actions.firewall import Runner, get_backend
from tumbler.ports import PortSpec
name, ns, state, a4, a6, port, short, long = sys.argv[1:]
backend = get_backend(name, state_path=state, runner=Runner(["ip", "netns", "exec", ns]))
now = time.time()
for address, seconds in ((a4, short), (a6, long)):
    backend.open("ssh", address, [PortSpec("tcp", int(port), int(port))], float(seconds), now)
print("open", now, flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("name", BACKENDS)
def test_daemon_killed_while_open(name: str, topology: Topology, lab: Lab, tmp_path: Path) -> None:
    """kill -9 with a door open: nftables closes on time by itself; iptables at the restart.

    A's IPv4 opening is the short one whose end is tested; A's IPv6 one stays open.
    """
    backend = make(name, topology, tmp_path)
    backend.init_policy(KNOCK)
    topology.server.listen(PORT)
    state = str(tmp_path / "state.sqlite")
    args = [name, topology.server.name, state, topology.a4, topology.a6, str(PORT)]
    daemon = subprocess.Popen(
        [sys.executable, "-c", DAEMON, *args, str(SHORT), str(LONG)],
        stdout=subprocess.PIPE,
        text=True,
    )
    lab.processes.append(daemon)
    assert daemon.stdout is not None
    said, opened = daemon.stdout.readline().split()
    assert said == "open"
    t0 = float(opened)  # the time the openings were made for
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(5)
    assert tumbler_rules(backend, topology.server) == {4: 1, 6: 1}
    assert_reach(topology, PORT, {"a6": True, "b4": False})
    if isinstance(backend, IptablesBackend):
        restarted = get_backend(name, state_path=state, runner=topology.server.runner())
        assert restarted.restore(t0 + 1) == []  # not yet due: re-armed, still open
        assert_reach(topology, PORT, {"a4": True, "a6": True})
        closed = restarted.restore(t0 + SHORT + 1)  # restarted after the short one's expiry
        assert [e.address for e in closed] == [topology.a4]
        assert_reach(topology, PORT, {"a4": False, "a6": True})
        assert [e.address for e in restarted.restore(t0 + LONG + 1)] == [topology.a6]
        assert tumbler_rules(backend, topology.server) == {4: 0, 6: 0}
        assert_reach(topology, PORT, {"a4": False, "a6": False})
    else:
        wait_until(
            lambda: tumbler_rules(backend, topology.server) == {4: 0, 6: 1},
            "the short element to time out by itself",
            CLOSE_WAIT,
        )
        assert time.time() >= t0 + SHORT - 0.5
        assert topology.server.run(["nft", "list", "table", "inet", "tumbler"]).returncode == 0
        assert_reach(topology, PORT, {"a4": False, "a6": True})


ADMIN_RULESET = f"""
table inet filter {{
    set tumbler_ssh {{ type ipv4_addr; flags timeout; }}
    set tumbler_ssh_v6 {{ type ipv6_addr; flags timeout; }}
    chain input {{
        type filter hook input priority filter; policy drop;
        iif "lo" accept
        ct state established,related accept
        icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
        ip saddr @tumbler_ssh tcp dport {PORT} accept
        ip6 saddr @tumbler_ssh_v6 tcp dport {PORT} accept
    }}
}}
"""


def test_nftables_fills_an_administrators_set(topology: Topology, tmp_path: Path) -> None:
    """With his own drop policy, tumbler's table cannot help; filling his set does."""
    topology.server.run(["nft", "-f", "-"], input=ADMIN_RULESET)
    topology.server.listen(PORT)
    runner = topology.server.runner()
    own = get_backend("nftables", state_path="", runner=runner)
    now = time.time()
    own.open("ssh", topology.a4, OPEN, 30, now)
    assert_reach(topology, PORT, {"a4": False})  # an accept in another table is not enough
    own.flush(now)

    his = get_backend("nftables", state_path="", runner=runner, set_name="inet filter tumbler_ssh")
    now = time.time()
    for address in (topology.a4, topology.a6):
        his.open("ssh", address, OPEN, SHORT, now)
        his.open("ssh", address, OPEN, SHORT, now)
    assert_reach(topology, PORT, {"a4": True, "b4": False, "a6": True, "b6": False})
    listed = his.list_open(time.time())
    assert [(e.address, e.ports) for e in listed] == [
        (topology.a4, "set inet filter tumbler_ssh"),
        (topology.a6, "set inet filter tumbler_ssh_v6"),
    ]

    def his_table() -> str:
        return topology.server.run(["nft", "list", "table", "inet", "filter"]).stdout

    wait_until(lambda: "elements" not in his_table(), "his elements to time out", CLOSE_WAIT)
    assert time.time() >= now + SHORT - 0.5
    assert_reach(topology, PORT, {"a4": False, "a6": False})
    out = his_table()  # timed out, and his ruleset is otherwise untouched
    assert f"ip saddr @tumbler_ssh tcp dport {PORT} accept" in out


def test_policy_keeps_udp_silent(closed: tuple[FirewallBackend, Topology]) -> None:
    """Default-closed: a UDP scan gets no ICMP port unreachable, on any port.

    The knock port is let through to the daemon (which never answers); every
    other UDP port is dropped, so it cannot be told apart from the knock port.
    """
    _, topo = closed
    sink = (  # stands in for tumblerd on the knock port: it reads and never answers
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
        f"s.bind(('::', {KNOCK}))\n"
        "print('ready', flush=True)\n"
        "while True: s.recv(2048)\n"
    )
    daemon = topo.server.popen([sys.executable, "-c", sink], stdout=subprocess.PIPE, text=True)
    assert daemon.stdout is not None and daemon.stdout.readline().strip() == "ready"
    capture = topo.server.popen(
        ["tcpdump", "-n", "-l", "-i", "eth0", "-c", "1", "icmp or icmp6 and ip6[40] == 1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert capture.stderr is not None
    said = [capture.stderr.readline().decode() for _ in range(2)]  # it says when it captures
    assert any(line.startswith("listening on") for line in said), said
    scan = (
        "import socket\n"
        f"for fam, host in ((socket.AF_INET, {topo.server4!r}), "
        f"(socket.AF_INET6, {topo.server6!r})):\n"
        "    s = socket.socket(fam, socket.SOCK_DGRAM)\n"
        f"    s.sendto(b'x', (host, 5999)); s.sendto(b'x', (host, {KNOCK}))\n"
    )
    topo.a.run([sys.executable, "-c", scan])
    time.sleep(0.5)
    capture.terminate()
    out: bytes = capture.communicate(timeout=5)[0]
    assert out.strip() == b""


@pytest.mark.parametrize("name", BACKENDS)
def test_the_kernel_limit_counts_ipv6_sources_by_the_configured_prefix(
    name: str, topology: Topology, tmp_path: Path
) -> None:
    """The prefix reaches the kernel, and `init` with another one replaces it."""
    backend = make(name, topology, tmp_path)

    def ipv6_limit() -> str:
        if isinstance(backend, IptablesBackend):
            out = topology.server.run([backend.tool(6), "-S", "INPUT"]).stdout
        else:
            out = topology.server.run(["nft", "list", "chain", "inet", "tumbler", "input"]).stdout
        (line,) = [x for x in out.splitlines() if "hashlimit" in x or "@knock6" in x]
        return line

    backend.init_policy(KNOCK, ipv6_prefix=48)
    wide = ipv6_limit()
    assert "ffff:ffff:ffff::" in wide or "--hashlimit-srcmask 48" in wide, wide
    backend.init_policy(KNOCK, ipv6_prefix=64)
    narrow = ipv6_limit()
    assert "ffff:ffff:ffff:ffff::" in narrow or "--hashlimit-srcmask 64" in narrow, narrow


@pytest.mark.parametrize("name", ["nftables", "iptables-nft"])
def test_printed_policy_is_what_init_applies(name: str, topology: Topology, tmp_path: Path) -> None:
    """`init --print` output is a working script: run it in a fresh namespace, same ruleset."""
    backend = make(name, topology, tmp_path)
    printed = backend.init_policy(KNOCK, apply=False)
    if name == "nftables":
        topology.a.run(["nft", "-f", "-"], input="\n".join(printed) + "\n")
        backend.init_policy(KNOCK)
        listing = ["nft", "list", "table", "inet", "tumbler"]
    else:
        for line in printed:
            topology.a.run(shlex.split(line))
        backend.init_policy(KNOCK)
        listing = ["iptables-save", "-t", "filter"]

    def rules(ns: Namespace) -> list[str]:  # without comments and packet counters
        text = ns.run(listing).stdout
        return [re.sub(r" \[\d+:\d+\]$", "", line) for line in text.splitlines() if line[:1] != "#"]

    assert rules(topology.server) == rules(topology.a)


# Counts the datagrams that reach udp/KNOCK for a while, then prints the count per source.
_COUNT_KNOCKS = """
import collections, json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(0.2)
print("ready", flush=True)
seen = collections.Counter()
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        seen[s.recvfrom(128)[1][0]] += 1
    except TimeoutError:
        pass
print(json.dumps(seen), flush=True)
"""

# Sends N datagrams to HOST:PORT as fast as it can.
_BURST = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    s.sendto(b"TUMBLER1: " + b"0" * 64, (sys.argv[1], int(sys.argv[2])))
"""


def test_policy_limits_knock_datagrams_per_source(closed: tuple[FirewallBackend, Topology]):
    """A flood from one source is cut down in the kernel; another source still gets through."""
    _, topo = closed
    counter = topo.server.popen(
        [sys.executable, "-c", _COUNT_KNOCKS, str(KNOCK), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert counter.stdout is not None
    assert counter.stdout.readline().strip() == "ready"
    topo.a.run([sys.executable, "-c", _BURST, topo.server4, str(KNOCK), "2000"])
    topo.b.run([sys.executable, "-c", _BURST, topo.server4, str(KNOCK), "5"])
    seen = json.loads(counter.stdout.readline())
    counter.wait(10)
    # The burst allowance (100) and a little refill get through; the rest is dropped.
    assert 90 <= seen.get(topo.a4, 0) <= 200, seen
    assert seen.get(topo.b4) == 5, seen


@pytest.mark.parametrize("name", ["iptables-nft", "iptables-legacy"])
def test_iptables_policy_is_both_families_or_neither(
    name: str, topology: Topology, tmp_path: Path
) -> None:
    """ip6tables failing after iptables succeeded: IPv4 is put back, not left closed alone."""
    topology.server.listen(PORT)
    v6 = f"ip6{name[2:]}-restore"
    runner = Tamper(topology.server.runner(), rename={v6: f"{v6}-not-installed"})
    broken = make(name, topology, tmp_path, runner)
    with pytest.raises(FirewallError, match="both or neither"):
        broken.init_policy(KNOCK)
    assert_reach(topology, PORT, {"a4": True, "b4": True, "a6": True, "b6": True})
    for tool in (name, f"ip6{name[2:]}"):
        rules = topology.server.run([tool, "-S"]).stdout
        assert "-P INPUT ACCEPT" in rules and "tumbler" not in rules.lower(), rules
    # Removing fails the same way, and leaves the working policy in place.
    make(name, topology, tmp_path).init_policy(KNOCK)
    with pytest.raises(FirewallError, match="both or neither"):
        broken.remove_policy(time.time())
    assert_reach(topology, PORT, {"a4": False, "b4": False, "a6": False, "b6": False})


def test_knock_port_is_silent_with_the_daemon_stopped(
    closed: tuple[FirewallBackend, Topology], tmp_path: Path
) -> None:
    """Nothing listens on the knock port: still no ICMP port unreachable gives it away."""
    backend, topo = closed
    cap = Capture(topo.server, tmp_path / "server.pcap").start()
    try:
        for host in (topo.server4, topo.server6):
            for port in (KNOCK, KNOCK + 1):  # the knock port, and one the policy drops
                send = "import socket, sys; socket.socket(int(sys.argv[1]), socket.SOCK_DGRAM)"
                send += ".sendto(b'x', (sys.argv[2], int(sys.argv[3])))"
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                topo.a.run([sys.executable, "-c", send, str(int(family)), host, str(port)])
        # A control, sent last: the capture does see what the server sends (a SYN-ACK).
        backend.open("ssh", topo.a4, OPEN, 30, time.time())
        assert can_connect(topo.a, topo.server4, PORT, OPEN_WAIT)
        wait_until(
            lambda: any(p.proto == "tcp" and p.src == topo.server4 for p in cap.packets()),
            "the capture to see the server's SYN-ACK",
        )
    finally:
        cap.stop()
    packets = cap.packets()
    server = {topo.server4, topo.server6}
    assert len([p for p in packets if p.proto == "udp" and p.dst in server]) == 4, packets
    assert [p for p in packets if p.src in server and p.is_icmp_error] == []


class LockProbe(Runner):
    """Runs the real programs; before each one, tries to take the state database's write lock.

    A backend that held a transaction across a firewall program would make every other
    writer of that file (the replay claims) wait for the program to finish.
    """

    def __init__(self, base: Runner, database: Path) -> None:
        super().__init__(base.prefix, base.timeout)
        self.database = database
        self.locked: list[str] = []
        self.programs = 0

    def run(
        self, argv: Sequence[str], input: str | None = None, check: bool = True
    ) -> CommandResult:
        if self.database.exists():
            self.programs += 1
            other = sqlite3.connect(self.database, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
            except sqlite3.OperationalError as exc:
                self.locked.append(f"{shlex.join(argv)}: {exc}")
            finally:
                other.close()
        return super().run(argv, input, check)


@pytest.mark.parametrize("name", ["iptables-nft", "iptables-legacy"])
def test_no_transaction_is_held_across_a_firewall_program(
    name: str, topology: Topology, tmp_path: Path
) -> None:
    database = tmp_path / "state.sqlite"
    probe = LockProbe(topology.server.runner(), database)
    backend = make(name, topology, tmp_path, probe)
    backend.init_policy(KNOCK)
    topology.server.listen(PORT)
    now = time.time()
    for address in (topology.a4, topology.a6, topology.b4):
        backend.open("ssh", address, OPEN, 60, now)
        backend.open("ssh", address, OPEN, 60, now + 1)  # a refresh
    assert_reach(topology, PORT, {"a4": True, "b4": True})
    backend.close(topology.b4, now=now)
    assert [e.address for e in backend.expire(now + 62)] == [topology.a4, topology.a6]
    backend.open("ssh", topology.a4, OPEN, 60, now)
    again = make(name, topology, tmp_path, probe)  # a restart
    assert again.restore(now + 1) == []
    assert len(again.flush(now + 1)) == 1
    assert probe.programs >= 10
    assert probe.locked == []
