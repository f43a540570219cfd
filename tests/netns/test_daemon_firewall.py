"""A real tumblerd with firewall doors, end to end in network namespaces (issue 3, item 6).

Server 10.213.0.1 / fd00:213::1, client A .2 / ::2, client B .3 / ::3 (tests/netns/netns.py).
For each backend (nftables, iptables-nft, iptables-legacy when the kernel has it):

- the server is made default-closed by the real `tumblerd firewall init --config CFG`
  (set-up A), and a TCP listener waits on PORT behind it;
- the real `tumblerd` runs inside the server namespace, its config, state database,
  log and control socket in the test's tmp folder;
- knocks are sent by the real `tumbler` client, run inside A's or B's namespace;
- "can connect" is always a new TCP connection that must get the listener's banner.

No check depends on how fast a busy machine is. A door that must stay open while a test
works is open for a minute (OPEN_LONG); a test of the timeout itself uses a short door,
checks connections once, right after the opening, and then waits for the event that
matters (the kernel's element or rule gone), never for a lucky delay. A connection
expected to open may take OPEN_WAIT seconds; one expected to be blocked gets BLOCKED
seconds, which can make a wrong answer look right, never a right answer wrong. The lab
fixture kills every process and deletes every namespace (and with them every rule) even
when a test fails.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.netns.capture import Capture
from tests.netns.forged import send_udp6
from tests.netns.netns import (
    BLOCKED,
    OPEN_WAIT,
    Namespace,
    Topology,
    assert_reach,
    can_connect,
)
from tests.waiting import wait_until
from tumbler.actions.firewall import BACKENDS as BACKEND_CLASSES
from tumbler.actions.firewall import IptablesLegacyBackend
from tumbler.lab.ready import NotReady, start_ready
from tumbler.protocols.tumbler1 import encode_datagram, knock_digest, minute_stamp

PORT = 2222
KNOCK = 8675
TIMEOUT = 5  # seconds a door stays open in the tests of its timeout: waited out, briefly
OPEN_LONG = 60  # seconds a door stays open in the tests that work while it is open
CLOSE_WAIT = TIMEOUT + 30  # at most this long for a timed-out door to be gone
SECRET = "netns-door-secret"
BACKENDS = ["nftables", "iptables-nft", "iptables-legacy"]
# For what only iptables has: parametrized, not skipped, so every test that runs is real.
only_iptables = pytest.mark.parametrize(
    "backend", ["iptables-nft", "iptables-legacy"], indirect=True
)


def _script(name: str, module: str) -> list[str]:
    """The venv's console script beside this Python, or `python -m module` without one."""
    path = Path(sys.executable).parent / name
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


TUMBLER = _script("tumbler", "tumbler")
TUMBLERD = _script("tumblerd", "tumbler.cli.tumblerd")


