"""Kernel LOG lines to connection attempts, and the `tail -F` follower on real temp files."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tumbler.events import ConnectionAttempt
from tumbler.sources.logfile import (
    follow,
    follow_lines,
    foreign_program,
    parse_log_line,
    syslog_tag,
)

MAC = "MAC=00:16:3e:aa:bb:cc:00:16:3e:dd:ee:ff:08:00"
V4_SYN = (
    f"FIREWALL:IN=eth0 OUT= {MAC} SRC=192.168.0.5 DST=192.168.0.3 LEN=60 TOS=0x00 PREC=0x00 "
    "TTL=64 ID=54321 DF PROTO=TCP SPT=40000 DPT=42 WINDOW=5840 RES=0x00 SYN URGP=0"
)
V6_SYN = (
    f"FIREWALL:IN=eth0 OUT= {MAC[:-5]}86:dd "
    "SRC=fd00:0000:0000:0000:0000:0000:0000:0005 DST=fd00:0000:0000:0000:0000:0000:0000:0003 "
    "LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=873456 PROTO=TCP SPT=51234 DPT=196 WINDOW=64800 "
    "RES=0x00 SYN URGP=0"
)


def line_for(port: int, src: str = "192.168.0.5") -> str:
    return V4_SYN.replace("DPT=42", f"DPT={port}").replace("SRC=192.168.0.5", f"SRC={src}")


@pytest.mark.parametrize(
    "prefix",
    [
        "kernel: ",
        "Nov 27 15:30:01 gate kernel: ",
        "Nov 27 15:30:01 gate kernel: [ 1234.567890] ",
        "2024-05-01T10:00:00.123456+00:00 gate kernel: ",
        "May 01 10:00:00 gate kernel: [12345.678901] ",
    ],
)
def test_ipv4_syn_with_syslog_prefixes(prefix: str) -> None:
    event = parse_log_line(prefix + V4_SYN, when=7.5)
    assert event == ConnectionAttempt("192.168.0.5", "192.168.0.3", "tcp", 42, 7.5, 40000)


def test_prefix_with_space_and_nft_log_prefix() -> None:
    line = "gate kernel: tumbler knock: " + V4_SYN.replace("FIREWALL:", "")
    assert parse_log_line(line) is not None
    assert parse_log_line("kernel: FIREWALL: " + V4_SYN[len("FIREWALL:") :]) is not None


def test_ipv6_syn_is_normalized() -> None:
    event = parse_log_line("Nov 27 15:30:01 gate kernel: " + V6_SYN)
    assert event == ConnectionAttempt("fd00::5", "fd00::3", "tcp", 196, 0.0, 51234)


def test_ipv4_mapped_source_of_an_ipv6_packet_is_dropped() -> None:
    """An IPv6 sender using ::ffff:a.b.c.d is not the IPv4 host a.b.c.d."""
    mapped = "0000:0000:0000:0000:0000:ffff:c0a8:0005"
    assert (
        parse_log_line(
            "kernel: " + V6_SYN.replace("fd00:0000:0000:0000:0000:0000:0000:0005", mapped)
        )
        is None
    )


@pytest.mark.parametrize("flags", ["ACK", "ACK SYN", "ACK PSH", "RST", "FIN ACK", "ACK FIN"])
def test_tcp_without_syn_or_with_ack_ignored(flags: str) -> None:
    assert parse_log_line(V4_SYN.replace("RES=0x00 SYN", f"RES=0x00 {flags}")) is None


def test_logged_tcp_sequence_numbers_do_not_look_like_ack() -> None:
    line = V4_SYN.replace("DPT=42 ", "DPT=42 SEQ=1234567 ACK=0 ")
    assert parse_log_line("kernel: " + line) is not None
    line = V4_SYN.replace("DPT=42 ", "DPT=42 SEQ=1234567 ACK=99 ").replace("SYN", "SYN ACK")
    assert parse_log_line("kernel: " + line) is None


@pytest.mark.parametrize(
    "line",
    [
        V4_SYN,  # no syslog tag at all
        "Nov 27 15:30:01 gate alice: " + V4_SYN,  # `logger FIREWALL:IN=...`
        "Nov 27 15:30:01 gate sshd[812]: kernel: " + V4_SYN,  # the tag inside the message
        "Nov 27 15:30:01 gate alice: Nov 27 15:30:01 gate kernel: " + V4_SYN,
        "Nov 27 15:30:01 gate alice:x y z kernel: " + V4_SYN,  # too far in to be the tag
        "Nov 27 15:30:01 gate notkernel: " + V4_SYN,
    ],
)
def test_lines_not_tagged_by_the_kernel_do_not_count(line: str) -> None:
    """Anyone who can write to syslog could write these; only the kernel's tag counts."""
    assert parse_log_line(line) is None
    assert parse_log_line("Nov 27 15:30:01 gate kernel: " + V4_SYN) is not None


