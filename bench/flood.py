"""Junk floods: what a daemon discards per CPU-second, and whether valid knocks get through.

The flood agent sends from spoofed sources in 10.215.0.0/16 through a raw socket, unpaced
(one Python process, as fast as it can). A daemon's CPU time comes from /proc/PID/stat
before and after; tumblerd's discards from its counters (`tumblerd status --json`),
fwknopd's from the server namespace's UDP counters (/proc/net/snmp: InDatagrams delivered
to its socket), since fwknopd counts nothing itself.
"""

from __future__ import annotations

import hashlib
import time

from bench.latency import knock_once
from bench.rig import SERVER_F, Rig, proc_cpu_seconds
from bench.systems import FWKNOP_PORT, TUMBLER_PORT, System, Tumblerd

# What tumblerd counts as a discarded datagram; `shed` is new-source work its budget refused.
DISCARDS = ("malformed", "no-door", "shed", "bad-mac", "clock-skew", "replay")
SPA_SIZE = 225  # base64 characters of an fwknop SPA packet with HMAC, as the client builds it


def sha256_ceiling(n: int = 1_000_000) -> float:
    """hashlib.sha256 of 90 bytes, digests per CPU-second, in this Python."""
    data = bytes(range(90))
    sha = hashlib.sha256
    t = time.process_time()
    for _ in range(n):
        sha(data).digest()
    return n / (time.process_time() - t)


def udp_in(rig: Rig) -> dict[str, int]:
    """The server namespace's UDP counters."""
    lines = rig.server.run(["cat", "/proc/net/snmp"]).stdout.splitlines()
    rows = [line.split() for line in lines if line.startswith("Udp:")]
    return dict(zip(rows[0][1:], map(int, rows[1][1:]), strict=True))


def settle(rig: Rig, seconds: float = 30.0) -> None:
    """Wait until the server's sockets have drained their receive queues."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        queued = 0
        for line in rig.server.run(["cat", "/proc/net/udp"]).stdout.splitlines()[1:]:
            fields = line.split()
            queued += int(fields[4].split(":")[1], 16)
        if queued == 0:
            return
        time.sleep(0.05)


def tumbler_discards(system: Tumblerd) -> int:
    counters = system.counters()
    return sum(v for k, v in counters.items() if k in DISCARDS or k.startswith("signed-"))


def cpu_seconds(system: System) -> float:
    """CPU time of a daemon and of its workers: children's time counts only once reaped."""
    pids = system.pids() if isinstance(system, Tumblerd) else [system.pid]
    return sum(proc_cpu_seconds(pid) for pid in pids)


def per_worker(system: System) -> dict[int, int]:
    """Datagrams each worker of a tumblerd decided so far (empty with one process)."""
    if not isinstance(system, Tumblerd):
        return {}
    return {w["worker"]: sum(w["counters"].values()) for w in system.status().get("workers", [])}


def junk_target(system: System) -> tuple[bool, int, str, int]:
    """(is tumblerd, port, junk kind, junk size) of the system a flood is aimed at."""
    if isinstance(system, Tumblerd) and system.kind == "fwknop":
        return True, FWKNOP_PORT, "fwknop", SPA_SIZE  # SPA-shaped junk at its fwknop door
    if isinstance(system, Tumblerd):
        return True, TUMBLER_PORT, "tumbler2" if system.version == 2 else "tumbler", 0
    return False, FWKNOP_PORT, "fwknop", SPA_SIZE


def junk_rate(
    rig: Rig,
    system: System,
    count: int,
    sources: int,
    warmup: int = 20000,
    variety: int = 4096,
    base: str = "10.215.1.1",
    kind: str = "",
    key_id: str = "",
    warmup_base: str | None = None,
    distinct: int | None = None,
) -> dict:
    """Flood `count` junk datagrams; return discards per CPU-second of the daemon.

    `variety` distinct payloads are paired round-robin with `sources` addresses from
    `base` on; the warm-up (caches, allocator) sends `warmup` of the same packets first,
    or from `warmup_base` on. `distinct` packets are built (the agent's default: up to
    65,536); with `distinct` >= `count` each datagram comes from a source of its own.
    `kind` and `key_id` override the system's own junk (signed-knock junk, say).
    """
    is_tumbler, port, default_kind, size = junk_target(system)
    flood = {"kind": kind or default_kind, "size": size, "dst": SERVER_F, "port": port}
    flood |= {"sources": sources, "variety": variety, "base": base, "key_id": key_id}
    if distinct is not None:
        flood["distinct"] = distinct
    if warmup:
        warm = flood | ({"base": warmup_base} if warmup_base else {})
        rig.flood_agent.call(op="flood", count=min(count, warmup), **warm)
    settle(rig)
    before = system.counters() if is_tumbler else {}
    before_n = tumbler_discards(system) if is_tumbler else udp_in(rig)["InDatagrams"]
    before_cpu = cpu_seconds(system)
    before_workers = per_worker(system)
    started = time.monotonic()
    sent = rig.flood_agent.call(op="flood", count=count, **flood)
    settle(rig)
    wall = time.monotonic() - started
    cpu = cpu_seconds(system) - before_cpu
    workers = {w: n - before_workers.get(w, 0) for w, n in per_worker(system).items()}
    after = system.counters() if is_tumbler else {}
    after_n = tumbler_discards(system) if is_tumbler else udp_in(rig)["InDatagrams"]
    handled = after_n - before_n
    return {
        "shed": after.get("shed", 0) - before.get("shed", 0),
        "sent": sent["sent"],
        "send_rate": sent["sent"] / sent["seconds"],
        "handled": handled,
        "cpu": cpu,
        "rate": handled / cpu if cpu > 0 else float("nan"),
        "wall_rate": handled / wall if wall > 0 else float("nan"),
        "workers": workers,
    }


def valid_under_flood(rig: Rig, system: System, sources, knocks: int, sources_n: int) -> dict:
    """Knock `knocks` times (fresh addresses) while an unpaced flood runs; latency of each."""
    _, port, kind, size = junk_target(system)
    rig.flood_agent.send(
        op="flood",
        kind=kind,
        size=size,
        dst=SERVER_F,
        port=port,
        seconds=600,
        count=10**12,
        sources=sources_n,
    )
    time.sleep(1.0)  # let the flood fill the queues first
    times: list[float | None] = []
    try:
        for _ in range(knocks):
            answer = knock_once(rig, system, sources.take(), limit=1.0)
            times.append(answer["seconds"] if answer["ok"] else None)
            time.sleep(0.05)
    finally:
        # The flood agent stops when its time is up; end it now by restarting it.
        stop_flood(rig)
    return {"times": times}


def stop_flood(rig: Rig) -> None:
    from bench.rig import Agent

    agent = rig.flood_agent
    agent.proc.kill()
    agent.proc.wait(5)
    rig.flood_agent = Agent(rig.flood)
