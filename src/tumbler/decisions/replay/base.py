"""What every replay store offers: an accepted digest is claimed once, atomically.

`claim` must be atomic: two daemons, or two datagrams racing, can never both win the same
digest.
"""

from __future__ import annotations

from typing import Protocol


class ReplayCache(Protocol):
    """What the daemon needs of a replay store."""

    name: str

    def claim(self, digest: str, expires: float, now: float) -> bool:
        """Record `digest` until epoch `expires`; False if a claim on it holds at `now`."""
        ...

    def prune(self, now: float) -> int:
        """Forget claims that expired before `now`; return how many."""
        ...

    def probe(self) -> None:
        """Ask a failing remote store whether it is back (the daemon calls this every tick)."""
        ...

    def close(self) -> None: ...