@pytest.mark.parametrize(
    "line",
    [
        "Nov 27 15:30:01 gate " + V4_SYN,  # ulogd's own file: host name, then the prefix
        "2024-05-01T10:00:00+00:00 gate " + V4_SYN,
        V4_SYN,
        "Nov 27 15:30:01 gate kernel: [ 4242.123456] " + V4_SYN,
        "Nov 27 15:30:01 gate kernel: " + V4_SYN.replace("FIREWALL:", "FIREWALL: "),
    ],
)
def test_a_configured_prefix_counts_right_before_in(line: str) -> None:
    assert parse_log_line(line, prefix="FIREWALL:") is not None


@pytest.mark.parametrize(
    "line",
    [
        "Nov 27 15:30:01 gate alice: " + V4_SYN,
        "Nov 27 15:30:01 gate alice: look FIREWALL:" + V4_SYN[len("FIREWALL:") :],
        "Nov 27 15:30:01 gate kernel: " + V4_SYN.replace("FIREWALL:", "OTHER:"),
        "Nov 27 15:30:01 gate kernel: " + V4_SYN.replace("FIREWALL:", "FIREWALL:x "),
        "Nov 27 15:30:01 gate kernel: " + V4_SYN.replace("FIREWALL:", "XFIREWALL:"),
    ],
)
def test_a_configured_prefix_elsewhere_does_not_count(line: str) -> None:
    assert parse_log_line(line, prefix="FIREWALL:") is None


@pytest.mark.parametrize(
    ("line", "tag", "foreign"),
    [
        ("Nov 27 15:30:01 gate kernel: [ 4242.1] eth0: link up", "kernel", None),
        ("Nov 27 15:30:01 gate sshd[812]: Accepted publickey", "sshd", "sshd"),
        ("2024-05-01T10:00:00.123+00:00 gate CRON[9]: (root) CMD", "CRON", "CRON"),
        ("kernel: " + V4_SYN, "kernel", None),
        ("-- Boot 0123 --", None, None),
        ("a b c d e f: too many words for a tag", None, None),
        ("Nov 27 15:30:01 gate " + V4_SYN, None, None),
    ],
)
def test_syslog_tag_and_foreign_program(line: str, tag: str | None, foreign: str | None) -> None:
    assert syslog_tag(line) == tag
    assert foreign_program(line) == foreign


def test_a_prefixed_line_is_the_firewalls_own() -> None:
    line = "Nov 27 15:30:01 gate FIREWALL: " + V4_SYN[len("FIREWALL:") :]  # tag-like prefix
    assert foreign_program(line) == "FIREWALL"
    assert foreign_program(line, prefix="FIREWALL:") is None


def test_udp_datagram_counts() -> None:
    line = (
        f"kernel: FIREWALL:IN=eth0 OUT= {MAC} SRC=10.0.0.9 DST=10.0.0.1 LEN=29 TOS=0x00 "
        "PREC=0x00 TTL=64 ID=1 DF PROTO=UDP SPT=33000 DPT=500 LEN=9"
    )
    assert parse_log_line(line, when=1.0) == ConnectionAttempt(
        "10.0.0.9", "10.0.0.1", "udp", 500, 1.0, 33000
    )


@pytest.mark.parametrize(
    "line",
    [
        "Nov 27 15:30:01 gate sshd[812]: Accepted publickey for root from 192.168.0.5",
        "",
        # ICMP error quoting a TCP SYN: the quoted packet is not an attempt
        f"kernel: FIREWALL:IN=eth0 OUT= {MAC} SRC=192.168.0.9 DST=192.168.0.3 LEN=88 "
        "PROTO=ICMP TYPE=3 CODE=3 [SRC=192.168.0.3 DST=192.168.0.9 LEN=60 PROTO=TCP "
        "SPT=42 DPT=40000 WINDOW=5840 RES=0x00 SYN URGP=0 ]",
        # outbound packet logged in OUTPUT
        V4_SYN.replace("IN=eth0 OUT=", "IN= OUT=eth0"),
        # non-first fragment: no ports
        "kernel: FIREWALL:IN=eth0 OUT= SRC=1.2.3.4 DST=5.6.7.8 LEN=60 PROTO=TCP "
        "INCOMPLETE [8 bytes]",
        V4_SYN.replace("SRC=192.168.0.5", "SRC=300.1.1.1"),
        V4_SYN.replace("DPT=42", "DPT=0"),
        V4_SYN.replace("DPT=42", "DPT=70000"),
        V4_SYN.replace("PROTO=TCP", "PROTO=SCTP"),
    ],
)
def test_other_lines_ignored(line: str) -> None:
    assert parse_log_line(line) is None


# ----------------------------------------------------------------------------- follower

POLL = 0.02


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


