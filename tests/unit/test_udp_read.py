"""The UDP source's two readers, recvmmsg and recvfrom, read the same datagrams the same way.

Real sockets over the loopback: what one datagram at a time gives is what a batch gives.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import select
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tumbler.sources import mmsg, udp

needs_mmsg = pytest.mark.skipif(
    mmsg.reader(socket.AF_INET, udp.RECV_SIZE, udp.BATCH) is None, reason="no recvmmsg here"
)
WAIT = 10.0
Reader = Callable[[socket.socket, int], list[udp.Datagram]]
READERS: dict[str, Reader] = {
    "recvmmsg": udp.read_datagrams,
    "recvfrom": udp.read_datagrams_recvfrom,
}


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def receiver(family: int, host: str, v6only: bool = True) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
    udp._grow_receive_buffer(sock)  # as the daemon's: a batch of small datagrams fits
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def arrives(sock: socket.socket) -> None:
    """Wait until `sock` has a datagram queued (the bound is for a hang, not a pace)."""
    ready, _, _ = select.select([sock], [], [], WAIT)
    assert ready, "a datagram sent over the loopback did not arrive"


def senders(family: int, hosts: list[str]) -> Iterator[socket.socket]:
    for host in hosts:
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((host, 0))
        yield s


def send_and_read(
    read: Reader, sock: socket.socket, sends: list[tuple[socket.socket, bytes]], size: int
) -> list[udp.Datagram]:
    """Queue every datagram, then read until the queue is empty (a flood's pattern)."""
    dest = sock.getsockname()
    for sender, data in sends:
        sender.sendto(data, dest[:2] if sock.family == socket.AF_INET else dest)
    got: list[udp.Datagram] = []
    while len(got) < len(sends):
        arrives(sock)
        got.extend(read(sock, size))
    assert read(sock, size) == []
    return got


def both_ways(
    sock: socket.socket, sends: list[tuple[socket.socket, bytes]], size: int = udp.RECV_SIZE
) -> dict[str, list[tuple[bytes, str | None]]]:
    seen = {}
    for name, read in READERS.items():
        before = time.time()
        got = send_and_read(read, sock, sends, size)
        after = time.time()
        assert all(before <= now <= after for _, _, now in got)
        seen[name] = [(data, address) for data, address, _ in got]
    return seen


SHAPES = [
    b"TUMBLER1: " + b"ab" * 32,
    b"",
    b"x" * (udp.RECV_SIZE - 1),
    b"y" * udp.RECV_SIZE,
    b"z" * (udp.RECV_SIZE + 1),
    b"w" * 1400,
]


@needs_mmsg
def test_ipv4_datagrams_from_many_sources_read_alike() -> None:
    hosts = [f"127.0.{i}.{j}" for i in range(2) for j in range(1, 40)]
    with receiver(socket.AF_INET, "127.0.0.1") as sock:
        out = list(senders(socket.AF_INET, hosts))
        try:
            sends = [(s, SHAPES[i % len(SHAPES)]) for i, s in enumerate(out)]
            seen = both_ways(sock, sends)
        finally:
            for s in out:
                s.close()
    expected = [(data[: udp.RECV_SIZE], host) for (_, data), host in zip(sends, hosts, strict=True)]
    assert seen["recvmmsg"] == seen["recvfrom"] == expected
    # An oversized datagram reads as exactly `size` bytes: the length check refuses it.
    assert (b"z" * udp.RECV_SIZE, hosts[4]) in expected


@needs_mmsg
def test_a_smaller_size_truncates_alike() -> None:
    with receiver(socket.AF_INET, "127.0.0.1") as sock:
        out = list(senders(socket.AF_INET, ["127.0.0.9"]))
        try:
            seen = both_ways(sock, [(out[0], b"knock-knock"), (out[0], b"")], size=8)
        finally:
            out[0].close()
    assert seen["recvmmsg"] == seen["recvfrom"] == [(b"knock-kn", "127.0.0.9"), (b"", "127.0.0.9")]


@needs_mmsg
@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_datagrams_read_alike_and_normalised() -> None:
    with receiver(socket.AF_INET6, "::1") as sock:
        out = list(senders(socket.AF_INET6, ["::1"] * 3))
        try:
            sends = [(s, shape) for s in out for shape in SHAPES]
            seen = both_ways(sock, sends)
        finally:
            for s in out:
                s.close()
    expected = [(data[: udp.RECV_SIZE], "::1") for _, data in sends]
    assert seen["recvmmsg"] == seen["recvfrom"] == expected


@needs_mmsg
@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_an_ipv4_mapped_source_is_dropped_by_both() -> None:
    # A dual-stack socket sees an IPv4 sender as ::ffff:127.0.0.1; no knock comes from that.
    with receiver(socket.AF_INET6, "::", v6only=False) as sock:
        out = list(senders(socket.AF_INET, ["127.0.0.1"]))
        try:
            dest = ("127.0.0.1", sock.getsockname()[1])
            seen = {}
            for name, read in READERS.items():
                out[0].sendto(b"TUMBLER1: junk", dest)
                arrives(sock)
                got = read(sock, udp.RECV_SIZE)
                seen[name] = [(data, address) for data, address, _ in got]
            out[0].sendto(b"TUMBLER1: junk", dest)
            dropped: list[str] = []
            handed: list[bytes] = []
            arrives(sock)
            udp.read_batch(sock, lambda d, a, t: handed.append(d), dropped=dropped.append)
        finally:
            out[0].close()
    assert seen["recvmmsg"] == seen["recvfrom"] == [(b"TUMBLER1: junk", None)]
    assert dropped == ["malformed"] and handed == []


@needs_mmsg
def test_a_batch_stops_at_batch_and_the_rest_follows() -> None:
    with receiver(socket.AF_INET, "127.0.0.1") as sock:
        out = list(senders(socket.AF_INET, ["127.0.0.2"]))
        dest = sock.getsockname()
        try:
            for name, read in READERS.items():
                for i in range(udp.BATCH + 10):
                    out[0].sendto(b"%d" % i, dest)
                arrives(sock)
                first = read(sock, udp.RECV_SIZE)
                rest: list[udp.Datagram] = []
                while len(rest) < 10:
                    arrives(sock)
                    rest.extend(read(sock, udp.RECV_SIZE))
                assert len(first) == udp.BATCH, name
                got = [data for data, _, _ in first + rest]
                assert got == [b"%d" % i for i in range(udp.BATCH + 10)], name
        finally:
            out[0].close()


def test_without_recvmmsg_the_recvfrom_loop_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mmsg, "_recvmmsg", None)
    assert mmsg.reader(socket.AF_INET, udp.RECV_SIZE, udp.BATCH) is None
    with receiver(socket.AF_INET, "127.0.0.1") as sock:
        out = list(senders(socket.AF_INET, ["127.0.0.3"]))
        try:
            got = send_and_read(udp.read_datagrams, sock, [(out[0], b"hello")], udp.RECV_SIZE)
        finally:
            out[0].close()
    assert [(d, a) for d, a, _ in got] == [(b"hello", "127.0.0.3")]


