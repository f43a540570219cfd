"""The sequence matcher's edge cases: order, resets, scans, resends, time, bounds."""

from __future__ import annotations

import pytest

from tumbler.decisions.sequence import SequenceMatcher
from tumbler.doors import SequenceDoor
from tumbler.events import PORT_UNSEEN, ConnectionAttempt
from tumbler.ports import PortSpec, parse_port_list

SRC = "192.168.0.5"
DST = "192.168.0.3"


def door(name: str = "ssh", ports: str = "42, 196, 69", timeout: float = 10.0) -> SequenceDoor:
    return SequenceDoor(name, parse_port_list(ports, allow_range=False), timeout)


def attempt(
    port: int,
    when: float = 0.0,
    source: str = SRC,
    proto: str = "tcp",
    src_port: int | None = None,
) -> ConnectionAttempt:
    return ConnectionAttempt(source, DST, proto, port, when, src_port)


def feed_all(matcher: SequenceMatcher, events: list[ConnectionAttempt]) -> list[str]:
    opened: list[str] = []
    for event in events:
        opened.extend(matcher.feed(event))
    return opened


def knocks(ports: list[int], start: float = 0.0, step: float = 0.1, **kw: object) -> list:
    return [attempt(p, start + i * step, **kw) for i, p in enumerate(ports)]  # type: ignore[arg-type]


def test_right_order_opens() -> None:
    matcher = SequenceMatcher([door()])
    assert feed_all(matcher, knocks([42, 196])) == []
    assert matcher.feed(attempt(69, 0.5)) == ["ssh"]


def test_steps_accept_portspecs_and_tuples() -> None:
    a = SequenceDoor("a", (PortSpec("tcp", 42, 42), ("udp", 500)), 5)
    assert a.steps == (("tcp", 42), ("udp", 500))
    matcher = SequenceMatcher([a])
    assert matcher.feed(attempt(42)) == []
    assert matcher.feed(attempt(500, 1, proto="udp")) == ["a"]


def test_protocol_matters() -> None:
    matcher = SequenceMatcher([door()])
    assert feed_all(matcher, [*knocks([42, 196]), attempt(69, 1, proto="udp")]) == []


@pytest.mark.parametrize("order", [[196, 42, 69], [42, 69, 196], [69, 196, 42], [196, 69, 42]])
def test_wrong_order_does_not_open(order: list[int]) -> None:
    matcher = SequenceMatcher([door()])
    assert feed_all(matcher, knocks(order)) == []


def test_wrong_order_then_right_order_opens() -> None:
    matcher = SequenceMatcher([door()])
    assert feed_all(matcher, knocks([196, 42, 69, 42, 196, 69])) == ["ssh"]


def test_other_port_between_knocks_resets() -> None:
    matcher = SequenceMatcher([door()])
    assert feed_all(matcher, knocks([42, 196, 80, 69])) == []
    assert matcher.progress(SRC) == {}


def test_first_step_after_progress_restarts_at_step_one() -> None:
    matcher = SequenceMatcher([door()])
    assert feed_all(matcher, knocks([42, 196, 42])) == []
    assert matcher.progress(SRC) == {"ssh": 1}
    assert feed_all(matcher, knocks([196, 69], start=1)) == ["ssh"]


def test_unseen_attempt_resets() -> None:
    matcher = SequenceMatcher([door()])
    assert feed_all(matcher, knocks([42, 196, PORT_UNSEEN, 69])) == []


@pytest.mark.parametrize("ports", ["42, 196, 69", "1000, 7000, 8000", "1024, 1, 512", "3, 5"])
@pytest.mark.parametrize("descending", [False, True])
def test_port_scan_never_opens(ports: str, descending: bool) -> None:
    matcher = SequenceMatcher([door(ports=ports)])
    scan = list(range(1, 1025)) if not descending else list(range(1024, 0, -1))
    assert feed_all(matcher, knocks(scan, step=0.001)) == []
    # nor a TCP + UDP scan, nor a scan repeated (nmap retries unanswered ports)
    assert feed_all(matcher, knocks(scan, proto="udp", step=0.001)) == []
    assert feed_all(matcher, knocks(scan + scan, step=0.001)) == []