def _env(**extra: str) -> dict[str, str]:
    """This environment without anything that would steer tumbler or sd_notify."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("TUMBLER_") and k != "NOTIFY_SOCKET"
    }
    env.update(extra)
    return env


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


# -- the daemon ------------------------------------------------------------------------------


def door(name: str, secret: str, timeout: float = OPEN_LONG, extra: str = "") -> str:
    """A `[door-NAME]` section opening tcp/PORT."""
    return (
        f"[door-{name}]\n"
        f"   secret = {secret}\n"
        f"   open = tcp/{PORT}\n"
        f"   timeout = {timeout:g}\n"
        f"{extra}"
    )


class Tumblerd:
    """A tumblerd in the server namespace, its files in one folder, driven like an admin would."""

    def __init__(
        self, topo: Topology, folder: Path, backend: str, doors: Sequence[str], **env: str
    ) -> None:
        self.topo = topo
        self.ns = topo.server
        self.folder = folder
        self.backend = backend
        self.env = _env(**env)
        self.log = folder / "tumblerd.log"
        self.config = folder / "tumblerd.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config.write_text(
            "[common]\n"
            f"   port = {KNOCK}\n"
            f"   listen = {topo.server4}, {topo.server6}\n"
            f"   log = {self.log}\n"
            f"   state = {folder / 'state.db'}\n"
            f"   control = {folder / 'control' / 'control.sock'}\n"
            f"   firewall = {backend}\n" + "".join(doors)
        )
        self.config.chmod(0o600)

    def cli(self, *args: str) -> str:
        """`tumblerd ARGS --config CFG` in the server namespace; its stdout (it must succeed)."""
        return self.ns.run([*TUMBLERD, *args, "--config", str(self.config)]).stdout

    def init(self) -> Tumblerd:
        """Set-up A: the default-closed policy, by the real `tumblerd firewall init`."""
        out = self.cli("firewall", "init")
        assert "default-closed policy applied" in out, out
        return self

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def start(self) -> Tumblerd:
        """Start tumblerd; return once it said READY=1 (after it restored its firewall)."""
        errors = self.folder / "tumblerd.stderr"
        with open(errors, "ab") as stderr:
            try:
                self.proc = start_ready(
                    self.ns.popen,
                    [*TUMBLERD, "--config", str(self.config)],
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env=self.env,
                )
            except NotReady as exc:
                raise AssertionError(f"tumblerd {exc}: {errors.read_text()}") from None
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)

    def status(self) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self.cli("status", "--json"))
        return answer

    def counters(self) -> dict[str, int]:
        counters: dict[str, int] = self.status()["counters"]
        return counters

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        wait_until(lambda: text in self.log_text(), f"{text!r} in the tumblerd log", timeout)

    def wait_opened(self, address: str) -> None:
        self.wait_log(f"opened tcp/{PORT} for {address} until")


def serve(topo: Topology, folder: Path, backend: str, doors: Sequence[str], **env: str) -> Tumblerd:
    """A default-closed server with a TCP listener on PORT and tumblerd serving `doors`."""
    daemon = Tumblerd(topo, folder, backend, doors, **env).init()
    topo.server.listen(PORT)
    return daemon.start()


# -- clients -------------------------------------------------------------------------------


def knock(ns: Namespace, host: str, secret: str = SECRET) -> bytes:
    """Knock with the real `tumbler` client from `ns`; return the datagram it sent."""
    where = f"[{host}]" if ":" in host else host
    proc = ns.run([*TUMBLER, "-v", "--open", f"tumbler://{secret}@{where}:{KNOCK}/"])
    sent = [line for line in proc.stderr.splitlines() if line.startswith("datagram")]
    assert len(sent) == 1, proc.stderr
    return sent[0].split(None, 1)[1].encode("ascii")


_SEND = """
import socket, sys
host, port, data = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
socket.socket(family, socket.SOCK_DGRAM).sendto(data, (host, port))
"""


def send(ns: Namespace, host: str, data: bytes, port: int = KNOCK) -> None:
    """Send one raw UDP datagram from `ns` (a replayed or forged knock)."""
    ns.run([sys.executable, "-c", _SEND, host, str(port), data.hex()])


# -- what the kernel holds ---------------------------------------------------------------------

_NFT_ELEMENT = re.compile(
    r"([0-9a-f.:]+)(?: \. \w+ \. \d+)? timeout \S+ expires (\S+) comment \"tumbler:([^\"]+)\""
)
_IPT_RULE = re.compile(r"-s (\S+?)/\d+ .*--comment \"?tumbler:([^:\"]+):(\d+)")


def _seconds(text: str) -> float:
    """nft's `1m2s500ms` as seconds."""
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|d|h|m|s)", text))


OWN_SETS = ("inet tumbler open4", "inet tumbler open6")


def openings(
    topo: Topology, backend: str, nft_sets: Sequence[str] = OWN_SETS
) -> list[tuple[str, str, float]]:
    """(address, door, expiry epoch) of every element or rule tumbler has in the kernel.

    Read from the kernel itself (not from tumbler's state), with the expiry to the
    millisecond for nftables (`nft list set`), to the second (the rule's tag) for iptables.
    """
    ns = topo.server
    found: list[tuple[str, str, float]] = []
    if backend == "nftables":
        for nft_set in nft_sets:
            proc = ns.run(["nft", "list", "set", *nft_set.split()], check=False)
            now = time.time()
            for address, expires, name in _NFT_ELEMENT.findall(proc.stdout):
                found.append((address, name, now + _seconds(expires)))
    else:
        variant = backend.removeprefix("iptables")
        for tool in (f"iptables{variant}", f"ip6tables{variant}"):
            out = ns.run([tool, "-w", "5", "-S", "TUMBLER"], check=False).stdout
            for address, name, expires in _IPT_RULE.findall(out):
                found.append((address, name, float(expires)))
    return sorted(found)


def commands_in(ns: Namespace) -> list[str]:
    """The command lines of every process now running in `ns`."""
    pids = subprocess.run(
        ["ip", "netns", "pids", ns.name], capture_output=True, text=True, check=True
    ).stdout.split()
    commands = []
    for pid in pids:
        try:
            commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue  # it ended meanwhile
    return commands


