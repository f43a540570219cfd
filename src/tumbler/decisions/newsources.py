"""How much work the daemon spends on sources it has not seen, per source prefix and overall.

A known source costs a table lookup; a new one costs its hashes (every door over the
window). A flood of new sources, which one IPv6 /64 supplies without spoofing, must not
starve the known ones, so new-source work is drawn from two token buckets: one per prefix
(an IPv4 address, an IPv6 /64 by default) and one for everything, counted in hashes.
"""

from __future__ import annotations

from tumbler.addresses import IPV6_PREFIX, source_prefix

# New sources a prefix may start per second (after a burst): the kernel policy's knock rate.
PREFIX_RATE = 25.0
PREFIX_BURST = 100.0
# Hashes a second spent on new sources, all prefixes together: about a fifth of a core here,
# so the rest of the time goes to known sources and to reading the socket.
TOTAL_HASHES = 200_000.0
# Prefixes tracked at once; beyond, the buckets start afresh (the total still bounds the work).
MAX_PREFIXES = 65_536


class NewSourceBudget:
    """Token buckets for new-source work: per prefix (in sources) and overall (in hashes)."""

    def __init__(
        self,
        ipv6_prefix: int = IPV6_PREFIX,
        prefix_rate: float = PREFIX_RATE,
        prefix_burst: float = PREFIX_BURST,
        total_hashes: float = TOTAL_HASHES,
        max_prefixes: int = MAX_PREFIXES,
    ) -> None:
        self.ipv6_prefix = ipv6_prefix
        self.prefix_rate = prefix_rate
        self.prefix_burst = prefix_burst
        self.total_hashes = total_hashes
        self.max_prefixes = max_prefixes
        self._prefixes: dict[bytes, tuple[float, float]] = {}
        self._total = total_hashes
        self._total_at: float | None = None

    def admit(self, address: str, cost: int, now: float) -> bool:
        """Spend `cost` hashes on the new source `address` (normalised) at `now`, if allowed."""
        key = source_prefix(address, self.ipv6_prefix)
        tokens, last = self._prefixes.get(key, (self.prefix_burst, now))
        tokens = min(self.prefix_burst, tokens + max(0.0, now - last) * self.prefix_rate)
        if tokens < 1.0:
            self._prefixes[key] = (tokens, now)
            return False
        if self._total_at is not None:
            elapsed = max(0.0, now - self._total_at)
            self._total = min(self.total_hashes, self._total + elapsed * self.total_hashes)
        self._total_at = now
        # A source costing more than a whole second's budget still goes, once the budget is full.
        if self._total < min(cost, self.total_hashes):
            return False
        self._total -= cost
        if key not in self._prefixes and len(self._prefixes) >= self.max_prefixes:
            self._prefixes.clear()
        self._prefixes[key] = (tokens - 1.0, now)
        return True
