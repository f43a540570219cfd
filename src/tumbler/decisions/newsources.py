"""How much work the daemon spends on sources it has not seen, per source prefix and overall.

A known source costs a table lookup; a new one costs its hashes (every door over the window,
milliseconds with a thousand doors). A flood of new sources, which one IPv6 /64 supplies
without spoofing, must not starve the known ones, nor stop a knock from elsewhere. So:

- each prefix (an IPv4 address, an IPv6 /64 by default) may start PREFIX_RATE new sources a
  second, after a burst of PREFIX_BURST;
- a quiet prefix's new source (none from it for QUIET seconds) draws on a shared allowance
  of hashes, FIRST_HASHES a second (after as many in a burst), charged its doors x window at
  admission whatever the time it then takes: a knock from a quiet prefix is refused only
  when other quiet prefixes used that allowance within the second (50 a second with 1,000
  doors, 50,000 with one);
- the rest, a prefix minting addresses, is paid for in measured seconds (wall time: what a
  knock waiting behind it would wait) from a bucket refilled at SHARE of real time, so such
  a flood takes at most that share of the daemon's time and never the first-source count.
"""

from __future__ import annotations

from tumbler.addresses import IPV6_PREFIX, source_prefix

PREFIX_RATE = 25.0  # new sources a second per prefix: the kernel policy's knock rate
PREFIX_BURST = 100.0
FIRST_HASHES = 150_000.0  # a second, for the first new sources of quiet prefixes
SHARE = 0.25  # of real time, for the further new sources of busy prefixes
BURST_SECONDS = 0.05  # that bucket's depth
QUIET = 60.0  # seconds without a new source after which a prefix counts as quiet again
MAX_PREFIXES = 65_536  # prefixes tracked at once; beyond, their buckets start afresh

FIRST, MORE = 0, 1  # what an admitted source is charged to


class NewSourceBudget:
    """Per-prefix buckets (in sources), a first-source count and a time bucket for the rest."""

    def __init__(
        self,
        ipv6_prefix: int = IPV6_PREFIX,
        prefix_rate: float = PREFIX_RATE,
        prefix_burst: float = PREFIX_BURST,
        first_hashes: float = FIRST_HASHES,
        share: float = SHARE,
        burst_seconds: float = BURST_SECONDS,
        max_prefixes: int = MAX_PREFIXES,
    ) -> None:
        self.ipv6_prefix = ipv6_prefix
        self.prefix_rate = prefix_rate
        self.prefix_burst = prefix_burst
        self.first_hashes = first_hashes
        self.share = share
        self.burst_seconds = burst_seconds
        self.max_prefixes = max_prefixes
        self._prefixes: dict[bytes | str, tuple[float, float]] = {}
        self._first = first_hashes
        self._more = burst_seconds
        self._at: float | None = None

    def admit(self, address: str, now: float, hashes: int = 1) -> int | None:
        """FIRST or MORE for new source `address` (normalised) at `now`, or None: shed it.

        `hashes` is what checking a new source costs (doors x minutes of the window).
        """
        # An IPv4 prefix is the whole address, and its normalised text says it exactly.
        key = source_prefix(address, self.ipv6_prefix) if ":" in address else address
        prefixes = self._prefixes
        held = prefixes.get(key)
        if held is None:
            tokens, quiet = self.prefix_burst, True
        else:
            tokens, last = held
            elapsed = now - last
            if elapsed > 0.0:
                tokens += elapsed * self.prefix_rate
                if tokens > self.prefix_burst:
                    tokens = self.prefix_burst
            if tokens < 1.0:
                prefixes[key] = (tokens, now)
                return None
            quiet = elapsed >= QUIET
        at = self._at
        if at is not None and now > at:
            elapsed = now - at
            first = self._first + elapsed * self.first_hashes
            self._first = first if first < self.first_hashes else self.first_hashes
            more = self._more + elapsed * self.share
            self._more = more if more < self.burst_seconds else self.burst_seconds
        self._at = now
        if quiet:
            # A source dearer than a whole second's allowance goes when the allowance is full.
            if self._first < (hashes if hashes < self.first_hashes else self.first_hashes):
                return None
            self._first -= hashes
            bucket = FIRST
        elif self._more <= 0.0:
            return None
        else:
            bucket = MORE
        if held is None and len(prefixes) >= self.max_prefixes:
            prefixes.clear()
        prefixes[key] = (tokens - 1.0, now)
        return bucket

    def charge(self, bucket: int, seconds: float) -> None:
        """Pay for the work a MORE source took; in debt, that bucket admits nobody."""
        if bucket == MORE:
            self._more -= seconds
