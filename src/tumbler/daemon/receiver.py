"""One receiving process: reads its share of the knock port, proves knocks, claims nothing.

It is forked by the main process after the config is loaded and its sockets are bound, so
it starts with the doors' keys in memory and needs no file and no right of its own: it
closes every descriptor but its sockets, its channel and the log, and becomes `nobody`
when it was root. The shape check and the cryptography run here, in parallel with the
other receivers; a proved knock goes to the main process as a candidate, which claims it
in the replay store (once for all receivers) and acts. It never sends to the network.
"""

from __future__ import annotations

import gc
import logging
import os
import select
import signal
import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import NoReturn

from tumbler.daemon import wire
from tumbler.daemon.pipeline import Candidate, Pipeline, Runtime
from tumbler.daemon.stats import Stats
from tumbler.decisions.replay.local import MemoryReplayCache
from tumbler.decisions.replay.recent import RecentClaims
from tumbler.protocols import fwknop as spa
from tumbler.sources import udp

log = logging.getLogger("tumblerd")

SAY_EVERY = 0.1  # seconds between two counter messages while datagrams arrive
IDLE = 0.25  # seconds a receiver waits for a datagram before it says what it counted
PRUNE_EVERY = 60.0


@dataclass(frozen=True)
class Identity:
    """Who a receiving process becomes when started as root (`nobody`'s ids)."""

    uid: int
    gid: int


class Receiver:
    """The loop of one receiving process (the child side of a worker slot)."""

    def __init__(
        self, index: int, sockets: list[socket.socket], channel: socket.socket, runtime: Runtime
    ) -> None:
        self.index = index
        self.sockets = sockets
        self.channel = channel
        self.stats = Stats(log)
        self.pipeline = Pipeline(runtime, RecentClaims(MemoryReplayCache()), self.stats)
        self.pipeline.defer = self._forward
        self._said: Counter[str] = Counter()
        self._said_at = 0.0
        self._skew_said: object = None
        self._stopping = False
        self._size = spa.MAX_PACKET + 1 if runtime.fwknop else udp.RECV_SIZE

    def _forward(self, candidate: Candidate) -> None:
        self._send(wire.candidate(candidate))

    def _send(self, message: bytes) -> None:
        """Blocking (the main process paces us); with the main process gone, stop."""
        try:
            self.channel.send(message)
        except OSError as exc:
            log.debug("receiver %d: the main process is gone (%s); stopping", self.index, exc)
            self._stopping = True

    def _say(self, now: float, force: bool = False) -> None:
        """Send the counters that grew since the last message (and a new skew report)."""
        if not force and now - self._said_at < SAY_EVERY:
            return
        self._said_at = now
        grown = self.stats.total - self._said
        skew = self.pipeline.last_skew
        if not grown and skew is self._skew_said:
            return
        self._said = self.stats.total.copy()
        self._skew_said = skew
        self._send(wire.counts(grown, skew))

    def _on_channel(self) -> bool:
        """Take the main process's messages; False once it is gone."""
        while True:
            try:
                data = self.channel.recv(wire.MAX_MESSAGE, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return True
            if not data:
                return False
            try:
                message = wire.parse(data)
                key, until = message["claimed"], message["until"]
                if isinstance(key, str) and isinstance(until, int | float):
                    self.pipeline.replay.note(key, float(until))
            except (wire.BadMessage, KeyError):
                log.debug("receiver %d: unknown message from the main process", self.index)

    def stop(self, signum: int = 0, frame: object = None) -> None:
        self._stopping = True

    def run(self) -> None:
        """Serve until SIGTERM or until the main process goes away."""
        poller = select.poll()  # poll, not epoll: it holds no descriptor of its own
        by_fd = {sock.fileno(): sock for sock in self.sockets}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        poller.register(self.channel.fileno(), select.POLLIN)
        last_prune = time.time()
        while not self._stopping:
            events = poller.poll(IDLE * 1000)
            now = time.time()
            for fd, _ in events:
                sock = by_fd.get(fd)
                if sock is not None:
                    udp.read_batch(sock, self.pipeline.decide, self._size, self.stats.count)
                elif not self._on_channel():
                    return
            self._say(time.time(), force=not events)
            if now - last_prune >= PRUNE_EVERY:
                last_prune = now
                self.pipeline.replay.prune(now)
        self._say(time.time(), force=True)


def _keep_log_streams() -> set[int]:
    """The log's descriptors; a file handler becomes a plain stream on the file already open.

    A receiver may not be able to reopen the log file (it is `nobody`), so it writes to the
    descriptor it inherited rather than follow log rotation itself.
    """
    keep: set[int] = set()
    logger = logging.getLogger("tumblerd")
    for handler in list(logger.handlers):
        stream = getattr(handler, "stream", None)
        if stream is None:
            continue
        try:
            keep.add(stream.fileno())
        except (OSError, ValueError):
            continue
        if isinstance(handler, logging.FileHandler):
            plain = logging.StreamHandler(stream)
            plain.setFormatter(handler.formatter)
            plain.setLevel(handler.level)
            logger.removeHandler(handler)
            logger.addHandler(plain)
    return keep


def _close_all_but(keep: set[int]) -> None:
    low = 0
    for fd in sorted(keep | {0, 1, 2}):
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _drop_rights(identity: Identity | None) -> None:
    """Become `identity` if root may; a unit that forbids changing user keeps us as we are.

    (The shipped systemd unit has no CAP_SETUID and filters the set*id calls: there a
    worker keeps root's few remaining capabilities, and holds no file but the log.)
    """
    if identity is None or os.getuid() != 0:
        return
    try:
        os.setgroups([])
        os.setgid(identity.gid)
        os.setuid(identity.uid)
    except PermissionError as exc:
        log.debug("worker stays root, not allowed to change user: %s", exc)


def serve(
    index: int,
    sockets: list[socket.socket],
    channel: socket.socket,
    runtime: Runtime,
    identity: Identity | None,
) -> NoReturn:
    """The child after fork: shed what the main process holds, serve, and exit (never return)."""
    code = 0
    try:
        signal.set_wakeup_fd(-1)  # the parent's event loop, not ours
        receiver = Receiver(index, sockets, channel, runtime)
        signal.signal(signal.SIGTERM, receiver.stop)
        for sig in (signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # the main process stops and reloads us
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # What the parent left unreachable is never freed here: a late finaliser would
        # close a descriptor number this process reuses.
        gc.collect()
        gc.freeze()
        keep = {s.fileno() for s in sockets} | {channel.fileno()} | _keep_log_streams()
        _close_all_but(keep)
        _drop_rights(identity)
        receiver.run()
    except BaseException:  # whatever happens, this process ends here
        log.exception("receiver %d failed", index)
        code = 70
    finally:
        logging.shutdown()
        os._exit(code)
