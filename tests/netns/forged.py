"""Packets with a source address the sending namespace does not have, framed by hand.

The kernel will not send from an address a host lacks, nor from `::ffff:a.b.c.d` over IPv6,
so these are built whole (IPv6 header, UDP header with its checksum, Ethernet frame) and
written to the client's `eth0` with an AF_PACKET socket, addressed to the server's MAC.
"""

from __future__ import annotations

import json
import sys

from tests.netns.netns import Namespace

_SEND = """
import socket, struct, sys
mac, src, dst = sys.argv[1:4]
port, payload = int(sys.argv[4]), bytes.fromhex(sys.argv[5])
s6, d6 = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
length = 8 + len(payload)
udp = struct.pack(">HHHH", 40000 + port % 20000, port, length, 0) + payload
data = s6 + d6 + struct.pack(">IxxxB", length, 17) + udp + b"\\0" * (len(udp) % 2)
total = sum(struct.unpack(f">{len(data) // 2}H", data))
while total >> 16:
    total = (total & 0xFFFF) + (total >> 16)
udp = udp[:6] + struct.pack(">H", (~total & 0xFFFF) or 0xFFFF) + udp[8:]
ip6 = struct.pack(">IHBB", 6 << 28, length, 17, 64) + s6 + d6
with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
    s.bind(("eth0", 0))
    s.send(bytes.fromhex(mac.replace(":", "")) + s.getsockname()[4] + b"\\x86\\xdd" + ip6 + udp)
"""


def mac_of(ns: Namespace, device: str = "eth0") -> str:
    (link,) = json.loads(ns.run(["ip", "-j", "link", "show", device]).stdout)
    address: str = link["address"]
    return address


def send_udp6(
    ns: Namespace, to: Namespace, source: str, dest: str, port: int, payload: bytes
) -> None:
    """From `ns`, one UDP datagram over IPv6 from `source` (any address) to `to`'s `dest`."""
    argv = [sys.executable, "-c", _SEND, mac_of(to), source, dest, str(port), payload.hex()]
    ns.run(argv)
