"""Prometheus metrics: the daemon's counters and state, read at scrape time and served over HTTP.

Nothing is counted twice: the collector reads the daemon's own `Stats` and state through a
snapshot taken on the daemon's event loop, so the receive path pays nothing for metrics and
a scrape never sees a half-updated counter. prometheus-client is an optional extra
(`tumbler[metrics]`); without it the daemon runs and says what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tumbler.daemon.stats import DATAGRAM_OUTCOMES

log = logging.getLogger("tumblerd")

MISSING = (
    "metrics are configured but the prometheus-client package is missing; serving none "
    "(install it: pip install 'tumbler[metrics]', or apt install python3-prometheus-client)"
)


@dataclass(frozen=True)
class Snapshot:
    """The daemon's numbers at one moment."""

    outcomes: Mapping[str, int]
    accepted_by_door: Mapping[str, int]
    open_by_backend: Mapping[str, int]
    replay_store: str
    replay_up: bool
    sequence_sources: int
    workers: Mapping[str, int]
    doors: tuple[str, ...] = ()
    firewall_failures: int = 0
    sequences: int = 0


def families(snap: Snapshot) -> Iterator[Any]:
    """The metric families of one snapshot (prometheus_client objects)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    datagrams = CounterMetricFamily(
        "tumbler_datagrams",
        "Knock datagrams received, by outcome (clock-skew: right key, stale or future time)",
        labels=["outcome"],
    )
    for outcome in DATAGRAM_OUTCOMES:
        datagrams.add_metric([outcome], snap.outcomes.get(outcome, 0))
    yield datagrams
    accepted = CounterMetricFamily(
        "tumbler_knocks_accepted",
        "Knocks (datagrams or completed sequences) that opened a door, by door",
        labels=["door"],
    )
    for door in sorted({*snap.doors, *snap.accepted_by_door}):
        accepted.add_metric([door], snap.accepted_by_door.get(door, 0))
    yield accepted
    yield CounterMetricFamily(
        "tumbler_sequences_completed", "Port-knock sequences completed", value=snap.sequences
    )
    yield CounterMetricFamily(
        "tumbler_firewall_failures",
        "Accepted knocks whose firewall change failed",
        value=snap.firewall_failures,
    )
    open_now = GaugeMetricFamily(
        "tumbler_doors_open",
        "Openings (address and door) in the firewall now, by backend",
        labels=["backend"],
    )
    for backend, count in sorted(snap.open_by_backend.items()):
        open_now.add_metric([backend], count)
    yield open_now
    replay = GaugeMetricFamily(
        "tumbler_replay_store_up",
        "1 if the replay store's last claim or prune worked, else 0",
        labels=["store"],
    )
    replay.add_metric([snap.replay_store], 1 if snap.replay_up else 0)
    yield replay
    yield GaugeMetricFamily(
        "tumbler_sequence_sources",
        "Source addresses with a knock sequence in progress",
        value=snap.sequence_sources,
    )
    workers = GaugeMetricFamily(
        "tumbler_workers",
        "Workers by kind: firewall threads, door actions in flight",
        labels=["kind"],
    )
    for kind, count in sorted(snap.workers.items()):
        workers.add_metric([kind], count)
    yield workers


class _Server(Protocol):
    def shutdown(self) -> None: ...
    def server_close(self) -> None: ...


class MetricsServer:
    """The HTTP endpoint; `close` stops it."""

    def __init__(self, server: _Server, where: str) -> None:
        self._server = server
        self.where = where

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(
    address: tuple[str, int], snapshot: Callable[[], Snapshot]
) -> MetricsServer | None:
    """Serve `snapshot`'s metrics on `address` from a thread; None without the library.

    Without prometheus-client it logs what to install; an address in use raises OSError.
    """
    try:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.process_collector import ProcessCollector
    except ImportError:
        log.error("%s", MISSING)
        return None

    class Collector:
        def collect(self) -> Iterator[Any]:
            try:
                snap = snapshot()
            except Exception as exc:  # a scrape must not take the daemon's numbers down with it
                log.error("metrics: could not read the daemon's state: %s", exc)
                return
            yield from families(snap)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    ProcessCollector(registry=registry)
    host, port = address
    server, _ = start_http_server(port, host, registry=registry)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    log.info("metrics served on http://%s/metrics", where)
    return MetricsServer(server, where)
