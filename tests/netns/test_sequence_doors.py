"""Classic port-knock sequence doors end to end: a real tumblerd, real SYNs, a real firewall.

Topology (tests/netns/netns.py): server 10.213.0.1 / fd00:213::1, client A .2, B .3. The
server is default-closed (`tumblerd firewall init`, nftables) with a TCP listener on PORT
behind it. tumblerd watches connection attempts through its own NFLOG rules (the default
`sequence_source = nflog`) or follows a kernel-format firewall log (`file:PATH`), and a
completed sequence opens PORT for the knocking address alone (and runs the door's command,
which appends "NAME IP" to a file).

A negative ("this opens nothing") is checked without sleeping on a guess: the same source
then completes the `sentinel` door, and since the daemon handles one source's attempts in
order and logs each completion as it happens, the sentinel's completion in the log proves
the attempts before it were seen and judged.

knockd interop: knockd's own `knock` client opens a tumblerd door, and `tumbler knock` opens
a real knockd door (knockd reads the interface with libpcap, before the firewall drops the
SYNs). A scan that walks across a door's ports in order opens knockd's door (its issue #71)
and nothing in tumblerd.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.netns.forged import send_udp6
from tests.netns.netns import (
    BLOCKED,
    OPEN_WAIT,
    TUMBLERD,
    Namespace,
    Topology,
    can_connect,
    connect_all,
    start_tumblerd,
    stop,
    wait_until,
)

pytestmark = pytest.mark.netns

PORT = 2222  # the protected service
TUMBLER = [sys.executable, "-m", "tumbler"]

DOORS = """\
[door-seq]
   sequence = 7000, 8000, 9000
   sequence_timeout = 5
   open = tcp/{port}
   timeout = 60
   command = echo "%NAME% %IP%" >> {out}
[door-udp]
   sequence = 7100, udp/500, 7300
   sequence_timeout = 5
   open = tcp/{port}
   timeout = 60
   command = echo "%NAME% %IP%" >> {out}
[door-near]
   # close together, so that a short scan walks across all three in order
   sequence = 6000, 6002, 6004
   sequence_timeout = 5
   command = echo "%NAME% %IP%" >> {out}
[door-quick]
   sequence = 7400, 7500, 7600
   sequence_timeout = 2
   command = echo "%NAME% %IP%" >> {out}
[door-udponly]
   sequence = udp/7201, udp/7203, udp/7205
   sequence_timeout = 5
   command = echo "%NAME% %IP%" >> {out}
[door-sentinel]
   sequence = 7700, 7800
   sequence_timeout = 5
   command = echo "%NAME% %IP%" >> {out}
"""

_COMPLETED = re.compile(r"knock sequence completed: door (\S+) from (\S+)")

# A fast port scan: one non-blocking SYN per port, FIRST to LAST (either direction).
_SCAN = """
import socket, sys
host, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
step = 1 if last >= first else -1
for port in range(first, last + step, step):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex((host, port))
    s.close()
