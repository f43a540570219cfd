"""The v2 decision: key id to door without hashing, one MAC, the window in seconds."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

import pytest

from tumbler.config.daemon import MAX_WINDOW_SECONDS
from tumbler.decisions import verifier2
from tumbler.decisions.verifier2 import (
    ACCEPTED,
    BAD_MAC,
    CLOCK_SKEW,
    UNKNOWN_KEY,
    Verifier2,
    claim_key,
)
from tumbler.protocols import tumbler2

NOW = 1_764_554_400  # 2025-12-01 02:00:00 UTC
ADDR = "192.0.2.7"


@dataclass(frozen=True)
class FakeDoor:
    name: str
    key: bytes | None = field(default=None, repr=False)


def key(n: int) -> bytes:
    return n.to_bytes(4, "big") * 8


def doors(n: int) -> list[FakeDoor]:
    return [FakeDoor(f"d{i}", key(i)) for i in range(n)]


def knock(k: bytes, when: float = NOW, nonce: bytes = bytes(16), address: str = ADDR, realm=""):
    return tumbler2.parse(tumbler2.build(k, when, nonce, address, realm))


def test_a_right_knock_is_accepted_with_its_door_and_claim():
    v = Verifier2(doors(3))
    verdict = v.check(knock(key(1)), ADDR, NOW + 0.5)
    assert verdict.reason == ACCEPTED and verdict.accepted
    assert verdict.door == FakeDoor("d1", key(1))
    assert verdict.offset == 0
    assert verdict.claim == claim_key(knock(key(1))) == "2:" + knock(key(1)).mac.hex()
    assert verdict.expires == NOW + MAX_WINDOW_SECONDS + 1


def test_doors_without_a_key_are_not_candidates():
    v = Verifier2([FakeDoor("v1-only"), FakeDoor("v2", key(9))])
    assert len(v) == 1
    assert v.check(knock(key(9)), ADDR, NOW).door == FakeDoor("v2", key(9))


def test_unknown_key_id_is_refused():
    v = Verifier2(doors(3))
    verdict = v.check(knock(key(99)), ADDR, NOW)
    assert verdict.reason == UNKNOWN_KEY and verdict.door is None


def test_wrong_address_realm_or_mac_is_a_bad_mac():
    v = Verifier2(doors(3), realm="fleet")
    right = knock(key(2), realm="fleet")
    assert v.check(right, ADDR, NOW).accepted
    assert v.check(right, "192.0.2.8", NOW).reason == BAD_MAC
    assert v.check(knock(key(2)), ADDR, NOW).reason == BAD_MAC
    assert v.check(knock(key(2), realm="other"), ADDR, NOW).reason == BAD_MAC
    verdict = v.check(knock(key(2), address="192.0.2.8", realm="fleet"), ADDR, NOW)
    assert verdict.reason == BAD_MAC and verdict.door is not None and verdict.door.name == "d2"


@pytest.mark.parametrize("skew", [-60, -1, 0, 1, 60])
def test_inside_the_window_is_accepted(skew):
    assert Verifier2(doors(1)).check(knock(key(0), NOW + skew), ADDR, NOW).accepted


@pytest.mark.parametrize("skew", [-187, -61, 61, 187, 10**9])
def test_outside_the_window_is_clock_skew_with_the_offset(skew):
    verdict = Verifier2(doors(1)).check(knock(key(0), NOW + skew), ADDR, NOW)
    assert verdict.reason == CLOCK_SKEW
    assert verdict.offset == skew
    assert verdict.door is not None and not verdict.claim


def test_the_window_is_configurable():
    v = Verifier2(doors(1), window=5)
    assert v.check(knock(key(0), NOW + 5), ADDR, NOW).accepted
    assert v.check(knock(key(0), NOW + 6), ADDR, NOW).reason == CLOCK_SKEW
    assert v.check(knock(key(0), NOW - 6), ADDR, NOW).offset == -6
    with pytest.raises(ValueError):
        Verifier2(doors(1), window=-1)


def test_claims_outlive_exactly_the_largest_window():
    v = Verifier2(doors(1), window=60)
    k = knock(key(0), NOW)
    accepted = v.check(k, ADDR, NOW - 60)  # the sender's clock 60 s ahead
    assert accepted.expires == NOW + MAX_WINDOW_SECONDS + 1
    # Until then a receiver with the largest window (this one after a reload, another of
    # the fleet) would still take the same knock, so the claim must hold...
    widest = Verifier2(doors(1), window=MAX_WINDOW_SECONDS)
    assert widest.check(k, ADDR, accepted.expires - 0.001).accepted
    # ...and from then on every window refuses it by itself.
    assert widest.check(k, ADDR, accepted.expires).reason == CLOCK_SKEW


def test_two_knocks_in_one_second_have_different_claims():
    v = Verifier2(doors(1))
    a = v.check(knock(key(0), NOW, bytes(16)), ADDR, NOW)
    b = v.check(knock(key(0), NOW, b"\x01" * 16), ADDR, NOW)
    assert a.accepted and b.accepted and a.claim != b.claim


def test_same_key_on_two_doors_is_refused():
    with pytest.raises(ValueError, match="same key id"):
        Verifier2([FakeDoor("a", key(1)), FakeDoor("b", key(1))])


def test_a_bad_realm_is_refused_at_construction():
    with pytest.raises(ValueError):
        Verifier2(doors(1), realm="x" * 256)


class CountingHmac:
    """Counts HMAC computations made through the protocol module."""

    def __init__(self) -> None:
        self.calls = 0

    def digest(self, key: bytes, msg: bytes, digest: str) -> bytes:
        self.calls += 1
        return hmac.digest(key, msg, digest)

    compare_digest = staticmethod(hmac.compare_digest)


@pytest.mark.parametrize("n", [1, 1000])
def test_cost_per_knock_does_not_grow_with_the_doors(monkeypatch, n):
    v = Verifier2(doors(n))
    unknown = knock(key(n + 5))
    known = knock(key(n - 1))
    wrong = tumbler2.parse(known.header + bytes(32))
    counter = CountingHmac()
    monkeypatch.setattr(tumbler2, "hmac", counter)
    assert v.check(unknown, ADDR, NOW).reason == UNKNOWN_KEY
    assert counter.calls == 0  # no hashing at all for an unknown key id
    assert v.check(known, ADDR, NOW).accepted
    assert counter.calls == 1  # one MAC for a known one, whatever n is
    assert v.check(wrong, ADDR, NOW).reason == BAD_MAC
    assert counter.calls == 2


def test_module_default_window_is_a_minute():
    assert verifier2.DEFAULT_WINDOW_SECONDS == 60
    assert Verifier2(doors(1)).window == 60


def test_membership_by_key_id_is_what_the_datagram_carries():
    v = Verifier2(doors(3))
    data = tumbler2.build(key(2), NOW, bytes(16), ADDR)
    assert data[tumbler2.KEY_ID_SLICE] == tumbler2.key_id(key(2)) in v
    assert tumbler2.key_id(key(7)) not in v
