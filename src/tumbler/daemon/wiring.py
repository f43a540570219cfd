"""tumblerd: the one place where sources, decisions and actions are wired together.

The receive path is synchronous and cheap (shape check, cached digest lookup); anything slow
(a door's command, a firewall change) runs as a task or in a worker thread so a flood, or a
hung command, never stops the daemon reading its socket. It never sends a byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from tumbler.addresses import normalize_address
from tumbler.config.daemon import Config, Door, load_config
from tumbler.daemon import sdnotify
from tumbler.daemon.control import ControlServer
from tumbler.daemon.dispatch import Dispatcher
from tumbler.daemon.pipeline import Candidate, Pipeline, Runtime, Verdict, build_runtime
from tumbler.daemon.stats import Stats
from tumbler.decisions.replay import ReplayCache, open_replay_cache
from tumbler.decisions.replay.recent import RecentClaims
from tumbler.errors import ConfigError, FirewallError, ReplayStoreError, TumblerError
from tumbler.events import ConnectionAttempt
from tumbler.protocols import fwknop as spa
from tumbler.sources import udp
from tumbler.sources.base import AttemptSink, Source
from tumbler.sources.spec import open_source

if TYPE_CHECKING:  # imported when used: a daemon without these never loads them
    from tumbler.daemon.metrics import MetricsServer, Snapshot
    from tumbler.daemon.workers import WorkerPool

log = logging.getLogger("tumblerd")

TICK = 1.0
PRUNE_EVERY = 60.0
# What a reload cannot change: the config keys read once at start-up, and how to read each.
RESTART_KEYS: dict[str, Callable[[Config], object]] = {
    "port": lambda c: c.port,
    "listen": lambda c: c.listen,
    "state": lambda c: c.state,
    "replay": lambda c: c.replay.store,
    "replay_fallback": lambda c: c.replay.fallback,
    "replay_access": lambda c: c.replay.access,
    "sequence_source": lambda c: (c.sequence_source.kind, c.sequence_source.path),
    "sequence_log_prefix": lambda c: c.sequence_source.prefix,
    "nflog_group": lambda c: c.nflog_group,
    "fwknop_port": lambda c: c.fwknop_port,
    "workers": lambda c: c.workers,
}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class Daemon:
    """The knock daemon for one config file: sources in, a pipeline deciding, a dispatcher acting.

    `dispatcher` may be given (tests pass a recorder); otherwise one acts on this host.
    """

    def __init__(
        self,
        config: Config,
        port: int | None = None,
        *,
        replay: ReplayCache | None = None,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.port = port if port is not None else config.port
        self.stats = Stats(log)
        store = replay if replay is not None else open_replay_cache(config.replay, config.state)
        self.replay = RecentClaims(store)
        self.pipeline = Pipeline(build_runtime(config), self.replay, self.stats)
        if dispatcher is None:
            dispatcher = Dispatcher(self.stats, config.state)
        self.dispatcher = dispatcher
        self.started = time.time()
        self._sockets: list[socket.socket] = []
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sources: list[Source[Any]] = []  # started, in order; stopped in reverse
        self._sequence: Source[AttemptSink] | None = None
        self._nflog_rules = False
        self._control: ControlServer | None = None
        self._metrics: MetricsServer | None = None
        self._pool: WorkerPool | None = None
        self.on_ready: Callable[[], None] | None = None

    @property
    def runtime(self) -> Runtime:
        """The config in force and what it built; replaced whole by a reload."""
        return self.pipeline.runtime

    # -- receive path -------------------------------------------------------------------

    def _recv_size(self) -> int:
        # An SPA packet is up to 1500 bytes; without fwknop doors, longer than a Tumbler
        # datagram (a signed one is the longest) is junk whatever its length, and the
        # smaller read says so.
        return spa.MAX_PACKET + 1 if self.runtime.fwknop else udp.RECV_SIZE

    def _start_source(
        self, loop: asyncio.AbstractEventLoop, source: Source[Any], sink: Callable[..., object]
    ) -> None:
        """Every source starts the same way: on the loop, with the sink that decides."""
        source.start(loop, sink)
        self._sources.append(source)

    def _stop_source(self, source: Source[Any]) -> None:
        source.stop()
        if source in self._sources:
            self._sources.remove(source)

    def handle(self, data: bytes, address: str, now: float) -> Door | None:
        """Decide one datagram from `address` (normalised), act on it; the door it opened.

        Every kind (v1, v2, signed, fwknop SPA) is decided by the pipeline; an fwknop
        grant opens for the address, ports and time it names. Never replies.
        """
        verdict = self.pipeline.decide(data, address, now)
        return self._act(verdict, now) if verdict.doors else None

    def settle(self, candidate: Candidate) -> Verdict:
        """Claim a knock a worker proved, and act on it if it is fresh (workers > 1)."""
        verdict = self.pipeline.settle(candidate)
        self._act(verdict, candidate.now)
        return verdict

    def _act(self, verdict: Verdict, now: float) -> Door | None:
        for door in verdict.doors:
            self.dispatcher.act(
                door,
                verdict.target or verdict.address,
                self.runtime.config.command_timeout,
                verdict.ports,
                verdict.timeout,
                now=now,
            )
        return verdict.door

    def _log_signed(self) -> None:
        """Say how many SSH keys the signed doors trust, so a reload's effect is visible."""
        signed, config = self.runtime.signed, self.runtime.config
        if signed is not None:
            realm = f", realm {config.realm}" if config.realm else ""
            log.info(
                "signed knocks: %d keys for door %s (window %d s%s)",
                len(signed),
                ", ".join(d.name for d in config.signed_doors),
                config.window_seconds,
                realm,
            )

    def attempt(self, event: ConnectionAttempt) -> list[Door]:
        """Feed one connection attempt to the sequence matcher; act on completed doors."""
        opened = []
        for verdict in self.pipeline.attempt(event):
            for door in verdict.doors:
                self.dispatcher.act(
                    door, event.source, self.runtime.config.command_timeout, now=event.when
                )
                opened.append(door)
        return opened

    def _start_sequence_source(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start watching connection attempts, if the config has sequence doors."""
        config, matcher = self.runtime.config, self.runtime.matcher
        if matcher is None:  # no sequence doors
            return
        spec = config.sequence_source

        def mixed(tag: str) -> None:
            log.warning(
                "firewall log %s also holds lines from %r: anyone who can write to syslog "
                "can forge knocks there; give kernel messages a file of their own",
                spec.path,
                tag,
            )

        source = open_source(spec, nflog_group=config.nflog_group, on_foreign=mixed)
        if spec.kind == "file":
            self._sequence = source
            self._start_source(loop, source, self.attempt)
            trusted = f"prefix {spec.prefix!r}" if spec.prefix is not None else "tag 'kernel:'"
            log.info("sequence doors: following firewall log %s, lines with %s", spec.path, trusted)
            return
        # NFLOG sees only what the logging rules send it: they go in first.
        from tumbler.actions.firewall import seqlog

        ports = [step for door in config.sequence_doors for step in door.sequence]
        track = seqlog.track_timeout_for(matcher.longest_timeout)
        seqlog.install_rules(config.nflog_group, ports, track_timeout=track)
        self._nflog_rules = True
        self._sequence = source
        self._start_source(loop, source, self.attempt)
        log.info(
            "sequence doors: reading nflog group %d, a knocking source tracked for %d s",
            config.nflog_group,
            track,
        )

    def _stop_sequence_source(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sequence is not None:
            self._stop_source(self._sequence)
            self._sequence = None
        if self._nflog_rules:
            from tumbler.actions.firewall import seqlog

            try:
                seqlog.remove_rules()
            except FirewallError as exc:
                log.error("could not remove the nflog rules: %s", exc)
            self._nflog_rules = False

    def _start_workers(self, sets: list[list[socket.socket]]) -> None:
        """Fork the receiving processes, before any thread of ours runs (metrics, executor)."""
        from tumbler.daemon.workers import WorkerPool

        def skew(report: dict[str, Any]) -> None:
            self.pipeline.last_skew = report

        self._pool = WorkerPool(
            sets, lambda: self.runtime, self.settle, lambda o, n: self.stats.count(o, n), skew
        )
        self._pool.start()

    # -- housekeeping -------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        last_prune = time.time()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), TICK)
            now = time.time()
            self.stats.flush(now)
            await self.dispatcher.expire(now)
            if self.runtime.matcher is not None:
                self.runtime.matcher.prune(now)
            try:
                await loop.run_in_executor(None, self.replay.probe)
            except ReplayStoreError as exc:
                log.error("replay store probe failed: %s", exc)
            if now - last_prune >= PRUNE_EVERY:
                last_prune = now
                try:
                    pruned = await loop.run_in_executor(None, self.replay.prune, now)
                    log.debug("replay cache: pruned %d expired digests", pruned)
                    self.stats.replay_ok = True
                except ReplayStoreError as exc:
                    self.stats.replay_ok = False
                    log.error("replay cache prune failed: %s", exc)

    def _restore_firewalls(self) -> None:
        self.dispatcher.restore(self.runtime.doors.values(), time.time())

    # -- metrics ----------------------------------------------------------------------------

    def _start_metrics(self) -> None:
        """Serve metrics if the config asks; a metrics failure never stops the knock service."""
        address = self.runtime.config.metrics
        if address is None:
            return
        from tumbler.daemon.metrics import serve_metrics

        try:
            self._metrics = serve_metrics(address, self._metrics_snapshot)
        except OSError as exc:
            log.error("metrics unavailable on %s port %d: %s", address[0], address[1], exc)

    def _metrics_snapshot(self) -> Snapshot:
        """A snapshot for a scrape (called from the metrics thread), taken on the event loop."""
        if self._loop is None:
            raise RuntimeError("the daemon is not running")
        future = asyncio.run_coroutine_threadsafe(self._snapshot(), self._loop)
        return future.result(timeout=10)

    async def _snapshot(self) -> Snapshot:
        from tumbler.daemon.dispatch import FIREWALL_WORKERS
        from tumbler.daemon.metrics import Snapshot

        open_by_backend = await self.dispatcher.open_counts(time.time())
        matcher = self.runtime.matcher
        return Snapshot(
            outcomes=dict(self.stats.total),
            accepted_by_door=dict(self.stats.accepted_by_door),
            open_by_backend=open_by_backend,
            replay_store=self.replay.name,
            replay_up=self.stats.replay_ok and not self.pipeline.store_failing,
            sequence_sources=len(matcher) if matcher is not None else 0,
            workers={
                "firewall": FIREWALL_WORKERS,
                "actions": self.dispatcher.running,
                "receivers": self._pool.alive() if self._pool is not None else 1,
            },
            doors=tuple(sorted(self.runtime.doors)),
            firewall_failures=self.stats.total["failed"],
            sequences=self.stats.total["sequence"],
        )

    # -- control ---------------------------------------------------------------------------

    async def control(self, message: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request (`status`, `close` of an address, on one door or all)."""
        command = message.get("command")
        now = time.time()
        if command == "status":
            config = self.runtime.config
            return {
                "ok": True,
                "pid": os.getpid(),
                "config": config.path,
                "started": self.started,
                "uptime": now - self.started,
                "port": self.port,
                "doors": sorted(self.runtime.doors),
                "counters": dict(self.stats.total),
                "accepted_by_door": dict(self.stats.accepted_by_door),
                "last_clock_skew": self.pipeline.last_skew,
                "replay": self.replay.name,
                "open": [asdict(e) for e in await self.dispatcher.open_entries(now)],
                "workers": self._pool.status() if self._pool is not None else [],
            }
        if command == "close":
            address = message.get("address")
            try:
                address = normalize_address(str(address))
            except ValueError:
                return {"ok": False, "error": f"not an IP address: {address!r}"}
            door = message.get("door")
            if door is not None and (not isinstance(door, str) or door not in self.runtime.doors):
                return {"ok": False, "error": f"the running daemon has no door {door!r}"}
            closed = await self.dispatcher.close(address, now, door)
            return {"ok": True, "closed": [asdict(e) for e in closed]}
        return {"ok": False, "error": f"unknown command {command!r}"}

    # -- signals ----------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: take the new config whole, or keep the old one and say why."""
        sdnotify.reloading()
        try:
            self._reload()
        finally:
            sdnotify.ready()  # READY=1 must follow RELOADING=1 even when the reload is refused

    def _reload(self) -> None:
        old = self.runtime.config
        try:
            config = load_config(old.path)
        except ConfigError as exc:
            log.error("reload refused, still serving the previous config: %s", exc)
            return
        for warning in config.warnings:
            log.warning("%s", warning)
        for key, value in RESTART_KEYS.items():
            if value(config) != value(old):
                log.warning("reload: %s changed; it takes effect at the next restart", key)
        try:
            runtime = build_runtime(config)
        except ValueError as exc:
            log.error("reload refused, still serving the previous config: %s", exc)
            return
        if bool(runtime.fwknop) != bool(self.runtime.fwknop):
            log.warning(
                "reload: fwknop doors came or went; port %d follows at the next restart",
                config.fwknop_port,
            )
        self.pipeline.runtime = runtime
        log.info("reloaded %s: %d doors", config.path, len(config.doors))
        if self._pool is not None:
            self._pool.restart()  # forked from the new config
        self._log_signed()
        self._restore_firewalls()
        if self._loop is not None and (
            [(d.name, d.sequence, d.sequence_timeout) for d in config.sequence_doors]
            != [(d.name, d.sequence, d.sequence_timeout) for d in old.sequence_doors]
        ):
            self._stop_sequence_source(self._loop)
            try:
                self._start_sequence_source(self._loop)
            except (FirewallError, TumblerError, OSError) as exc:
                log.error("sequence doors disabled: cannot watch connection attempts: %s", exc)

    def stop(self) -> None:
        sdnotify.stopping()
        self._stop.set()

    # -- main -----------------------------------------------------------------------------

    async def serve(self) -> None:
        """Bind, serve until SIGTERM or SIGINT, then close cleanly."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        config = self.runtime.config
        # The control socket first: a second daemon on the same socket refuses to start
        # before it touches a port or a firewall.
        self._control = ControlServer(config.control, self.control)
        try:
            await self._control.start()
        except OSError as exc:
            log.error("control socket %s unavailable: %s", config.control, exc)
            self._control = None
        spa_port = bool(self.runtime.fwknop) and config.fwknop_port != self.port
        sets = []
        try:
            for _ in range(config.workers):
                reuse = config.workers > 1
                socks = udp.bind_sockets(config.listen, self.port, reuse)
                if spa_port:
                    socks += udp.bind_sockets(config.listen, config.fwknop_port, reuse)
                sets.append(socks)
                self._sockets += socks
        except BaseException:
            for sock in self._sockets:
                sock.close()
            if self._control is not None:
                await self._control.close()
            raise
        if config.workers > 1:
            self._start_workers(sets)
        else:
            self._start_source(
                loop, udp.UdpSource(self._sockets, self._recv_size, self.stats.count), self.handle
            )
        self._start_metrics()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        self._restore_firewalls()
        try:
            self._start_sequence_source(loop)
        except BaseException:
            self._stop_sequence_source(loop)
            raise
        where = ", ".join(
            f"[{a}]:{self.port}" if ":" in a else f"{a}:{self.port}" for a in config.listen
        )
        log.info(
            "tumblerd listening on udp %s with %s (window %d, replay %s%s%s)",
            where,
            _count(len(config.doors), "door"),
            config.window,
            self.replay.name,
            f", {_count(len(config.key_doors), 'v2 door')}, window {config.window_seconds} s"
            if config.key_doors
            else "",
            f", {config.workers} workers" if self._pool is not None else "",
        )
        self._log_signed()
        if self.runtime.fwknop:
            log.info(
                "fwknop doors %s: SPA packets taken on udp port %d%s",
                ", ".join(d.name for d in self.runtime.fwknop),
                config.fwknop_port,
                f" and {self.port}" if spa_port else "",
            )
        if self.on_ready is not None:
            self.on_ready()
        try:
            await self._housekeeping()
        finally:
            await self._shutdown(loop)

    async def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._metrics is not None:
            await loop.run_in_executor(None, self._metrics.close)
        self._stop_sequence_source(loop)
        if self._control is not None:
            await self._control.close()
        if self._pool is not None:
            await self._pool.stop()
        while self._sources:  # the UDP sockets, and any other source, last started first
            self._stop_source(self._sources[-1])
        for sock in self._sockets:  # the copies the workers' sockets came from
            sock.close()
        await self.dispatcher.drain()
        self.stats.flush(time.time(), force=True)
        await self.dispatcher.close_on_stop(time.time())
        self.dispatcher.shutdown()
        self.replay.close()
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.stats.total.items())) or "nothing"
        log.info("tumblerd stopped (%s)", counts)
