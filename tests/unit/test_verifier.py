"""The verifier: doors x window, the right door and offset, expiry, and a bounded cache."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tumbler.config.daemon import MAX_WINDOW_MINUTES, Door
from tumbler.decisions import verifier as verifier_module
from tumbler.decisions.verifier import Verifier
from tumbler.protocols.tumbler1 import knock_digest, minute_stamp

OPEN = Door(name="open-ssh", line=1, secret="open-pAsSwOrD", command="true")
CLOSE = Door(name="close-ssh", line=4, secret="close-pAsSwOrD", command="true")
SEQUENCE = Door(name="seq", line=7, sequence=(), open=())
ADDRESS = "192.168.0.5"
# 2004-11-27 15:30:20 UTC: 20 seconds into the test vector's minute.
NOW = datetime(2004, 11, 27, 15, 30, 20, tzinfo=UTC)
EPOCH = NOW.timestamp()
MINUTE_START = datetime(2004, 11, 27, 15, 30, tzinfo=UTC).timestamp()


def digest_at(offset: int, door: Door = OPEN, address: str = ADDRESS) -> str:
    assert door.secret is not None
    return knock_digest(minute_stamp(NOW + timedelta(minutes=offset)), address, door.secret)


def test_design_vector_matches_at_that_minute():
    match = Verifier([OPEN], 1).match(
        "44e0543454e4c7a7633a216671b3f5068e332bd6e7b1c13cbc69b0d91bb044cb", ADDRESS, EPOCH
    )
    assert match is not None
    assert match.door is OPEN
    assert match.stamp == "10410271530"
    assert match.minute_offset == 0


@pytest.mark.parametrize("window", [0, 1, 2, 5])
def test_every_minute_in_the_window_matches_with_its_offset(window):
    v = Verifier([OPEN, CLOSE], window)
    for offset in range(-window, window + 1):
        digest = digest_at(offset)
        match = v.match(digest, ADDRESS, EPOCH)
        assert match is not None, offset
        assert match.door is OPEN
        assert match.minute_offset == offset
        assert match.digest == digest
        assert match.stamp == minute_stamp(NOW + timedelta(minutes=offset))


@pytest.mark.parametrize("window", [0, 1, 2])
def test_minutes_outside_the_window_do_not_match(window):
    v = Verifier([OPEN], window)
    for offset in (-window - 1, window + 1, -5, 5, -60):
        assert v.match(digest_at(offset), ADDRESS, EPOCH) is None, offset


def test_position_within_the_minute_does_not_matter():
    v = Verifier([OPEN], 1)
    digest = digest_at(-1)
    assert v.match(digest, ADDRESS, MINUTE_START) is not None
    assert v.match(digest, ADDRESS, MINUTE_START + 59.999) is not None
    # One minute later the stamp is two minutes old.
    assert v.match(digest, ADDRESS, MINUTE_START + 60) is None


def test_wrong_address_does_not_match():
    v = Verifier([OPEN], 1)
    assert v.match(digest_at(0, address="192.168.0.6"), ADDRESS, EPOCH) is None
    assert v.match(digest_at(0), "192.168.0.6", EPOCH) is None
    assert v.match(digest_at(0), "2001:db8::1", EPOCH) is None


def test_ipv6_address_matches():
    v = Verifier([OPEN], 1)
    digest = digest_at(0, address="2001:db8::1")
    match = v.match(digest, "2001:db8::1", EPOCH)
    assert match is not None
    assert match.door is OPEN


def test_wrong_secret_does_not_match():
    v = Verifier([OPEN], 1)
    wrong = Door(name="x", line=1, secret="open-pAsSwOrd", command="true")
    assert v.match(digest_at(0, door=wrong), ADDRESS, EPOCH) is None


def test_garbage_digest_does_not_match():
    v = Verifier([OPEN], 1)
    assert v.match("0" * 64, ADDRESS, EPOCH) is None
    good = digest_at(0)
    near_miss = good[:-1] + ("1" if good[-1] == "0" else "0")
    assert v.match(near_miss, ADDRESS, EPOCH) is None
    assert v.match(good, ADDRESS, EPOCH) is not None


def test_two_doors_choose_the_right_one():
    v = Verifier([OPEN, CLOSE], 1)
    for door in (OPEN, CLOSE):
        for offset in (-1, 0, 1):
            match = v.match(digest_at(offset, door=door), ADDRESS, EPOCH)
            assert match is not None
            assert match.door is door


def test_sequence_doors_are_ignored():
    v = Verifier([SEQUENCE, OPEN], 1)
    assert v.doors == (OPEN,)
    match = v.match(digest_at(0), ADDRESS, EPOCH)
    assert match is not None
    assert match.door is OPEN


def test_no_secret_doors_matches_nothing():
    assert Verifier([SEQUENCE], 1).match(digest_at(0), ADDRESS, EPOCH) is None


@pytest.mark.parametrize("window", [0, 1, 3])
def test_expiry_is_the_end_of_minute_m_plus_the_largest_window(window):
    v = Verifier([OPEN], window)
    for offset in range(-window, window + 1):
        match = v.match(digest_at(offset), ADDRESS, EPOCH)
        assert match is not None
        stamp_minute_start = MINUTE_START + 60 * offset
        assert match.expires == stamp_minute_start + 60 * (MAX_WINDOW_MINUTES + 1)


def test_expiry_agrees_with_what_the_largest_window_accepts():
    # Just before `expires` a receiver with the largest window still accepts the digest;
    # at `expires` none does.
    v = Verifier([OPEN], MAX_WINDOW_MINUTES)
    for offset in (-1, 0, 1):
        digest = digest_at(offset)
        match = v.match(digest, ADDRESS, EPOCH)
        assert match is not None
        assert v.match(digest, ADDRESS, match.expires - 0.001) is not None
        assert v.match(digest, ADDRESS, match.expires) is None


def test_a_claim_outlives_a_reload_to_a_larger_window():
    digest = digest_at(0)
    accepted = Verifier([OPEN], 1).match(digest, ADDRESS, EPOCH)
    assert accepted is not None
    later = EPOCH + 4 * 60  # past what window 1 accepts, inside what window 5 accepts
    assert Verifier([OPEN], 5).match(digest, ADDRESS, later) is not None
    assert accepted.expires > later  # so the replay cache still refuses it


def test_cache_stays_bounded_over_many_addresses(monkeypatch):
    # One door, window 1: three digests per source; 48 digests in all means 16 sources.
    monkeypatch.setattr(verifier_module, "CACHE_DIGESTS", 48)
    v = Verifier([OPEN], 1)
    assert v._capacity == 16
    for i in range(500):
        address = f"10.0.{i // 256}.{i % 256}"
        for _ in range(2):  # the second datagram from a source builds its table
            assert v.match("0" * 64, address, EPOCH) is None
        assert len(v._cache) <= 16
    assert len(v._cache) == 16
    # An evicted source is simply recomputed: its knock still matches.
    match = v.match(digest_at(0, address="10.0.0.0"), "10.0.0.0", EPOCH)
    assert match is not None
    assert len(v._cache) == 16


def test_a_source_seen_once_leaves_no_table():
    v = Verifier([OPEN, CLOSE], 1)
    for i in range(300):
        assert v.match("0" * 64, f"10.1.{i // 256}.{i % 256}", EPOCH) is None
    assert len(v._cache) == 0
    assert v.match("0" * 64, "10.1.0.7", EPOCH) is None  # it came back: now it has one
    assert list(v._cache) == [("10.1.0.7", int(EPOCH // 60))]


def test_sources_seen_once_are_remembered_within_a_bound(monkeypatch):
    monkeypatch.setattr(verifier_module, "SEEN_SOURCES", 10)
    v = Verifier([OPEN], 1)
    for i in range(1000):
        v.match("0" * 64, f"fd00::{i:x}", EPOCH)
        assert len(v._seen) + len(v._seen_before) <= 20
    assert len(v._cache) == 0
    # Far back is forgotten: the source counts as new again and still builds no table.
    assert v.match("0" * 64, "fd00::0", EPOCH) is None
    assert len(v._cache) == 0


def test_first_and_later_datagrams_give_the_same_answers():
    v = Verifier([OPEN, CLOSE], 1)
    for address in ("10.9.0.1", "2001:db8::5"):
        for door in (OPEN, CLOSE):
            for offset in (-2, -1, 0, 1, 2):
                digest = digest_at(offset, door=door, address=address)
                first = Verifier([OPEN, CLOSE], 1).match(digest, address, EPOCH)
                v.match("0" * 64, address, EPOCH)
                v.match("0" * 64, address, EPOCH)
                cached = v.match(digest, address, EPOCH)
                assert (address, int(EPOCH // 60)) in v._cache
                assert first == cached
                assert (first is not None) == (abs(offset) <= 1)


@settings(max_examples=60, deadline=None)
@given(
    secrets=st.lists(
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
        min_size=1,
        max_size=5,
        unique=True,
    ),
    window=st.integers(0, 3),
    offset=st.integers(-4, 4),
    which=st.integers(0, 4),
    host=st.integers(1, 2**32 - 2),
    noise=st.binary(min_size=32, max_size=32),
)
def test_direct_and_table_paths_agree_with_the_protocol(
    secrets, window, offset, which, host, noise
):
    doors = [Door(name=f"d{i}", line=i, secret=s, command="t") for i, s in enumerate(secrets)]
    door = doors[which % len(doors)]
    address = str(ipaddress.IPv4Address(host))
    assert door.secret is not None
    digest = knock_digest(minute_stamp(NOW + timedelta(minutes=offset)), address, door.secret)
    for seen_before in (0, 1, 2):
        v = Verifier(doors, window)
        for _ in range(seen_before):
            assert v.match(noise.hex(), address, EPOCH) is None or noise.hex() == digest
        match = v.match(digest, address, EPOCH)
        if abs(offset) > window:
            assert match is None
        else:
            assert match is not None
            assert match.door is door
            assert match.minute_offset == offset
            assert match.digest == digest
        assert v.match_raw(bytes.fromhex(digest)[:31], address, EPOCH) is None


def test_cache_is_bounded_by_default_for_many_doors():
    doors = [Door(name=f"d{i}", line=i, secret=f"s{i}", command="t") for i in range(100)]
    v = Verifier(doors, 1)
    assert v._capacity * 100 * 3 <= verifier_module.CACHE_DIGESTS
    assert v._capacity >= 16


def test_new_minute_recomputes_for_the_same_address():
    v = Verifier([OPEN], 0)
    later = NOW + timedelta(minutes=1)
    digest = knock_digest(minute_stamp(later), ADDRESS, "open-pAsSwOrD")
    assert v.match(digest, ADDRESS, EPOCH) is None
    assert v.match(digest, ADDRESS, later.timestamp()) is not None
