"""Floods from anywhere: a new source per datagram, one IPv6 /64, and the client's start-up.

verifier_rate   in-process: digest_bytes + Verifier.match_raw on junk, a new source per
                datagram (or 16 sources), per CPU-second; the verifier alone, no budget
prefix_flood    live: junk from many addresses of one IPv6 /64 (the flood namespace's
                raw socket), then a valid knock from a fresh IPv4 address; its latency

The client's start-up is bench/startup.py's.
"""

from __future__ import annotations

import ipaddress
import os
import time

from bench.latency import Sources, knock_once
from bench.rig import SERVER_F6, Rig, proc_cpu_seconds
from bench.systems import TUMBLER_PORT, Tumblerd

FLOOD64 = "fd00:216:0:1::/64"


def verifier_rate(doors: int, new_sources: bool, n: int) -> float:
    """Junk datagrams judged per CPU-second by the verifier, in this process."""
    from tumbler.config.daemon import Door
    from tumbler.decisions.verifier import Verifier
    from tumbler.protocols.tumbler1 import digest_bytes

    verifier = Verifier(
        [Door(name=f"d{i}", line=i, secret=f"secret-{i}", command="true") for i in range(doors)],
        1,
    )
    junk = [b"TUMBLER1: " + os.urandom(32).hex().encode() for _ in range(4096)]
    if new_sources:
        base = int(ipaddress.IPv4Address("10.216.0.1"))
        sources = [str(ipaddress.IPv4Address(base + i)) for i in range(n)]
    else:
        sources = [f"10.215.1.{i % 16 + 1}" for i in range(n)]
    now = time.time()
    match = verifier.match_raw
    t = time.process_time()
    for i in range(n):
        match(digest_bytes(junk[i & 4095]), sources[i], now)
    return n / (time.process_time() - t)


def prefix_flood(rig: Rig, doors: int, addresses: int, limit: bool, rounds: int) -> dict:
    """`rounds` times: `addresses` junk datagrams from as many addresses of one /64, then a
    valid knock from a fresh IPv4 address; its latency, and the daemon's CPU for it all."""
    t = Tumblerd(rig, "nftables", doors=doors, ipv6=True, limit=limit, tag=f"{doors} doors")
    times: list[float | None] = []
    sources = Sources(rig)
    with t:
        before = t.counters()
        cpu0 = proc_cpu_seconds(t.pid)
        for _ in range(rounds):
            rig.flood_agent.call(
                op="flood",
                family=6,
                prefix6=FLOOD64,
                kind="tumbler",
                dst=SERVER_F6,
                port=TUMBLER_PORT,
                count=addresses,
                sources=addresses,
                distinct=addresses,
            )
            answer = knock_once(rig, t, sources.take(), limit=10.0)
            times.append(answer["seconds"] if answer["ok"] else None)
        time.sleep(0.5)
        cpu = proc_cpu_seconds(t.pid) - cpu0
        after = t.counters()
        alive = t.alive()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("no-door", "shed", "accepted")}
    return {"times": times, "cpu": cpu, "counters": delta, "alive": alive}
