"""The address normaliser agrees with `ipaddress` on every input, valid or not.

`tumbler.addresses` parses with the C library's inet_pton and writes RFC 5952 itself, to
keep `ipaddress` off the client's start-up path; the reference here is the `ipaddress`
rule it replaced, and an address read two ways would be a door opened for the wrong host.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tumbler.addresses import normalize_address, packet_address


def reference(address: str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The rule as `ipaddress` states it (the normaliser's earlier body)."""
    if isinstance(address, str):
        value: str | bytes = address.split("%", 1)[0]
    elif isinstance(address, bytes):
        value = address
    else:
        value = address.packed
    ip = ipaddress.ip_address(value)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.compressed


def reference_packet(address: str | bytes) -> str | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return None
    return ip.compressed


def outcome(function, value):  # type: ignore[no-untyped-def]
    try:
        return function(value)
    except ValueError:
        return ValueError


def agree(value: str | bytes) -> None:
    assert outcome(normalize_address, value) == outcome(reference, value), value
    assert packet_address(value) == reference_packet(value), value


# Text close to an address: the characters addresses are made of, and a few others.
ADDRESS_CHARS = st.text(alphabet="0123456789abcdefABCDEF:.%x -", max_size=45)


def _groups(packed: bytes) -> list[str]:
    return [f"{packed[i] << 8 | packed[i + 1]:x}" for i in range(0, 16, 2)]


@st.composite
def ipv6_texts(draw: st.DrawFn) -> str:
    """Valid IPv6 in many spellings: compressed, exploded, upper case, leading zeros,
    embedded IPv4, a scope id; from addresses rich in zero groups."""
    groups = draw(
        st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xABC, 0x1234]), min_size=8, max_size=8)
    )
    ip = ipaddress.IPv6Address(b"".join(g.to_bytes(2, "big") for g in groups))
    style = draw(st.sampled_from(["compressed", "exploded", "upper", "v4", "scope", "zeros"]))
    if style == "compressed":
        return ip.compressed
    if style == "exploded":
        return ip.exploded
    if style == "upper":
        return ip.compressed.upper()
    if style == "v4":
        head = ":".join(_groups(ip.packed)[:6])
        return f"{head}:{ipaddress.IPv4Address(ip.packed[12:])}"
    if style == "scope":
        return f"{ip.compressed}%{draw(st.sampled_from(['eth0', '1', '']))}"
    return ":".join(f"{int(g, 16):04x}"[: draw(st.integers(1, 4))] for g in _groups(ip.packed))


@settings(max_examples=3000)
@given(ADDRESS_CHARS)
@example("1:2:3:4:5:6:7::")
@example("::1:2:3:4:5:6:7")
@example("1::2:3:4:5:6:7:8")
@example("::1.2.3.4")
@example("::ffff:1.2.3.4")
@example("::ffff:01.2.3.4")
@example("1:2:3:4:5:6:1.2.3.4")
@example("1:2:3:4:5:6:7:1.2.3.4")
@example("1.2.3.04")
@example("1.2.3.4.")
@example("00000::")
@example(":::")
@example("1::2:")
@example("")
@example("fe80::1%")
def test_text_close_to_an_address(text: str) -> None:
    agree(text)


@settings(max_examples=2000)
@given(ipv6_texts())
def test_every_spelling_of_ipv6(text: str) -> None:
    agree(text)


@settings(max_examples=1000)
@given(
    st.lists(
        st.sampled_from(["0", "00", "1", "01", "9", "10", "99", "255", "256", "300"]),
        min_size=3,
        max_size=5,
    )
)
def test_dotted_quads(parts: list[str]) -> None:
    agree(".".join(parts))
    agree("::ffff:" + ".".join(parts))


@settings(max_examples=1000)
@given(st.binary(min_size=0, max_size=17))
@example(b"\0" * 10 + b"\xff\xff" + b"\xc0\x00\x02\x01")
@example(b"\0" * 12 + b"\x01\x02\x03\x04")
@example(b"\0" * 16)
def test_packed_bytes(data: bytes) -> None:
    agree(data)


@settings(max_examples=500)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**128 - 1))
def test_ipaddress_objects(v4: int, v6: int) -> None:
    for ip in (ipaddress.IPv4Address(v4), ipaddress.IPv6Address(v6)):
        assert normalize_address(ip) == reference(ip)


@pytest.mark.parametrize("bad", ["1.2.3.4\0", "\uff11.2.3.4", "\udcff::1", "::1 ", "0x1.2.3.4"])
def test_odd_text_is_refused_alike(bad: str) -> None:
    agree(bad)
