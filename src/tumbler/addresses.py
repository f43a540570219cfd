"""The one written form of an IP address, for the hash, the firewall, the shell and the logs.

Every reader of an address (a datagram's source, a packet header, a log line, a config
key, a command-line option) gives it this form, so that one host is one string everywhere.
"""

from __future__ import annotations

import ipaddress

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


def address_version(normalized: str) -> int:
    """4 or 6, for an address in the form `normalize_address` gives."""
    return 6 if ":" in normalized else 4
