"""ssh-proxy's v2 knocker: every retry is a fresh knock stamped now, with no minute juggling."""

from __future__ import annotations

from datetime import UTC, datetime

from tumbler.client.sshproxy import FreshKnocker, MinuteKnocker, knock_until_open

T0 = datetime(2025, 12, 1, 2, 0, 59, tzinfo=UTC).timestamp()


def test_fresh_knocker_knocks_now_every_time():
    clock = [T0]
    sent: list[float] = []
    knocker = FreshKnocker(send=sent.append, clock=lambda: clock[0])
    for _ in range(5):  # a MinuteKnocker runs out after three in one minute
        assert knocker.knock() == 0
    clock[0] += 1
    assert knocker.knock() == 0
    assert sent == [T0] * 5 + [T0 + 1]
    assert len(knocker.sent) == 6


def test_minute_knocker_runs_out_where_the_fresh_one_does_not():
    minute = MinuteKnocker(send=lambda when: None, clock=lambda: T0)
    assert [minute.knock() for _ in range(4)] == [0, 1, -1, None]


def test_knock_until_open_narrates_each_kind():
    lines: list[str] = []
    ticks = iter(range(100))

    def clock() -> float:
        return float(next(ticks))

    def dial(timeout: float) -> str | None:
        return "conn" if len(lines) >= 3 else None

    knocker = FreshKnocker(send=lambda when: None, clock=lambda: T0)
    got = knock_until_open(
        knocker, dial, retry_after=1.0, wait_timeout=50.0, clock=clock, log=lines.append
    )
    assert got == "conn"
    assert lines == [f"knock {n} sent (fresh nonce)" for n in (1, 2, 3)]