def test_neighbouring_ports_rejected_because_a_scan_would_open() -> None:
    with pytest.raises(ValueError, match="neighbouring"):
        door(ports="100, 101, 200")
    with pytest.raises(ValueError, match="neighbouring"):
        door(ports="200, 101, 100")
    SequenceDoor("mixed", (("tcp", 100), ("udp", 101)), 5)  # other protocol is fine


@pytest.mark.parametrize(
    ("steps", "timeout"),
    [
        ((("tcp", 42),), 10),
        ((), 10),
        ((("tcp", 42), ("tcp", 69)), 0),
        ((("icmp", 1), ("tcp", 5)), 1),
    ],
)
def test_bad_doors_rejected(steps: tuple, timeout: float) -> None:
    with pytest.raises(ValueError):
        SequenceDoor("bad", steps, timeout)


def test_range_step_rejected() -> None:
    with pytest.raises(ValueError, match="range"):
        SequenceDoor("bad", (PortSpec("tcp", 40, 45), ("tcp", 69)), 5)


def test_retransmitted_syn_same_src_port_does_not_reset() -> None:
    matcher = SequenceMatcher([door()])
    events = [
        attempt(42, 0.0, src_port=40001),
        attempt(42, 1.0, src_port=40001),  # resend
        attempt(196, 1.1, src_port=40002),
        attempt(196, 2.1, src_port=40002),  # resend of the step just made
        attempt(42, 3.0, src_port=40001),  # late resend of an earlier step
        attempt(69, 3.2, src_port=40003),
    ]
    assert feed_all(matcher, events) == ["ssh"]


def test_repeat_of_just_knocked_port_without_src_port_does_not_reset() -> None:
    matcher = SequenceMatcher([door()])
    assert feed_all(matcher, knocks([42, 42, 196, 196, 69])) == ["ssh"]


def test_earlier_port_from_new_src_port_resets() -> None:
    matcher = SequenceMatcher([door()])
    events = [attempt(42, 0, src_port=1), attempt(196, 1, src_port=2), attempt(42, 2, src_port=3)]
    assert feed_all(matcher, events) == []
    assert matcher.progress(SRC) == {"ssh": 1}  # restarted at step one


def test_repeated_step_in_sequence_needs_a_new_attempt() -> None:
    matcher = SequenceMatcher([door(ports="42, 42, 69")])
    resend = [attempt(42, 0, src_port=1), attempt(42, 1, src_port=1), attempt(69, 2, src_port=2)]
    assert feed_all(matcher, resend) == []
    fresh = [attempt(42, 3, src_port=1), attempt(42, 3.1, src_port=2), attempt(69, 3.2, src_port=3)]
    assert feed_all(matcher, fresh) == ["ssh"]


def test_timeout_from_first_to_last_knock() -> None:
    matcher = SequenceMatcher([door(timeout=10)])
    assert feed_all(matcher, [attempt(42, 0), attempt(196, 5), attempt(69, 10.0)]) == ["ssh"]
    assert feed_all(matcher, [attempt(42, 20), attempt(196, 25), attempt(69, 30.5)]) == []


def test_expired_progress_lets_a_fresh_start_count() -> None:
    matcher = SequenceMatcher([door(timeout=10)])
    events = [attempt(42, 0), attempt(196, 1), attempt(42, 50), attempt(196, 51), attempt(69, 52)]
    assert feed_all(matcher, events) == ["ssh"]


def test_fires_once_then_resets() -> None:
    matcher = SequenceMatcher([door()])
    assert feed_all(matcher, knocks([42, 196, 69])) == ["ssh"]
    assert len(matcher) == 0
    assert feed_all(matcher, knocks([69, 69, 196, 69], start=1)) == []
    assert feed_all(matcher, knocks([42, 196, 69], start=2)) == ["ssh"]


def test_two_sources_independent() -> None:
    matcher = SequenceMatcher([door()])
    other = "2001:db8::7"
    events = [
        attempt(42, 0.0),
        attempt(42, 0.1, source=other),
        attempt(196, 0.2),
        attempt(999, 0.3, source=other),  # resets only the other source
        attempt(69, 0.4),
    ]
    assert feed_all(matcher, events) == ["ssh"]
    assert matcher.progress(other) == {}


