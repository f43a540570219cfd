"""Knocks from a firewall log in the kernel's LOG format, followed as `tail -F` does.

This is the article's set-up: iptables (or an nftables `log` statement) logs every dropped
attempt with a prefix such as `FIREWALL:`, syslog writes it to a file, and tumblerd reads
the file. Only the kernel's `KEY=value` fields from `SRC=` on are read, and an ICMP error's
quoted packet (in brackets) is ignored.

Whoever can write to syslog can write a line that looks like the kernel's, so a line counts
only when syslog tagged it `kernel:` (the tag right after the time stamp and host name, not
anywhere in the message), or, when a prefix is configured for a file that the firewall
writes itself (ulogd), when that prefix stands right before `IN=` after the header. A file
that also holds other programs' lines is one where anyone who can use `logger -t kernel`
can forge knocks: `foreign_program` finds such lines so the daemon can warn.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO

from tumbler.events import ConnectionAttempt, canonical_address
from tumbler.sources.base import AttemptSink, hand_on

MAX_LINE = 64 * 1024
"""A partial line longer than this is dropped: a log line is never that long."""

READ_CHUNK = 256 * 1024

_SRC = re.compile(r"(?:^|[\s:])SRC=")
_UPTIME = re.compile(r"\s*\[\s*\d+\.\d+\]")
_TAG_TOKENS = 5
"""A syslog tag is at most the fifth word: `Nov 27 08:40:01 host kernel:`."""
KERNEL_TAG = "kernel"
_FIELD = re.compile(r"(?:^|\s)(SRC|DST|PROTO|SPT|DPT)=(\S+)")
_INOUT = re.compile(r"(?:^|[\s:])(IN|OUT)=(\S*)")


def _port(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value <= 65535 else None


def syslog_tag(line: str) -> str | None:
    """The program tag of a syslog line (`kernel`, `sshd`), or None if it has none.

    The tag is the last word before the line's first `: `, within its first few words; a
    process id (`sshd[812]`) is dropped.
    """
    head, colon, _ = line.partition(": ")
    words = head.split()
    if not colon or not words or len(words) > _TAG_TOKENS:
        return None
    return words[-1].split("[", 1)[0] or None


def foreign_program(line: str, prefix: str | None = None) -> str | None:
    """The tag of a line another program than the kernel wrote, or None.

    With a `prefix`, a line carrying it after its header is the firewall's own (ulogd).
    """
    tag = syslog_tag(line)
    if tag is None or tag == KERNEL_TAG:
        return None
    if prefix is not None and _prefixed(line, prefix) is not None:
        return None
    return tag


def _prefixed(line: str, prefix: str) -> int | None:
    """Where the fields start if `prefix` stands right before `IN=` after the header alone
    (the host name, or the kernel tag and its uptime stamp), else None."""
    at = line.find(prefix)
    while at >= 0:
        rest = line[at + len(prefix) :]
        fields = at + len(prefix) + len(rest) - len(rest.lstrip())
        if line.startswith("IN=", fields):
            head = _UPTIME.sub("", line[:at]).split()
            if head and head[-1] == KERNEL_TAG + ":":
                head.pop()
            if len(head) < _TAG_TOKENS and not any(word.endswith(":") for word in head):
                return fields
        at = line.find(prefix, at + 1)
    return None


def _trusted(line: str, prefix: str | None) -> int | None:
    """Where the kernel's message starts in a line that the kernel wrote, else None."""
    if prefix is not None:
        return _prefixed(line, prefix)
    if syslog_tag(line) != KERNEL_TAG:
        return None
    return line.index(": ") + 2


def parse_log_line(
    line: str, when: float = 0.0, prefix: str | None = None
) -> ConnectionAttempt | None:
    """The inbound connection attempt a kernel LOG line records, or None for anything else.

    The line must carry syslog's `kernel:` tag, or with a configured `prefix`, that prefix
    right before `IN=` (see the module docstring). TCP counts only with SYN set and ACK
    clear (a new connection); UDP counts always. Lines of outbound packets (`IN=` empty,
    `OUT=` set) are not attempts on this host.
    """
    message = _trusted(line, prefix)
    if message is None:
        return None
    line = line[message:]
    start = _SRC.search(line)
    if start is None:
        return None
    inout = dict(_INOUT.findall(line[: start.end()]))
    if inout.get("IN") == "" and inout.get("OUT"):
        return None
    body = line[start.start() :]
    bracket = body.find("[")
    if bracket >= 0:
        body = body[:bracket]
    fields: dict[str, str] = {}
    for key, value in _FIELD.findall(body):
        fields.setdefault(key, value)
    proto = fields.get("PROTO", "").lower()
    if proto not in ("tcp", "udp"):
        return None
    source = canonical_address(fields.get("SRC", ""))
    dest = canonical_address(fields.get("DST", ""))
    port = _port(fields.get("DPT"))
    if source is None or dest is None or port is None:
        return None
    if proto == "tcp":
        after_proto = body[body.find("PROTO=") :].split()
        flags = {word for word in after_proto if "=" not in word}
        if "SYN" not in flags or "ACK" in flags:
            return None
    return ConnectionAttempt(source, dest, proto, port, when, _port(fields.get("SPT")))


