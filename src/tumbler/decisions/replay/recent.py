"""The claims this daemon made, remembered in front of its store.

A flood of one captured datagram would otherwise cost a store round trip (a Redis
request, an SQLite write) per copy; a digest this process has claimed is refused here
first, until the claim expires. The store stays the authority: a digest not seen here
is always put to it.
"""

from __future__ import annotations

import threading

from tumbler.decisions.replay.base import ReplayCache


class RecentClaims:
    """A ReplayCache that answers repeats of its own claims without asking `store`."""

    def __init__(self, store: ReplayCache) -> None:
        self.store = store
        self.name = store.name
        self._claimed: dict[str, float] = {}
        self._lock = threading.Lock()  # claims come from the loop, prunes from a worker

    def holds(self, digest: str, now: float) -> bool:
        """True if this process claimed (or noted) `digest` and the claim holds at `now`."""
        held = self._claimed.get(digest)
        return held is not None and held > now

    def note(self, digest: str, until: float) -> None:
        """Remember `digest` until `until` without asking the store (a refusal not to repeat)."""
        with self._lock:
            self._claimed[digest] = until

    def claim(self, digest: str, expires: float, now: float) -> bool:
        if self.holds(digest, now):
            return False
        fresh = self.store.claim(digest, expires, now)
        with self._lock:
            self._claimed[digest] = expires
        return fresh

    def prune(self, now: float) -> int:
        with self._lock:
            self._claimed = {d: e for d, e in self._claimed.items() if e > now}
        return self.store.prune(now)

    def probe(self) -> None:
        self.store.probe()

    def close(self) -> None:
        self.store.close()
