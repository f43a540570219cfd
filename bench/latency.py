"""Knock-to-open latency: from the client's send to the first TCP connection through the door.

The client agent sends the knock from a source address that has never knocked before (so
every knock opens a fresh door), then sends a SYN every `interval` seconds (a new socket
each time; a dropped SYN is simply abandoned) until one is answered.
"""

from __future__ import annotations

import statistics

from bench.rig import SERVER_C, Rig, client_address
from bench.systems import TARGET, System

INTERVAL = 0.00025


class Sources:
    """Fresh client source addresses, one per knock, for one system's run."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.next = 0

    def take(self) -> str:
        if self.next >= self.rig.clients:
            raise RuntimeError("the rig ran out of client addresses; raise --clients")
        self.next += 1
        return client_address(self.next - 1)


def knock_once(rig: Rig, system: System, src: str, limit: float = 2.0) -> dict:
    request = system.knock(src)
    return rig.client_agent.call(
        op="knock", src=src, dst=SERVER_C, port=TARGET, limit=limit, interval=INTERVAL, **request
    )


def measure(rig: Rig, system: System, sources: Sources, knocks: int, warmup: int = 2) -> dict:
    """Latencies of `knocks` knocks (after `warmup` unmeasured ones), in seconds."""
    for _ in range(warmup):
        knock_once(rig, system, sources.take())
    times, exec_times, failed = [], [], 0
    for _ in range(knocks):
        answer = knock_once(rig, system, sources.take())
        if not answer["ok"]:
            failed += 1
            continue
        times.append(answer["seconds"])
        if "exec_seconds" in answer:
            exec_times.append(answer["seconds"] - answer["exec_seconds"])
    return summary(times, failed, exec_times)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(times: list[float], failed: int = 0, after_exit: list[float] | None = None) -> dict:
    out = {
        "n": len(times),
        "failed": failed,
        "p50": percentile(times, 0.5),
        "p90": percentile(times, 0.9),
        "p99": percentile(times, 0.99),
        "max": max(times) if times else float("nan"),
        "mean": statistics.fmean(times) if times else float("nan"),
    }
    if after_exit:
        out["exit_p50"] = percentile(after_exit, 0.5)
        out["exit_p99"] = percentile(after_exit, 0.99)
    return out
