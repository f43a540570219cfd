"""Stats: totals, and a rejection summary logged at most once per interval."""

from __future__ import annotations

import logging

import pytest

from tumbler.daemon.stats import Stats


@pytest.fixture
def stats(caplog):
    caplog.set_level(logging.INFO, logger="tumbler.test.stats")
    return Stats(logging.getLogger("tumbler.test.stats"), interval=10.0)


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_totals_count_every_outcome(stats):
    stats.count("accepted")
    stats.count("malformed", 3)
    stats.count("malformed")
    assert stats.total == {"accepted": 1, "malformed": 4}


def test_flush_summarises_rejections_in_fixed_order(stats, caplog):
    stats.count("replay", 2)
    stats.count("malformed", 5)
    stats.count("accepted")
    stats.flush(now=100.0)
    assert lines(caplog) == ["rejected datagrams: malformed 5, replay 2"]


def test_flush_is_rate_limited(stats, caplog):
    stats.count("no-door")
    stats.flush(now=100.0)
    for i in range(1000):
        stats.count("malformed")
        stats.flush(now=100.0 + i * 0.001)
    assert len(caplog.records) == 1
    stats.flush(now=110.0)
    assert lines(caplog)[-1] == "rejected datagrams: malformed 1000"
    assert len(caplog.records) == 2


def test_force_flush_ignores_the_interval(stats, caplog):
    stats.count("store-down")
    stats.flush(now=100.0)
    stats.count("store-down")
    stats.flush(now=100.5, force=True)
    assert lines(caplog) == ["rejected datagrams: store-down 1"] * 2


def test_nothing_pending_logs_nothing(stats, caplog):
    stats.count("accepted")
    stats.flush(now=100.0, force=True)
    assert caplog.records == []
