"""The one written form of an IP address, for the hash, the firewall, the shell and the logs.

Every reader of an address (a datagram's source, a packet header, a log line, a config
key, a command-line option) gives it this form, so that one host is one string everywhere.
"""

from __future__ import annotations

import ipaddress
import socket

Address = str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address


def normalize_address(address: Address) -> str:
    """Dotted IPv4, RFC 5952 IPv6, an IPv4-mapped IPv6 address as IPv4, no scope id.

    Takes text, 4 or 16 packed bytes (a packet header) or an `ipaddress` object; raises
    ValueError for anything that is not an address. A scope id (fe80::1%eth0) names an
    interface of the sender's host, not part of the address, so it is dropped.
    """
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


def packet_address(address: str | bytes) -> str | None:
    """A packet's source or destination as `normalize_address` writes it; None if it is
    not an address, or is IPv4-mapped.

    The kernel gives an IPv4 packet's addresses as IPv4 (and an IPv6-only socket never
    sees one), so `::ffff:a.b.c.d` in a packet is an IPv6 packet whose sender chose that
    source: taken for a.b.c.d, it would let an IPv6 host knock, or reset a sequence, as
    an IPv4 address it does not have.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return None
    return normalize_address(ip)


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
    return str(ipaddress.IPv6Network(f"::/{ipv6_prefix}").netmask)
