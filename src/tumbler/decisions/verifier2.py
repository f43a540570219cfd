"""Which door a v2 knock opens: found by key id in a dict, proved by one MAC, then timed.

The order is the protocol's (docs/PROTOCOL.md, "What a receiver does"): an unknown key
id costs a dict lookup and no hashing, a known one costs one HMAC whatever the number of
doors, and only a knock with a right MAC is judged on its time, so that a clock offset
is reported only for knocks made with the key. Replays are the caller's: the verdict
carries the claim to make and how long to hold it. Time is an argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from tumbler.protocols import tumbler2

DEFAULT_WINDOW_SECONDS = 60  # a v2 knock's time may be this many seconds either side of ours
# The largest window a config may set; a claim is held that long (see verifier.py).
MAX_WINDOW_SECONDS = 3600

ACCEPTED = "accepted"
UNKNOWN_KEY = "no-door"  # the v1 name for "no door matches", so one counter serves both
BAD_MAC = "bad-mac"
CLOCK_SKEW = "clock-skew"


class KeyedDoor(Protocol):
    """What this module needs of a door: its name and its v2 key, if it has one."""

    @property
    def name(self) -> str: ...

    @property
    def key(self) -> bytes | None: ...


D = TypeVar("D", bound=KeyedDoor)


@dataclass(frozen=True, slots=True)
class Verdict(Generic[D]):
    """What one v2 knock proved: `reason` is ACCEPTED, UNKNOWN_KEY, BAD_MAC or CLOCK_SKEW.

    `door` is set once the key id named one; `offset` (sender minus receiver, seconds)
    once the MAC was right; `claim` and `expires` only for ACCEPTED.
    """

    reason: str
    door: D | None = None
    offset: int = 0
    claim: str = ""
    expires: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.reason == ACCEPTED


def claim_key(knock: tumbler2.Knock2) -> str:
    """The replay cache key of a knock: its MAC, which no two fresh knocks share.

    The `2:` prefix keeps it apart from v1 digests (64 hex digits) in a shared store.
    """
    return "2:" + knock.mac.hex()


class Verifier2(Generic[D]):
    """Checks v2 knocks against the keyed doors of one config, for one realm and window."""

    def __init__(
        self, doors: Iterable[D], realm: str = "", window: int = DEFAULT_WINDOW_SECONDS
    ) -> None:
        if window < 0:
            raise ValueError("the window cannot be negative")
        tumbler2.realm_bytes(realm)  # refuse a bad realm now, not at the first knock
        self.realm = realm
        self.window = window
        self._by_id: dict[bytes, tuple[D, bytes]] = {}
        for door in doors:
            if door.key is None:
                continue
            kid = tumbler2.key_id(door.key)
            other = self._by_id.get(kid)
            if other is not None:
                raise ValueError(f"doors {other[0].name} and {door.name} have the same key id")
            self._by_id[kid] = (door, door.key)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, key_id: bytes) -> bool:
        """Whether some door has a key with this id: a dict lookup, no hashing."""
        return key_id in self._by_id

    def door_for(self, key_id: bytes) -> D | None:
        """The door whose key has this id, if any (a key id is public: this is no secret)."""
        found = self._by_id.get(key_id)
        return found[0] if found is not None else None

    def check(self, knock: tumbler2.Knock2, address: str, now: float) -> Verdict[D]:
        """Judge a parsed knock from `address` (normalised) at epoch `now`."""
        found = self._by_id.get(knock.key_id)
        if found is None:
            return Verdict(UNKNOWN_KEY)
        door, key = found
        if not tumbler2.verify(knock, key, address, self.realm):
            return Verdict(BAD_MAC, door)
        offset = tumbler2.clock_offset(knock, now)
        if not tumbler2.within_window(offset, self.window):
            return Verdict(CLOCK_SKEW, door, offset)
        # A receiver accepts this time until now - time exceeds its window, and some
        # receiver (this one after a reload, another of the fleet) may have the largest.
        expires = float(knock.time + MAX_WINDOW_SECONDS + 1)
        return Verdict(ACCEPTED, door, offset, claim_key(knock), expires)
