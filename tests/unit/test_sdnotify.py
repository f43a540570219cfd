"""sd_notify against real AF_UNIX datagram sockets: a path in a temp dir and an abstract one."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from tumbler.daemon import sdnotify


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path, monkeypatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = str(tmp_path / "notify")
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
    else:
        name = f"tumbler-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    sock.settimeout(2)
    yield sock
    sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready(notify_socket):
    assert sdnotify.ready() is True
    assert received(notify_socket) == "READY=1"


def test_ready_with_status(notify_socket):
    assert sdnotify.ready("serving 2 doors\non udp 8675")
    assert received(notify_socket) == "READY=1\nSTATUS=serving 2 doors on udp 8675"


def test_stopping_and_status(notify_socket):
    assert sdnotify.stopping()
    assert received(notify_socket) == "STOPPING=1"
    assert sdnotify.status("3 knocks accepted")
    assert received(notify_socket) == "STATUS=3 knocks accepted"


def test_reloading_carries_the_monotonic_clock(notify_socket):
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading()
    lines = received(notify_socket).split("\n")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_without_notify_socket_it_is_a_noop(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert sdnotify.notify("READY=1") is False


def test_a_dead_socket_returns_false_and_never_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.ready() is False
