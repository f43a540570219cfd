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
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tumbler.actions import command as door_command
from tumbler.addresses import normalize_address
from tumbler.config.daemon import Config, Door, load_config
from tumbler.daemon import sdnotify
from tumbler.daemon.control import ControlServer
from tumbler.daemon.stats import Stats
from tumbler.decisions.newsources import NewSourceBudget
from tumbler.decisions.replay import ReplayCache, open_replay_cache
from tumbler.decisions.sequence import SequenceMatcher
from tumbler.decisions.signed import Refusal, SignedMatch, SignedVerifier
from tumbler.decisions.verifier import Verifier
from tumbler.decisions.verifier2 import ACCEPTED, CLOCK_SKEW, UNKNOWN_KEY, Verifier2
from tumbler.doors import SequenceDoor
from tumbler.errors import (
    ConfigError,
    FirewallError,
    MalformedDatagram,
    ReplayStoreError,
    TumblerError,
)
from tumbler.events import ConnectionAttempt
from tumbler.protocols import fwknop as spa
from tumbler.protocols import sshsig, tumbler2
from tumbler.protocols.sshkeys import KEY_ID_LEN, SshSupportMissing
from tumbler.protocols.tumbler1 import digest_bytes
from tumbler.sources import udp

if TYPE_CHECKING:  # imported when used: a daemon without firewall doors never loads them
    from tumbler.actions.firewall import FirewallBackend, OpenEntry
    from tumbler.daemon.metrics import MetricsServer, Snapshot
    from tumbler.ports import PortSpec
    from tumbler.sources.nflog import NflogReader

log = logging.getLogger("tumblerd")

TICK = 1.0
FIREWALL_WORKERS = 1  # one thread: firewall changes never interleave
PRUNE_EVERY = 60.0
SKEW_LOG_EVERY = 10.0  # seconds between two clock-skew lines; the rest are only counted
_KEY_ID = slice(len(sshsig.MAGIC), len(sshsig.MAGIC) + KEY_ID_LEN)


@dataclass
class Runtime:
    """What a config builds; swapped whole on reload so a datagram sees one config or the other."""

    config: Config
    verifier: Verifier
    verifier2: Verifier2[Door]
    doors: dict[str, Door] = field(default_factory=dict)
    matcher: SequenceMatcher | None = None
    signed: SignedVerifier | None = None
    fwknop: tuple[spa.FwknopDoor, ...] = ()  # in file order; empty without `cryptography`


