"""How much time the daemon spends on sources it has not seen, per source prefix and overall.

A known source costs a table lookup; a new one costs its hashes (every door over the window,
milliseconds with a thousand doors). A flood of new sources, which one IPv6 /64 supplies
without spoofing, must not starve the known ones, nor stop a knock from elsewhere. So:

- each prefix (an IPv4 address, an IPv6 /64 by default) may start PREFIX_RATE new sources a
  second, after a burst of PREFIX_BURST;
- new-source work is paid for in measured CPU seconds (the thread's, so time the process
  spent descheduled on a busy machine is not billed) from two shared buckets, each
  refilled at SHARE of real time: one for a prefix's first new source (its own bucket
  full), one for the rest. A prefix minting addresses drains only the second, so a knock
  from any other prefix still finds the first; together they leave known sources at least
  1 - 2 * SHARE of the time.

Time, not hash counts, so that the bound holds on a slow or busy machine too.
"""

from __future__ import annotations

from tumbler.addresses import IPV6_PREFIX, source_prefix

PREFIX_RATE = 25.0  # new sources a second per prefix: the kernel policy's knock rate
PREFIX_BURST = 100.0
SHARE = 0.25  # of real time, per shared bucket
BURST_SECONDS = 0.2  # a shared bucket's depth: dozens of 1,000-door sources
MAX_PREFIXES = 65_536  # prefixes tracked at once; beyond, their buckets start afresh

FIRST, MORE = 0, 1  # the shared buckets


class NewSourceBudget:
    """Per-prefix buckets (in sources) and two shared buckets (in seconds) for new sources."""

    def __init__(
        self,
        ipv6_prefix: int = IPV6_PREFIX,
        prefix_rate: float = PREFIX_RATE,
        prefix_burst: float = PREFIX_BURST,
        share: float = SHARE,
        burst_seconds: float = BURST_SECONDS,
        max_prefixes: int = MAX_PREFIXES,
    ) -> None:
        self.ipv6_prefix = ipv6_prefix
        self.prefix_rate = prefix_rate
        self.prefix_burst = prefix_burst
        self.share = share
        self.burst_seconds = burst_seconds
        self.max_prefixes = max_prefixes
        self._prefixes: dict[bytes, tuple[float, float]] = {}
        self._shared = [burst_seconds, burst_seconds]
        self._shared_at: float | None = None

    def admit(self, address: str, now: float) -> int | None:
        """The shared bucket to charge for new source `address` (normalised), or None: shed."""
        key = source_prefix(address, self.ipv6_prefix)
        tokens, last = self._prefixes.get(key, (self.prefix_burst, now))
        tokens = min(self.prefix_burst, tokens + max(0.0, now - last) * self.prefix_rate)
        if tokens < 1.0:
            self._prefixes[key] = (tokens, now)
            return None
        if self._shared_at is not None:
            refill = max(0.0, now - self._shared_at) * self.share
            self._shared = [min(self.burst_seconds, s + refill) for s in self._shared]
        self._shared_at = now
        bucket = FIRST if tokens >= self.prefix_burst else MORE
        if self._shared[bucket] <= 0.0:
            return None
        if key not in self._prefixes and len(self._prefixes) >= self.max_prefixes:
            self._prefixes.clear()
        self._prefixes[key] = (tokens - 1.0, now)
        return bucket

    def charge(self, bucket: int, seconds: float) -> None:
        """Pay for the work an admitted source took; a bucket in debt admits nobody."""
        self._shared[bucket] -= seconds
