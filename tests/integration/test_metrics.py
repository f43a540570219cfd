"""Prometheus metrics of a real tumblerd, scraped over real HTTP (issue 15, item 2)."""

from __future__ import annotations

import re
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import DOORS
from tests.integration.daemon import TUMBLERD, Tumblerd
from tests.waiting import wait_until

pytest.importorskip("prometheus_client")

SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> dict[str, float]:
    """`name{labels}` -> value, from a real HTTP GET of /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, line
            samples[match[1] + (match[2] or "")] = float(match[3])
    return samples


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[tuple[Tumblerd, int]]:
    port = free_tcp_port()
    daemon = Tumblerd(tmp_path, DOORS, common=f"   metrics = 127.0.0.1:{port}\n").start()
    yield daemon, port
    daemon.stop()


def accepted(samples: dict[str, float]) -> float:
    return samples['tumbler_datagrams_total{outcome="accepted"}']


def test_scrape_sees_the_counters_move_when_a_knock_is_accepted(
    metered: tuple[Tumblerd, int],
) -> None:
    daemon, port = metered
    assert "metrics served on http://127.0.0.1:" in daemon.log_text()
    before = scrape(port)
    assert accepted(before) == 0
    assert before['tumbler_knocks_accepted_total{door="open-ssh"}'] == 0
    assert before['tumbler_replay_store_up{store="sqlite"}'] == 1
    assert before['tumbler_workers{kind="firewall"}'] == 1
    assert before["tumbler_sequence_sources"] == 0
    for outcome in ("malformed", "no-door", "bad-mac", "clock-skew", "replay", "store-down"):
        assert before[f'tumbler_datagrams_total{{outcome="{outcome}"}}'] == 0
    assert "process_resident_memory_bytes" in before

    data = daemon.knock("open-pAsSwOrD")
    wait_until(daemon.lines, what="the door's command")
    after = scrape(port)
    assert accepted(after) == 1
    assert after['tumbler_knocks_accepted_total{door="open-ssh"}'] == 1
    assert after['tumbler_knocks_accepted_total{door="sentinel"}'] == 0

    daemon.send(data).close()  # the same datagram again
    daemon.send(b"TUMBLER1: junk").close()
    daemon.knock("not-a-door-secret")
    wanted = {
        'tumbler_datagrams_total{outcome="replay"}': 1,
        'tumbler_datagrams_total{outcome="malformed"}': 1,
        'tumbler_datagrams_total{outcome="no-door"}': 1,
    }
    wait_until(lambda: {k: scrape(port)[k] for k in wanted} == wanted, "the refusals to be counted")
    assert accepted(scrape(port)) == 1


def test_with_workers_the_scrape_counts_receivers_and_what_they_proved(tmp_path: Path) -> None:
    port = free_tcp_port()
    common = f"   metrics = 127.0.0.1:{port}\n   workers = 2\n"
    daemon = Tumblerd(tmp_path, DOORS, common=common).start()
    try:
        before = scrape(port)
        assert before['tumbler_workers{kind="receivers"}'] == 2
        assert accepted(before) == 0
        daemon.knock("open-pAsSwOrD")  # read by a worker, claimed and acted on by the main process
        wait_until(daemon.lines, what="the door's command")
        wait_until(lambda: accepted(scrape(port)) == 1, "the accepted knock to be counted")
        assert scrape(port)['tumbler_knocks_accepted_total{door="open-ssh"}'] == 1
    finally:
        daemon.stop()


def test_metrics_are_off_by_default(tumblerd: Tumblerd) -> None:
    assert "metrics" not in tumblerd.log_text()


def test_check_config_warns_of_a_public_metrics_address(tmp_path: Path) -> None:
    daemon = Tumblerd(tmp_path, DOORS, common="   metrics = 0.0.0.0:9675\n")
    proc = subprocess.run(
        [*TUMBLERD, "--check-config", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "metrics served on 0.0.0.0:9675, not a loopback address" in proc.stderr


def test_without_the_library_the_daemon_serves_knocks_and_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A package of that name that fails to import stands for the library not installed.
    fake = tmp_path / "site"
    (fake / "prometheus_client").mkdir(parents=True)
    (fake / "prometheus_client" / "__init__.py").write_text("raise ImportError('not here')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    daemon = Tumblerd(tmp_path, DOORS, common=f"   metrics = 127.0.0.1:{free_tcp_port()}\n")
    try:
        daemon.start()
        assert "the prometheus-client package is missing" in daemon.log_text()
        assert "tumbler[metrics]" in daemon.log_text()
        daemon.knock("open-pAsSwOrD")
        wait_until(daemon.lines, what="the door's command")
        assert daemon.alive()
    finally:
        daemon.stop()