def addresses(found: list[tuple[str, str, float]]) -> list[str]:
    return [a for a, _, _ in found]


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, topology: Topology) -> str:
    """Each backend in turn; iptables-legacy only where this kernel has x_tables."""
    name: str = request.param
    if name == "iptables-legacy":
        reason = IptablesLegacyBackend.probe(topology.server.runner())
        if reason is not None:
            pytest.skip(f"iptables-legacy unusable on this kernel: {reason}")
    return name


# -- tests -----------------------------------------------------------------------------------


def test_knock_opens_for_the_knocker_only_and_times_out(
    backend: str, topology: Topology, tmp_path: Path
) -> None:
    topo = topology
    daemon = serve(topo, tmp_path, backend, [door("ssh", SECRET, TIMEOUT)])
    assert_reach(topo, PORT, {"a4": False, "b4": False, "a6": False, "b6": False})

    opened = time.time()
    knock(topo.a, topo.server4)
    daemon.wait_opened(topo.a4)
    # Opened for A's IPv4 address only: not for B, not for A's IPv6 address.
    assert_reach(topo, PORT, {"a4": True, "b4": False, "a6": False, "b6": False})

    knock(topo.a, topo.server6)
    daemon.wait_opened(topo.a6)
    assert_reach(topo, PORT, {"a6": True, "b6": False, "b4": False})
    held = [(a, d) for a, d, _ in openings(topo, backend)]
    assert (topo.a6, "ssh") in held and set(held) <= {(topo.a4, "ssh"), (topo.a6, "ssh")}

    wait_until(lambda: openings(topo, backend) == [], "A's doors to close", CLOSE_WAIT)
    assert time.time() - opened >= TIMEOUT - 0.5  # not before the timeout
    assert_reach(topo, PORT, {"a4": False, "a6": False})
    assert daemon.cli("firewall", "list") == "nothing is open\n"
    assert daemon.alive()


def test_server_answers_no_knock(backend: str, topology: Topology, tmp_path: Path) -> None:
    """A capture on the server: knocks arrive, valid or not, and nothing goes back."""
    topo = topology
    # A door open throughout, however slowly a loaded machine runs the knocking clients.
    daemon = serve(topo, tmp_path, backend, [door("ssh", SECRET, 30)])
    cap = Capture(topo.server, tmp_path / "server.pcap").start()
    try:
        valid4 = knock(topo.a, topo.server4)
        knock(topo.a, topo.server6)
        knock(topo.b, topo.server4, "not-the-secret")
        knock(topo.b, topo.server6, "not-the-secret")
        send(topo.b, topo.server4, valid4)  # A's knock from B
        send(topo.a, topo.server4, valid4)  # A's knock again
        send(topo.b, topo.server4, b"TUMBLER1: junk")
        send(topo.b, topo.server6, b"x" * 200)
        send(topo.b, topo.server4, valid4, KNOCK + 1)  # a port nobody listens on
        send(topo.b, topo.server6, valid4, KNOCK + 1)
        daemon.wait_opened(topo.a4)
        daemon.wait_opened(topo.a6)
        wanted = {"accepted": 2, "no-door": 3, "replay": 1, "malformed": 2}
        wait_until(
            lambda: {k: daemon.counters().get(k, 0) for k in wanted} == wanted,
            f"the daemon to have judged every knock ({wanted})",
        )
        time.sleep(0.2)  # room for a late answer to a knock, were there one
        # A control, sent last: the capture does see what the server sends (A's SYN-ACK).
        assert can_connect(topo.a, topo.server4, PORT, OPEN_WAIT)
        wait_until(
            lambda: any(p.proto == "tcp" and p.src == topo.server4 for p in cap.packets()),
            "the capture to see the server's SYN-ACK",
        )
    finally:
        cap.stop()
    packets = cap.packets()
    server = {topo.server4, topo.server6}
    knocks = [p for p in packets if p.proto == "udp" and p.dst in server]
    assert len(knocks) == 10, knocks
    answers = [
        p for p in packets if p.src in server and (p.proto in ("udp", "icmp") or p.is_icmp_error)
    ]
    assert answers == []
    from_knock_port = [p for p in packets if p.src in server and p.sport in (KNOCK, KNOCK + 1)]
    assert from_knock_port == []


