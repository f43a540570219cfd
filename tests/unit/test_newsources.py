"""New-source budgets: an IPv6 source counts by its prefix, and the total bounds the work."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tumbler.addresses import ipv6_prefix_mask, source_prefix
from tumbler.decisions.newsources import FIRST, MORE, NewSourceBudget


def test_source_prefix_of_ipv4_is_the_address():
    assert source_prefix("10.0.0.1") == bytes([10, 0, 0, 1])
    assert source_prefix("10.0.0.1") != source_prefix("10.0.0.2")


@pytest.mark.parametrize(
    ("a", "b", "bits", "same"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", 64, True),
        ("2001:db8:1:2::1", "2001:db8:1:3::1", 64, False),
        ("2001:db8:1:2::1", "2001:db8:1:3::1", 63, True),
        ("2001:db8:1:2::1", "2001:db8:1:4::1", 63, False),
        ("2001:db8:1:2::1", "2001:db8:1:3::1", 62, True),
        ("2001:db8:1:2::1", "2001:db8:1:2::2", 128, False),
        ("2001:db8::1", "2001:db9::1", 31, True),
    ],
)
def test_source_prefix_of_ipv6(a, b, bits, same):
    assert (source_prefix(a, bits) == source_prefix(b, bits)) is same


@given(st.integers(1, 128), st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1))
def test_source_prefix_agrees_with_the_network(bits, x, y):
    import ipaddress

    a, b = str(ipaddress.IPv6Address(x)), str(ipaddress.IPv6Address(y))
    if "." in a or "." in b:  # IPv4-mapped forms are normalised to IPv4 before here
        return
    same_net = ipaddress.ip_network(f"{a}/{bits}", strict=False) == ipaddress.ip_network(
        f"{b}/{bits}", strict=False
    )
    assert (source_prefix(a, bits) == source_prefix(b, bits)) is same_net


def test_ipv6_prefix_mask():
    assert ipv6_prefix_mask(64) == "ffff:ffff:ffff:ffff::"
    assert ipv6_prefix_mask(1) == "8000::"


def test_one_prefix_cannot_mint_unlimited_new_sources():
    budget = NewSourceBudget(prefix_rate=25.0, prefix_burst=100.0, burst_seconds=1e9)
    now = 1000.0
    admitted = sum(budget.admit(f"2001:db8:0:1::{i:x}", now) is not None for i in range(500))
    assert admitted == 100
    # Another /64 is not affected; nor is IPv4.
    assert budget.admit("2001:db8:0:2::1", now) is not None
    assert budget.admit("192.0.2.1", now) is not None
    # The prefix refills at its rate.
    more = [budget.admit(f"2001:db8:0:1::1:{i:x}", now + 1.0) for i in range(100)]
    assert sum(b is not None for b in more) == 25


def test_prefix_length_is_configurable():
    budget = NewSourceBudget(ipv6_prefix=128, first_hashes=1e9, burst_seconds=1e9)
    assert all(budget.admit(f"2001:db8::{i:x}", 0.0) is not None for i in range(300))


def test_a_prefix_minting_addresses_spends_only_the_time_bucket():
    budget = NewSourceBudget(share=0.25, burst_seconds=0.05)
    now = 10.0
    assert budget.admit("2001:db8:0:1::1", now) == FIRST  # its first new source
    budget.charge(FIRST, 5.0)  # whatever a first source costs, it costs one count
    for i in range(2, 5):
        bucket = budget.admit(f"2001:db8:0:1::{i:x}", now)
        assert bucket == MORE
        budget.charge(MORE, 0.02)
    # 0.06 s of work charged to a 0.05 s bucket: the /64 is shed now...
    assert budget.admit("2001:db8:0:1::ff", now) is None
    # ...but the first new source of any other prefix still goes.
    assert budget.admit("2001:db8:0:2::1", now) == FIRST
    assert budget.admit("192.0.2.7", now) == FIRST
    # The debt is paid back at `share` of real time: 0.01 s of debt takes 0.04 s.
    assert budget.admit("2001:db8:0:1::fe", now + 0.03) is None
    assert budget.admit("2001:db8:0:1::fd", now + 0.05) == MORE


def test_first_sources_of_quiet_prefixes_are_counted_in_hashes():
    budget = NewSourceBudget(first_hashes=150_000.0)
    admitted = [budget.admit(f"10.0.{i // 256}.{i % 256}", 0.0, 3000) for i in range(1000)]
    assert admitted.count(FIRST) == 50  # 1,000 doors: 3,000 hashes each
    assert admitted.count(None) == 950
    later = [budget.admit(f"10.1.{i // 256}.{i % 256}", 0.5, 3000) for i in range(1000)]
    assert later.count(FIRST) == 25
    cheap = NewSourceBudget(first_hashes=150_000.0)
    one_door = [cheap.admit(f"10.2.{i // 256}.{i % 256}", 0.0, 3) for i in range(1000)]
    assert one_door.count(FIRST) == 1000


def test_a_source_dearer_than_the_allowance_goes_when_it_is_full():
    budget = NewSourceBudget(first_hashes=1000.0)
    assert budget.admit("10.0.0.1", 0.0, 3000) == FIRST
    assert budget.admit("10.0.0.2", 2.0, 3000) is None  # still paying: -2,000 + 2,000
    assert budget.admit("10.0.0.3", 3.0, 3000) == FIRST


def test_tracked_prefixes_stay_bounded():
    budget = NewSourceBudget(first_hashes=1e12, max_prefixes=100)
    for i in range(5000):
        budget.admit(f"2001:db8:{i:x}::1", 0.0)
        assert len(budget._prefixes) <= 100


def test_a_prefix_stays_busy_for_a_minute_after_its_last_new_source():
    budget = NewSourceBudget()
    assert budget.admit("192.0.2.1", 0.0, 3) == FIRST
    # Its own bucket is full again within a second, but it is not quiet: the time bucket.
    assert budget.admit("192.0.2.1", 5.0, 3) == MORE
    assert budget.admit("192.0.2.1", 64.9, 3) == MORE
    assert budget.admit("192.0.2.1", 125.0, 3) == FIRST
