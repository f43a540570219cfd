"""The main process's side of `workers = N`: N receiving processes on one port, kept running.

Each worker slot has its own sockets on the knock port(s), bound with SO_REUSEPORT so the
kernel spreads sources over the slots, and held open here too: a worker that dies or is
replaced on reload loses no queued datagram, and the port is never left unbound. Workers
are forked (after the config is loaded, so they start with its keys and bind nothing);
what they prove comes back over a socket pair as candidates, which the main process alone
claims and acts on, so a datagram accepted by one worker is refused by all and firewall
changes stay serialised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tumbler.daemon import receiver, wire
from tumbler.daemon.pipeline import Candidate, Runtime, Verdict

log = logging.getLogger("tumblerd")

RESTART_DELAY = 1.0  # a worker that died younger than this is restarted after this long
STOP_WAIT = 5.0  # seconds a worker has to stop before it is killed


@dataclass
class Slot:
    """One worker place: its sockets (kept across restarts), its process, what it counted."""

    index: int
    sockets: list[socket.socket]
    pid: int = 0
    started: float = 0.0
    restarts: int = 0
    channel: socket.socket | None = None
    counters: Counter[str] = field(default_factory=Counter)


def exit_text(status: int) -> str:
    """`exit status 3` or `killed by signal SIGKILL`, from a wait status."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"killed by signal {name}"
    return f"exit status {code}"


def nobody() -> receiver.Identity | None:
    """Who workers become when the daemon runs as root; None if this host has no `nobody`."""
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return receiver.Identity(entry.pw_uid, entry.pw_gid)


class WorkerPool:
    """Starts, watches, restarts and stops the receiving processes.

    `runtime` gives the config a new worker starts with; `settle` claims a candidate and
    acts on it (the verdict says what became of it); `count` adds a worker's counters to
    the daemon's.
    """

    def __init__(
        self,
        sockets: list[list[socket.socket]],
        runtime: Callable[[], Runtime],
        settle: Callable[[Candidate], Verdict],
        count: Callable[[str, int], None],
        skew: Callable[[dict[str, Any]], None],
    ) -> None:
        self.slots = [Slot(i + 1, socks) for i, socks in enumerate(sockets)]
        self._runtime = runtime
        self._settle = settle
        self._count = count
        self._skew = skew
        self._identity = nobody()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._exits: dict[int, asyncio.Future[int]] = {}  # pid -> its wait status, once reaped

    # -- processes --------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for slot in self.slots:
            self._spawn(slot)

    def _spawn(self, slot: Slot) -> None:
        assert self._loop is not None
        if self._stopping:
            return
        runtime = self._runtime()
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                pid = os.fork()
            except OSError:
                ours.close()
                theirs.close()
                raise
        except OSError as exc:  # out of processes or descriptors: try again later
            log.error("cannot start worker %d: %s; trying again", slot.index, exc)
            self._loop.call_later(RESTART_DELAY, self._spawn, slot)
            return
        if pid == 0:  # the child never returns from serve()
            ours.close()
            receiver.serve(slot.index, slot.sockets, theirs, runtime, self._identity)
        theirs.close()
        ours.setblocking(False)
        slot.pid, slot.started, slot.channel = pid, time.monotonic(), ours
        pidfd = os.pidfd_open(pid)
        self._exits[pid] = self._loop.create_future()
        self._loop.add_reader(ours.fileno(), self._on_messages, slot, ours)
        self._loop.add_reader(pidfd, self._on_exit, slot, pid, pidfd, ours)
        log.info("worker %d started, pid %d", slot.index, pid)

    def _on_exit(self, slot: Slot, pid: int, pidfd: int, channel: socket.socket) -> None:
        assert self._loop is not None
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        self._on_messages(slot, channel)  # what it said last
        self._loop.remove_reader(channel.fileno())
        channel.close()
        if slot.channel is channel:
            slot.channel = None
        exit = self._exits.pop(pid)
        exit.set_result(status)
        if self._stopping or slot.pid != pid:
            return  # stopped or replaced on purpose
        if os.waitstatus_to_exitcode(status) == 0:
            # A clean exit is a SIGTERM: from us, soon to say so (a stop), or from outside.
            self._loop.call_later(RESTART_DELAY, self._replace, slot, pid, status)
        else:
            self._replace(slot, pid, status)

    def _replace(self, slot: Slot, pid: int, status: int) -> None:
        """Log a worker's unexpected end and start another in its place."""
        assert self._loop is not None
        if self._stopping or slot.pid != pid:
            return
        slot.restarts += 1
        log.warning(
            "worker %d (pid %d) died, %s; starting a new one", slot.index, pid, exit_text(status)
        )
        if time.monotonic() - slot.started < RESTART_DELAY:
            # A worker that dies at once must not make the daemon spin.
            self._loop.call_later(RESTART_DELAY, self._spawn, slot)
        else:
            self._spawn(slot)

    def restart(self) -> None:
        """Replace every worker by one forked from the current config (after a reload).

        The new one starts before the old one is told to stop: the sockets stay read.
        """
        for slot in self.slots:
            old = slot.pid
            self._spawn(slot)
            with contextlib.suppress(ProcessLookupError):
                os.kill(old, signal.SIGTERM)

    async def stop(self) -> None:
        """SIGTERM every worker, wait for them (SIGKILL after STOP_WAIT s), reap them all."""
        self._stopping = True
        pending = dict(self._exits)
        for pid in pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if not pending:
            return
        _, late = await asyncio.wait(pending.values(), timeout=STOP_WAIT)
        for pid, exit in pending.items():
            if exit in late:
                log.warning("worker pid %d did not stop; killing it", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if late:
            await asyncio.wait(late)

    def close_sockets(self) -> None:
        for slot in self.slots:
            for sock in slot.sockets:
                sock.close()

    # -- messages ---------------------------------------------------------------------------

    def _on_messages(self, slot: Slot, channel: socket.socket) -> None:
        while True:
            try:
                data = channel.recv(wire.MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:  # it is gone; its pidfd says how
                assert self._loop is not None
                self._loop.remove_reader(channel.fileno())
                return
            try:
                self._take(slot, wire.parse(data))
            except wire.BadMessage as exc:
                log.warning("worker %d sent a bad message (%s); dropped", slot.index, exc)
            except Exception:  # a bug costs one message, never the daemon
                log.exception("internal error on a message from worker %d; dropped", slot.index)

    def _take(self, slot: Slot, message: Mapping[str, Any]) -> None:
        if "candidate" in message:
            candidate = wire.parse_candidate(message["candidate"])
            verdict = self._settle(candidate)
            slot.counters[verdict.outcome] += 1
            if verdict.outcome in ("accepted", "replay"):
                self._tell_all(wire.claimed(candidate.key, candidate.expires))
        if "counts" in message:
            for outcome, n in wire.parse_counts(message["counts"]).items():
                slot.counters[outcome] += n
                self._count(outcome, n)
            skew = wire.parse_skew(message.get("skew"))
            if skew is not None:
                self._skew(skew)

    def _tell_all(self, message: bytes) -> None:
        """Tell every worker something it may use (a claim); a busy one simply misses it."""
        for slot in self.slots:
            if slot.channel is not None:
                with contextlib.suppress(OSError):
                    slot.channel.send(message)

    # -- what status shows --------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "worker": slot.index,
                "pid": slot.pid,
                "restarts": slot.restarts,
                "counters": dict(slot.counters),
            }
            for slot in self.slots
        ]

    def alive(self) -> int:
        return sum(1 for slot in self.slots if slot.channel is not None)