def test_ipv4_mapped_source_on_the_ipv6_socket_is_dropped(
    topology: Topology, tmp_path: Path
) -> None:
    """A knock valid for A's IPv4 address, sent over IPv6 from `::ffff:<A's IPv4>`: an IPv6
    sender is not the IPv4 host, so it is dropped and opens nothing for A."""
    topo = topology
    daemon = serve(topo, tmp_path, "nftables", [door("ssh", SECRET)])
    stamp = minute_stamp(datetime.now(UTC))
    datagram = encode_datagram(knock_digest(stamp, topo.a4, SECRET))
    send_udp6(topo.b, topo.server, f"::ffff:{topo.a4}", topo.server6, KNOCK, datagram)
    wait_until(lambda: daemon.counters(), "the forged knock to be judged")
    assert daemon.counters() == {"malformed": 1}
    assert openings(topo, "nftables") == []

    # The same datagram from A's own IPv4 address opens: it was a valid knock for A.
    send(topo.a, topo.server4, datagram)
    daemon.wait_opened(topo.a4)
    assert addresses(openings(topo, "nftables")) == [topo.a4]


def test_replayed_datagram_opens_nothing(backend: str, topology: Topology, tmp_path: Path) -> None:
    topo = topology
    # Open long enough to outlast the replays below on a loaded machine, short enough to
    # watch it close.
    daemon = serve(topo, tmp_path, backend, [door("ssh", SECRET, 6)])
    datagram = knock(topo.a, topo.server4)
    knocked = time.time()
    daemon.wait_opened(topo.a4)
    before = openings(topo, backend)
    assert addresses(before) == [topo.a4]

    send(topo.b, topo.server4, datagram)  # sniffed and sent from B: it proves nothing for B
    wait_until(lambda: daemon.counters().get("no-door") == 1, "B's replay to be judged")
    assert_reach(topo, PORT, {"a4": True, "b4": False})
    assert addresses(openings(topo, backend)) == [topo.a4]

    # From A again, over a second later: a refresh would move the expiry by over a second.
    sleep_until(knocked + 1.2)
    send(topo.a, topo.server4, datagram)
    wait_until(lambda: daemon.counters().get("replay") == 1, "A's replay to be judged")
    after = openings(topo, backend)
    assert addresses(after) == [topo.a4]
    assert abs(after[0][2] - before[0][2]) < 0.5, (before, after)  # not refreshed
    assert daemon.counters().get("accepted") == 1

    assert daemon.stop() == 0
    assert "tumblerd stopped (accepted 1, no-door 1, replay 1)" in daemon.log_text()


def test_kill_9_while_doors_are_open(backend: str, topology: Topology, tmp_path: Path) -> None:
    """nftables closes on time with no daemon; iptables closes at the restart, re-arms the rest.

    The short door's timeout is what is tested; the long one stays open throughout.
    """
    topo = topology
    doors = [door("short", "short-secret", TIMEOUT), door("long", "long-secret", OPEN_LONG)]
    daemon = serve(topo, tmp_path, backend, doors)
    before = time.time()
    knock(topo.a, topo.server4, "short-secret")
    knock(topo.a, topo.server6, "long-secret")
    daemon.wait_opened(topo.a4)
    daemon.wait_opened(topo.a6)
    daemon.kill9()
    held = openings(topo, backend)
    assert addresses(held) == [topo.a4, topo.a6]  # what the kernel holds, read at once
    assert_reach(topo, PORT, {"a6": True, "b4": False, "b6": False})

    if BACKEND_CLASSES[backend].kernel_timeouts:
        wait_until(
            lambda: addresses(openings(topo, backend)) == [topo.a6],
            "the short door to close by itself",
            CLOSE_WAIT,
        )
        assert time.time() - before >= TIMEOUT - 0.5
        assert_reach(topo, PORT, {"a4": False, "a6": True})  # the long one still open
        assert not daemon.alive()
        assert not any("tumblerd" in cmd for cmd in commands_in(topo.server))
    else:
        sleep_until(held[0][2] + 1.1)  # past the short door's expiry, with no daemon there
        assert addresses(openings(topo, backend)) == [topo.a4, topo.a6]  # the rules stay
        assert can_connect(topo.a, topo.server4, PORT, OPEN_WAIT)
        daemon.start()
        # Restored at start: the expired one closed, the other re-armed.
        assert addresses(openings(topo, backend)) == [topo.a6]
        assert_reach(topo, PORT, {"a4": False, "a6": True})
        assert daemon.stop() == 0  # a clean stop closes what iptables holds
        assert f"door long: closed for {topo.a6} (tumblerd stopping)" in daemon.log_text()
        assert openings(topo, backend) == []
        assert_reach(topo, PORT, {"a4": False, "b4": False, "a6": False, "b6": False})


