"""Counters of what the daemon did, and a rejection log that a flood cannot fill the disk with."""

from __future__ import annotations

import logging
from collections import Counter

REJECT_REASONS = (
    "malformed",
    "no-door",
    "shed",
    "bad-mac",
    "clock-skew",
    "replay",
    "refused",
    "store-down",
    "signed-unknown-key",
    "signed-malformed",
    "signed-key-options",
    "signed-rate-limited",
    "signed-bad-signature",
    "signed-stale",
)
# What can become of one datagram (clock-skew is the stale one: a right key, a wrong time).
DATAGRAM_OUTCOMES = ("accepted", *REJECT_REASONS)


class Stats:
    """Counts outcomes; rejected datagrams are summarised at most once per `interval` seconds."""

    def __init__(self, log: logging.Logger, interval: float = 10.0) -> None:
        self.log = log
        self.interval = interval
        self.total: Counter[str] = Counter()
        self.accepted_by_door: Counter[str] = Counter()  # knocks and sequences that opened
        self.replay_ok = True  # whether the replay store's last prune worked (claims: the daemon)
        self._said: dict[str, int] = {}  # the rejection counts at the last summary line
        self._last_flush = 0.0

    def count(self, outcome: str, n: int = 1, door: str | None = None) -> None:
        """Count `n` of `outcome`; `door` names the door an accepted knock opened."""
        # Called once per datagram in a flood: the summary's share is worked out at flush.
        self.total[outcome] += n
        if door is not None:
            self.accepted_by_door[door] += n

    def flush(self, now: float, force: bool = False) -> None:
        """Log one line for the rejections since the last one, if the interval has passed."""
        if not force and now - self._last_flush < self.interval:
            return
        total, said = self.total, self._said
        pending = [(r, total[r] - said.get(r, 0)) for r in REJECT_REASONS]
        parts = ", ".join(f"{reason} {n}" for reason, n in pending if n)
        if not parts:
            return
        self.log.info("rejected datagrams: %s", parts)
        self._said = {reason: total[reason] for reason in REJECT_REASONS}
        self._last_flush = now