def test_two_doors_progress_independently() -> None:
    ssh = door("ssh", "42, 196, 69")
    web = door("web", "42, 7000, 8000")
    matcher = SequenceMatcher([ssh, web])
    assert matcher.feed(attempt(42, 0)) == []
    assert matcher.progress(SRC) == {"ssh": 1, "web": 1}
    assert matcher.feed(attempt(7000, 1)) == []  # resets ssh, advances web
    assert matcher.progress(SRC) == {"web": 2}
    assert matcher.feed(attempt(8000, 2)) == ["web"]
    assert feed_all(matcher, knocks([42, 196, 69], start=3)) == ["ssh"]


def test_two_doors_completed_by_one_event() -> None:
    matcher = SequenceMatcher([door("a", "42, 69"), door("b", "500, 69")])
    assert feed_all(matcher, knocks([500, 42, 69])) == ["a"]
    matcher = SequenceMatcher([door("a", "42, 69"), door("b", "42, 69")])
    assert feed_all(matcher, knocks([42, 69])) == ["a", "b"]


def test_duplicate_door_names_rejected() -> None:
    with pytest.raises(ValueError):
        SequenceMatcher([door("a"), door("a", "7, 9")])


def test_table_bounded_under_spoofed_flood() -> None:
    matcher = SequenceMatcher([door()], max_sources=1000)
    for i in range(100_000):
        matcher.feed(attempt(42, i * 1e-4, source=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"))
        assert len(matcher) <= 1000
    assert len(matcher) == 1000
    # the most recent sources survive and can still finish
    last = "10.1.134.159"  # i = 99999
    assert matcher.feed(attempt(196, 11, source=last)) == []
    assert matcher.feed(attempt(69, 12, source=last)) == ["ssh"]


def test_attempts_that_start_nothing_are_not_tracked() -> None:
    matcher = SequenceMatcher([door()])
    feed_all(matcher, [attempt(p, source=f"10.0.0.{p % 250}") for p in range(100, 1000)])
    assert len(matcher) == 0


def test_prune_forgets_stale_sources() -> None:
    matcher = SequenceMatcher([door(timeout=10), door("web", "7000, 8000", timeout=30)])
    matcher.feed(attempt(42, 0, source="10.0.0.1"))
    matcher.feed(attempt(42, 20, source="10.0.0.2"))
    assert matcher.prune(25) == 0
    assert matcher.prune(31) == 1
    assert len(matcher) == 1
    assert matcher.prune(60) == 1
    assert len(matcher) == 0


def test_prune_keeps_recently_active() -> None:
    matcher = SequenceMatcher([door(timeout=10)])
    matcher.feed(attempt(42, 0, source="10.0.0.1"))
    matcher.feed(attempt(42, 1, source="10.0.0.2"))
    matcher.feed(attempt(196, 8, source="10.0.0.1"))  # now the most recent
    assert matcher.prune(15) == 1
    assert matcher.progress("10.0.0.1") == {"ssh": 2}


def test_forget() -> None:
    matcher = SequenceMatcher([door()])
    matcher.feed(attempt(42))
    matcher.forget(SRC)
    assert feed_all(matcher, knocks([196, 69])) == []


def test_a_probe_long_after_a_knock_still_resets_a_long_sequence() -> None:
    """A 5 min door: a probe 121 s after the first knock resets it, and pruning in between
    does not forget the source (the matcher remembers it for the longest timeout)."""
    matcher = SequenceMatcher([door("slow", "7000, 8000, 9000", timeout=300)])
    assert matcher.longest_timeout == 300
    matcher.feed(attempt(7000, 0))
    assert matcher.prune(121) == 0
    assert matcher.progress(SRC) == {"slow": 1}
    matcher.feed(attempt(7777, 121))  # a slow scan's probe between two knocks
    assert matcher.progress(SRC) == {}
    assert feed_all(matcher, [attempt(8000, 242), attempt(9000, 290)]) == []

    # Knocked at the same pace without the probe, the door opens: the reset was the probe's.
    assert feed_all(matcher, [attempt(7000, 400), attempt(8000, 521), attempt(9000, 642)]) == [
        "slow"
    ]
