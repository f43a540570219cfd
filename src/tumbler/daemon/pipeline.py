"""The deciding half of tumblerd: an input and the time in, a verdict out.

A datagram goes through its protocol (shape: fwknop SPA, signed, v2 or v1), its verifier
(which door, within the window) and the replay cache (claimed once); a connection attempt
goes through the sequence matcher. Nothing here acts, waits or needs a running loop, so
the daemon's decisions can be driven directly, by tests and by the fuzzer, with any clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from tumbler.config.daemon import Config, Door
from tumbler.daemon.stats import Stats
from tumbler.decisions.newsources import FIRST, NewSourceBudget
from tumbler.decisions.replay.recent import RecentClaims
from tumbler.decisions.sequence import SequenceMatcher
from tumbler.decisions.signed import Refusal, SignedMatch, SignedVerifier
from tumbler.decisions.verifier import Verifier
from tumbler.decisions.verifier2 import ACCEPTED, CLOCK_SKEW, UNKNOWN_KEY, Verifier2
from tumbler.errors import ConfigError, MalformedDatagram, ReplayStoreError
from tumbler.events import ConnectionAttempt
from tumbler.ports import PortSpec
from tumbler.protocols import fwknop as spa
from tumbler.protocols import sshsig, tumbler1, tumbler2
from tumbler.protocols.sshkeys import KEY_ID_LEN, SshSupportMissing

log = logging.getLogger("tumblerd")

SKEW_LOG_EVERY = 10.0  # seconds between two clock-skew lines; the rest are only counted
_KEY_ID = slice(len(sshsig.MAGIC), len(sshsig.MAGIC) + KEY_ID_LEN)


@dataclass
class Runtime:
    """What a config builds; swapped whole on reload so a datagram sees one config or the other."""

    config: Config
    verifier: Verifier[Door]
    verifier2: Verifier2[Door]
    doors: dict[str, Door] = field(default_factory=dict)
    matcher: SequenceMatcher | None = None
    signed: SignedVerifier | None = None
    fwknop: tuple[spa.FwknopDoor, ...] = ()  # in file order; empty without `cryptography`


def build_runtime(config: Config) -> Runtime:
    """The verifiers and the sequence matcher for `config`, whose doors it checked already."""
    sequence_doors = [d.sequence_door for d in config.sequence_doors if d.sequence_door]
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
        signed=_build_signed(config),
        fwknop=fwknop_doors,
    )


def _build_signed(config: Config) -> SignedVerifier | None:
    """The keys of the signed doors by key id; None (said once) without `cryptography`."""
    doors = config.signed_doors
    if not doors:
        return None
    try:
        return SignedVerifier({d.name: d.keys for d in doors}, config.window_seconds, config.realm)
    except SshSupportMissing as exc:
        names = ", ".join(d.name for d in doors)
        log.error("door %s takes no signed knocks: %s", names, exc)
        return None
    except ValueError as exc:
        raise ConfigError(str(exc), config.path) from None


class Verdict(NamedTuple):
    """What was decided about one input from `address`; `doors` are set when it opens some.

    `outcome` is the counter it adds to: accepted, sequence, malformed, no-door, replay,
    store-down, shed, or a protocol's own refusal (bad-mac, clock-skew, fwknop-...).
    An fwknop grant names where to open (`target`), which ports and for how long.
    A named tuple rather than a frozen dataclass: a flood makes one per datagram, and a
    frozen dataclass takes about three times as long to build.
    """

    outcome: str
    address: str
    doors: tuple[Door, ...] = ()
    target: str | None = None
    ports: tuple[PortSpec, ...] | None = None
    timeout: float | None = None

    @property
    def door(self) -> Door | None:
        """The first door opened, if any."""
        return self.doors[0] if self.doors else None


_new_tuple = tuple.__new__
_REFUSAL = tuple(Verdict._field_defaults[name] for name in Verdict._fields[2:])
# The canonical v1 datagram, all a v1 flood sends: no other kind has its length and start.
_V1_HEAD = tumbler1.PREFIX + b" "
_V1_LEN = len(_V1_HEAD) + tumbler1.DIGEST_HEX_LEN

CANDIDATE = "candidate"  # a verdict's outcome when a proved knock went to be claimed elsewhere


@dataclass(frozen=True)
class Candidate:
    """A proved knock not yet claimed: what `Pipeline.settle` needs to claim it and open.

    Deciding and claiming are split so that receiving processes can prove knocks in
    parallel while one process claims them all (a datagram accepted once, whatever the
    store) and acts. `kind` is knock, signed or fwknop; `detail` ends its accepted line.
    """

    key: str
    expires: float
    now: float
    address: str
    doors: tuple[str, ...]
    kind: str = "knock"
    detail: str = ""
    target: str | None = None
    ports: tuple[PortSpec, ...] | None = None
    timeout: float | None = None


class Pipeline:
    """Decides datagrams and connection attempts against the current runtime.

    `cost_clock` times what a never-seen source costs, for the new-source budget; it
    measures work done, never the time a knock is judged at.
    """

    def __init__(
        self,
        runtime: Runtime,
        replay: RecentClaims,
        stats: Stats,
        budget: NewSourceBudget | None = None,
        cost_clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.runtime = runtime
        self.replay = replay
        self.stats = stats
        self.budget = budget if budget is not None else NewSourceBudget(runtime.config.ipv6_prefix)
        self._cost_clock = cost_clock
        # Set in a receiving process: proved knocks go there to be claimed by the main one.
        self.defer: Callable[[Candidate], None] | None = None
        self.store_failing = False  # said once per outage, counted always
        self.last_skew: dict[str, Any] | None = None  # the last right knock from a wrong clock
        self._skew_logged = float("-inf")
        self._skew_quiet = 0

    def _verdict(self, outcome: str, address: str) -> Verdict:
        """Count a refusal and say it; a flood makes one per datagram, so no call is spared:
        stats.count's one line is done here, and the tuple is made without the named
        tuple's Python-level __new__ (a third of a microsecond)."""
        self.stats.total[outcome] += 1
        return _new_tuple(Verdict, (outcome, address, *_REFUSAL))

    def decide(self, data: bytes, address: str, now: float) -> Verdict:
        """Decide one datagram from `address` (normalised) received at epoch `now`.

        One path for every kind: the shape tells an fwknop SPA packet (140 to 1500 base64
        characters) from a signed knock (its magic bytes, not base64) and from a v1 or v2
        datagram (at most 77 bytes) before any cryptography.
        """
        runtime = self.runtime
        if len(data) != _V1_LEN or not data.startswith(_V1_HEAD):
            if runtime.fwknop and spa.classify(data):
                return self._decide_spa(data, address, now)
            if sshsig.looks_signed(data):
                return self._decide_signed(data, address, now)
            if tumbler2.is_v2(data):
                if data[tumbler2.KEY_ID_SLICE] not in runtime.verifier2:
                    return self._verdict(UNKNOWN_KEY, address)  # before parsing: the cheapest
                return self._decide_v2(tumbler2.parse(data), address, now)
        try:
            raw = tumbler1.digest_bytes(data)
        except MalformedDatagram:
            return self._verdict("malformed", address)
        verifier = runtime.verifier
        if verifier.knows(address, now):
            match = verifier.match_raw(raw, address, now)
        else:
            bucket = self.budget.admit(address, now, verifier.cost)
            if bucket is None:
                return self._verdict("shed", address)
            if bucket == FIRST:  # paid for in hashes at admission: no clock to read
                match = verifier.match_new(raw, address, now)
            else:
                started = self._cost_clock()
                match = verifier.match_new(raw, address, now)
                self.budget.charge(bucket, self._cost_clock() - started)
        if match is None:
            return self._verdict("no-door", address)
        detail = f"minute {match.minute_offset:+d}"
        return self._accept(match.door, match.digest, match.expires, address, now, detail)

    def _decide_v2(self, knock: tumbler2.Knock2, address: str, now: float) -> Verdict:
        """A v2 knock: key id, one MAC, the window (skew reported), then the replay claim."""
        verdict = self.runtime.verifier2.check(knock, address, now)
        if verdict.reason == ACCEPTED and verdict.door is not None:
            return self._accept(verdict.door, verdict.claim, verdict.expires, address, now, "v2")
        if verdict.reason == CLOCK_SKEW and verdict.door is not None:
            self._report_skew(verdict.door, address, verdict.offset, now)
        return self._verdict(verdict.reason, address)

    def _report_skew(self, door: Door, address: str, offset: int, now: float) -> None:
        """Log a right knock from a wrong clock, at most once per SKEW_LOG_EVERY seconds."""
        self.last_skew = {"door": door.name, "address": address, "offset": offset, "at": now}
        if self._skew_quieted(now):
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
        self._skew_said(now)

    def _skew_quieted(self, now: float) -> bool:
        if now - self._skew_logged < SKEW_LOG_EVERY:
            self._skew_quiet += 1
            return True
        return False

    def _skew_said(self, now: float) -> None:
        self._skew_logged = now
        self._skew_quiet = 0

    def _decide_signed(self, data: bytes, address: str, now: float) -> Verdict:
        """A signed knock: key id first (no cryptography for strangers), then one verify."""
        if not sshsig.MIN_DATAGRAM <= len(data) <= sshsig.MAX_DATAGRAM:
            return self._verdict("malformed", address)
        signed = self.runtime.signed
        kid = data[_KEY_ID]
        if signed is None or not signed.knows(kid):
            return self._verdict(Refusal.UNKNOWN_KEY.value, address)
        if signed.exhausted(kid, now):  # a flood on this key id: no parsing, no verifying
            return self._verdict(Refusal.RATE_LIMITED.value, address)
        try:
            knock = sshsig.parse_datagram(data)
        except MalformedDatagram:
            return self._verdict("malformed", address)
        # A knock seen before costs no verification: its key id, time and nonce name it.
        if self.replay.holds(sshsig.claim_token(knock), now):
            return self._verdict("replay", address)
        verdict = signed.match(knock, address, now)
        if not isinstance(verdict, SignedMatch):
            if verdict.reason is Refusal.STALE and verdict.key is not None:
                self._report_signed_skew(verdict.key.label, address, verdict.offset, now)
            return self._verdict(verdict.reason.value, address)
        return self._propose(
            Candidate(
                verdict.token,
                verdict.expires,
                now,
                address,
                tuple(verdict.doors),
                "signed",
                f"by key {verdict.key.label} (clock {verdict.offset:+d} s)",
            )
        )

    def _report_signed_skew(self, key: str, address: str, offset: int | None, now: float) -> None:
        """A right signature from a wrong clock, logged as v2's are (at most every 10 s)."""
        self.last_skew = {"key": key, "address": address, "offset": offset, "at": now}
        if self._skew_quieted(now):
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
        self._skew_said(now)

    def _decide_spa(self, data: bytes, address: str, now: float) -> Verdict:
        """An fwknop SPA packet: the first door whose keys open it decides; replay by content."""
        try:
            grant = spa.first_grant(data, self.runtime.fwknop, address, now)
        except spa.SpaRejected as exc:
            if exc.door is None:  # no door's keys open it: junk, as far as anyone can tell
                return self._verdict("no-door", address)
            if exc.replay_key is not None:
                # A refused packet repeated is counted as a replay, and logged only once.
                key = f"fwknop:{exc.replay_key}"
                if self.replay.holds(key, now):
                    return self._verdict("replay", address)
                self.replay.note(key, exc.replay_until)
            self.stats.count(f"fwknop-{exc.reason}")
            if exc.reason != "age":  # old packets are counted, not logged: a flood could replay one
                log.info("fwknop packet for door %s from %s refused: %s", exc.door, address, exc)
            return self._verdict("refused", address)
        # Content, not bytes: the same request encrypted again under a new salt is a replay.
        return self._propose(
            Candidate(
                f"fwknop:{grant.replay_key}",
                grant.replay_until,
                now,
                address,
                (grant.door,),
                "fwknop",
                f"for {grant.address} (user {grant.user})",
                grant.address,
                grant.ports,
                grant.timeout,
            )
        )

    def _accept(
        self, door: Door, claim: str, expires: float, address: str, now: float, detail: str
    ) -> Verdict:
        """Claim a proved knock: accepted, and opening `door`, only if it is fresh."""
        return self._propose(Candidate(claim, expires, now, address, (door.name,), "knock", detail))

    def _propose(self, candidate: Candidate) -> Verdict:
        """Settle a proved knock here, or hand it to the process that claims (`defer`)."""
        if self.defer is None:
            return self.settle(candidate)
        if self.replay.holds(candidate.key, candidate.now):  # claimed already, as we were told
            return self._verdict("replay", candidate.address)
        self.defer(candidate)
        return Verdict(CANDIDATE, candidate.address)

    def settle(self, candidate: Candidate) -> Verdict:
        """Claim a proved knock once and say so: accepted, opening its doors, if fresh.

        A door a reload took away meanwhile opens nothing (counted as no-door).
        """
        c = candidate
        doors = tuple(self.runtime.doors.get(name) for name in c.doors)
        if not doors or None in doors:
            return self._verdict("no-door", c.address)
        opened = cast(tuple[Door, ...], doors)
        refused = self._claim(c.key, c.expires, ", ".join(c.doors), c.address, c.now)
        if refused is not None:
            return refused
        what = "fwknop packet" if c.kind == "fwknop" else "knock"
        detail = f"({c.detail})" if c.kind == "knock" else c.detail
        for door in opened:
            log.info("%s accepted: door %s from %s %s", what, door.name, c.address, detail)
        if c.kind == "signed":
            self.stats.count("accepted")
        else:
            self.stats.count("accepted", door=opened[0].name)
        return Verdict("accepted", c.address, opened, c.target, c.ports, c.timeout)

    def _claim(
        self, key: str, expires: float, door: str, address: str, now: float
    ) -> Verdict | None:
        """Claim a knock once, here and in the replay store; the refusal if it is not fresh."""
        try:
            fresh = self.replay.claim(key, expires, now)
        except ReplayStoreError as exc:
            if not self.store_failing:  # one line per outage: a flood must not fill the log
                self.store_failing = True
                log.error(
                    "knock for door %s from %s refused, replay store failing: %s "
                    "(further refusals are counted as store-down until it answers)",
                    door,
                    address,
                    exc,
                )
            return self._verdict("store-down", address)
        self.store_failing = False
        if not fresh:
            return self._verdict("replay", address)
        return None

    def attempt(self, event: ConnectionAttempt) -> list[Verdict]:
        """Feed one connection attempt to the sequence matcher: the doors it completes."""
        runtime = self.runtime
        if runtime.matcher is None:
            return []
        verdicts = []
        for name in runtime.matcher.feed(event):
            log.info("knock sequence completed: door %s from %s", name, event.source)
            self.stats.count("sequence", door=name)
            verdicts.append(Verdict("sequence", event.source, (runtime.doors[name],)))
        return verdicts