"""


def write_config(folder: Path, topo: Topology, doors: str, common: str = "") -> Path:
    """A tumblerd config for the server namespace, all its files in `folder`."""
    config = folder / "tumblerd.conf"
    config.write_text(
        "[common]\n"
        f"   listen = {topo.server4}, {topo.server6}\n"
        f"   log = {folder / 'tumblerd.log'}\n"
        f"   state = {folder / 'state.db'}\n"
        f"   control = {folder / 'control.sock'}\n"
        "   firewall = nftables\n"
        f"{common}" + doors.format(port=PORT, out=folder / "out")
    )
    config.chmod(0o600)
    return config


def close_server(topo: Topology, config: Path) -> None:
    """Default-closed policy from `tumblerd firewall init`, and a listener on PORT behind it."""
    topo.server.run([*TUMBLERD, "firewall", "--config", str(config), "init"])
    topo.server.listen(PORT)


@dataclass
class SeqServer:
    topo: Topology
    folder: Path
    proc: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        path = self.folder / "tumblerd.log"
        return path.read_text() if path.exists() else ""

    def completions(self) -> list[tuple[str, str]]:
        """(door, address) of every sequence the daemon logged as completed, in order."""
        return _COMPLETED.findall(self.log)

    def commands(self) -> list[str]:
        out = self.folder / "out"
        return out.read_text().splitlines() if out.exists() else []

    def wait_completed(self, door: str, address: str, count: int = 1) -> None:
        wait_until(
            lambda: self.completions().count((door, address)) >= count,
            f"door {door} completed by {address} (log: {self.log})",
        )

    def sentinel(self, ns: Namespace, host: str, address: str) -> None:
        """Knock the sentinel door from `ns` and wait until it is seen: all before it was too."""
        count = self.completions().count(("sentinel", address)) + 1
        knock(ns, host, "7700", "7800")
        self.wait_completed("sentinel", address, count)


def knock(ns: Namespace, host: str, *ports: str, delay: int | None = None) -> None:
    """`tumbler knock HOST PORT...` from `ns`, the real CLI."""
    extra = ["--delay", str(delay)] if delay is not None else []
    ns.run([*TUMBLER, "knock", *extra, host, *ports])


def scan(ns: Namespace, host: str, first: int, last: int) -> None:
    ns.run([sys.executable, "-c", _SCAN, host, str(first), str(last)], timeout=60)


def check_reach(topo: Topology, family: int, want: dict[str, bool]) -> None:
    """Assert whether A and B can connect to PORT: one expected to connect may take
    OPEN_WAIT seconds on a busy machine, one expected to be blocked gets BLOCKED seconds."""
    host = topo.server4 if family == 4 else topo.server6
    client = {"a": topo.a, "b": topo.b}
    names = list(want)
    got = connect_all(
        [(client[n], host, PORT) for n in names],
        timeouts=[OPEN_WAIT if want[n] else BLOCKED for n in names],
    )
    assert dict(zip(names, got, strict=True)) == want


@pytest.fixture
def seq_server(topology: Topology, tmp_path: Path) -> Iterator[SeqServer]:
    """Default-closed server running tumblerd with the DOORS, seen through nflog."""
    config = write_config(tmp_path, topology, DOORS)
    close_server(topology, config)
    proc = start_tumblerd(topology.server, config, tmp_path / "tumblerd.log")
    yield SeqServer(topology, tmp_path, proc)
    # The lab kills what is left and deletes the namespaces, rules and all.


# ------------------------------------------------------------------------------ nflog


@pytest.mark.parametrize("family", [4, 6])
def test_sequence_opens_the_port_for_the_knocker_alone(seq_server: SeqServer, family: int) -> None:
    topo = seq_server.topo
    host, a = (topo.server4, topo.a4) if family == 4 else (topo.server6, topo.a6)
    check_reach(topo, family, {"a": False, "b": False})

    knock(topo.a, host, "7000", "8000", "9000")
    seq_server.wait_completed("seq", a)
    wait_until(lambda: f"door seq: opened tcp/{PORT} for {a} until" in seq_server.log, "open")
    check_reach(topo, family, {"a": True, "b": False})
    wait_until(lambda: f"seq {a}" in seq_server.commands(), "the door's command")
    assert seq_server.completions() == [("seq", a)]  # completed once, by A alone

    # tumblerd removes its own logging table when it stops.
    assert "tumbler_seq" in topo.server.run(["nft", "list", "tables"]).stdout
    assert stop(seq_server.proc) == 0
    assert "tumbler_seq" not in topo.server.run(["nft", "list", "tables"]).stdout
    assert "tumblerd stopped (sequence 1)" in seq_server.log


def test_wrong_order_incomplete_and_slow_sequences_open_nothing(seq_server: SeqServer) -> None:
    topo = seq_server.topo
    host, a = topo.server4, topo.a4
    knock(topo.a, host, "9000", "8000", "7000")  # reversed
    knock(topo.a, host, "7000", "9000", "8000")  # a step skipped, then back
    knock(topo.a, host, "7000", "8000", "7100", "9000")  # another port between two knocks
    knock(topo.a, host, "7000", "8000")  # never finished
    # Right, but over its 2 s limit: once the daemon has read A's first knock (B's sentinel,
    # knocked after it, is seen), the rest is knocked more than 2 s later by its own clock.
    knock(topo.a, host, "7400")
    seq_server.sentinel(topo.b, host, topo.b4)
    time.sleep(2.5)
    knock(topo.a, host, "7500", "7600")
    knock(topo.a, host, "7100", "500", "7300")  # the UDP step knocked as TCP
    seq_server.sentinel(topo.a, host, a)
    assert seq_server.completions() == [("sentinel", topo.b4), ("sentinel", a)]
    check_reach(topo, 4, {"a": False, "b": False})

    # The same doors do open when knocked right: the negatives above were not vacuous.
    knock(topo.a, host, "7400", "7500", "7600")
    seq_server.wait_completed("quick", a)
    knock(topo.a, host, "7000", "8000", "9000")
    seq_server.wait_completed("seq", a)
    check_reach(topo, 4, {"a": True, "b": False})


@pytest.mark.parametrize("family", [4, 6])
def test_sequence_with_a_udp_step(seq_server: SeqServer, family: int) -> None:
    topo = seq_server.topo
    host, a = (topo.server4, topo.a4) if family == 4 else (topo.server6, topo.a6)
    knock(topo.a, host, "7100", "udp/500", "7300")
    seq_server.wait_completed("udp", a)
    check_reach(topo, family, {"a": True, "b": False})
    assert seq_server.completions() == [("udp", a)]


def test_ipv4_mapped_source_completes_nothing(seq_server: SeqServer) -> None:
    """B knocks door `udponly` over IPv6 from `::ffff:<A's IPv4>`: the events are dropped,
    not taken for A's IPv4 address; from B's own IPv6 address the same packets open."""
    topo = seq_server.topo
    a4, b6 = topo.a4, topo.b6
    for source in (f"::ffff:{a4}", b6):
        for port in (7201, 7203, 7205):
            send_udp6(topo.b, topo.server, source, topo.server6, port, b"knock")
    seq_server.wait_completed("udponly", b6)
    seq_server.sentinel(topo.a, topo.server4, a4)
    assert seq_server.completions() == [("udponly", b6), ("sentinel", a4)]


# A client that knocks with blocking connects: the kernel resends the first SYN after about
# a second, by which time the second knock has gone out.
_RESEND = """
import socket, sys, time
host = sys.argv[1]
def syn(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex((host, port))
    return s
first = syn(7000)
time.sleep(0.3)
syn(8000).close()
time.sleep(1.3)
first.close()
syn(9000).close()
"""

PROBE = """
table inet probe {
    chain count {
        type filter hook input priority -300; policy accept;
        tcp dport 7000 counter
    }
}
"""


def test_a_resent_knock_does_not_reset_the_sequence(seq_server: SeqServer) -> None:
    topo = seq_server.topo
    topo.server.run(["nft", "-f", "-"], input=PROBE)
    topo.a.run([sys.executable, "-c", _RESEND, topo.server4])
    seq_server.wait_completed("seq", topo.a4)
    counted = topo.server.run(["nft", "list", "chain", "inet", "probe", "count"]).stdout
    assert "counter packets 2 " in counted  # the first knock was sent twice
    check_reach(topo, 4, {"a": True, "b": False})


def test_port_scans_open_nothing(seq_server: SeqServer) -> None:
    topo = seq_server.topo
    host, a, b = topo.server4, topo.a4, topo.b4
    # B: every port, up and then down, crossing each door's ports in order both ways.
    scan(topo.b, host, 1, 65535)
    scan(topo.b, host, 65535, 1)
    # (B's attempts are logged from its first knock port on, 6000, until the per-source
    # budget of 40 runs out and resets it: the matcher sees 6000, 6001, 6002... first.)
    # A: short scans across door `near` (6000, 6002, 6004), within A's own logging budget,
    # so every attempt reaches the matcher, and it is the matcher that refuses them.
    scan(topo.a, host, 5996, 6008)
    scan(topo.a, host, 6008, 5996)
    seq_server.sentinel(topo.a, host, a)
    check_reach(topo, 4, {"a": False, "b": False})
    assert [who for _, who in seq_server.completions()] == [a]  # the sentinel alone
    assert not any(line.endswith(f" {b}") for line in seq_server.commands())

    knock(topo.a, host, "7000", "8000", "9000")  # the daemon still opens for a real knock
    seq_server.wait_completed("seq", a)
    check_reach(topo, 4, {"a": True, "b": False})


SLOW_DOOR = """\
[door-slow]
   sequence = 7000, 8000, 9000
   sequence_timeout = {minutes}m
   command = echo "%NAME% %IP%" >> {out}
"""


def tracked(ns: Namespace) -> dict[str, list[dict[str, Any]]]:
    """The `knocking4`/`knocking6` sets of tumblerd's logging table, as `nft -j` lists them:
    the set, then its elements; {} while the table is not there (a reload replaces it)."""
    sets: dict[str, list[dict[str, Any]]] = {}
    for name in ("knocking4", "knocking6"):
        argv = ["nft", "-j", "list", "set", "inet", "tumbler_seq", name]
        listed = ns.run(argv, check=False)
        if listed.returncode != 0:
            return {}
        (found,) = [item["set"] for item in json.loads(listed.stdout)["nftables"] if "set" in item]
        sets[name] = [found, *(e["elem"] for e in found.get("elem", []) if isinstance(e, dict))]
    return sets


def test_a_long_sequence_timeout_tracks_knocking_sources_as_long(
    topology: Topology, tmp_path: Path
) -> None:
    """With a 5 min sequence, the kernel logs a knocking source's other attempts for longer
    than 5 min (not a fixed 120 s), so a scan paced slower than that is still seen resetting
    the sequence; a reload to a longer timeout tracks longer still."""
    topo = topology
    config = write_config(tmp_path, topo, SLOW_DOOR.replace("{minutes}", "5"))
    proc = start_tumblerd(topo.server, config, tmp_path / "tumblerd.log")
    sets = tracked(topo.server)
    assert sets["knocking4"][0]["timeout"] > 5 * 60
    assert sets["knocking6"][0]["timeout"] > 5 * 60

    # A's first knock puts A in the set, to expire after the set's timeout, not 120 s.
    knock(topo.a, topo.server4, "7000")
    (element,) = wait_until(lambda: tracked(topo.server)["knocking4"][1:], "A to be tracked")
    assert element["val"] == topo.a4
    assert element["expires"] > 5 * 60 - 30

    config.write_text(config.read_text().replace("sequence_timeout = 5m", "sequence_timeout = 20m"))
    proc.send_signal(signal.SIGHUP)

    def reloaded() -> bool:
        sets = tracked(topo.server)
        return bool(sets) and all(sets[name][0]["timeout"] > 20 * 60 for name in sets)

    wait_until(reloaded, "the reload to track sources past the new 20 min timeout")
    assert stop(proc) == 0


# ---------------------------------------------------------------------- firewall log file


_sports = itertools.count(40000)


def kernel_line(src: str, dst: str, proto: str, dport: int, flags: str = "SYN") -> str:
    """A LOG target line as the kernel prints it, with the article's prefix, via syslog.

    IPv6 addresses come out of the kernel's LOG in full, zero-padded form.
    """
    sport = next(_sports)  # each attempt from a fresh source port, as a client's would be
    stamp = "Nov 27 08:40:01 server kernel: [ 4242.123456] FIREWALL:"
    mac = "MAC=02:00:00:00:00:01:02:00:00:00:00:02:"
    if ":" in src:
        full = [ipaddress.IPv6Address(x).exploded for x in (src, dst)]
        head = (
            f"{stamp}IN=eth0 OUT= {mac}86:dd SRC={full[0]} DST={full[1]} LEN=80 TC=0 "
            "HOPLIMIT=64 FLOWLBL=328721 "
        )
    else:
        head = (
            f"{stamp}IN=eth0 OUT= {mac}08:00 SRC={src} DST={dst} LEN=60 TOS=0x00 "
            "PREC=0x00 TTL=64 ID=4711 DF "
        )
    if proto == "udp":
        return f"{head}PROTO=UDP SPT={sport} DPT={dport} LEN=9 \n"
    return f"{head}PROTO=TCP SPT={sport} DPT={dport} WINDOW=64240 RES=0x00 {flags} URGP=0 \n"


def append(path: Path, *lines: str) -> None:
    with open(path, "a") as handle:
        handle.writelines(lines)


def holds_open(pid: int, path: Path) -> bool:
    """True once process `pid` has `path` open (the follower has taken its position)."""
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue
    return False


def test_file_source_follows_a_rotated_firewall_log(topology: Topology, tmp_path: Path) -> None:
    """`sequence_source = file:PATH`, fed the lines syslog would write.

    The kernel's LOG target writes to the host's kernel log, which a test must not touch, so
    the test appends lines in the kernel's format itself, about addresses of the lab, and a
    completed sequence opens the real port in the server namespace all the same.
    """
    topo = topology
    kern = tmp_path / "kern.log"
    kern.write_text("Nov 27 08:39:59 server kernel: [ 4240.000000] booted long ago\n")
    config = write_config(tmp_path, topo, DOORS, common=f"   sequence_source = file:{kern}\n")
    close_server(topo, config)
    proc = start_tumblerd(topo.server, config, tmp_path / "tumblerd.log")
    server = SeqServer(topo, tmp_path, proc)
    assert "following firewall log" in server.log
    wait_until(lambda: holds_open(proc.pid, kern), "tumblerd to open the log file")
    srv4, a4, b4 = topo.server4, topo.a4, topo.b4

    def sentinel(address: str, dst: str) -> None:
        count = server.completions().count(("sentinel", address)) + 1
        append(kern, kernel_line(address, dst, "tcp", 7700), kernel_line(address, dst, "tcp", 7800))
        server.wait_completed("sentinel", address, count)

    # Out of order, or with another attempt in between, two sources interleaved; then a
    # third source whose last "knock" is no new connection (ACK, SYN-ACK), with log noise.
    a6, srv6 = topo.a6, topo.server6
    append(
        kern,
        kernel_line(b4, srv4, "tcp", 7000),
        kernel_line(a4, srv4, "tcp", 7000),
        kernel_line(b4, srv4, "tcp", 8000),
        kernel_line(a4, srv4, "tcp", 9000),  # A skips 8000...
        kernel_line(b4, srv4, "tcp", 6500),  # ...B knocks on another closed port
        kernel_line(a4, srv4, "tcp", 8000),
        kernel_line(b4, srv4, "tcp", 9000),
        kernel_line(a6, srv6, "tcp", 7000),
        kernel_line(a6, srv6, "tcp", 8000),
        kernel_line(a6, srv6, "tcp", 9000, flags="ACK PSH"),
        kernel_line(a6, srv6, "tcp", 9000, flags="ACK SYN"),
        "Nov 27 08:40:02 server kernel: [ 4243.000000] eth0: link up\n",
    )
    for address, dst in ((b4, srv4), (a4, srv4), (a6, srv6)):
        sentinel(address, dst)
    assert sorted(server.completions()) == [("sentinel", x) for x in sorted((a4, b4, a6))]
    check_reach(topo, 4, {"a": False, "b": False})

    # Lines in the kernel's format written by another program (`logger` as user alice, or
    # a tag inside the message) are not the kernel's: B's forged sequence opens nothing,
    # and the daemon warns that this file mixes facilities.
    assert "also holds lines from" not in server.log
    append(
        kern,
        kernel_line(b4, srv4, "tcp", 7000).replace(" kernel: ", " alice: "),
        kernel_line(b4, srv4, "tcp", 8000).replace(" kernel: ", " alice: kernel: "),
        kernel_line(b4, srv4, "tcp", 9000).replace(" kernel: ", " alice: "),
    )
    sentinel(b4, srv4)
    assert server.completions().count(("seq", b4)) == 0
    assert f"firewall log {kern} also holds lines from 'alice'" in server.log

    # A's knocks in order, with logrotate in the middle: the second line still goes to the
    # renamed file (syslog has not reopened yet), the third to the new file.
    append(kern, kernel_line(a4, srv4, "tcp", 7000))
    kern.rename(tmp_path / "kern.log.1")
    append(tmp_path / "kern.log.1", kernel_line(a4, srv4, "tcp", 8000))
    append(kern, kernel_line(a4, srv4, "tcp", 9000))
    server.wait_completed("seq", a4)
    check_reach(topo, 4, {"a": True, "b": False})
    wait_until(lambda: f"seq {a4}" in server.commands(), "the door's command")

    # IPv6 lines (full-form addresses) and a UDP step, in the new file.
    append(
        kern,
        kernel_line(a6, srv6, "tcp", 7100),
        kernel_line(a6, srv6, "udp", 500),
        kernel_line(a6, srv6, "tcp", 7300),
    )
    server.wait_completed("udp", a6)
    check_reach(topo, 6, {"a": True, "b": False})
    assert [c for c in server.completions() if c[0] != "sentinel"] == [
        ("seq", a4),
        ("udp", a6),
    ]
    assert stop(proc) == 0


# -------------------------------------------------------------------------------- knockd


def _program(name: str) -> str:
    path = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin:/sbin")
    if path is None:
        reason = f"knockd interop needs knockd's {name} (Debian package knockd)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the knockd tests, but: {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.mark.parametrize("family", [4, 6])
def test_knockd_knock_client_opens_a_tumblerd_door(seq_server: SeqServer, family: int) -> None:
    knock_client = _program("knock")
    topo = seq_server.topo
    v6 = ["-6"] if family == 6 else ["-4"]
    host, a = (topo.server4, topo.a4) if family == 4 else (topo.server6, topo.a6)
    topo.a.run([knock_client, *v6, "-d", "100", host, "7000", "8000", "9000"])
    seq_server.wait_completed("seq", a)
    check_reach(topo, family, {"a": True, "b": False})
    b = topo.b4 if family == 4 else topo.b6
    topo.b.run([knock_client, *v6, "-d", "100", host, "7100", "500:udp", "7300"])
    seq_server.wait_completed("udp", b)
    check_reach(topo, family, {"a": True, "b": True})
    topo.a.run([knock_client, *v6, "-u", "-d", "100", host, "7201", "7203", "7205"])  # all UDP
    seq_server.wait_completed("udponly", a)
    assert seq_server.completions() == [("seq", a), ("udp", b), ("udponly", a)]


@dataclass
class Knockd:
    folder: Path
    out: Path

    def opened_for(self) -> list[str]:
        return self.out.read_text().split() if self.out.exists() else []


def start_knockd(topo: Topology, folder: Path, doors: str) -> Knockd:
    """Real knockd in the foreground in the server namespace (the lab kills it)."""
    knockd = _program("knockd")
    out, log = folder / "knockd.out", folder / "knockd.log"
    config = folder / "knockd.conf"
    config.write_text(
        f"[options]\n    logfile = {log}\n    Interface = eth0\n{doors.format(out=out)}"
    )
    with open(folder / "knockd.stdout", "wb") as stdout:
        proc = topo.server.popen(
            [knockd, "-c", str(config), "-i", "eth0", "-D"], stdout=stdout, stderr=subprocess.STDOUT
        )

    def started() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"knockd exited: {(folder / 'knockd.stdout').read_text()}")
        return log.exists() and "listening on eth0" in log.read_text()

    wait_until(started, "knockd to listen")
    return Knockd(folder, out)


# knockd's door runs a shell command: note the address, and let it through tumbler's
# default-closed policy for 60 s (an element of the set `tumblerd firewall init` made).
KNOCKD_DOOR = (
    "[openSSH]\n"
    "    sequence = 7000,8000,9000\n"
    "    seq_timeout = 30\n"
    "    tcpflags = syn\n"
    "    command = echo %IP% >> {out}; "
    f"nft add element inet tumbler open%V% {{{{ %IP% . tcp . {PORT} timeout 60s }}}}\n"
)


@pytest.mark.parametrize("family", [4, 6])
def test_tumbler_knock_opens_a_knockd_door(topology: Topology, tmp_path: Path, family: int) -> None:
    topo = topology
    close_server(topo, write_config(tmp_path, topo, DOORS))  # tumblerd itself is not running
    door = KNOCKD_DOOR.replace("%V%", str(family))
    knockd = start_knockd(topo, tmp_path, door)
    host, a = (topo.server4, topo.a4) if family == 4 else (topo.server6, topo.a6)
    check_reach(topo, family, {"a": False, "b": False})
    knock(topo.a, host, "7000", "8000", "9000")
    wait_until(lambda: knockd.opened_for() == [a], "knockd to run its command for A")
    wait_until(lambda: can_connect(topo.a, host, PORT, BLOCKED), "the port to open for A")
    check_reach(topo, family, {"a": True, "b": False})


NEAR_KNOCKD_DOOR = """\
[near]
    sequence = 6000,6002,6004
    seq_timeout = 30
    tcpflags = syn
    command = echo %IP% >> {out}
"""


def test_a_scan_that_opens_knockd_opens_nothing_in_tumblerd(
    seq_server: SeqServer, tmp_path: Path
) -> None:
    """The same door, the same short scan, both daemons watching: knockd opens, tumblerd not."""
    topo = seq_server.topo
    knockd = start_knockd(topo, tmp_path, NEAR_KNOCKD_DOOR)
    scan(topo.b, topo.server4, 5996, 6008)
    wait_until(lambda: knockd.opened_for() == [topo.b4], "knockd to open for the scan")
    seq_server.sentinel(topo.b, topo.server4, topo.b4)
    assert seq_server.completions() == [("sentinel", topo.b4)]
