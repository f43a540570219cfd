"""The deciding half of tumblerd: an input and the time in, a verdict out.

A datagram goes through its protocol (shape; v1 or v2), its verifier (which door, within
the window) and the replay cache (claimed once); a connection attempt goes through the
sequence matcher. Nothing here acts, waits or needs a running loop, so the daemon's
decisions can be driven directly, by tests and by the fuzzer, with any clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from tumbler.config.daemon import Config, Door
from tumbler.daemon.stats import Stats
from tumbler.decisions.replay import ReplayCache
from tumbler.decisions.sequence import SequenceMatcher
from tumbler.decisions.verifier import Verifier
from tumbler.decisions.verifier2 import ACCEPTED, CLOCK_SKEW, UNKNOWN_KEY, Verifier2
from tumbler.errors import MalformedDatagram, ReplayStoreError
from tumbler.events import ConnectionAttempt
from tumbler.protocols import tumbler2
from tumbler.protocols.tumbler1 import parse_datagram

log = logging.getLogger("tumblerd")

SKEW_LOG_EVERY = 10.0  # seconds between two clock-skew lines; the rest are only counted


@dataclass
class Runtime:
    """What a config builds; swapped whole on reload so a datagram sees one config or the other."""

    config: Config
    verifier: Verifier[Door]
    verifier2: Verifier2[Door]
    doors: dict[str, Door] = field(default_factory=dict)
    matcher: SequenceMatcher | None = None


def build_runtime(config: Config) -> Runtime:
    """The verifier and the sequence matcher for `config`, whose doors it checked already."""
    sequence_doors = [d.sequence_door for d in config.sequence_doors if d.sequence_door]
    return Runtime(
        config=config,
        verifier=Verifier(config.doors, config.window),
        verifier2=Verifier2(config.key_doors, config.realm, config.window_seconds),
        doors={d.name: d for d in config.doors},
        matcher=SequenceMatcher(sequence_doors) if sequence_doors else None,
    )


@dataclass(frozen=True)
class Verdict:
    """What was decided about one input from `address`; `door` is set when it opens one.

    `outcome` is the counter it adds to: accepted, sequence, malformed, no-door, replay,
    store-down, or for v2 knocks bad-mac and clock-skew.
    """

    outcome: str
    address: str
    door: Door | None = None


class Pipeline:
    """Decides datagrams and connection attempts against the current runtime."""

    def __init__(self, runtime: Runtime, replay: ReplayCache, stats: Stats) -> None:
        self.runtime = runtime
        self.replay = replay
        self.stats = stats
        self.last_skew: dict[str, Any] | None = None  # the last right knock from a wrong clock
        self._skew_logged = float("-inf")
        self._skew_quiet = 0

    def _verdict(self, outcome: str, address: str, door: Door | None = None) -> Verdict:
        self.stats.count(outcome)
        return Verdict(outcome, address, door)

    def decide(self, data: bytes, address: str, now: float) -> Verdict:
        """Decide one datagram from `address` (normalised) received at epoch `now`."""
        if tumbler2.is_v2(data):
            if data[tumbler2.KEY_ID_SLICE] not in self.runtime.verifier2:
                return self._verdict(UNKNOWN_KEY, address)  # before parsing: a flood's cheapest
            return self._decide_v2(tumbler2.parse(data), address, now)
        try:
            digest = parse_datagram(data)
        except MalformedDatagram:
            return self._verdict("malformed", address)
        match = self.runtime.verifier.match(digest, address, now)
        if match is None:
            return self._verdict("no-door", address)
        detail = f"minute {match.minute_offset:+d}"
        return self._claim(match.door, digest, match.expires, address, now, detail)

    def _decide_v2(self, knock: tumbler2.Knock2, address: str, now: float) -> Verdict:
        """A v2 knock: key id, one MAC, the window (skew reported), then the replay claim."""
        verdict = self.runtime.verifier2.check(knock, address, now)
        if verdict.reason == ACCEPTED and verdict.door is not None:
            return self._claim(verdict.door, verdict.claim, verdict.expires, address, now, "v2")
        if verdict.reason == CLOCK_SKEW and verdict.door is not None:
            self._report_skew(verdict.door, address, verdict.offset, now)
        return self._verdict(verdict.reason, address)

    def _report_skew(self, door: Door, address: str, offset: int, now: float) -> None:
        """Log a right knock from a wrong clock, at most once per SKEW_LOG_EVERY seconds."""
        self.last_skew = {"door": door.name, "address": address, "offset": offset, "at": now}
        if now - self._skew_logged < SKEW_LOG_EVERY:
            self._skew_quiet += 1
            return
        more = f" ({self._skew_quiet} more since the last report)" if self._skew_quiet else ""
        log.warning(
            "knock for door %s from %s refused: clock off by %+d s, window %d s%s",
            door.name,
            address,
            offset,
            self.runtime.config.window_seconds,
            more,
        )
        self._skew_logged = now
        self._skew_quiet = 0

    def _claim(
        self, door: Door, claim: str, expires: float, address: str, now: float, detail: str
    ) -> Verdict:
        """Claim a proved knock in the replay cache: accepted only if it is fresh."""
        try:
            fresh = self.replay.claim(claim, expires, now)
        except ReplayStoreError as exc:
            log.error(
                "knock for door %s from %s refused, replay store failing: %s",
                door.name,
                address,
                exc,
            )
            return self._verdict("store-down", address)
        if not fresh:
            return self._verdict("replay", address)
        log.info("knock accepted: door %s from %s (%s)", door.name, address, detail)
        return self._verdict("accepted", address, door)

    def attempt(self, event: ConnectionAttempt) -> list[Verdict]:
        """Feed one connection attempt to the sequence matcher: the doors it completes."""
        runtime = self.runtime
        if runtime.matcher is None:
            return []
        verdicts = []
        for name in runtime.matcher.feed(event):
            log.info("knock sequence completed: door %s from %s", name, event.source)
            verdicts.append(self._verdict("sequence", event.source, runtime.doors[name]))
        return verdicts
