"""Property tests for the sequence matcher: what can never open a door, and its bounds."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tumbler.decisions.sequence import SequenceMatcher
from tumbler.doors import SequenceDoor
from tumbler.events import ConnectionAttempt

PROTOS = ("tcp", "udp")
PORTS = st.integers(min_value=1, max_value=12)  # a small alphabet, so steps recur often
SOURCES = ["10.0.0.1", "10.0.0.2", "2001:db8::3"]


@st.composite
def doors(draw: st.DrawFn, name: str = "d") -> SequenceDoor:
    steps = draw(st.lists(st.tuples(st.sampled_from(PROTOS), PORTS), min_size=2, max_size=4))
    timeout = draw(st.floats(min_value=0.5, max_value=20.0))
    try:
        return SequenceDoor(name, steps, timeout)
    except ValueError:  # what a scan could complete: the config refuses it too
        assume(False)
        raise


@st.composite
def streams(draw: st.DrawFn, sources: list[str] = SOURCES) -> list[ConnectionAttempt]:
    """Attempts with non-decreasing times from a few sources, some with source ports."""
    n = draw(st.integers(min_value=0, max_value=40))
    when = 0.0
    out = []
    for _ in range(n):
        when += draw(st.floats(min_value=0.0, max_value=6.0))
        out.append(
            ConnectionAttempt(
                draw(st.sampled_from(sources)),
                "10.9.9.9",
                draw(st.sampled_from(PROTOS)),
                draw(PORTS),
                when,
                draw(st.one_of(st.none(), st.integers(min_value=1024, max_value=1027))),
            )
        )
    return out


def contains_in_time(events: list[ConnectionAttempt], door: SequenceDoor) -> bool:
    """True if the door's steps occur in order (not necessarily adjacent) within its timeout.

    A necessary condition for opening: the matcher is stricter (anything else in between
    starts over), so whatever fails this must never open.
    """
    keys = [(e.proto, e.port) for e in events]
    for start, key in enumerate(keys):
        if key != door.steps[0]:
            continue
        made, end = 1, start
        for i in range(start + 1, len(keys)):
            if made == len(door.steps):
                break
            if keys[i] == door.steps[made]:
                made, end = made + 1, i
        if made == len(door.steps) and events[end].when - events[start].when <= door.timeout:
            return True
    return False


@settings(max_examples=200)
@given(door=doors(), events=streams())
def test_nothing_opens_without_the_ordered_steps_in_time(door, events):
    matcher = SequenceMatcher([door])
    for i, event in enumerate(events):
        opened = matcher.feed(event)
        if opened:
            mine = [e for e in events[: i + 1] if e.source == event.source]
            assert contains_in_time(mine, door), (door, mine)
            assert mine[-1] is event and (event.proto, event.port) == door.steps[-1]


@settings(max_examples=200)
@given(door=doors(), events=streams())
def test_exact_knocks_open_whatever_came_before_from_others(door, events):
    """The exact steps from a fresh source, in time, always open (noise is from others)."""
    matcher = SequenceMatcher([door])
    for event in events:
        matcher.feed(event)
    start = events[-1].when if events else 0.0
    step = door.timeout / (2 * len(door.steps))
    knocker = "192.0.2.77"
    opened: list[str] = []
    for i, (proto, port) in enumerate(door.steps):
        opened += matcher.feed(
            ConnectionAttempt(knocker, "10.9.9.9", proto, port, start + i * step)
        )
    assert opened == [door.name]


@settings(max_examples=150)
@given(
    door=doors(),
    first=st.integers(min_value=1, max_value=12),
    last=st.integers(min_value=1, max_value=12),
    proto=st.sampled_from(PROTOS),
    src_port=st.one_of(st.none(), st.integers(min_value=1024, max_value=65535)),
    gaps=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=12, max_size=12),
)
def test_a_monotonic_scan_never_opens(door, first, last, proto, src_port, gaps):
    """An ascending or descending scan over any range, at any pace, with a fixed or no
    source port (as nmap sends), never completes a sequence."""
    ports = range(first, last + 1) if first <= last else range(first, last - 1, -1)
    matcher = SequenceMatcher([door])
    when = 0.0
    for port, gap in zip(ports, gaps, strict=False):
        when += gap
        assert (
            matcher.feed(ConnectionAttempt("10.0.0.1", "10.9.9.9", proto, port, when, src_port))
            == []
        )


@settings(max_examples=200)
@given(
    door_list=st.lists(doors(), min_size=1, max_size=3),
    events=streams([f"10.0.0.{i}" for i in range(1, 12)]),
    max_sources=st.integers(min_value=1, max_value=5),
)
def test_the_state_table_never_exceeds_max_sources(door_list, events, max_sources):
    named = [SequenceDoor(f"d{i}", d.steps, d.timeout) for i, d in enumerate(door_list)]
    matcher = SequenceMatcher(named, max_sources=max_sources)
    for event in events:
        matcher.feed(event)
        assert len(matcher) <= max_sources
    # Once every timeout has passed, pruning forgets everyone.
    last = events[-1].when if events else 0.0
    matcher.prune(last + max(d.timeout for d in named) + 1.0)
    assert len(matcher) == 0