def test_sigterm(backend: str, topology: Topology, tmp_path: Path) -> None:
    """A clean stop: iptables rules are closed (no daemon would close them); nft elements
    stay and keep timing out in the kernel."""
    topo = topology
    daemon = serve(topo, tmp_path, backend, [door("ssh", SECRET)])
    knock(topo.a, topo.server4)
    daemon.wait_opened(topo.a4)
    assert_reach(topo, PORT, {"a4": True, "b4": False})
    held = openings(topo, backend)
    assert daemon.stop() == 0
    if BACKEND_CLASSES[backend].kernel_timeouts:
        left = openings(topo, backend)
        assert addresses(left) == [topo.a4]
        assert abs(left[0][2] - held[0][2]) < 0.5  # the same expiry, still timed by the kernel
        assert can_connect(topo.a, topo.server4, PORT, OPEN_WAIT)
    else:
        assert openings(topo, backend) == []
        assert not can_connect(topo.a, topo.server4, PORT, BLOCKED)
        assert f"door ssh: closed for {topo.a4} (tumblerd stopping)" in daemon.log_text()
        assert daemon.cli("firewall", "list") == "nothing is open\n"


def test_list_status_close_flush(backend: str, topology: Topology, tmp_path: Path) -> None:
    topo = topology
    daemon = serve(topo, tmp_path, backend, [door("ssh", SECRET)])
    for ns, host, address in (
        (topo.a, topo.server4, topo.a4),
        (topo.a, topo.server6, topo.a6),
        (topo.b, topo.server4, topo.b4),
    ):
        knock(ns, host)
        daemon.wait_opened(address)
    assert_reach(topo, PORT, {"a4": True, "b4": True, "a6": True, "b6": False})

    listing = daemon.cli("firewall", "list").splitlines()
    assert listing[0].split() == ["ADDRESS", "DOOR", "PORTS", "UNTIL", "REMAINING"]
    rows = [line.split() for line in listing[1:]]
    assert [row[:3] for row in rows] == [
        [topo.a4, "ssh", f"tcp/{PORT}"],
        [topo.b4, "ssh", f"tcp/{PORT}"],
        [topo.a6, "ssh", f"tcp/{PORT}"],
    ]
    assert all(0 < int(row[4].rstrip("s")) <= OPEN_LONG for row in rows), rows

    status = [line.split() for line in daemon.cli("status").splitlines()]
    shown = [line[1:5] for line in status if line[0] == "open:"]
    assert shown == [[a, "door", "ssh", f"tcp/{PORT}"] for a in (topo.a4, topo.b4, topo.a6)]
    opened = {e["address"]: e for e in daemon.status()["open"]}
    assert sorted(opened) == sorted([topo.a4, topo.a6, topo.b4])
    assert all(
        e["door"] == "ssh" and 0 < e["expires"] - time.time() <= OPEN_LONG for e in opened.values()
    )

    assert daemon.cli("close", topo.a4) == f"closed: {topo.a4} door ssh tcp/{PORT}\n"
    assert_reach(topo, PORT, {"a4": False, "a6": True, "b4": True})
    assert addresses(openings(topo, backend)) == [topo.b4, topo.a6]

    flushed = daemon.cli("firewall", "flush")
    assert flushed.startswith("closed 2 opening(s)\n"), flushed
    assert_reach(topo, PORT, {"a4": False, "b4": False, "a6": False, "b6": False})
    assert openings(topo, backend) == []
    assert daemon.cli("firewall", "list") == "nothing is open\n"
    assert daemon.status()["open"] == []
    assert daemon.alive()


