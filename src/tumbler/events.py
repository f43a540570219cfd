"""The one event every knock source produces, so the matcher never cares where it came from."""

from __future__ import annotations

from dataclasses import dataclass

from tumbler.addresses import packet_address

PORT_UNSEEN = 0
"""Port of an attempt the source could not see in detail (e.g. rate-limited): always a reset."""


@dataclass(frozen=True, slots=True)
class ConnectionAttempt:
    """A new inbound connection attempt: a TCP SYN without ACK, or a UDP datagram.

    `source` and `dest` are addresses as text (IPv4 dotted, IPv6 RFC 5952; never an
    IPv4-mapped IPv6 address, see `canonical_address`). `when` is the time the source saw
    it, on the clock the daemon gave the source. `port` is `PORT_UNSEEN` (0) for attempts
    that were counted but not logged in detail: no door has port 0, so such an event resets
    progress.
    """

    source: str
    dest: str
    proto: str
    port: int
    when: float
    src_port: int | None = None


def canonical_address(address: str | bytes) -> str | None:
    """An address as the protocol writes it, None if invalid or IPv4-mapped.

    Takes text, or 4 or 16 packed bytes from a packet header; see `packet_address`.
    """
    return packet_address(address)


# How the firewall's logging rules mark the attempts they send to an NFLOG group, so that
# the rules (an action) and the reader (a source) agree without importing each other.
NFLOG_GROUP = 8675
NFLOG_PREFIX = "tumbler"
NFLOG_PREFIX_OVER = "tumbler-over"
NFLOG_COPY_RANGE = 96
"""Enough for an IPv6 header, a few extension headers and the TCP flags."""
