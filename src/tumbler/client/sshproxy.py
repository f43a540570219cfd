"""Knock until a TCP port answers, then relay: the library behind `tumbler ssh-proxy`.

With this in `~/.ssh/config`, every `ssh` knocks first, by itself:

    # A host with a profile in ~/.config/tumbler/hosts.conf whose url names
    # web1.example.org (ssh passes the HostName as %h; the profile is found by it).
    Host web1
        HostName web1.example.org
        ProxyCommand tumbler ssh-proxy %h %p

    # Or name the profile outright (then its url's host is the one connected to).
    Host db
        ProxyCommand tumbler ssh-proxy db-profile %p

    # No profile: knock on tumbler://%h/ (udp/8675) with a secret file.
    Host 192.0.2.7
        ProxyCommand tumbler ssh-proxy --secret-file ~/.config/tumbler/door.secret %h %p

Why each piece is the way it is:

- A closed port behind a default-drop firewall drops SYNs, and one blocking connect
  would sit in the kernel's SYN back-off (1 s, 3 s, 7 s...) long after the door opened.
  `Dialer` starts a fresh non-blocking connect every quarter second and keeps a few in
  flight, so the port is found open within that time, even on a slow link.
- A knock may be lost (UDP), or arrive while the door is slow to open. Sending the same
  datagram again is useless when the daemon did get it: the same minute gives the same
  digest, which the daemon refuses as a replay. `MinuteKnocker` therefore stamps each
  retry with a minute the daemon's window (default 1) still accepts but that was not
  used yet: now, then the next minute, then the previous one; never a stamp twice.
  A version 2 knock carries a fresh nonce, so it never repeats: `FreshKnocker` simply
  knocks again, stamped now.
  A signed knock (tumbler+ssh://) carries a fresh nonce too.
- ssh reads the proxy's stdout as the connection, so nothing else may ever be written
  there; diagnostics go to stderr. When ssh closes its side (stdin EOF), the socket's
  write side is shut down so the server sees EOF too; the relay ends when the server
  closes the connection.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from collections.abc import Callable

from tumbler.addresses import normalize_address
from tumbler.client.knock import FRESH_OFFSETS, SockAddr, resolve
from tumbler.protocols import tumbler1 as protocol

TYPE_CHECKING = False  # not typing's: the engine is on ssh-proxy's start-up path
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")

OFFSETS = FRESH_OFFSETS
ATTEMPT_EVERY = 0.25  # seconds between fresh connection attempts
ATTEMPT_LIFETIME = 3.0  # how long one attempt stays in flight (a slow first answer)
BUFSIZE = 65536

Log = Callable[[str], None]
Send = Callable[[float], object]  # sends one knock for a moment, in seconds since the epoch


class MinuteKnocker:
    """Sends knocks stamped so that no two share a minute, hence never the same digest.

    `send(when)` sends one knock stamped at `when` (seconds since the epoch), or returns
    False when that minute was already used (by another run of the client: see
    client.sentknocks); `clock` gives the current time. Both are arguments so that tests
    can freeze time and count what was sent. Plain classes and epoch seconds, not
    dataclasses and datetime: both cost ssh-proxy's start-up time.
    """

    def __init__(self, send: Send, clock: Callable[[], float] = time.time) -> None:
        self.send = send
        self.clock = clock
        self.sent: list[tuple[int, str]] = []  # (offset, stamp) in order

    def knock(self) -> int | None:
        """Send the next fresh knock; return its minute offset, or None if none is left.

        Offsets are taken from the current minute each time, so after the clock moves on
        a new minute is fresh again; within one minute at most three knocks go out.
        """
        now = self.clock()
        used = {stamp for _, stamp in self.sent}
        for offset in OFFSETS:
            when = now + 60 * offset
            stamp = protocol.stamp_for_minute(int(when // 60))
            if stamp in used:
                continue
            if self.send(when) is False:  # another client of this user took that minute
                continue
            self.sent.append((offset, stamp))
            return offset
        return None

    @staticmethod
    def note(offset: int) -> str:
        return f"minute {offset:+d}"


class FreshKnocker:
    """Sends knocks that carry their own nonce (v2, signed, fwknop SPA): a retry is just
    another knock, now. The same interface as MinuteKnocker, so knock_until_open takes
    either.
    """

    def __init__(self, send: Send, clock: Callable[[], float] = time.time) -> None:
        self.send = send
        self.clock = clock
        self.sent: list[tuple[int, str]] = []  # (0, seconds since the epoch) in order

    def knock(self) -> int | None:
        """Send a knock stamped now; always 0 (no minute offset is ever needed)."""
        now = self.clock()
        self.send(now)
        self.sent.append((0, f"{now:.0f}"))
        return 0

    @staticmethod
    def note(offset: int) -> str:
        return "fresh nonce"


class Dialer:
    """Overlapping non-blocking TCP connects to one address; `wait` returns the first made.

    Connection refused (nothing listens yet) and timeouts are not errors here: the
    door may open at any moment, so the dialer simply tries again. The last failure
    is kept in `last_error` for the final message.
    """

    def __init__(
        self,
        family: int,
        sockaddr: SockAddr,
        *,
        every: float = ATTEMPT_EVERY,
        lifetime: float = ATTEMPT_LIFETIME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.family = family
        self.sockaddr = sockaddr
        self.every = every
        self.lifetime = lifetime
        self.clock = clock
        self.attempts = 0
        self.last_error = "no answer"
        self._next = clock()
        self._pending: dict[socket.socket, float] = {}
        self._selector = selectors.DefaultSelector()

    def _start(self, now: float) -> socket.socket | None:
        self.attempts += 1
        self._next = now + self.every
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex(self.sockaddr)
        if code == 0:
            return sock
        if code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            self._pending[sock] = now
            self._selector.register(sock, selectors.EVENT_WRITE)
        else:
            self.last_error = os.strerror(code)
            sock.close()
        return None

    def _drop(self, sock: socket.socket) -> None:
        self._selector.unregister(sock)
        del self._pending[sock]
        sock.close()

    def wait(self, timeout: float) -> socket.socket | None:
        """Keep trying for up to `timeout` seconds; a connected blocking socket, or None."""
        end = self.clock() + timeout
        while True:
            now = self.clock()
            if now >= self._next:
                made = self._start(now)
                if made is not None:
                    return self._won(made)
            for sock, started in list(self._pending.items()):
                if now - started >= self.lifetime:
                    self.last_error = "timed out"
                    self._drop(sock)
            if now >= end:
                return None
            for key, _ in self._selector.select(max(0.0, min(end, self._next) - now)):
                fileobj = key.fileobj
                assert isinstance(fileobj, socket.socket)
                sock = fileobj
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0:
                    self._selector.unregister(sock)
                    del self._pending[sock]
                    return self._won(sock)
                self.last_error = os.strerror(code)
                self._drop(sock)

    def _won(self, sock: socket.socket) -> socket.socket:
        self.close()
        sock.setblocking(True)
        return sock

    def close(self) -> None:
        """Abandon every attempt still in flight."""
        for sock in list(self._pending):
            self._drop(sock)


def knock_until_open(
    knocker: MinuteKnocker | FreshKnocker,
    dial: Callable[[float], T | None],
    *,
    retry_after: float,
    wait_timeout: float,
    clock: Callable[[], float] = time.monotonic,
    log: Log | None = None,
) -> T | None:
    """Knock, then dial until connected; knock again every `retry_after` seconds.

    Returns what `dial` returned once it succeeds, or None after `wait_timeout` seconds.
    `dial(timeout)` tries for at most `timeout` seconds and returns None if it could
    not connect in that time.
    """

    def knock_once() -> None:
        offset = knocker.knock()
        if log is not None:
            if offset is None:
                log("no fresh minute left to knock with; still waiting")
            else:
                log(f"knock {len(knocker.sent)} sent ({knocker.note(offset)})")

    start = clock()
    deadline = start + wait_timeout
    knock_once()
    next_knock = start + retry_after
    while True:
        now = clock()
        if now >= deadline:
            return None
        if now >= next_knock:
            knock_once()
            next_knock = now + retry_after
        conn = dial(min(next_knock, deadline) - now)
        if conn is not None:
            return conn


class Attempt:
    """The outcome of knocking and dialling, for a one-line report (made once per run: a
    plain class, as a named tuple's class costs start-up time)."""

    __slots__ = ("attempts", "elapsed", "knocks", "last_error", "sock", "target")

    def __init__(
        self,
        sock: socket.socket | None,
        knocks: int,
        attempts: int,
        elapsed: float,
        target: str,  # the address dialled
        last_error: str,
    ) -> None:
        self.sock = sock
        self.knocks = knocks
        self.attempts = attempts
        self.elapsed = elapsed
        self.target = target
        self.last_error = last_error


def knock_and_dial(
    knocker: MinuteKnocker | FreshKnocker,
    knocked: str,
    knock_host: str,
    connect_host: str,
    port: int,
    *,
    family: int,
    wait_timeout: float,
    retry_after: float,
    log: Log | None = None,
    started: float | None = None,
) -> Attempt:
    """Knock, and dial connect_host:port over the family the knock to `knocked` went out on.

    The door opens for the address in the knock, and a connection over the other family
    would come from another address; when connect_host is the knocked host, the very
    address knocked on is dialled.
    """
    started = time.monotonic() if started is None else started
    fam = family or (socket.AF_INET6 if ":" in knocked else socket.AF_INET)
    same = connect_host.lower() == knock_host.lower()
    dial_fam, sockaddr = resolve(
        knocked if same else connect_host, port, family=fam, socktype=socket.SOCK_STREAM
    )[0]
    target = normalize_address(sockaddr[0])
    dialer = Dialer(dial_fam, sockaddr)
    try:
        sock = knock_until_open(
            knocker, dialer.wait, retry_after=retry_after, wait_timeout=wait_timeout, log=log
        )
    finally:
        dialer.close()
    return Attempt(
        sock,
        len(knocker.sent),
        dialer.attempts,
        time.monotonic() - started,
        target,
        dialer.last_error,
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def relay(
    sock: socket.socket, stdin_fd: int = 0, stdout_fd: int = 1, bufsize: int = BUFSIZE
) -> None:
    """Copy stdin to `sock` and `sock` to stdout, byte for byte, until `sock` closes.

    stdin is read in a daemon thread: at its EOF the socket's write side is shut down
    (a half-close, so the server still answers); the call returns when the server
    closes, even if stdin stays open. A stdout closed by the reader (BrokenPipeError)
    also ends the relay. Other socket errors propagate.
    """

    import threading  # for the relay only: after the knock

    def upstream() -> None:
        try:
            while data := os.read(stdin_fd, bufsize):
                sock.sendall(data)
        except OSError:
            pass  # the socket failed; the downstream side sees it and reports
        finally:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    threading.Thread(target=upstream, name="stdin-to-socket", daemon=True).start()
    try:
        while data := sock.recv(bufsize):
            _write_all(stdout_fd, data)
    except BrokenPipeError:
        return