def test_status_and_close_of_one_door(backend: str, topology: Topology, tmp_path: Path) -> None:
    """`status DOOR` shows one door; `close ADDRESS --door NAME` closes that door alone."""
    topo, web = topology, PORT + 1
    web_door = (
        f"[door-web]\n   secret = web-secret\n   open = tcp/{web}\n   timeout = {OPEN_LONG}\n"
    )
    daemon = serve(topo, tmp_path, backend, [door("ssh", SECRET), web_door])
    topo.server.listen(web)
    knock(topo.a, topo.server4)
    daemon.wait_opened(topo.a4)
    knock(topo.a, topo.server4, "web-secret")
    daemon.wait_log(f"opened tcp/{web} for {topo.a4} until")

    shown = daemon.cli("status", "web").splitlines()
    assert shown[0] == "door web: knocks accepted since the daemon started: 1"
    assert [line.split()[:3] for line in shown[1:]] == [["open:", topo.a4, f"tcp/{web}"]]
    one = json.loads(daemon.cli("status", "--json", "ssh"))
    assert (one["door"], one["accepted"]) == ("ssh", 1)
    assert [(e["address"], e["door"]) for e in one["open"]] == [(topo.a4, "ssh")]

    closed = daemon.cli("close", topo.a4, "--door", "web")
    assert closed == f"closed: {topo.a4} door web tcp/{web}\n"
    assert not can_connect(topo.a, topo.server4, web, BLOCKED)
    assert can_connect(topo.a, topo.server4, PORT, OPEN_WAIT)  # the ssh door stays open
    assert [e["door"] for e in daemon.status()["open"]] == ["ssh"]
    again = daemon.cli("close", topo.a4, "--door", "web")
    assert again == f"nothing was open for {topo.a4} through door web\n"
    assert daemon.cli("status", "web").splitlines()[1:] == ["open: nothing"]

    for argv in (["close", topo.a4, "--door", "nope"], ["status", "nope"]):
        bad = topo.server.run([*TUMBLERD, *argv, "--config", str(daemon.config)], check=False)
        assert bad.returncode == 2, bad
        assert f"no door 'nope' in {daemon.config} (its doors: ssh, web)" in bad.stderr
    assert [e["door"] for e in daemon.status()["open"]] == ["ssh"]
    assert daemon.alive()


ADMIN_RULESET = f"""
table inet filter {{
    set tumbler_ssh {{ type ipv4_addr; flags timeout; }}
    chain input {{
        type filter hook input priority filter; policy drop;
        iif "lo" accept
        ct state established,related accept
        udp dport {KNOCK} accept
        ip saddr @tumbler_ssh tcp dport {PORT} accept
    }}
}}
"""


def test_nftables_administrators_own_set(topology: Topology, tmp_path: Path) -> None:
    """Set-up B: his table, his drop policy, his set and rule; tumblerd only fills the set."""
    topo = topology
    topo.server.run(["nft", "-f", "-"], input=ADMIN_RULESET)
    topo.server.listen(PORT)
    extra = "   set = inet filter tumbler_ssh\n"
    doors = [door("ssh", SECRET, TIMEOUT, extra=extra), door("team", "team-secret", extra=extra)]
    daemon = Tumblerd(topo, tmp_path, "nftables", doors).start()
    assert_reach(topo, PORT, {"a4": False, "b4": False})

    opened = time.time()
    knock(topo.a, topo.server4)
    wait_until(lambda: f"for {topo.a4} until" in daemon.log_text(), "the door to open")
    assert_reach(topo, PORT, {"a4": True, "b4": False})
    his_set = ["inet filter tumbler_ssh"]
    assert addresses(openings(topo, "nftables", his_set)) == [topo.a4]
    tables = topo.server.run(["nft", "list", "tables"]).stdout
    assert "tumbler" not in tables  # no table of tumbler's own was needed
    assert "set inet filter tumbler_ssh" in daemon.cli("firewall", "list")

    wait_until(lambda: openings(topo, "nftables", his_set) == [], "A's door to close", CLOSE_WAIT)
    assert time.time() - opened >= TIMEOUT - 0.5
    assert_reach(topo, PORT, {"a4": False})

    knock(topo.b, topo.server4, "team-secret")  # B's door, a long one; flush closes it early
    wait_until(lambda: f"for {topo.b4} until" in daemon.log_text(), "B's door to open")
    assert_reach(topo, PORT, {"a4": False, "b4": True})
    assert daemon.cli("firewall", "flush").startswith("closed 1 opening(s)\n")
    assert_reach(topo, PORT, {"a4": False, "b4": False})
    assert openings(topo, "nftables", his_set) == []
    ruleset = topo.server.run(["nft", "list", "table", "inet", "filter"]).stdout
    assert f"ip saddr @tumbler_ssh tcp dport {PORT} accept" in ruleset  # his rule untouched


FAIL = """#!/bin/sh
echo "{tool}: line 2 failed: rule rejected (by the test)" >&2
exit 1
"""


