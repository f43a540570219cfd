"""`tumbler sniff` on a real capture: tcpdump in the server namespace while knocks happen.

Topology (tests/netns/netns.py): server 10.213.0.1 / fd00:213::1, client A .2, B .3. The
server is default-closed (`tumblerd firewall init`) except for one ordinary service, open to
everyone. While tcpdump records (a pcap, and live `-l` text at the same time):

- A runs `tumbler knock` on three closed ports (7000, 8000, 9000), and B, over IPv6,
  `tumbler knock` on three others (4000, 5000, 6000) in between A's knocks;
- A makes an ordinary connection to the open service (a SYN that is answered: no knock);
- A sends a Tumbler knock twice (the real client, the same minute: the same datagram), and
  B replays A's datagram byte for byte from its own address. Nothing listens on the knock
  port, so the server answers each with an ICMP port unreachable that quotes it.

The real `tumbler sniff` CLI then reads the pcap, `tcpdump -n -r` text (plain, `-tt`, `-X`
and `-v -X`, the last two with payloads) and the live text, and must report exactly those
knocks, in order, grouped by source, with the Tumbler repeats flagged as replays where the
payload is known (and, with the secret, B's named as made for A's address).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.netns.netns import (
    OPEN_WAIT,
    TUMBLERD,
    Lab,
    Namespace,
    Topology,
    can_connect,
    stop,
    wait_until,
)
from tumbler.protocols.tumbler1 import make_knock, parse_datagram

pytestmark = pytest.mark.netns

SERVICE = 2222  # open to everyone: connections to it are not knocks
KNOCK_PORT = 8675
SECRET = "sniff-test-secret"
TUMBLER = [sys.executable, "-m", "tumbler"]

_SEND = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
with socket.socket(family, socket.SOCK_DGRAM) as s:
    s.sendto(bytes.fromhex(sys.argv[3]), (sys.argv[1], int(sys.argv[2])))
"""


