"""Which doors a signed knock opens: key by id in O(1), one rate-limited verify, the window.

Pure apart from the signature check itself: time is an argument, nothing is read or sent.
The order of checks is the cost order, so that junk is refused as cheaply as it can be:

1. the key id names no trusted key: refused with one dictionary lookup, no cryptography;
2. the signature cannot fit the key (algorithm, size), or the key's own options
   (`from=`, `expiry-time`) refuse the address or the moment: refused, no cryptography;
3. the key id has used up its verifications (a token bucket per key id): refused, so a
   flood that reuses a captured key id costs at most `rate` verifications a second;
4. one signature verification;
5. the time is outside the window: refused, and the offset is reported, since the
   signature proves the key holder's clock is off rather than an attacker's guess.

Replays are the replay cache's business: `SignedMatch.token` and `.expires` are what to claim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from tumbler.decisions.verifier2 import MAX_WINDOW_SECONDS
from tumbler.protocols import sshsig
from tumbler.protocols.authorized_keys import AuthorizedKey
from tumbler.protocols.sshkeys import Verify, load_verifier, signature_plausible

DEFAULT_WINDOW = 60  # seconds either side
DEFAULT_RATE = 10.0  # verifications per second per key id, refilled continuously
DEFAULT_BURST = 20.0


class Refusal(Enum):
    """Why a signed knock opened nothing; the value is the daemon's counter name."""

    UNKNOWN_KEY = "signed-unknown-key"
    IMPLAUSIBLE = "signed-malformed"
    KEY_OPTIONS = "signed-key-options"
    RATE_LIMITED = "signed-rate-limited"
    BAD_SIGNATURE = "signed-bad-signature"
    STALE = "signed-stale"


@dataclass(frozen=True)
class SignedMatch:
    """An accepted signed knock: the doors that trust its key, and what to claim against replay."""

    doors: tuple[str, ...]
    key: AuthorizedKey
    offset: int  # knock time minus the receiver's clock, in seconds
    token: str
    expires: float


@dataclass(frozen=True)
class SignedRefusal:
    """A refused signed knock; `key` and `offset` are set once the key is known / proven."""

    reason: Refusal
    key: AuthorizedKey | None = None
    offset: int | None = None


@dataclass
class _Trusted:
    key: AuthorizedKey
    verify: Verify
    doors: list[str] = field(default_factory=list)
    tokens: float = 0.0
    last: float = 0.0


class SignedVerifier:
    """The trusted keys of every signed door, by key id, for one config."""

    def __init__(
        self,
        trust: Mapping[str, Sequence[AuthorizedKey]],
        window: int = DEFAULT_WINDOW,
        realm: str = "",
        rate: float = DEFAULT_RATE,
        burst: float = DEFAULT_BURST,
    ) -> None:
        """`trust` maps a door name to the keys its file lists; needs `cryptography`.

        Raises SshSupportMissing (from load_verifier) when the package is not installed.
        """
        self.window = window
        self.realm = realm
        self.rate = rate
        self.burst = burst
        self._keys: dict[bytes, _Trusted] = {}
        for door, keys in trust.items():
            for entry in keys:
                kid = entry.key.key_id
                trusted = self._keys.get(kid)
                if trusted is None:
                    trusted = _Trusted(entry, load_verifier(entry.key), tokens=burst)
                    self._keys[kid] = trusted
                elif trusted.key.key.blob != entry.key.blob:
                    # Two keys sharing 64 bits of SHA-256: not by chance. Trust neither.
                    raise ValueError(
                        f"key {entry.key.fingerprint} and {trusted.key.key.fingerprint} "
                        "share a key id"
                    )
                trusted.doors.append(door)

    def __len__(self) -> int:
        return len(self._keys)

    def knows(self, kid: bytes) -> bool:
        return kid in self._keys

    def _refill(self, trusted: _Trusted, now: float) -> None:
        elapsed = max(0.0, now - trusted.last)
        trusted.tokens = min(self.burst, trusted.tokens + elapsed * self.rate)
        trusted.last = now

    def _spend(self, trusted: _Trusted, now: float) -> bool:
        self._refill(trusted, now)
        if trusted.tokens < 1.0:
            return False
        trusted.tokens -= 1.0
        return True

    def exhausted(self, kid: bytes, now: float) -> bool:
        """Whether `kid` has no verification left now: its datagrams need not even be parsed.

        Spends nothing; a known key id only (check `knows` first).
        """
        trusted = self._keys[kid]
        self._refill(trusted, now)
        return trusted.tokens < 1.0

    def match(
        self, knock: sshsig.SignedKnock, address: str, now: float
    ) -> SignedMatch | SignedRefusal:
        """Decide one parsed signed knock from `address` (normalised) at epoch `now`."""
        trusted = self._keys.get(knock.key_id)
        if trusted is None:
            return SignedRefusal(Refusal.UNKNOWN_KEY)
        entry = trusted.key
        if not signature_plausible(entry.key, knock.signature):
            return SignedRefusal(Refusal.IMPLAUSIBLE, entry)
        if not entry.allows(address, int(now)):
            return SignedRefusal(Refusal.KEY_OPTIONS, entry)
        if not self._spend(trusted, now):
            return SignedRefusal(Refusal.RATE_LIMITED, entry)
        if not sshsig.verify_knock(entry.key, trusted.verify, knock, address, self.realm):
            return SignedRefusal(Refusal.BAD_SIGNATURE, entry)
        offset = knock.time - int(now)
        if abs(offset) > self.window:
            return SignedRefusal(Refusal.STALE, entry, offset)
        # A receiver accepts this time until now - time exceeds its window, and some
        # receiver (this one after a reload, another of the fleet) may have the largest.
        expires = float(knock.time + MAX_WINDOW_SECONDS + 1)
        return SignedMatch(tuple(trusted.doors), entry, offset, sshsig.claim_token(knock), expires)
