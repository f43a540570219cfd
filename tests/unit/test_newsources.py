"""New-source budgets: an IPv6 source counts by its prefix, and the total bounds the work."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tumbler.addresses import ipv6_prefix_mask, source_prefix
from tumbler.decisions.newsources import NewSourceBudget


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
    budget = NewSourceBudget(prefix_rate=25.0, prefix_burst=100.0, total_hashes=1e9)
    now = 1000.0
    admitted = sum(budget.admit(f"2001:db8:0:1::{i:x}", 3, now) for i in range(500))
    assert admitted == 100
    # Another /64 is not affected; nor is IPv4.
    assert budget.admit("2001:db8:0:2::1", 3, now)
    assert budget.admit("192.0.2.1", 3, now)
    # The prefix refills at its rate.
    assert sum(budget.admit(f"2001:db8:0:1::1:{i:x}", 3, now + 1.0) for i in range(100)) == 25


def test_prefix_length_is_configurable():
    budget = NewSourceBudget(ipv6_prefix=128, prefix_burst=2.0, total_hashes=1e9)
    assert all(budget.admit(f"2001:db8::{i:x}", 3, 0.0) for i in range(300))


def test_the_total_bounds_hashes_per_second():
    budget = NewSourceBudget(prefix_burst=1e9, total_hashes=3000.0)
    now = 50.0
    admitted = sum(budget.admit(f"10.0.{i // 256}.{i % 256}", 300, now) for i in range(100))
    assert admitted == 10
    assert not budget.admit("10.9.9.9", 300, now)
    assert sum(budget.admit(f"10.1.0.{i}", 300, now + 0.5) for i in range(100)) == 5


def test_a_source_dearer_than_the_whole_budget_still_goes_and_pays_its_debt():
    budget = NewSourceBudget(total_hashes=1000.0)
    assert budget.admit("10.0.0.1", 3000, 0.0)
    assert not budget.admit("10.0.0.2", 3000, 1.0)
    assert not budget.admit("10.0.0.3", 3000, 2.5)
    assert budget.admit("10.0.0.4", 3000, 3.0)


def test_tracked_prefixes_stay_bounded():
    budget = NewSourceBudget(total_hashes=1e12, max_prefixes=100)
    for i in range(5000):
        budget.admit(f"2001:db8:{i:x}::1", 3, 0.0)
        assert len(budget._prefixes) <= 100
