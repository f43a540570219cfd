"""The acting half of tumblerd: what an accepted knock does, and undoing it on time.

Door actions (firewall backends, the door's command) run as tasks, and firewall calls
in one worker thread, so a slow firewall or a hung command never stops the daemon
reading its sockets. Expiry, restore at start, early close and close at stop live here
too: everything that changes the host.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tumbler.actions import command as door_command
from tumbler.config.daemon import Door
from tumbler.daemon.stats import Stats
from tumbler.errors import FirewallError

if TYPE_CHECKING:  # imported when used: a daemon without firewall doors never loads them
    from tumbler.actions.firewall import FirewallBackend, OpenEntry, SetRef
    from tumbler.ports import PortSpec

log = logging.getLogger("tumblerd")

FIREWALL_WORKERS = 1  # one thread: firewall changes never interleave


class Dispatcher:
    """Opens doors and closes them again, through backends made once per daemon."""

    def __init__(self, stats: Stats, state_path: str) -> None:
        self.stats = stats
        self.state_path = state_path
        self._pool = ThreadPoolExecutor(FIREWALL_WORKERS, thread_name_prefix="firewall")
        self._backends: dict[tuple[str, SetRef | None], FirewallBackend] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def backend_for(self, door: Door) -> FirewallBackend:
        """The firewall backend a door names, made once and kept for the daemon's life."""
        key = (door.firewall, door.set)
        backend = self._backends.get(key)
        if backend is None:
            from tumbler.actions.firewall import get_backend

            backend = get_backend(door.firewall, state_path=self.state_path, set_name=door.set)
            self._backends[key] = backend
        return backend

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def running(self) -> int:
        """Door actions under way."""
        return len(self._tasks)

    @property
    def backends(self) -> list[FirewallBackend]:
        return list(self._backends.values())

    def act(
        self,
        door: Door,
        address: str,
        command_timeout: float,
        ports: tuple[PortSpec, ...] | None = None,
        timeout: float | None = None,
        *,
        now: float,
    ) -> None:
        """Start opening `door` for `address` (firewall, then command); returns at once.

        `ports` and `timeout`, when given (an SPA grant asks for its own), replace the door's.
        `now` is when the knock was decided: the opening's time runs from there.
        """
        self.spawn(self.open(door, address, command_timeout, ports, timeout, now=now))

    async def open(
        self,
        door: Door,
        address: str,
        command_timeout: float,
        ports: tuple[PortSpec, ...] | None = None,
        timeout: float | None = None,
        *,
        now: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        ports = door.open if ports is None else ports
        if ports:
            try:
                backend = self.backend_for(door)
                expires = await loop.run_in_executor(
                    self._pool,
                    backend.open,
                    door.name,
                    address,
                    ports,
                    door.timeout if timeout is None else timeout,
                    now,
                )
            except (FirewallError, OSError, ValueError) as exc:
                self.stats.count("failed")
                log.error("knock for door %s from %s failed: firewall: %s", door.name, address, exc)
                return
            log.info(
                "door %s: opened %s for %s until %s",
                door.name,
                ", ".join(str(p) for p in ports),
                address,
                time.strftime("%H:%M:%S", time.localtime(expires)),
            )
        if door.command:
            await door_command.run_command(door.command, address, door.name, command_timeout, log)

    async def expire(self, now: float) -> None:
        """Close what is due at `now`; a failing backend is tried again at the next tick."""
        loop = asyncio.get_running_loop()
        for backend in list(self._backends.values()):
            try:
                closed = await loop.run_in_executor(self._pool, backend.expire, now)
            except FirewallError as exc:
                log.error("firewall expiry failed, will retry: %s", exc)
                continue
            for entry in closed or ():
                log.info("door %s: closed for %s", entry.door, entry.address)

    def restore(self, doors: Iterable[Door], now: float) -> None:
        """Guard forward doors' ports, re-arm what a previous run opened, close what expired."""
        from tumbler.actions.firewall import DoorGrant

        opening = [door for door in doors if door.open]
        self.guard_forward(opening)
        # What each door may open now: a kept row that no door could open is dropped.
        grants = {d.name: DoorGrant(d.open, d.timeout) for d in opening if not d.set}
        restored: set[int] = set()
        for door in opening:
            try:
                backend = self.backend_for(door)
                if id(backend) not in restored:
                    restored.add(id(backend))
                    backend.restore(now, grants)
            except FirewallError as exc:
                log.error("door %s: could not restore firewall state: %s", door.name, exc)

    def guard_forward(self, doors: Iterable[Door]) -> None:
        """Put each backend's forward guards in place: closed before the first knock."""
        guards: dict[int, tuple[FirewallBackend, dict[str, tuple[PortSpec, ...]]]] = {}
        for door in doors:
            if door.open and door.path == "forward":
                try:
                    backend = self.backend_for(door)
                except FirewallError as exc:
                    log.error(
                        "door %s: no firewall to guard its forwarded ports: %s", door.name, exc
                    )
                    continue
                guards.setdefault(id(backend), (backend, {}))[1][door.name] = door.open
        for backend in self._backends.values():
            forwarded = guards.get(id(backend), (backend, {}))[1]
            if not forwarded and not backend.forward_doors:
                continue
            try:
                backend.guard_forward(forwarded)
            except FirewallError as exc:
                log.error("could not guard forwarded ports (%s): %s", ", ".join(forwarded), exc)
                continue
            for name, ports in sorted(forwarded.items()):
                log.info("door %s: guarding forwarded %s", name, ", ".join(str(p) for p in ports))

    async def open_counts(self, now: float) -> dict[str, int]:
        """How many grants each backend holds open, for metrics; a failing one is logged."""
        loop = asyncio.get_running_loop()
        counts: dict[str, int] = {}
        for backend in list(self._backends.values()):
            counts.setdefault(backend.name, 0)
            try:
                entries = await loop.run_in_executor(self._pool, backend.list_open, now)
            except FirewallError as exc:
                log.error("metrics: cannot list what %s holds open: %s", backend.name, exc)
                continue
            counts[backend.name] += len(entries)
        return counts

    async def open_entries(self, now: float) -> list[OpenEntry]:
        loop = asyncio.get_running_loop()
        entries: list[OpenEntry] = []
        for backend in list(self._backends.values()):
            entries += await loop.run_in_executor(self._pool, backend.list_open, now)
        return sorted(entries)

    async def close(self, address: str, now: float, door: str | None = None) -> list[OpenEntry]:
        """Close early what is open for `address` (normalised), `door`'s only if given."""
        loop = asyncio.get_running_loop()
        closed: list[OpenEntry] = []
        for backend in list(self._backends.values()):
            close = functools.partial(backend.close, address, door, now=now)
            closed += await loop.run_in_executor(self._pool, close)
        for entry in closed:
            log.info("door %s: closed early for %s (control request)", entry.door, address)
        return closed

    async def close_on_stop(self, now: float) -> None:
        """At a clean stop, close what only a running daemon would close on time.

        The two kinds of backend differ here. nftables elements carry their timeout in
        the kernel, so they stay after the stop and close on time by themselves (a
        restart within the timeout keeps the knocker's access). iptables rules
        (`kernel_timeouts` False) would stay open with no daemon to remove them, so
        they are flushed now; if the daemon dies instead (SIGKILL, crash), the next
        start closes what expired and re-arms the rest from the state database.
        """
        loop = asyncio.get_running_loop()
        for backend in list(self._backends.values()):
            if backend.kernel_timeouts:
                continue
            try:
                closed = await loop.run_in_executor(self._pool, backend.flush, now)
            except FirewallError as exc:
                log.error("could not close the open doors at stop (the next start will): %s", exc)
                continue
            for entry in closed:
                log.info("door %s: closed for %s (tumblerd stopping)", entry.door, entry.address)

    async def drain(self, timeout: float = 5.0) -> None:
        """Let running actions finish (a door's command may take a while), then cancel."""
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