def test_failed_firewall_change(backend: str, topology: Topology, tmp_path: Path) -> None:
    """A firewall change that fails is logged with its reason, leaves nothing, and the
    daemon keeps serving: a following knock on a good door works.

    nftables: a door naming a set that does not exist. iptables: `ip6tables-*-restore`
    rejects the batch (a wrapper ahead on the daemon's PATH), so A's IPv6 knock fails.
    """
    topo = topology
    doors = [door("ssh", SECRET)]
    env: dict[str, str] = {}
    if backend == "nftables":
        doors.append(door("bad", "bad-secret", extra="   set = inet filter missing_set\n"))
        bad_knock = (topo.server4, "bad-secret", topo.a4, "bad")
        reason = "set inet filter missing_set does not exist"
    else:
        tool = "ip6" + backend[2:] + "-restore"
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / tool
        wrapper.write_text(FAIL.format(tool=tool))
        wrapper.chmod(0o755)
        env["PATH"] = f"{bin_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        bad_knock = (topo.server6, SECRET, topo.a6, "ssh")
        reason = f"{tool} -w 5 --noflush: exit 1: {tool}: line 2 failed: rule rejected"
    daemon = serve(topo, tmp_path, backend, doors, **env)

    host, secret, address, name = bad_knock
    knock(topo.a, host, secret)
    daemon.wait_log(f"knock for door {name} from {address} failed: firewall: ")
    failure = [line for line in daemon.log_text().splitlines() if " failed: firewall: " in line]
    assert len(failure) == 1 and reason in failure[0], failure
    assert daemon.counters().get("failed") == 1
    assert openings(topo, backend) == []  # no half-applied rule or element
    assert daemon.cli("firewall", "list") == "nothing is open\n"
    assert_reach(topo, PORT, {"a4": False, "a6": False})
    if backend == "nftables":
        assert "inet filter" not in topo.server.run(["nft", "list", "tables"]).stdout

    knock(topo.a, topo.server4)  # the good door still works
    daemon.wait_opened(topo.a4)
    assert_reach(topo, PORT, {"a4": True, "b4": False, "a6": False, "b6": False})
    assert addresses(openings(topo, backend)) == [topo.a4]
    assert daemon.alive()


def policy_text(topo: Topology, backend: str) -> str:
    """The default-closed policy as the kernel holds it now (both families for iptables)."""
    if backend == "nftables":
        return topo.server.run(["nft", "list", "ruleset"]).stdout
    variant = backend.removeprefix("iptables")
    return "".join(
        topo.server.run([f"{tool}{variant}-save", "-t", "filter"]).stdout
        for tool in ("iptables", "ip6tables")
    )


def test_init_again_converges_and_remove_opens(
    backend: str, topology: Topology, tmp_path: Path
) -> None:
    """`firewall init` twice, then on a new knock port, is one policy; `remove` takes it away."""
    topo = topology
    daemon = Tumblerd(topo, tmp_path, backend, [door("ssh", SECRET)]).init()
    first = policy_text(topo, backend)
    daemon.init()  # was: "Could not process rule: File exists" (nftables)
    assert policy_text(topo, backend).count(f"dport {KNOCK}") == first.count(f"dport {KNOCK}")

    moved = KNOCK + 100
    daemon.config.write_text(
        daemon.config.read_text().replace(f"port = {KNOCK}", f"port = {moved}")
    )
    daemon.init()
    text = policy_text(topo, backend)
    assert f"dport {moved}" in text and f"dport {KNOCK}" not in text, text
    topo.server.listen(PORT)
    daemon.start()
    where = f"tumbler://{SECRET}@{topo.server4}:{moved}/"
    topo.a.run([*TUMBLER, "--open", where], timeout=30)
    daemon.wait_opened(topo.a4)
    assert_reach(topo, PORT, {"a4": True, "b4": False})
    assert daemon.stop() == 0

    removed = topo.server.run([*TUMBLERD, "firewall", "remove", "--config", str(daemon.config)])
    assert "warning:" in removed.stderr and "reachable again" in removed.stderr, removed.stderr
    assert_reach(topo, PORT, {"a4": True, "b4": True, "a6": True, "b6": True})
    assert "tumbler" not in policy_text(topo, backend).lower()
    daemon.init()  # and back again
    assert_reach(topo, PORT, {"b4": False, "b6": False})