async def collect(
    path: Path, body: Callable[[list[str]], Awaitable[None]], from_start: bool = False
) -> list[str]:
    """Run the follower in a task while `body` writes; return what it yielded."""
    seen: list[str] = []
    lines: AsyncIterator[str] = follow_lines(path, poll=POLL, from_start=from_start)

    async def reader() -> None:
        async for line in lines:
            seen.append(line)

    task = asyncio.create_task(reader())
    await asyncio.sleep(3 * POLL)
    try:
        await asyncio.wait_for(body(seen), timeout=5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return seen


async def wait_for_count(seen: list[str], count: int) -> None:
    while len(seen) < count:
        await asyncio.sleep(POLL / 2)


def test_follow_starts_at_end(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_text("old line\n")

    async def body(seen: list[str]) -> None:
        append(path, "new line\n")
        await wait_for_count(seen, 1)

    assert asyncio.run(collect(path, body)) == ["new line"]


def test_follow_from_start(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_text("one\ntwo\n")

    async def body(seen: list[str]) -> None:
        append(path, "three\r\n")
        await wait_for_count(seen, 3)

    assert asyncio.run(collect(path, body, from_start=True)) == ["one", "two", "three"]


def test_partial_line_waits_for_newline(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_text("")

    async def body(seen: list[str]) -> None:
        append(path, "first half ")
        await asyncio.sleep(5 * POLL)
        assert seen == []
        append(path, "second half\nnext")
        await wait_for_count(seen, 1)
        append(path, "\n")
        await wait_for_count(seen, 2)

    assert asyncio.run(collect(path, body)) == ["first half second half", "next"]


def test_file_created_later(tmp_path: Path) -> None:
    path = tmp_path / "later.log"

    async def body(seen: list[str]) -> None:
        await asyncio.sleep(3 * POLL)
        path.write_text("hello\n")  # a new file is read from its start
        await wait_for_count(seen, 1)

    assert asyncio.run(collect(path, body)) == ["hello"]


def test_rotation_by_rename(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_text("before\n")

    async def body(seen: list[str]) -> None:
        append(path, "a\n")
        await wait_for_count(seen, 1)
        os.rename(path, tmp_path / "kern.log.1")
        append(tmp_path / "kern.log.1", "b\n")  # the writer has not reopened yet
        await asyncio.sleep(3 * POLL)  # nothing at the path for a while
        append(path, "c\n")
        await wait_for_count(seen, 3)
        os.rename(path, tmp_path / "kern.log.2")
        path.write_text("d\ne\n")  # renamed and recreated between two polls
        await wait_for_count(seen, 5)

    assert asyncio.run(collect(path, body)) == ["a", "b", "c", "d", "e"]


def test_truncation(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_text("x" * 200 + "\n")

    async def body(seen: list[str]) -> None:
        append(path, "a\n")
        await wait_for_count(seen, 1)
        with path.open("r+") as handle:  # copytruncate
            handle.truncate(0)
        await asyncio.sleep(3 * POLL)
        append(path, "b\n")
        await wait_for_count(seen, 2)

    assert asyncio.run(collect(path, body)) == ["a", "b"]


def test_follow_yields_attempts(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_text("")
    clock = iter(range(100))

    async def main() -> list[ConnectionAttempt]:
        events: list[ConnectionAttempt] = []
        stream = follow(path, poll=POLL, clock=lambda: float(next(clock)))

        async def reader() -> None:
            async for event in stream:
                events.append(event)

        task = asyncio.create_task(reader())
        await asyncio.sleep(3 * POLL)
        append(path, "".join(f"Nov 27 gate kernel: {line_for(p)}\n" for p in (42, 196)))
        append(path, "Nov 27 gate sshd[1]: noise\n")
        append(path, f"Nov 27 gate kernel: {line_for(69)}\n")
        while len(events) < 3:
            await asyncio.sleep(POLL)
        task.cancel()
        return events

    events = asyncio.run(asyncio.wait_for(main(), 5))
    assert [e.port for e in events] == [42, 196, 69]
    assert [e.when for e in events] == sorted(e.when for e in events)


def test_follow_warns_once_about_other_programs_lines(tmp_path: Path) -> None:
    """A file that mixes facilities is reported at once (from its end as it is), once."""
    mixed, kernel_only = tmp_path / "syslog", tmp_path / "kern.log"
    mixed.write_text(f"Nov 27 gate kernel: {line_for(42)}\nNov 27 gate sshd[1]: noise\n")
    kernel_only.write_text(f"Nov 27 gate kernel: {line_for(42)}\n")
    warned: dict[str, list[str]] = {"mixed": [], "kernel": []}

    async def main() -> list[ConnectionAttempt]:
        follow(mixed, poll=POLL, on_foreign=warned["mixed"].append)
        stream = follow(kernel_only, poll=POLL, on_foreign=warned["kernel"].append)
        assert warned == {"mixed": ["sshd"], "kernel": []}
        events: list[ConnectionAttempt] = []

        async def reader() -> None:
            async for event in stream:
                events.append(event)

        task = asyncio.create_task(reader())
        append(kernel_only, "Nov 27 gate alice: " + line_for(196) + "\n")
        append(kernel_only, "Nov 27 gate bob: noise\n")
        append(kernel_only, f"Nov 27 gate kernel: {line_for(69)}\n")
        while not events:
            await asyncio.sleep(POLL)
        task.cancel()
        return events

    events = asyncio.run(asyncio.wait_for(main(), 5))
    assert [e.port for e in events] == [69]  # alice's forged line did not count
    assert warned == {"mixed": ["sshd"], "kernel": ["alice"]}
