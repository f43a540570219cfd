"""The Tumbler wire protocol, version 1: pure functions, no sockets, files or clock reads.

Time is always an argument so that callers (and tests) decide which minute it is.
"""

from __future__ import annotations

import binascii
import hashlib
import time

from tumbler.addresses import Address, normalize_address
from tumbler.errors import MalformedDatagram

TYPE_CHECKING = False  # not typing's, nor datetime at run time: both cost client start-up
if TYPE_CHECKING:
    from datetime import datetime

DEFAULT_PORT = 8675
PREFIX = b"TUMBLER1:"
DIGEST_HEX_LEN = 64
# The longest datagram a receiver looks at: prefix, one space, 64 hex digits, CRLF.
MAX_DATAGRAM = len(PREFIX) + 1 + DIGEST_HEX_LEN + 2
MIN_DATAGRAM = len(PREFIX) + DIGEST_HEX_LEN
_HEX = frozenset(b"0123456789abcdefABCDEF")
_CANONICAL_HEAD = PREFIX + b" "
_CANONICAL_LEN = len(_CANONICAL_HEAD) + DIGEST_HEX_LEN


def minute_stamp(when: datetime) -> str:
    """Format a moment as the article's YYYMMDDHHmm (years since 1900, January is 00)."""
    if when.tzinfo is None:
        raise ValueError("minute_stamp needs an aware datetime (UTC)")
    t = when.utctimetuple()
    return f"{t.tm_year - 1900:03d}{t.tm_mon - 1:02d}{t.tm_mday:02d}{t.tm_hour:02d}{t.tm_min:02d}"


def stamp_for_minute(minute: int) -> str:
    """The stamp of the minute that starts at epoch second `minute * 60`; no datetime needed."""
    t = time.gmtime(minute * 60)
    return f"{t.tm_year - 1900:03d}{t.tm_mon - 1:02d}{t.tm_mday:02d}{t.tm_hour:02d}{t.tm_min:02d}"


def minute_stamps(when: datetime, window: int) -> list[str]:
    """The stamps a receiver accepts at `when`: `window` minutes either side, current first."""
    from datetime import timedelta  # loaded already: `when` is a datetime

    if window < 0:
        raise ValueError("window must be >= 0")
    offsets = [0]
    for k in range(1, window + 1):
        offsets += [-k, k]
    return [minute_stamp(when + timedelta(minutes=m)) for m in offsets]


def knock_digest(stamp: str, address: Address, secret: str) -> str:
    """Lowercase hex SHA-256 of stamp + address + secret, the knock K."""
    data = stamp.encode("ascii") + normalize_address(address).encode("ascii")
    return hashlib.sha256(data + secret.encode("utf-8")).hexdigest()


def encode_datagram(digest: str) -> bytes:
    """The canonical 74-byte datagram a sender puts on the wire."""
    if len(digest) != DIGEST_HEX_LEN or not set(digest.encode("ascii")) <= _HEX:
        raise ValueError("digest must be 64 hex digits")
    return PREFIX + b" " + digest.lower().encode("ascii")


def make_knock(secret: str, address: Address, when: datetime) -> bytes:
    """The datagram a client sends from `address` at `when`."""
    return encode_datagram(knock_digest(minute_stamp(when), address, secret))


def parse_datagram(data: bytes) -> str:
    """Return the lowercase digest of a well-shaped datagram, or raise MalformedDatagram.

    Checks length first and shape second, so that junk never costs more than a few
    comparisons and never reaches a hash.
    """
    n = len(data)
    if n < MIN_DATAGRAM or n > MAX_DATAGRAM or not data.startswith(PREFIX):
        raise MalformedDatagram("wrong size or prefix")
    body = data[len(PREFIX) :]
    if body.endswith(b"\r\n"):
        body = body[:-2]
    elif body.endswith(b"\n"):
        body = body[:-1]
    if body.startswith(b" "):
        body = body[1:]
    if len(body) != DIGEST_HEX_LEN or not _HEX.issuperset(body):
        raise MalformedDatagram("digest is not 64 hex digits")
    return body.decode("ascii").lower()


def digest_bytes(data: bytes) -> bytes:
    """The 32 digest bytes of a well-shaped datagram, or raise MalformedDatagram.

    Accepts exactly what parse_datagram accepts; the canonical 74-byte form, which is all
    a flood of well-shaped junk sends, is decoded in one step.
    """
    if len(data) == _CANONICAL_LEN and data.startswith(_CANONICAL_HEAD):
        try:
            return binascii.unhexlify(data[len(_CANONICAL_HEAD) :])
        except binascii.Error:
            raise MalformedDatagram("digest is not 64 hex digits") from None
    return bytes.fromhex(parse_datagram(data))
