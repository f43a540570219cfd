"""The deciding half of tumblerd: an input and the time in, a verdict out.

A datagram goes through the protocol (shape), the verifier (which door, within the
window) and the replay cache (claimed once); a connection attempt goes through the
sequence matcher. Nothing here acts, waits or needs a running loop, so the daemon's
decisions can be driven directly, by tests and by the fuzzer, with any clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tumbler.config.daemon import Config, Door
from tumbler.daemon.stats import Stats
from tumbler.decisions.replay import ReplayCache
from tumbler.decisions.sequence import SequenceMatcher
from tumbler.decisions.verifier import Verifier
from tumbler.errors import MalformedDatagram, ReplayStoreError
from tumbler.events import ConnectionAttempt
from tumbler.protocols.tumbler1 import parse_datagram

log = logging.getLogger("tumblerd")


@dataclass
class Runtime:
    """What a config builds; swapped whole on reload so a datagram sees one config or the other."""

    config: Config
    verifier: Verifier[Door]
    doors: dict[str, Door] = field(default_factory=dict)
    matcher: SequenceMatcher | None = None


def build_runtime(config: Config) -> Runtime:
    """The verifier and the sequence matcher for `config`, whose doors it checked already."""
    sequence_doors = [d.sequence_door for d in config.sequence_doors if d.sequence_door]
    return Runtime(
        config=config,
        verifier=Verifier(config.doors, config.window),
        doors={d.name: d for d in config.doors},
        matcher=SequenceMatcher(sequence_doors) if sequence_doors else None,
    )


@dataclass(frozen=True)
class Verdict:
    """What was decided about one input from `address`; `door` is set when it opens one.

    `outcome` is the counter it adds to: accepted, sequence, malformed, no-door, replay or
    store-down.
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

    def _verdict(self, outcome: str, address: str, door: Door | None = None) -> Verdict:
        self.stats.count(outcome)
        return Verdict(outcome, address, door)

    def decide(self, data: bytes, address: str, now: float) -> Verdict:
        """Decide one datagram from `address` (normalised) received at epoch `now`."""
        try:
            digest = parse_datagram(data)
        except MalformedDatagram:
            return self._verdict("malformed", address)
        match = self.runtime.verifier.match(digest, address, now)
        if match is None:
            return self._verdict("no-door", address)
        try:
            fresh = self.replay.claim(digest, match.expires, now)
        except ReplayStoreError as exc:
            log.error(
                "knock for door %s from %s refused, replay store failing: %s",
                match.door.name,
                address,
                exc,
            )
            return self._verdict("store-down", address)
        if not fresh:
            return self._verdict("replay", address)
        log.info(
            "knock accepted: door %s from %s (minute %+d)",
            match.door.name,
            address,
            match.minute_offset,
        )
        return self._verdict("accepted", address, match.door)

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
