"""The classic port-knock matcher: a pure state machine per source address.

Krzywinski's scheme opens a door when one source makes connection attempts to a secret
sequence of closed ports. The firewall logs every attempt it drops, so *any* other attempt
from that source between two knocks starts the sequence over: a port scan, ascending or
descending, always touches ports between the knocks and can never complete a sequence
(knockd ignores such attempts and lets scans through, its issue #71). A retransmitted SYN
of a knock already made does not count as another attempt.

No sockets, files or clock reads here: every event carries its own time, and `prune`
takes the current time as an argument.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from tumbler.doors import SequenceDoor, Step
from tumbler.events import ConnectionAttempt


class _Progress:
    """How far one source got on one door; `src_ports` of the knocks made, to spot resends."""

    __slots__ = ("src_ports", "started")

    def __init__(self, started: float, src_port: int | None) -> None:
        self.started = started
        self.src_ports: tuple[int | None, ...] = (src_port,)


@dataclass(slots=True)
class _SourceState:
    last_seen: float
    doors: dict[int, _Progress] = field(default_factory=dict)


class SequenceMatcher:
    """Feeds connection attempts through every door's sequence, per source address.

    Only sources that made at least one first knock are tracked, at most `max_sources` of
    them: the least recently seen is forgotten first, so a flood from spoofed addresses costs
    bounded memory and O(1) per event.
    """

    def __init__(self, doors: Sequence[SequenceDoor], max_sources: int = 10000) -> None:
        if max_sources < 1:
            raise ValueError("max_sources must be at least 1")
        names = [door.name for door in doors]
        if len(set(names)) != len(names):
            raise ValueError("sequence door names must be unique")
        self.doors: tuple[SequenceDoor, ...] = tuple(doors)
        self.max_sources = max_sources
        self._max_timeout = max((door.timeout for door in self.doors), default=0.0)
        self._starts: dict[Step, list[int]] = {}
        for index, door in enumerate(self.doors):
            self._starts.setdefault(door.steps[0], []).append(index)
        self._sources: OrderedDict[str, _SourceState] = OrderedDict()

    @property
    def longest_timeout(self) -> float:
        """The longest sequence timeout: how long a source's knocks can still count."""
        return self._max_timeout

    def __len__(self) -> int:
        """Number of sources tracked now."""
        return len(self._sources)

    def progress(self, source: str) -> dict[str, int]:
        """Steps made so far per door for `source` (for logs and tests)."""
        state = self._sources.get(source)
        if state is None:
            return {}
        return {self.doors[i].name: len(p.src_ports) for i, p in state.doors.items()}

    def feed(self, event: ConnectionAttempt) -> list[str]:
        """Account one attempt; return the names of the doors it completes (each fires once)."""
        key: Step = (event.proto, event.port)
        state = self._sources.get(event.source)
        if state is None:
            starts = self._starts.get(key)
            if not starts:
                return []
            state = _SourceState(event.when)
            for index in starts:
                state.doors[index] = _Progress(event.when, event.src_port)
            self._sources[event.source] = state
            while len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
            return []

        self._sources.move_to_end(event.source)
        state.last_seen = max(state.last_seen, event.when)
        opened: list[str] = []
        for index, door in enumerate(self.doors):
            progress = state.doors.get(index)
            if progress is not None and event.when - progress.started > door.timeout:
                del state.doors[index]
                progress = None
            if progress is None:
                if door.steps[0] == key:
                    state.doors[index] = _Progress(event.when, event.src_port)
                continue
            verdict = self._advance(door, progress, key, event.src_port)
            if verdict == "reset":
                del state.doors[index]
                if door.steps[0] == key:
                    state.doors[index] = _Progress(event.when, event.src_port)
            elif verdict == "done":
                del state.doors[index]
                opened.append(door.name)
        if not state.doors:
            del self._sources[event.source]
        return opened

    @staticmethod
    def _advance(door: SequenceDoor, progress: _Progress, key: Step, src_port: int | None) -> str:
        made = len(progress.src_ports)
        if src_port is not None:
            for step, knocked_from in zip(door.steps, progress.src_ports, strict=False):
                if step == key and knocked_from == src_port:
                    return "resent"
        if door.steps[made] == key:
            progress.src_ports += (src_port,)
            return "done" if made + 1 == len(door.steps) else "next"
        if door.steps[made - 1] == key:
            return "repeat"
        return "reset"

    def prune(self, now: float) -> int:
        """Forget sources whose every attempt is older than the longest timeout; return how many.

        Sources are kept in order of last activity, so this stops at the first live one.
        """
        removed = 0
        while self._sources:
            source, state = next(iter(self._sources.items()))
            if now - state.last_seen <= self._max_timeout:
                break
            del self._sources[source]
            removed += 1
        return removed

    def forget(self, source: str) -> None:
        """Drop all progress of `source` (e.g. after an administrator's reset)."""
        self._sources.pop(source, None)
