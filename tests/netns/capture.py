"""A packet capture inside a lab namespace: tcpdump writes a pcap, dpkt reads it back.

    cap = Capture(topo.server, tmp_path / "server.pcap").start()   # returns once listening
    ...                                                            # traffic
    cap.stop()
    replies = [p for p in cap.packets() if p.src == topo.server4]

tcpdump runs with `--immediate-mode` (packets leave the kernel's ring at once, not a
block per second: at SIGTERM tcpdump would drop what the ring still held), `-U` (each
packet written as it arrives, so `packets` can read the file while it grows) and
`-Z root` (it would otherwise drop to its own user and could not write into the
test's folder).
"""

from __future__ import annotations

import select
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.netns.netns import Namespace


@dataclass(frozen=True)
class Packet:
    """The parts of one captured IP packet the tests look at."""

    src: str
    dst: str
    proto: str  # udp, tcp, icmp, icmp6 or the IP protocol number as text
    sport: int = 0
    dport: int = 0
    icmp_type: int = -1

    @property
    def is_icmp_error(self) -> bool:
        """An ICMP(v6) error (unreachable, time exceeded...) rather than ND, MLD or echo."""
        if self.proto == "icmp":
            return self.icmp_type not in (0, 8)
        return self.proto == "icmp6" and self.icmp_type < 128


class Capture:
    """tcpdump on one interface of a namespace, into a pcap file."""

    def __init__(self, ns: Namespace, path: Path, iface: str = "eth0") -> None:
        self.ns = ns
        self.path = path
        self.iface = iface
        self.proc: subprocess.Popen[Any] | None = None

    def start(self, timeout: float = 5.0) -> Capture:
        """Start tcpdump; return once it says it is listening (so nothing is missed)."""
        self.proc = self.ns.popen(
            [
                *("tcpdump", "-i", self.iface, "-n", "--immediate-mode", "-U"),
                *("-Z", "root", "-w", str(self.path)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        said = b""
        while b"listening on" not in said:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stderr], [], [], max(0.0, left))
            line = self.proc.stderr.readline() if ready else b""
            if not line:
                self.proc.kill()
                raise RuntimeError(f"tcpdump in {self.ns.name} did not start: {said!r}")
            said += line
        return self

    def stop(self) -> None:
        """Stop tcpdump (SIGTERM: it flushes and closes the file)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def packets(self) -> list[Packet]:
        """Every IPv4 and IPv6 packet in the capture, in order (ARP and others left out).

        Safe to call while tcpdump runs: a record cut short at the end is skipped.
        """
        import dpkt

        with open(self.path, "rb") as f:
            try:
                frames = list(dpkt.pcap.Reader(f))
            except (dpkt.NeedData, dpkt.UnpackError, ValueError):
                return []  # not even the file header is written yet
        found: list[Packet] = []
        for _, frame in frames:
            try:
                ip = dpkt.ethernet.Ethernet(frame).data
            except (dpkt.NeedData, dpkt.UnpackError):
                continue
            if isinstance(ip, dpkt.ip.IP):
                family = socket.AF_INET
            elif isinstance(ip, dpkt.ip6.IP6):
                family = socket.AF_INET6
            else:
                continue
            src = socket.inet_ntop(family, ip.src)
            dst = socket.inet_ntop(family, ip.dst)
            l4 = ip.data
            if isinstance(l4, dpkt.udp.UDP | dpkt.tcp.TCP):
                proto = "udp" if isinstance(l4, dpkt.udp.UDP) else "tcp"
                found.append(Packet(src, dst, proto, l4.sport, l4.dport))
            elif isinstance(l4, dpkt.icmp.ICMP):
                found.append(Packet(src, dst, "icmp", icmp_type=l4.type))
            elif isinstance(l4, dpkt.icmp6.ICMP6):
                found.append(Packet(src, dst, "icmp6", icmp_type=l4.type))
            else:
                found.append(Packet(src, dst, str(ip.p)))
        return found