def tcpdump(ns: Namespace, out: Path, *args: str) -> subprocess.Popen[bytes]:
    """tcpdump on the server's eth0, stdout to `out`; returns once it is capturing."""
    with open(out, "wb") as stdout:
        proc = ns.popen(
            ["tcpdump", "-i", "eth0", "-n", "-Z", "root", "--immediate-mode", *args],
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
    assert proc.stderr is not None
    said = b""
    while b"listening on" not in said:
        ready, _, _ = select.select([proc.stderr], [], [], 5)
        line = os.read(proc.stderr.fileno(), 4096) if ready else b""  # not readline: select
        if not line:  # would not see what a buffered reader took ahead
            proc.kill()
            raise RuntimeError(f"tcpdump did not start: {said!r}")
        said += line
    return proc


def sniff(*args: str, stdin: bytes | None = None) -> str:
    """The real `tumbler sniff` CLI; fails the test on a non-zero exit."""
    proc = subprocess.run(
        [*TUMBLER, "sniff", *args], input=stdin, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


@dataclass
class Capture:
    topo: Topology
    pcap: Path
    live: Path  # the text tcpdump -l printed while capturing
    digest: str  # of A's Tumbler datagram


@pytest.fixture(scope="module")
def capture(netns_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    """One capture for the module: the lab is gone (namespaces, processes) once it is taken."""
    if shutil.which("tcpdump") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the capture tests, but tcpdump is missing", pytrace=False)
        pytest.skip("needs tcpdump")
    folder = tmp_path_factory.mktemp("sniff")
    lab = Lab()
    try:
        yield record(lab.topology(), folder)
    finally:
        lab.cleanup()


def record(topo: Topology, folder: Path) -> Capture:
    server = topo.server
    config = folder / "tumblerd.conf"
    config.write_text(
        f"[common]\n   firewall = nftables\n   state = {folder / 'state.db'}\n"
        "[door-ssh]\n   secret = unused-here\n   open = tcp/22\n"
    )
    config.chmod(0o600)
    server.run([*TUMBLERD, "firewall", "--config", str(config), "init"])
    server.run(["nft", "insert", "rule", "inet", "tumbler", "input", "tcp", "dport", str(SERVICE),
                "accept"])  # fmt: skip
    server.listen(SERVICE)

    pcap, live = folder / "server.pcap", folder / "live.txt"
    writer = tcpdump(server, folder / "writer.out", "-U", "-w", str(pcap))
    printer = tcpdump(server, live, "-l")

    def live_has(text: str) -> bool:
        return text in live.read_text()

    # A and B take turns: each knock goes out once the one before it is in the capture, so
    # the two sources interleave however slowly a busy machine starts the clients.
    turns = [
        (topo.a, topo.server4, 7000),
        (topo.b, topo.server6, 4000),
        (topo.a, topo.server4, 8000),
        (topo.b, topo.server6, 5000),
        (topo.a, topo.server4, 9000),
        (topo.b, topo.server6, 6000),
    ]
    for ns, host, port in turns:
        ns.run([*TUMBLER, "knock", host, str(port)])
        wait_until(lambda h=host, p=port: live_has(f"{h}.{p}: Flags [S]"), f"the knock on {port}")

    assert can_connect(topo.a, topo.server4, SERVICE, OPEN_WAIT)  # an ordinary connection

    at = datetime.now(UTC).replace(second=30, microsecond=0).isoformat()
    url = f"tumbler://{SECRET}@{topo.server4}/"
    topo.a.run([*TUMBLER, "--open", url, "--at", at])
    # The client would take the next minute for a second knock (client.sentknocks), so the
    # replays are sent raw: A's own datagram again from A, then from B.
    datagram = make_knock(SECRET, topo.a4, datetime.fromisoformat(at))
    for sender in (topo.a, topo.b):
        sender.run([sys.executable, "-c", _SEND, topo.server4, str(KNOCK_PORT), datagram.hex()])

    # Stop only once both captures hold the last datagram (tcpdump drops what it has not
    # yet written when it is told to stop).
    last = f"{topo.server4}.{KNOCK_PORT}: UDP"
    wait_until(lambda: live.read_text().count(last) == 3, "the live text to show 3 datagrams")
    written = ["tcpdump", "-n", "-r", str(pcap)]
    wait_until(lambda: server.run(written, check=False).stdout.count(last) == 3, "the pcap")
    stop(writer)
    stop(printer)
    return Capture(topo, pcap, live, parse_datagram(datagram))


def expected_json(cap: Capture, with_payload: bool) -> list[dict[str, Any]]:
    """(source, knocked (host, port) in order, Tumbler (number, replay_of)) per group."""
    t = cap.topo
    digest = cap.digest if with_payload else None
    return [
        {
            "address": t.a4,
            "knocks": [(t.server4, 7000), (t.server4, 8000), (t.server4, 9000)],
            "tumbler": [(1, digest, None), (2, digest, 1 if with_payload else None)],
        },
        {
            "address": t.b6,
            "knocks": [(t.server6, 4000), (t.server6, 5000), (t.server6, 6000)],
            "tumbler": [],
        },
        {
            "address": t.b4,
            "knocks": [],
            "tumbler": [(3, digest, 1 if with_payload else None)],
        },
    ]


def summary(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "address": s["address"],
            "knocks": [(k["host"], k["port"]) for k in s["knocks"]],
            "tumbler": [(x["number"], x["digest"], x["replay_of"]) for x in s["tumbler"]],
        }
        for s in report["sources"]
    ]


def test_capture_really_interleaves_the_sources(capture: Capture) -> None:
    """The premise of the grouping checks: in the capture, B knocked between A's knocks."""
    syns = re.findall(r" > \S+\.(\d+): Flags \[S\],", capture.live.read_text())
    ports = [int(port) for port in syns if int(port) != SERVICE]
    assert ports == [7000, 4000, 8000, 5000, 9000, 6000]  # each a single SYN, none resent


def test_sniff_reads_the_pcap(capture: Capture) -> None:
    t = capture.topo
    report = json.loads(sniff("--json", str(capture.pcap)))
    assert report["input"]["format"] == "pcap"
    assert summary(report) == expected_json(capture, with_payload=True)
    assert all(k["answer"] == "none" for s in report["sources"] for k in s["knocks"])
    assert [(c["source"], c["host"], c["port"]) for c in report["connections"]] == [
        (t.a4, t.server4, SERVICE)
    ]

    short = capture.digest[:16]
    assert sniff(str(capture.pcap)) == (
        f"From {t.a4}:\n"
        f"  Knock on {t.server4}:7000\n"
        f"  Knock on {t.server4}:8000\n"
        f"  Knock on {t.server4}:9000\n"
        f"  Tumbler knock #1 on {t.server4}:{KNOCK_PORT} digest {short}...\n"
        f"  Tumbler knock #2 on {t.server4}:{KNOCK_PORT} digest {short}... REPLAY of #1\n"
        f"From {t.b6}:\n"
        f"  Knock on [{t.server6}]:4000\n"
        f"  Knock on [{t.server6}]:5000\n"
        f"  Knock on [{t.server6}]:6000\n"
        f"From {t.b4}:\n"
        f"  Tumbler knock #3 on {t.server4}:{KNOCK_PORT} digest {short}... REPLAY of #1\n"
    )

    # With the secret: all three were made for A's address, so B's is plainly a replay.
    checked = json.loads(sniff("--json", "--secret", SECRET, str(capture.pcap)))
    checks = [(x["number"], x["check"]) for s in checked["sources"] for x in s["tumbler"]]
    assert [(n, c["status"], c["made_for"], c["for_source"]) for n, c in checks] == [
        (1, "match", t.a4, True),
        (2, "match", t.a4, True),
        (3, "match", t.a4, False),
    ]
    assert {c["offset_minutes"] for _, c in checks} <= {-1, 0}


@pytest.mark.parametrize(
    "flags", [["-r"], ["-X", "-r"], ["-v", "-X", "-r"], ["-tt", "-r"], ["live -l"]], ids=" ".join
)
def test_sniff_reads_tcpdump_text(capture: Capture, flags: list[str]) -> None:
    if flags == ["live -l"]:
        text = capture.live.read_bytes()
    else:
        command = ["tcpdump", "-n", *flags, str(capture.pcap)]
        text = subprocess.run(command, capture_output=True, check=True, timeout=30).stdout
    with_payload = "-X" in flags
    report = json.loads(sniff("--json", stdin=text))
    assert report["input"]["format"] == "text"
    assert summary(report) == expected_json(capture, with_payload)
    assert [c["port"] for c in report["connections"]] == [SERVICE]
    human = sniff("-", stdin=text)
    assert human.count("Knock on") == 6
    assert human.count("Tumbler knock #") == 3
    assert human.count("REPLAY of #1") == (2 if with_payload else 0)