@only_iptables  # an accept in another nftables table cannot undo tumbler's drop
def test_iptables_init_reports_accept_rules_of_the_administrator(
    backend: str, topology: Topology, tmp_path: Path
) -> None:
    """An ACCEPT for tcp/PORT already in INPUT stays open: init says so, never "closed"."""
    topo = topology
    variant = backend.removeprefix("iptables")
    accept = ["-A", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", str(PORT), "-j", "ACCEPT"]
    topo.server.run([f"iptables{variant}", *accept])
    loopback = ["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"]  # lets in nothing from outside
    topo.server.run([f"iptables{variant}", *loopback])
    topo.server.listen(PORT)
    daemon = Tumblerd(topo, tmp_path, backend, [door("ssh", SECRET)])
    init = topo.server.run([*TUMBLERD, "firewall", "init", "--config", str(daemon.config)])
    assert "default-closed policy applied" not in init.stdout, init.stdout
    assert "not default-closed" in init.stdout
    assert f"--dport {PORT} -j ACCEPT" in init.stderr and "stays open" in init.stderr, init.stderr
    assert len(init.stderr.splitlines()) == 1, init.stderr  # not the loopback rule
    assert_reach(topo, PORT, {"b4": True, "b6": False})  # what the warning says


@only_iptables  # nftables keeps no state database: the kernel times its elements
def test_iptables_state_rows_are_checked_against_the_config(
    backend: str, topology: Topology, tmp_path: Path
) -> None:
    """A tampered state database re-arms nothing but what the config's doors could open."""
    topo = topology
    daemon = serve(topo, tmp_path, backend, [door("ssh", SECRET, 60)])
    assert daemon.stop() == 0
    now = time.time()
    b, a, port = topo.b4, topo.a4, PORT
    hostile = [
        (
            b,
            "ssh -j ACCEPT\n-I INPUT 1 -j ACCEPT\n-A TUMBLER -j ACCEPT",
            "tcp",
            port,
            port,
            now + 30,
        ),
        (b, "ssh", "tcp", 1, 65535, 2100000000.0),  # every port, until 2036
        (b, "ssh", "tcp", port, port, 2100000000.0),  # far beyond the door's timeout
        (b, "gone", "tcp", port, port, now + 30),  # no such door
        (b, "ssh", "icmp", port, port, now + 30),
        ("10.213.0.0/24", "ssh", "tcp", port, port, now + 30),
        ("::ffff:10.213.0.3", "ssh", "tcp", port, port, now + 30),
        (b, "ssh", "tcp", "22 -j ACCEPT", port, now + 30),
        (topo.b6, 'ssh"', "tcp", port, port, now + 30),
        (a, "ssh", "tcp", port, port, now + 30),  # the one genuine row
    ]
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.executemany("INSERT INTO firewall_iptables VALUES (?, ?, ?, ?, ?, ?)", hostile)
    db.close()
    variant = backend.removeprefix("iptables")
    for tag in ("tumbler:bad door:2100000000", "tumbler:ssh:2100000000"):  # rules, no rows
        rule = ["-s", f"{b}/32", "-p", "tcp", "-m", "tcp", "--dport", str(port)]
        rule += ["-m", "comment", "--comment", tag, "-j", "ACCEPT"]
        topo.server.run([f"iptables{variant}", "-A", "TUMBLER", *rule])
    daemon.start()
    assert_reach(topo, PORT, {"a4": True, "b4": False, "a6": False, "b6": False})
    assert_reach(topo, 5999, {"b4": False})
    assert openings(topo, backend) == [(a, "ssh", float(math.ceil(now + 30)))]
    for tool in (f"iptables{variant}", f"ip6tables{variant}"):
        rules = topo.server.run([tool, "-S"]).stdout.splitlines()
        assert not [r for r in rules if r.endswith("-j ACCEPT") and "tumbler:" not in r], rules
    log = daemon.log_text()
    assert log.count("state database: dropped") == len(hostile) - 1, log
    assert "'ssh -j ACCEPT\\n-I INPUT 1 -j ACCEPT\\n-A TUMBLER -j ACCEPT'" in log
    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("SELECT address, door FROM firewall_iptables").fetchall() == [(a, "ssh")]
        db.execute("INSERT INTO firewall_iptables VALUES (?, ?, ?, ?, ?, ?)", hostile[1])
    db.close()
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)  # a reload checks the rows again
    daemon.wait_log("reloaded")
    assert daemon.log_text().count("state database: dropped") == len(hostile)
    assert_reach(topo, 5999, {"b4": False})
