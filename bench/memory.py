"""Memory and rule scale: tumblerd's RSS idle, after a junk flood and with 100,000 doors open,
and knock-to-open latency as the open set grows.

Addresses are opened in bulk the way the backend opens one (the same element shape, door
comment and timeout in `inet tumbler open4`), in batches of 5,000 per transaction, from
10.216.0.0/15: nftables keeps opened doors in the kernel, so the daemon holds nothing per
open address and a knock adds one element to the same set.
"""

from __future__ import annotations

import ipaddress
import json

from bench.rig import Rig
from bench.systems import TARGET

FILL_BASE = ipaddress.IPv4Address("10.216.0.1")


def fill(rig: Rig, start: int, stop: int, batch: int = 5000) -> None:
    """Open doors for addresses start..stop-1 (of FILL_BASE) in the tumbler nft set."""
    for first in range(start, stop, batch):
        elems = [
            {
                "elem": {
                    "val": {"concat": [str(FILL_BASE + i), "tcp", TARGET]},
                    "timeout": 3600,
                    "comment": "tumbler:fill",
                }
            }
            for i in range(first, min(stop, first + batch))
        ]
        doc = {
            "nftables": [
                {
                    "add": {
                        "element": {
                            "family": "inet",
                            "table": "tumbler",
                            "name": "open4",
                            "elem": elems,
                        }
                    }
                }
            ]
        }
        rig.server.run(["nft", "-j", "-f", "-"], input=json.dumps(doc), timeout=300)


def open_count(rig: Rig, prefix: str = "") -> int:
    """Elements in open4 (whose address starts with `prefix`, if given)."""
    out = rig.server.run(["nft", "-j", "list", "set", "inet", "tumbler", "open4"], timeout=300)
    data = json.loads(out.stdout)
    n = 0
    for item in data["nftables"]:
        for raw in item.get("set", {}).get("elem", []):
            val = raw["elem"]["val"] if isinstance(raw, dict) and "elem" in raw else raw
            address = val["concat"][0] if isinstance(val, dict) else str(val)
            if address.startswith(prefix):
                n += 1
    return n
