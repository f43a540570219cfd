"""The daemon's receive path under a flood of new sources: shed by prefix, known ones served."""

from __future__ import annotations

import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from tumbler.config.daemon import parse_config
from tumbler.daemon.pipeline import Verdict
from tumbler.daemon.wiring import Daemon
from tumbler.protocols.tumbler1 import make_knock

CONFIG = (
    "[common]\nreplay = memory\nstate = /nonexistent/state.db\ncontrol = /nonexistent/c\n"
    "{common}"
    "[door-ssh]\nsecret = open-pAsSwOrD\ncommand = true\n"
)
JUNK = b"TUMBLER1: " + b"0" * 64


def daemon(common: str = "") -> Daemon:
    d = Daemon(parse_config(CONFIG.format(common=common), "<test>"))
    acted: list[Coroutine[Any, Any, None]] = []

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        acted.append(coro)
        coro.close()

    d.dispatcher.spawn = spawn  # type: ignore[method-assign]
    return d


def knock(address: str, now: float) -> bytes:
    return make_knock("open-pAsSwOrD", address, datetime.fromtimestamp(now, UTC))


def test_a_flood_from_one_ipv6_prefix_is_shed_and_another_prefix_opens():
    d = daemon()
    now = time.time()
    for i in range(500):
        d.handle(JUNK, f"2001:db8:0:1::{i + 1:x}", now)
    assert d.stats.total["shed"] == 400  # the /64's burst of 100 new sources was spent
    assert d.stats.total["no-door"] == 100
    # Another address of the same /64 is shed too; one of another /64 opens.
    assert d.handle(knock("2001:db8:0:1::ffff", now), "2001:db8:0:1::ffff", now) is None
    door = d.handle(knock("2001:db8:0:2::7", now), "2001:db8:0:2::7", now)
    assert door is not None and door.name == "ssh"


def test_ipv6_prefix_is_read_from_the_config():
    d = daemon("ipv6_prefix = 128\n")
    assert d.pipeline.budget.ipv6_prefix == 128
    now = time.time()
    for i in range(500):
        d.handle(JUNK, f"2001:db8:0:1::{i + 1:x}", now)
    # Each address is a prefix of its own, a quiet one: none is shed (one door costs
    # 3 hashes); per /64 the prefix's 100 would have gone and 400 been shed.
    assert d.stats.total["shed"] == 0


def test_known_sources_are_served_when_the_budget_is_spent():
    d = daemon()
    now = time.time()
    known = "192.0.2.10"
    d.handle(JUNK, known, now)
    d.handle(JUNK, known, now)  # it came back: it now has a table for this minute
    assert d.runtime.verifier.knows(known, now)
    d.pipeline.budget._first = 0.0  # a flood of new sources spent all there was, in both buckets
    d.pipeline.budget.charge(1, 1e9)
    assert d.handle(JUNK, "198.51.100.1", now) is None
    assert d.stats.total["shed"] == 1
    door = d.handle(knock(known, now), known, now)
    assert door is not None and door.name == "ssh"


def test_the_canonical_v1_form_is_no_other_kind():
    # decide takes a 74-byte `TUMBLER1: <hex>` datagram straight to v1, skipping the others.
    from tumbler.protocols import fwknop, sshsig, tumbler1, tumbler2

    data = knock("192.0.2.1", time.time())
    assert len(data) == 74 and data.startswith(tumbler1.PREFIX + b" ")
    assert not fwknop.classify(data) and not sshsig.looks_signed(data)
    assert not tumbler2.is_v2(data)
    assert len(data) < fwknop.MIN_PACKET  # no SPA packet is that short


def test_a_refusal_is_an_ordinary_verdict_and_counted():
    d = daemon()
    verdict = d.pipeline.decide(JUNK, "192.0.2.1", time.time())
    assert type(verdict) is Verdict
    assert verdict == Verdict("no-door", "192.0.2.1")
    assert (verdict.doors, verdict.door, verdict.target, verdict.ports) == ((), None, None, None)
    assert d.stats.total["no-door"] == 1
    malformed = d.pipeline.decide(b"TUMBLER1: " + b"x" * 64, "192.0.2.2", time.time())
    assert malformed == Verdict("malformed", "192.0.2.2")
    assert d.stats.total["malformed"] == 1