class _Follower:
    """Reads complete lines from a path that may be missing, rotated or truncated."""

    def __init__(self, path: str | os.PathLike[str], from_start: bool) -> None:
        self.path = os.fspath(path)
        self.file: BinaryIO | None = None
        self.identity: tuple[int, int] | None = None
        self.partial = b""
        self.first_open = True
        self.from_start = from_start
        self._open()  # now, so that nothing written after the caller starts following is lost

    def _open(self) -> None:
        try:
            handle = open(self.path, "rb")  # stays open across polls
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            self.first_open = False
            return
        stat = os.fstat(handle.fileno())
        if self.first_open and not self.from_start:
            handle.seek(0, os.SEEK_END)
        self.first_open = False
        self.file = handle
        self.identity = (stat.st_dev, stat.st_ino)
        self.partial = b""

    def _close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.file = None
        self.identity = None
        self.partial = b""

    def _drain(self) -> list[bytes]:
        lines: list[bytes] = []
        if self.file is None:
            return lines
        while True:
            chunk: bytes = self.file.read(READ_CHUNK)
            if not chunk:
                break
            data = self.partial + chunk
            *complete, self.partial = data.split(b"\n")
            lines.extend(complete)
            if len(self.partial) > MAX_LINE:
                self.partial = b""
            if len(chunk) < READ_CHUNK:
                break
        return lines

    def poll(self) -> list[bytes]:
        """Every complete line written since the last poll, across a rotation if one happened."""
        if self.file is None:
            self._open()
            if self.file is None:
                return []
        lines = self._drain()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return lines  # rotated away, new file not there yet: keep the old one
        position = self.file.tell()
        if (stat.st_dev, stat.st_ino) != self.identity:
            lines.extend(self._drain())
            self._close()
            self._open()
            lines.extend(self._drain())
        elif stat.st_size < position:
            self.file.seek(0)
            self.partial = b""
            lines.extend(self._drain())
        return lines

    def close(self) -> None:
        self._close()


def follow_lines(
    path: str | os.PathLike[str], *, poll: float = 0.2, from_start: bool = False
) -> AsyncIterator[str]:
    """Yield each complete line appended to `path`, like `tail -F`, polling every `poll` s.

    Starts at the end of the file as it is when this is called (unless `from_start`), so a
    line written right after the call is never skipped; a file that appears later, or the
    new file after a rotation, is read from its beginning; a truncated file is read again.
    """
    return _lines(_Follower(path, from_start), poll)


async def _lines(follower: _Follower, poll: float) -> AsyncIterator[str]:
    try:
        while True:
            for raw in follower.poll():
                yield raw.rstrip(b"\r").decode("utf-8", errors="replace")
            await asyncio.sleep(poll)
    finally:
        follower.close()


def follow(
    path: str | os.PathLike[str],
    *,
    poll: float = 0.2,
    from_start: bool = False,
    clock: Callable[[], float] = time.time,
    prefix: str | None = None,
    on_foreign: Callable[[str], None] | None = None,
) -> AsyncIterator[ConnectionAttempt]:
    """Yield the connection attempts logged to `path`, timed by `clock` when read.

    Only lines the kernel wrote count (`parse_log_line` with `prefix`). `on_foreign` is
    called once with the tag of the first line from another program, looked for at once in
    the end of the file as it is now, then in every line read.
    """
    lines = follow_lines(path, poll=poll, from_start=from_start)
    warned = False

    def check(line: str) -> None:
        nonlocal warned
        if warned or on_foreign is None:
            return
        tag = foreign_program(line, prefix)
        if tag is not None:
            warned = True
            on_foreign(tag)

    if on_foreign is not None:
        for line in tail_lines(path):
            check(line)
    return _attempts(lines, clock, prefix, check)


def tail_lines(path: str | os.PathLike[str], size: int = MAX_LINE) -> list[str]:
    """The complete lines in the last `size` bytes of `path` ([] if it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, end - size))
            data = handle.read(size)
    except OSError:
        return []
    lines = data.split(b"\n")
    if end > size:
        lines = lines[1:]  # the first one is cut
    return [raw.decode("utf-8", errors="replace") for raw in lines if raw]


async def _attempts(
    lines: AsyncIterator[str],
    clock: Callable[[], float],
    prefix: str | None,
    check: Callable[[str], None],
) -> AsyncIterator[ConnectionAttempt]:
    async for line in lines:
        check(line)
        event = parse_log_line(line, when=clock(), prefix=prefix)
        if event is not None:
            yield event


class LogFileSource:
    """A kernel-format firewall log as a sequence source: each attempt logged goes to the sink.

    `on_foreign` is told the tag of the first line another program wrote there (see `follow`).
    """

    name = "file"

    def __init__(
        self,
        path: str,
        *,
        prefix: str | None = None,
        on_foreign: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        poll: float = 0.2,
    ) -> None:
        self.path = path
        self.prefix = prefix
        self.on_foreign = on_foreign
        self.clock = clock
        self.poll = poll
        self._task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop, sink: AttemptSink) -> None:
        events = follow(
            self.path,
            poll=self.poll,
            clock=self.clock,
            prefix=self.prefix,
            on_foreign=self.on_foreign,
        )
        self._task = loop.create_task(self._hand_on(events, sink))

    @staticmethod
    async def _hand_on(events: AsyncIterator[ConnectionAttempt], sink: AttemptSink) -> None:
        async for event in events:
            hand_on(sink, event)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
