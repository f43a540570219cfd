"""The one written form of an IP address, for the hash, the firewall, the shell and the logs.

Every reader of an address (a datagram's source, a packet header, a log line, a config
key, a command-line option) gives it this form, so that one host is one string everywhere.
"""

from __future__ import annotations

import socket

TYPE_CHECKING = False  # not typing's: importing typing costs the client start-up time
if TYPE_CHECKING:
    import ipaddress

    Address = str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address
else:
    Address = object  # a name for annotations; the union above is what mypy checks

# The parse is the C library's inet_pton (which takes exactly the forms `ipaddress` takes,
# see tests/unit/test_addresses.py) and the written form is built here as `ipaddress`
# builds it: `ipaddress` itself costs the client start-up time, and the daemon a few
# microseconds per datagram.
_MAPPED = b"\0" * 10 + b"\xff\xff"


def _packed(address: Address) -> bytes:
    """4 or 16 bytes; ValueError for anything that is not an address."""
    if isinstance(address, str):
        text = address.split("%", 1)[0]
        family = socket.AF_INET6 if ":" in text else socket.AF_INET
        try:
            return socket.inet_pton(family, text)
        except OSError:
            raise ValueError(f"{address!r} is not an IP address") from None
    if isinstance(address, bytes):
        if len(address) not in (4, 16):
            raise ValueError(f"{address!r} is not a packed IP address")
        return address
    packed = getattr(address, "packed", None)
    if not isinstance(packed, bytes):
        raise ValueError(f"{address!r} is not an IP address")
    return packed


def _written(packed: bytes) -> str:
    """RFC 5952: dotted IPv4; IPv6 in lowercase hex, the first longest run of two or more
    zero groups as `::`."""
    if len(packed) == 4:
        return socket.inet_ntop(socket.AF_INET, packed)
    groups = [f"{packed[i] << 8 | packed[i + 1]:x}" for i in range(0, 16, 2)]
    best, best_len, start, run = -1, 1, -1, 0
    for index, group in enumerate(groups):
        if group == "0":
            if run == 0:
                start = index
            run += 1
            if run > best_len:
                best, best_len = start, run
        else:
            run = 0
    if best == -1:
        return ":".join(groups)
    return ":".join(groups[:best]) + "::" + ":".join(groups[best + best_len :])


def normalize_address(address: Address) -> str:
    """Dotted IPv4, RFC 5952 IPv6, an IPv4-mapped IPv6 address as IPv4, no scope id.

    Takes text, 4 or 16 packed bytes (a packet header) or an `ipaddress` object; raises
    ValueError for anything that is not an address. A scope id (fe80::1%eth0) names an
    interface of the sender's host, not part of the address, so it is dropped.
    """
    packed = _packed(address)
    if len(packed) == 16 and packed[:12] == _MAPPED:
        packed = packed[12:]
    return _written(packed)


def packet_address(address: str | bytes) -> str | None:
    """A packet's source or destination as `normalize_address` writes it; None if it is
    not an address, or is IPv4-mapped.

    The kernel gives an IPv4 packet's addresses as IPv4 (and an IPv6-only socket never
    sees one), so `::ffff:a.b.c.d` in a packet is an IPv6 packet whose sender chose that
    source: taken for a.b.c.d, it would let an IPv6 host knock, or reset a sequence, as
    an IPv4 address it does not have.
    """
    try:
        packed = _packed(address.split("%", 1)[0] if isinstance(address, str) else address)
    except ValueError:
        return None
    if len(packed) == 16 and packed[:12] == _MAPPED:
        return None
    return _written(packed)


def address_version(normalized: str) -> int:
    """4 or 6, for an address in the form `normalize_address` gives."""
    return 6 if ":" in normalized else 4


IPV6_PREFIX = 64
"""How much of an IPv6 source counts as one source: a site gets a /64 and holds 2^64 of them."""


def source_prefix(normalized: str, ipv6_prefix: int = IPV6_PREFIX) -> bytes:
    """The part of a source address that limits count by: all of IPv4, an IPv6 /`ipv6_prefix`.

    Takes the form `normalize_address` gives; the key is packed bytes, masked.
    """
    if ":" not in normalized:
        return socket.inet_pton(socket.AF_INET, normalized)
    packed = socket.inet_pton(socket.AF_INET6, normalized)
    whole, bits = divmod(ipv6_prefix, 8)
    if not bits:
        return packed[:whole]
    return packed[:whole] + bytes([packed[whole] & (0xFF00 >> bits) & 0xFF])


def ipv6_prefix_mask(ipv6_prefix: int = IPV6_PREFIX) -> str:
    """The netmask of an IPv6 /`ipv6_prefix` as an address (64 gives ffff:ffff:ffff:ffff::)."""
    import ipaddress  # the firewall's, once at start: kept off the client's start-up path

    return str(ipaddress.IPv6Network(f"::/{ipv6_prefix}").netmask)