def _failing(code: int) -> Callable[..., int]:
    def call(*_args: object) -> int:
        ctypes.set_errno(code)
        return -1

    return call


@needs_mmsg
def test_a_kernel_without_recvmmsg_falls_back_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mmsg, "_recvmmsg", _failing(errno.ENOSYS))
    monkeypatch.setattr(mmsg, "_readers", {})
    with receiver(socket.AF_INET, "127.0.0.1") as sock:
        out = list(senders(socket.AF_INET, ["127.0.0.4"]))
        try:
            got = send_and_read(udp.read_datagrams, sock, [(out[0], b"hello")], udp.RECV_SIZE)
        finally:
            out[0].close()
    assert [(d, a) for d, a, _ in got] == [(b"hello", "127.0.0.4")]
    assert mmsg.reader(socket.AF_INET, udp.RECV_SIZE, udp.BATCH) is None


@needs_mmsg
def test_an_error_ends_the_batch_quietly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mmsg, "_recvmmsg", _failing(errno.ECONNREFUSED))
    monkeypatch.setattr(mmsg, "_readers", {})
    caplog.set_level(logging.DEBUG, logger="tumblerd")
    with receiver(socket.AF_INET, "127.0.0.1") as sock:
        assert udp.read_datagrams(sock) == []
        udp.read_batch(sock, lambda *a: pytest.fail("nothing was read"))
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG]
    assert "recvmmsg" in caplog.records[0].getMessage()


@needs_mmsg
def test_nothing_queued_reads_nothing() -> None:
    with receiver(socket.AF_INET, "127.0.0.1") as sock:
        for read in READERS.values():
            assert read(sock, udp.RECV_SIZE) == []