class Daemon:
    """The knock daemon for one config file."""

    def __init__(self, config: Config, port: int | None = None) -> None:
        self.runtime = self._build(config)
        self.port = port if port is not None else config.port
        self.stats = Stats(log)
        self.budget = NewSourceBudget(config.ipv6_prefix)
        self.replay: ReplayCache = open_replay_cache(
            config.replay, config.state, config.replay_fallback, config.replay_access
        )
        self.started = time.time()
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._firewall_pool = ThreadPoolExecutor(FIREWALL_WORKERS, thread_name_prefix="firewall")
        self._backends: dict[tuple[str, str | None], FirewallBackend] = {}
        self._stop = asyncio.Event()
        self._claimed: dict[str, float] = {}
        self._store_failing = False
        self._skew_logged = float("-inf")
        self._skew_quiet = 0
        self.last_skew: dict[str, Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nflog: NflogReader | None = None
        self._nflog_rules = False
        self._follower: asyncio.Task[None] | None = None
        self._control: ControlServer | None = None
        self._metrics: MetricsServer | None = None
        self.on_ready: Callable[[], None] | None = None

    @staticmethod
    def _build(config: Config) -> Runtime:
        sequence_doors = [
            SequenceDoor(d.name, d.sequence, d.sequence_timeout) for d in config.sequence_doors
        ]
        fwknop_doors = config.fwknop_doors
        missing = spa.crypto_missing()
        if fwknop_doors and missing is not None:
            names = ", ".join(d.name for d in fwknop_doors)
            log.error("fwknop doors %s disabled, the other doors serve: %s", names, missing)
            fwknop_doors = ()
        return Runtime(
            config=config,
            verifier=Verifier(config.doors, config.window),
            verifier2=Verifier2(config.key_doors, config.realm, config.window_seconds),
            doors={d.name: d for d in config.doors},
            matcher=SequenceMatcher(sequence_doors) if sequence_doors else None,
            signed=Daemon._build_signed(config),
            fwknop=fwknop_doors,
        )

    @staticmethod
    def _build_signed(config: Config) -> SignedVerifier | None:
        """The keys of the signed doors by key id; None (said once) without `cryptography`."""
        doors = config.signed_doors
        if not doors:
            return None
        try:
            return SignedVerifier(
                {d.name: d.keys for d in doors}, config.window_seconds, config.realm
            )
        except SshSupportMissing as exc:
            names = ", ".join(d.name for d in doors)
            log.error("door %s takes no signed knocks: %s", names, exc)
            return None
        except ValueError as exc:
            raise ConfigError(str(exc), config.path) from None

    # -- receive path -------------------------------------------------------------------

    def _on_readable(self, sock: socket.socket) -> None:
        # An SPA packet is up to 1500 bytes; without fwknop doors, longer than a Tumbler
        # datagram (a signed one is the longest) is junk whatever its length, and the
        # smaller read says so.
        size = spa.MAX_PACKET + 1 if self.runtime.fwknop else udp.RECV_SIZE
        udp.read_batch(sock, self.handle, size, self.stats.count)

    def handle(self, data: bytes, address: str, now: float) -> Door | None:
        """Decide one datagram from `address` (normalised); return the door it opened, if any.

        One path for every kind: the shape tells an fwknop SPA packet (140 to 1500 base64
        characters) from a signed knock (its magic bytes, not base64) and from a v1 or v2
        datagram (at most 77 bytes) before any cryptography.
        Never replies.
        """
        runtime = self.runtime
        if runtime.fwknop and spa.classify(data):
            return self._handle_spa(data, address, now)
        if sshsig.looks_signed(data):
            return self._handle_signed(data, address, now)
        if tumbler2.is_v2(data):
            if data[tumbler2.KEY_ID_SLICE] not in runtime.verifier2:
                self.stats.count(UNKNOWN_KEY)  # before parsing: a flood's cheapest path
                return None
            return self._handle_v2(tumbler2.parse(data), address, now)
        try:
            raw = digest_bytes(data)
        except MalformedDatagram:
            self.stats.count("malformed")
            return None
        verifier = self.runtime.verifier
        if verifier.knows(address, now):
            match = verifier.match_raw(raw, address, now)
        else:
            bucket = self.budget.admit(address, now, verifier.cost)
            if bucket is None:
                self.stats.count("shed")
                return None
            started = time.perf_counter()
            match = verifier.match_raw(raw, address, now)
            self.budget.charge(bucket, time.perf_counter() - started)
        if match is None:
            self.stats.count("no-door")
            return None
        return self._claim_and_act(
            match.door,
            match.digest,
            match.expires,
            address,
            now,
            f"minute {match.minute_offset:+d}",
        )

    def _handle_v2(self, knock: tumbler2.Knock2, address: str, now: float) -> Door | None:
        """A v2 knock: key id, one MAC, the window (skew reported), then the replay claim."""
        verdict = self.runtime.verifier2.check(knock, address, now)
        if verdict.reason == ACCEPTED and verdict.door is not None:
            return self._claim_and_act(
                verdict.door, verdict.claim, verdict.expires, address, now, "v2"
            )
        self.stats.count(verdict.reason)
        if verdict.reason == CLOCK_SKEW and verdict.door is not None:
            self._report_skew(verdict.door, address, verdict.offset, now)
        return None

    def _report_skew(self, door: Door, address: str, offset: int, now: float) -> None:
        """Log a right knock from a wrong clock, at most once per SKEW_LOG_EVERY seconds."""
        self.last_skew = {"door": door.name, "address": address, "offset": offset, "at": now}
        if now - self._skew_logged < SKEW_LOG_EVERY:
            self._skew_quiet += 1
            return
        more = f" ({self._skew_quiet} more since the last report)" if self._skew_quiet else ""
        log.warning(
            "knock for door %s from %s refused: clock off by %+d s, window %d s%s",
            door.name,
            address,
            offset,
            self.runtime.config.window_seconds,
            more,
        )
        self._skew_logged = now
        self._skew_quiet = 0

    def _claim_and_act(
        self, door: Door, claim: str, expires: float, address: str, now: float, detail: str
    ) -> Door | None:
        """Claim a proved knock in the replay cache; if it is fresh, open the door."""
        if not self._claim(claim, expires, door.name, address, now):
            return None
        self.stats.count("accepted", door=door.name)
        log.info("knock accepted: door %s from %s (%s)", door.name, address, detail)
        self._spawn(self._act(door, address))
        return door

    def _handle_signed(self, data: bytes, address: str, now: float) -> Door | None:
        """A signed knock: key id first (no cryptography for strangers), then one verify."""
        if not sshsig.MIN_DATAGRAM <= len(data) <= sshsig.MAX_DATAGRAM:
            self.stats.count("malformed")
            return None
        signed = self.runtime.signed
        kid = data[_KEY_ID]
        if signed is None or not signed.knows(kid):
            self.stats.count(Refusal.UNKNOWN_KEY.value)
            return None
        if signed.exhausted(kid, now):  # a flood on this key id: no parsing, no verifying
            self.stats.count(Refusal.RATE_LIMITED.value)
            return None
        try:
            knock = sshsig.parse_datagram(data)
        except MalformedDatagram:
            self.stats.count("malformed")
            return None
        # A knock seen before costs no verification: its key id, time and nonce name it.
        held = self._claimed.get(sshsig.claim_token(knock))
        if held is not None and held > now:
            self.stats.count("replay")
            return None
        verdict = signed.match(knock, address, now)
        if not isinstance(verdict, SignedMatch):
            self.stats.count(verdict.reason.value)
            if verdict.reason is Refusal.STALE and verdict.key is not None:
                self._report_signed_skew(verdict.key.label, address, verdict.offset, now)
            return None
        if not self._claim(verdict.token, verdict.expires, ", ".join(verdict.doors), address, now):
            return None
        self.stats.count("accepted")
        opened = [self.runtime.doors[name] for name in verdict.doors]
        for door in opened:
            log.info(
                "knock accepted: door %s from %s by key %s (clock %+d s)",
                door.name,
                address,
                verdict.key.label,
                verdict.offset,
            )
            self._spawn(self._act(door, address))
        return opened[0]

    def _claim(self, key: str, expires: float, door: str, address: str, now: float) -> bool:
        """Claim a knock once, here and in the replay store; False (counted) if not fresh."""
        held = self._claimed.get(key)
        if held is not None and held > now:
            self.stats.count("replay")
            return False
        try:
            fresh = self.replay.claim(key, expires)
        except ReplayStoreError as exc:
            self.stats.count("store-down")
            if not self._store_failing:  # one line per outage: a flood must not fill the log
                self._store_failing = True
                log.error(
                    "knock for door %s from %s refused, replay store failing: %s "
                    "(further refusals are counted as store-down until it answers)",
                    door,
                    address,
                    exc,
                )
            return False
        self._store_failing = False
        self._claimed[key] = expires
        if not fresh:
            self.stats.count("replay")
        return fresh

    def _handle_spa(self, data: bytes, address: str, now: float) -> Door | None:
        """An fwknop SPA packet: the first door whose keys open it decides; replay by content."""
        try:
            grant = spa.first_grant(data, self.runtime.fwknop, address, now)
        except spa.SpaRejected as exc:
            if exc.door is None:  # no door's keys open it: junk, as far as anyone can tell
                self.stats.count("no-door")
                return None
            if exc.replay_key is not None:
                # A refused packet repeated is counted as a replay, and logged only once.
                key = f"fwknop:{exc.replay_key}"
                held = self._claimed.get(key)
                if held is not None and held > now:
                    self.stats.count("replay")
                    return None
                self._claimed[key] = exc.replay_until
            self.stats.count("refused")
            self.stats.count(f"fwknop-{exc.reason}")
            if exc.reason != "age":  # old packets are counted, not logged: a flood could replay one
                log.info("fwknop packet for door %s from %s refused: %s", exc.door, address, exc)
            return None
        # Content, not bytes: the same request encrypted again under a new salt is a replay.
        if not self._claim(
            f"fwknop:{grant.replay_key}", grant.replay_until, grant.door, address, now
        ):
            return None
        door = self.runtime.doors[grant.door]
        self.stats.count("accepted", door=door.name)
        log.info(
            "fwknop packet accepted: door %s from %s for %s (user %s)",
            door.name,
            address,
            grant.address,
            grant.user,
        )
        self._spawn(self._act(door, grant.address, grant.ports, grant.timeout))
        return door

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

    def _report_signed_skew(self, key: str, address: str, offset: int | None, now: float) -> None:
        """A right signature from a wrong clock, logged as v2's are (at most every 10 s)."""
        self.last_skew = {"key": key, "address": address, "offset": offset, "at": now}
        if now - self._skew_logged < SKEW_LOG_EVERY:
            self._skew_quiet += 1
            return
        more = f" ({self._skew_quiet} more since the last report)" if self._skew_quiet else ""
        log.warning(
            "signed knock from %s by key %s refused: clock off by %+d s, window %d s%s",
            address,
            key,
            offset or 0,
            self.runtime.config.window_seconds,
            more,
        )
        self._skew_logged = now
        self._skew_quiet = 0

    def attempt(self, event: ConnectionAttempt) -> list[Door]:
        """Feed one connection attempt to the sequence matcher; act on completed doors."""
        runtime = self.runtime
        if runtime.matcher is None:
            return []
        opened = []
        for name in runtime.matcher.feed(event):
            door = runtime.doors[name]
            self.stats.count("sequence", door=name)
            log.info("knock sequence completed: door %s from %s", name, event.source)
            self._spawn(self._act(door, event.source))
            opened.append(door)
        return opened

    def _on_nflog(self) -> None:
        assert self._nflog is not None
        try:
            events = self._nflog.read()
        except OSError as exc:
            log.error("nflog read failed: %s", exc)
            return
        for event in events:
            try:
                self.attempt(event)
            except Exception:
                log.exception("internal error on a connection attempt; dropped")

    async def _follow_log(self, events: AsyncIterator[ConnectionAttempt]) -> None:
        async for event in events:
            try:
                self.attempt(event)
            except Exception:
                log.exception("internal error on a connection attempt; dropped")

    def _start_sequence_source(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start watching connection attempts, if the config has sequence doors."""
        config, matcher = self.runtime.config, self.runtime.matcher
        if matcher is None:  # no sequence doors
            return
        source = config.sequence_source
        if source.startswith("file:"):
            from tumbler.sources.logfile import follow

            path = source[len("file:") :]
            prefix = config.sequence_log_prefix

            def mixed(tag: str) -> None:
                log.warning(
                    "firewall log %s also holds lines from %r: anyone who can write to syslog "
                    "can forge knocks there; give kernel messages a file of their own",
                    path,
                    tag,
                )

            events = follow(path, prefix=prefix, on_foreign=mixed)
            self._follower = loop.create_task(self._follow_log(events))
            trusted = f"prefix {prefix!r}" if prefix is not None else "tag 'kernel:'"
            log.info("sequence doors: following firewall log %s, lines with %s", path, trusted)
            return
        from tumbler.actions.firewall import seqlog
        from tumbler.sources import nflog

        ports = [step for door in config.sequence_doors for step in door.sequence]
        track = seqlog.track_timeout_for(matcher.longest_timeout)
        seqlog.install_rules(config.nflog_group, ports, track_timeout=track)
        self._nflog_rules = True
        self._nflog = nflog.NflogReader(config.nflog_group)
        loop.add_reader(self._nflog.fileno(), self._on_nflog)
        log.info(
            "sequence doors: reading nflog group %d, a knocking source tracked for %d s",
            config.nflog_group,
            track,
        )

    def _stop_sequence_source(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._follower is not None:
            self._follower.cancel()
            self._follower = None
        if self._nflog is not None:
            loop.remove_reader(self._nflog.fileno())
            self._nflog.close()
            self._nflog = None
        if self._nflog_rules:
            from tumbler.actions.firewall import seqlog

            try:
                seqlog.remove_rules()
            except FirewallError as exc:
                log.error("could not remove the nflog rules: %s", exc)
            self._nflog_rules = False

    # -- actions --------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def backend_for(self, door: Door) -> FirewallBackend:
        """The firewall backend a door names, made once and kept for the daemon's life."""
        key = (door.firewall, door.set)
        backend = self._backends.get(key)
        if backend is None:
            from tumbler.actions.firewall import get_backend

            backend = get_backend(
                door.firewall, state_path=self.runtime.config.state, set_name=door.set
            )
            self._backends[key] = backend
        return backend

    async def _act(
        self,
        door: Door,
        address: str,
        ports: tuple[PortSpec, ...] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Open the door's ports (or, for an SPA grant, the ports and time it asked for)."""
        loop = asyncio.get_running_loop()
        ports = door.open if ports is None else ports
        if ports:
            try:
                backend = self.backend_for(door)
                expires = await loop.run_in_executor(
                    self._firewall_pool,
                    backend.open,
                    door.name,
                    address,
                    ports,
                    door.timeout if timeout is None else timeout,
                    time.time(),
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
            await door_command.run_command(
                door.command, address, door.name, self.runtime.config.command_timeout, log
            )

    # -- housekeeping -------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        last_prune = time.time()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), TICK)
            now = time.time()
            self.stats.flush(now)
            for backend in list(self._backends.values()):
                try:
                    closed = await loop.run_in_executor(self._firewall_pool, backend.expire, now)
                except FirewallError as exc:
                    log.error("firewall expiry failed, will retry: %s", exc)
                    continue
                for entry in closed or ():
                    log.info("door %s: closed for %s", entry.door, entry.address)
            if self.runtime.matcher is not None:
                self.runtime.matcher.prune(now)
            try:
                await loop.run_in_executor(None, self.replay.probe)
            except ReplayStoreError as exc:
                log.error("replay store probe failed: %s", exc)
            if now - last_prune >= PRUNE_EVERY:
                last_prune = now
                self._claimed = {d: e for d, e in self._claimed.items() if e > now}
                try:
                    pruned = await loop.run_in_executor(None, self.replay.prune, now)
                    log.debug("replay cache: pruned %d expired digests", pruned)
                    self.stats.replay_ok = True
                except ReplayStoreError as exc:
                    self.stats.replay_ok = False
                    log.error("replay cache prune failed: %s", exc)

    def _restore_firewalls(self) -> None:
        """Guard forward doors' ports, re-arm what a previous run opened, close what expired."""
        from tumbler.actions.firewall import DoorGrant

        self._guard_forward()
        now = time.time()
        doors = [door for door in self.runtime.doors.values() if door.open]
        # What each door may open now: a kept row that no door could open is dropped.
        grants = {d.name: DoorGrant(d.open, d.timeout) for d in doors if not d.set}
        restored: set[int] = set()
        for door in doors:
            try:
                backend = self.backend_for(door)
                if id(backend) not in restored:
                    restored.add(id(backend))
                    backend.restore(now, grants)
            except FirewallError as exc:
                log.error("door %s: could not restore firewall state: %s", door.name, exc)

    def _guard_forward(self) -> None:
        """Put each backend's forward guards in place: closed before the first knock."""
        guards: dict[int, tuple[FirewallBackend, dict[str, tuple[PortSpec, ...]]]] = {}
        for door in self.runtime.doors.values():
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
            doors = guards.get(id(backend), (backend, {}))[1]
            if not doors and not backend.forward_doors:
                continue
            try:
                backend.guard_forward(doors)
            except FirewallError as exc:
                log.error("could not guard forwarded ports (%s): %s", ", ".join(doors), exc)
                continue
            for name, ports in sorted(doors.items()):
                log.info("door %s: guarding forwarded %s", name, ", ".join(str(p) for p in ports))

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
        from tumbler.daemon.metrics import Snapshot

        loop = asyncio.get_running_loop()
        now = time.time()
        open_by_backend: dict[str, int] = {}
        for backend in list(self._backends.values()):
            open_by_backend.setdefault(backend.name, 0)
            try:
                entries = await loop.run_in_executor(self._firewall_pool, backend.list_open, now)
            except FirewallError as exc:
                log.error("metrics: cannot list what %s holds open: %s", backend.name, exc)
                continue
            open_by_backend[backend.name] += len(entries)
        matcher = self.runtime.matcher
        return Snapshot(
            outcomes=dict(self.stats.total),
            accepted_by_door=dict(self.stats.accepted_by_door),
            open_by_backend=open_by_backend,
            replay_store=self.replay.name,
            replay_up=self.stats.replay_ok and not self._store_failing,
            sequence_sources=len(matcher) if matcher is not None else 0,
            workers={"firewall": FIREWALL_WORKERS, "actions": len(self._tasks)},
            doors=tuple(sorted(self.runtime.doors)),
            firewall_failures=self.stats.total["failed"],
            sequences=self.stats.total["sequence"],
        )

    # -- control ---------------------------------------------------------------------------

    async def _open_entries(self) -> list[OpenEntry]:
        loop = asyncio.get_running_loop()
        now = time.time()
        entries: list[OpenEntry] = []
        for backend in list(self._backends.values()):
            entries += await loop.run_in_executor(self._firewall_pool, backend.list_open, now)
        return sorted(entries)

    async def control(self, message: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request (`status`, `close`)."""
        command = message.get("command")
        if command == "status":
            config = self.runtime.config
            return {
                "ok": True,
                "pid": os.getpid(),
                "config": config.path,
                "started": self.started,
                "uptime": time.time() - self.started,
                "port": self.port,
                "doors": sorted(self.runtime.doors),
                "counters": dict(self.stats.total),
                "last_clock_skew": self.last_skew,
                "replay": self.replay.name,
                "open": [asdict(e) for e in await self._open_entries()],
            }
        if command == "close":
            address = message.get("address")
            try:
                address = normalize_address(str(address))
            except ValueError:
                return {"ok": False, "error": f"not an IP address: {address!r}"}
            loop = asyncio.get_running_loop()
            closed: list[OpenEntry] = []
            for backend in list(self._backends.values()):
                closed += await loop.run_in_executor(self._firewall_pool, backend.close, address)
            for entry in closed:
                log.info("door %s: closed early for %s (control request)", entry.door, address)
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
        for key in (
            "port",
            "listen",
            "state",
            "replay",
            "replay_fallback",
            "replay_access",
            "sequence_source",
            "sequence_log_prefix",
            "nflog_group",
            "fwknop_port",
        ):
            if getattr(config, key) != getattr(old, key):
                log.warning("reload: %s changed; it takes effect at the next restart", key)
        try:
            runtime = self._build(config)
        except ValueError as exc:
            log.error("reload refused, still serving the previous config: %s", exc)
            return
        if bool(runtime.fwknop) != bool(self.runtime.fwknop):
            log.warning(
                "reload: fwknop doors came or went; port %d follows at the next restart",
                config.fwknop_port,
            )
        self.runtime = runtime
        log.info("reloaded %s: %d doors", config.path, len(config.doors))
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
        try:
            self._sockets = udp.bind_sockets(config.listen, self.port)
            if spa_port:
                self._sockets += udp.bind_sockets(config.listen, config.fwknop_port)
        except BaseException:
            for sock in self._sockets:
                sock.close()
            if self._control is not None:
                await self._control.close()
            raise
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._on_readable, sock)
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
            "tumblerd listening on udp %s with %d doors (window %d, replay %s%s)",
            where,
            len(config.doors),
            config.window,
            self.replay.name,
            f", {len(config.key_doors)} v2 doors, window {config.window_seconds} s"
            if config.key_doors
            else "",
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

    async def _close_on_stop(self, loop: asyncio.AbstractEventLoop) -> None:
        """At a clean stop, close what only a running daemon would close on time.

        The two kinds of backend differ here. nftables elements carry their timeout in
        the kernel, so they stay after the stop and close on time by themselves (a
        restart within the timeout keeps the knocker's access). iptables rules
        (`kernel_timeouts` False) would stay open with no daemon to remove them, so
        they are flushed now; if the daemon dies instead (SIGKILL, crash), the next
        start closes what expired and re-arms the rest from the state database.
        """
        for backend in list(self._backends.values()):
            if backend.kernel_timeouts:
                continue
            try:
                closed = await loop.run_in_executor(self._firewall_pool, backend.flush)
            except FirewallError as exc:
                log.error("could not close the open doors at stop (the next start will): %s", exc)
                continue
            for entry in closed:
                log.info("door %s: closed for %s (tumblerd stopping)", entry.door, entry.address)

    async def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._metrics is not None:
            await loop.run_in_executor(None, self._metrics.close)
        self._stop_sequence_source(loop)
        if self._control is not None:
            await self._control.close()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=5.0)
            for task in pending:
                task.cancel()
        self.stats.flush(time.time(), force=True)
        await self._close_on_stop(loop)
        self._firewall_pool.shutdown(wait=True)
        self.replay.close()
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.stats.total.items())) or "nothing"
        log.info("tumblerd stopped (%s)", counts)
