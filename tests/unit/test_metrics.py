"""Metrics: what a snapshot exposes, the `metrics` config key, and the Grafana dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tumbler.config.daemon import parse_config
from tumbler.errors import ConfigError

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from tumbler.daemon.metrics import Snapshot, families  # noqa: E402
from tumbler.daemon.stats import DATAGRAM_OUTCOMES  # noqa: E402

DASHBOARD = Path(__file__).parents[2] / "packaging" / "grafana-dashboard.json"
DOOR = "[door-web]\n   secret = s3cret-web\n   command = true\n"

SNAP = Snapshot(
    outcomes={"accepted": 3, "replay": 2, "clock-skew": 1},
    accepted_by_door={"web": 3},
    open_by_backend={"nftables": 2},
    replay_store="redis",
    replay_up=False,
    sequence_sources=7,
    workers={"firewall": 1, "actions": 0},
    doors=("ssh", "web"),
    firewall_failures=4,
    sequences=5,
)


def exposition(snap: Snapshot) -> str:
    class One:
        def collect(self):  # type: ignore[no-untyped-def]
            return families(snap)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())
    return generate_latest(registry).decode()


def test_snapshot_exposition() -> None:
    text = exposition(SNAP)
    for line in (
        'tumbler_datagrams_total{outcome="accepted"} 3.0',
        'tumbler_datagrams_total{outcome="store-down"} 0.0',
        'tumbler_knocks_accepted_total{door="web"} 3.0',
        'tumbler_knocks_accepted_total{door="ssh"} 0.0',
        'tumbler_doors_open{backend="nftables"} 2.0',
        'tumbler_replay_store_up{store="redis"} 0.0',
        "tumbler_sequence_sources 7.0",
        'tumbler_workers{kind="firewall"} 1.0',
        "tumbler_firewall_failures_total 4.0",
        "tumbler_sequences_completed_total 5.0",
    ):
        assert line in text.splitlines(), line
    assert len(re.findall(r"^tumbler_datagrams_total\{", text, re.M)) == len(DATAGRAM_OUTCOMES)


def test_every_metric_of_the_dashboard_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = set(re.findall(r"^(tumbler_\w+)", exposition(SNAP), re.M))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"tumbler_\w+", e)}
    assert used and used <= exported, used - exported
    titles = " ".join(p["title"] for p in dashboard["panels"])
    assert "by door" in titles and "by reason" in titles


@pytest.mark.parametrize(
    ("value", "address"),
    [("127.0.0.1:9675", ("127.0.0.1", 9675)), ("[::1]:9675", ("::1", 9675))],
)
def test_metrics_key(tmp_path: Path, value: str, address: tuple[str, int]) -> None:
    config = parse_config(f"[common]\n   metrics = {value}\n{DOOR}", "x.conf", tmp_path)
    assert config.metrics == address
    assert not [w for w in config.warnings if "metrics" in w]


def test_metrics_off_by_default_and_warned_when_public(tmp_path: Path) -> None:
    assert parse_config(DOOR, "x.conf", tmp_path).metrics is None
    config = parse_config(f"[common]\n   metrics = 10.0.0.1:9675\n{DOOR}", "x.conf", tmp_path)
    assert any("not a loopback address" in w for w in config.warnings)


@pytest.mark.parametrize(
    "value", ["9675", "localhost:9675", "::1:9675", "127.0.0.1:0", "1.2.3.4:x"]
)
def test_bad_metrics_addresses(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="metrics"):
        parse_config(f"[common]\n   metrics = {value}\n{DOOR}", "x.conf", tmp_path)
