"""Which door, if any, a knock digest opens for a source address at a given moment.

Candidates are found by a keyed hash of the digest (a random key per process, the
"double HMAC" way), so the time a lookup takes says nothing about how close a guess came;
the one candidate found is then compared in constant time.

Every datagram from a source costs at most one round of hashing per minute: the expected
digests of all doors over the window are computed once for that source and minute and
kept in a bounded cache, so repeats and floods from one address cost a dict lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from tumbler.protocols.tumbler1 import stamp_for_minute

# Total expected digests kept across all cached sources; bounds memory whatever the door count.
# A cached digest costs about 85 bytes (an 8-byte blinded key and a shared index in a dict);
# a source's table itself costs about as much as TABLE_OVERHEAD digests. About 85 MB at most.
CACHE_DIGESTS = 1_000_000
# The largest window a config may set. A claim is held as long as a receiver with the
# largest window could still accept the knock: after a reload to a larger window, or in a
# fleet whose servers differ, a shorter claim would let the same knock in a second time.
MAX_WINDOW_MINUTES = 60
TABLE_OVERHEAD = 6


class SecretDoor(Protocol):
    """What the verifier needs of a door: its name and secret (None for a sequence door)."""

    @property
    def name(self) -> str: ...

    @property
    def secret(self) -> str | None: ...


D = TypeVar("D", bound=SecretDoor)


@dataclass(frozen=True)
class Match(Generic[D]):
    """A knock that proved a door's secret for a minute inside the window."""

    door: D
    stamp: str
    digest: str
    minute_offset: int
    expires: float  # epoch seconds after which no receiver could accept this digest again


class Verifier(Generic[D]):
    """Checks digests against every secret door over the window, for one config."""

    def __init__(self, doors: Sequence[D], window: int) -> None:
        self.doors = tuple(d for d in doors if d.secret is not None)
        self.window = window
        self._secrets = [(d, d.secret.encode("utf-8")) for d in self.doors if d.secret is not None]
        per_source = max(1, len(self.doors) * (2 * window + 1))
        self._capacity = max(16, CACHE_DIGESTS // (per_source + TABLE_OVERHEAD))
        self._key = secrets.token_bytes(32)
        # Table values index (minute offset, door) as offset_index * len(doors) + door_index;
        # the ints are made once here and shared by every table.
        self._codes = list(range(per_source))
        self._cache: OrderedDict[tuple[str, int], dict[int, int]] = OrderedDict()

    def _blind(self, raw: bytes) -> int:
        return int.from_bytes(hashlib.blake2b(raw, key=self._key, digest_size=8).digest())

    def _expected(self, address: str, minute: int) -> dict[int, int]:
        """Blinded expected digest -> code, for every door and minute of the window."""
        key = (address, minute)
        table = self._cache.get(key)
        if table is not None:
            self._cache.move_to_end(key)
            return table
        table = {}
        addr = address.encode("ascii")
        blind, codes, n = self._blind, self._codes, len(self._secrets)
        for k, offset in enumerate(range(-self.window, self.window + 1)):
            prefix = hashlib.sha256(stamp_for_minute(minute + offset).encode("ascii") + addr)
            base = k * n
            for j, (_, secret) in enumerate(self._secrets):
                h = prefix.copy()
                h.update(secret)
                table[blind(h.digest())] = codes[base + j]
        self._cache[key] = table
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return table

    def match(self, digest: str, address: str, now: float) -> Match[D] | None:
        """The door `digest` opens for `address` (normalised) at epoch `now`, or None.

        `digest` is the lowercase hex text that protocol.parse_datagram returns.
        """
        minute = int(now // 60)
        if len(digest) != 64:
            return None
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            return None
        code = self._expected(address, minute).get(self._blind(raw))
        if code is None:
            return None
        k, j = divmod(code, len(self._secrets))
        offset = k - self.window
        door, secret = self._secrets[j]
        stamp = stamp_for_minute(minute + offset)
        expected = hashlib.sha256(stamp.encode("ascii") + address.encode("ascii") + secret)
        if len(raw) != 32 or not hmac.compare_digest(expected.digest(), raw):
            return None
        # A stamp for minute m is accepted until the end of minute m + window, and some
        # receiver (this one after a reload, another of the fleet) may have the largest.
        expires = (minute + offset + MAX_WINDOW_MINUTES + 1) * 60.0
        return Match(door, stamp, digest, offset, expires)
