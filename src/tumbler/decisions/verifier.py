"""Which door, if any, a knock digest opens for a source address at a given moment.

A source seen for the first time is checked directly: the expected digest of every door and
minute of the window is computed and each is compared with the knock in constant time, all
of them, whatever matched. That costs its hashes and little more, which is what a flood from
a new (spoofed, or IPv6) address per datagram buys.

A source that comes back gets a table of its expected digests for the minute, kept in a
bounded cache, so its repeats cost one lookup. Candidates in the table are found by a keyed
hash of the digest (a random key per process, the "double HMAC" way), so the time a lookup
takes says nothing about how close a guess came; the one candidate found is then recomputed
and compared in constant time.
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
# Sources remembered as seen once, per generation (two generations are kept): a source counts
# as coming back if it was seen among the last SEEN_SOURCES to 2 * SEEN_SOURCES new sources,
# and never further back than the table cache could hold. About 100 bytes each.
SEEN_SOURCES = 50_000


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
        self._secret_bytes = tuple(secret for _, secret in self._secrets)
        per_source = max(1, len(self.doors) * (2 * window + 1))
        self._capacity = max(16, CACHE_DIGESTS // (per_source + TABLE_OVERHEAD))
        # A keyed BLAKE2b state, copied per digest: the key block is hashed once, here.
        self._blinder = hashlib.blake2b(key=secrets.token_bytes(32), digest_size=8)
        # Table values index (minute offset, door) as offset_index * len(doors) + door_index;
        # the ints are made once here and shared by every table.
        self._codes = list(range(per_source))
        self._cache: OrderedDict[tuple[str, int], dict[int, int]] = OrderedDict()
        self._seen_limit = min(SEEN_SOURCES, self._capacity)
        self._seen: set[str] = set()
        self._seen_before: set[str] = set()
        self._stamps_minute: int | None = None
        self._stamps: tuple[bytes, ...] = ()
        # Hashes a new source costs: every door over every minute of the window. An
        # attribute, not a property: it is read once per datagram of a flood.
        self.cost = per_source

    def knows(self, address: str, now: float) -> bool:
        """True if `address` has a table for the minute of `now`: its datagrams cost a lookup."""
        return (address, int(now // 60)) in self._cache

    def _blind(self, raw: bytes) -> int:
        h = self._blinder.copy()
        h.update(raw)
        return int.from_bytes(h.digest())

    def _window_stamps(self, minute: int) -> tuple[bytes, ...]:
        """The stamps of the window around `minute`, oldest first; made once a minute."""
        if self._stamps_minute != minute:
            self._stamps = tuple(
                stamp_for_minute(minute + offset).encode("ascii")
                for offset in range(-self.window, self.window + 1)
            )
            self._stamps_minute = minute
        return self._stamps

    def _expected(self, address: str, minute: int) -> dict[int, int]:
        """Blinded expected digest -> code, for every door and minute of the window."""
        table = {}
        addr = address.encode("ascii")
        blind, codes, sha256 = self._blind, self._codes, hashlib.sha256
        code = 0
        for stamp in self._window_stamps(minute):
            prefix = stamp + addr
            for secret in self._secret_bytes:
                table[blind(sha256(prefix + secret).digest())] = codes[code]
                code += 1
        key = (address, minute)
        self._cache[key] = table
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return table

    def _direct(self, raw: bytes, address: str, minute: int) -> int | None:
        """The code of the expected digest equal to `raw`, comparing with every one of them."""
        addr = address.encode("ascii")
        sha256, compare = hashlib.sha256, hmac.compare_digest
        found = None
        code = 0
        stamps = self._stamps if minute == self._stamps_minute else self._window_stamps(minute)
        for stamp in stamps:
            prefix = stamp + addr
            for secret in self._secret_bytes:
                if compare(sha256(prefix + secret).digest(), raw):
                    found = code
                code += 1
        return found

    def match(self, digest: str, address: str, now: float) -> Match[D] | None:
        """The door `digest` opens for `address` (normalised) at epoch `now`, or None.

        `digest` is the lowercase hex text that protocol.parse_datagram returns.
        """
        if len(digest) != 64:
            return None
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            return None
        return self.match_raw(raw, address, now)

    def match_raw(self, raw: bytes, address: str, now: float) -> Match[D] | None:
        """As `match`, for the 32 digest bytes that protocol.digest_bytes returns."""
        if len(raw) != 32 or not self._secrets:
            return None
        minute = int(now // 60)
        key = (address, minute)
        table = self._cache.get(key)
        if table is None:
            return self.match_new(raw, address, now)
        self._cache.move_to_end(key)
        return self._confirm(table.get(self._blind(raw)), raw, address, minute)

    def match_new(self, raw: bytes, address: str, now: float) -> Match[D] | None:
        """As `match_raw` for a source without a table (`knows` said so): a flood's path.

        A source seen recently gets its table now; one never seen is remembered (in two
        bounded generations) and checked directly.
        """
        if len(raw) != 32 or not self._secrets:
            return None
        minute = int(now // 60)
        seen = self._seen
        if address in seen or address in self._seen_before:
            code = self._expected(address, minute).get(self._blind(raw))
        else:
            if len(seen) >= self._seen_limit:
                self._seen_before = seen
                seen = self._seen = set()
            seen.add(address)
            code = self._direct(raw, address, minute)
        return None if code is None else self._confirm(code, raw, address, minute)

    def _confirm(self, code: int | None, raw: bytes, address: str, minute: int) -> Match[D] | None:
        """The match that `code` names, recomputed and compared in constant time."""
        if code is None:
            return None
        k, j = divmod(code, len(self._secrets))
        offset = k - self.window
        door, secret = self._secrets[j]
        stamp = stamp_for_minute(minute + offset)
        expected = hashlib.sha256(stamp.encode("ascii") + address.encode("ascii") + secret)
        if not hmac.compare_digest(expected.digest(), raw):
            return None
        # A stamp for minute m is accepted until the end of minute m + window, and some
        # receiver (this one after a reload, another of the fleet) may have the largest.
        expires = (minute + offset + MAX_WINDOW_MINUTES + 1) * 60.0
        return Match(door, stamp, raw.hex(), offset, expires)
