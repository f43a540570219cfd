"""iptables backend (iptables-nft or iptables-legacy; ip6tables for IPv6).

Opened doors are ACCEPT rules in a chain of tumbler's own, `TUMBLER`, jumped to
from the top of INPUT. Each rule is tagged `tumbler:<door>:<expiry-epoch>` with
the comment match, so the kernel's own ruleset says what is due when.

iptables cannot time a rule out by itself, so the daemon must: `expire` removes
due rules, and each pending close is kept in the state database (SQLite) so that
`restore`, at the next start, closes what expired while the daemon was down and
re-adds what should still be open. Rules found in the chain without a database
row (the database was lost) are judged by the expiry in their comment. A clean
stop of the daemon (SIGTERM) flushes its rules, so that nothing stays open with
no daemon to close it (`kernel_timeouts` is False).

Doors with `path = forward` guard ports forwarded through this host (a container's
published port, a router's port forward), which never pass INPUT. Their rules live in
a second chain, `TUMBLER-FWD`, jumped to for new connections from the top of
`DOCKER-USER` where Docker made it (Docker's own rules come after it and it survives
Docker restarts), else from the top of FORWARD. At the end of that chain one DROP per
door and protocol guards the door's ports (tagged `tumbler-guard:<door>`); an opening
is a RETURN inserted above them, so the knocker's connection goes on to the rules that
follow (Docker's isolation among them) rather than being accepted outright. Ports are
matched with conntrack's `--ctorigdstport`, the port the client addressed before DNAT:
the door names the published port, and a backend port shared by several containers is
not opened for them all. Start tumblerd after Docker: if FORWARD is used because
DOCKER-USER did not exist yet, Docker's jump inserted later goes ahead of the guard.

All rule changes of one call go through a single `iptables-restore --noflush`
batch per address family, which the kernel applies atomically: a rejected rule
leaves the chain as it was. The database rows are written after the batch, in a
short transaction of their own (never one held across a firewall program, which
would make every other writer of the file wait); if that write fails the firewall
change is undone, and a crash in between leaves a rule whose comment says when
it is due.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import shlex
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from tumbler.actions.firewall.base import (
    COMMENT_PREFIX,
    KNOCK_BURST,
    KNOCK_RATE,
    DoorGrant,
    FirewallBackend,
    KnockPorts,
    OpenEntry,
    check_door,
    knock_ports,
    normalise_address,
    timeout_seconds,
)
from tumbler.actions.firewall.runner import Runner
from tumbler.addresses import IPV6_PREFIX
from tumbler.errors import FirewallError
from tumbler.ports import PROTOCOLS, PortSpec
from tumbler.statedb import open_state_db

log = logging.getLogger("tumblerd.firewall")

CHAIN = "TUMBLER"
FORWARD_CHAIN = "TUMBLER-FWD"
FORWARD_PARENTS = ("DOCKER-USER", "FORWARD")  # the first that exists jumps to FORWARD_CHAIN
GUARD_PREFIX = "tumbler-guard:"
NEW = ["-m", "conntrack", "--ctstate", "NEW"]
WAIT = ["-w", "5"]
ND_TYPES = ("133", "134", "135", "136")  # router/neighbour solicitation and advertisement
POLICY_COMMENT = f"{COMMENT_PREFIX}policy"
POLICY_TAG = ("-m", "comment", "--comment", POLICY_COMMENT)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS firewall_iptables (
    address TEXT NOT NULL,
    door TEXT NOT NULL,
    proto TEXT NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (address, door, proto, first, last)
)
"""

# (address, door, proto, first, last): what makes a rule the same rule.
Key = tuple[str, str, str, int, int]


@dataclass(frozen=True)
class Rule:
    """One tumbler rule: its identity, its expiry, and its spec after the chain name."""

    address: str
    door: str
    proto: str
    first: int
    last: int
    expires: int
    forward: bool = False

    @property
    def key(self) -> Key:
        return (self.address, self.door, self.proto, self.first, self.last)

    @property
    def version(self) -> int:
        return 6 if ":" in self.address else 4

    @property
    def chain(self) -> str:
        return FORWARD_CHAIN if self.forward else CHAIN

    def spec(self) -> list[str]:
        prefix = 128 if self.version == 6 else 32
        dport = str(self.first) if self.first == self.last else f"{self.first}:{self.last}"
        comment = f"{COMMENT_PREFIX}{self.door}:{self.expires}"
        source = ["-s", f"{self.address}/{prefix}", "-p", self.proto]
        tag = ["-m", "comment", "--comment", comment]
        if self.forward:
            return [*source, "-m", "conntrack", "--ctorigdstport", dport, *tag, "-j", "RETURN"]
        return [*source, "-m", self.proto, "--dport", dport, *tag, "-j", "ACCEPT"]

    @property
    def ports(self) -> PortSpec:
        return PortSpec(self.proto, self.first, self.last)


def guard_rules(doors: Mapping[str, Sequence[PortSpec]]) -> list[list[str]]:
    """The DROP rules at the end of TUMBLER-FWD (after `-A TUMBLER-FWD`), one per door and
    port range, matched on the port the client addressed before DNAT."""
    rules = []
    for door, ports in sorted(doors.items()):
        for spec in sorted(set(ports)):
            dport = str(spec.first) if spec.first == spec.last else f"{spec.first}:{spec.last}"
            rules.append(
                [
                    *("-p", spec.proto, *NEW, "--ctorigdstport", dport),
                    *("-m", "comment", "--comment", f"{GUARD_PREFIX}{door}", "-j", "DROP"),
                ]
            )
    return rules


def parse_rule(line: str) -> Rule | None:
    """A rule from `iptables -S TUMBLER` (or TUMBLER-FWD) output, or None if not tumbler's."""
    try:
        tokens = shlex.split(line)
    except ValueError:
        return None
    if tokens[:1] != ["-A"] or tokens[1:2] not in ([CHAIN], [FORWARD_CHAIN]):
        return None
    forward = tokens[1] == FORWARD_CHAIN
    opts: dict[str, str] = {}
    for flag, value in itertools.pairwise(tokens):
        if flag in ("-s", "-p", "--dport", "--ctorigdstport", "--comment"):
            opts["--dport" if flag == "--ctorigdstport" else flag] = value
    comment = opts.get("--comment", "")
    if not comment.startswith(COMMENT_PREFIX) or not {"-s", "-p", "--dport"} <= opts.keys():
        return None
    door, _, expiry = comment[len(COMMENT_PREFIX) :].rpartition(":")
    first, _, last = opts["--dport"].partition(":")
    try:
        address, _ = normalise_address(opts["-s"].split("/")[0])
        return Rule(address, door, opts["-p"], int(first), int(last or first), int(expiry), forward)
    except (ValueError, FirewallError):
        return None


# iptables-restore splits a line on whitespace and knows double quotes only, not the
# shell's quoting rules; every value tumbler writes is plain, so anything else is refused.
_UNSAFE = re.compile(r"[^\x21-\x7e]|[\"'\\]")


def restore_line(tokens: Sequence[str]) -> str:
    """One iptables-restore line; raise FirewallError on a token it would misread.

    Whitespace, a quote, a backslash, a control or non-ASCII character in any value
    could split it or start a new command, so it is refused rather than quoted.
    """
    for token in tokens:
        if not token or _UNSAFE.search(token):
            raise FirewallError(f"refusing {token!r} in an iptables-restore line")
    return " ".join(tokens)


class StateStore:
    """Pending closes in the state database, behind a lock so that any thread may use it.

    The database is made on first use, so that commands that only print (`firewall init
    --print`) leave no file behind. One connection is kept open, in WAL mode without a
    sync on every commit: a knock then costs no fsync, and what a power cut could lose
    is only ever rules the reboot has removed from the kernel anyway.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        try:
            db = open_state_db(self.path, _SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise FirewallError(f"cannot open the state database {self.path}: {exc}") from exc
        self._db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that commits on success and rolls back on any error."""
        with self._lock:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.commit()
            except BaseException:
                db.rollback()
                raise

    def rows(self, where: str = "1", args: Sequence[object] = ()) -> list[tuple[Key, float]]:
        with self._lock:
            cur = self._connect().execute(
                "SELECT address, door, proto, first, last, expires FROM firewall_iptables "  # noqa: S608
                f"WHERE {where} ORDER BY address, door, proto, first",
                tuple(args),
            )
            return [((a, d, p, f, la), e) for a, d, p, f, la, e in cur.fetchall()]

    @staticmethod
    def upsert(db: sqlite3.Connection, key: Key, expires: float) -> None:
        db.execute(
            "INSERT INTO firewall_iptables VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (address, door, proto, first, last) "
            "DO UPDATE SET expires = excluded.expires",
            (*key, expires),
        )

    @staticmethod
    def delete(db: sqlite3.Connection, keys: Iterable[Key]) -> None:
        db.executemany(
            "DELETE FROM firewall_iptables "
            "WHERE address = ? AND door = ? AND proto = ? AND first = ? AND last = ?",
            list(keys),
        )


def row_problem(
    key: Sequence[object], expires: object, doors: Mapping[str, DoorGrant] | None, now: float
) -> str | None:
    """Why a state row (or a rule's tag) must not be used, or None if it may.

    The state database is input like any other: a row is used only in the form tumbler
    writes it, and, with `doors`, only if a door of the current config opens those ports
    for at most that long.
    """
    address, door, proto, first, last = key
    if not (isinstance(address, str) and isinstance(door, str) and isinstance(proto, str)):
        return "not text"
    try:
        if normalise_address(address)[0] != address:
            return "address not in normal form"
        check_door(door)
    except FirewallError as exc:
        return str(exc)
    if proto not in PROTOCOLS:
        return "protocol neither tcp nor udp"
    if type(first) is not int or type(last) is not int or not 1 <= first <= last <= 65535:
        return "not a port range"
    if type(expires) not in (int, float) or not math.isfinite(expires):  # type: ignore[arg-type]
        return "not an expiry time"
    if doors is not None:
        grant = doors.get(door)
        if grant is None:
            return "no such door in the config"
        if not grant.allows(PortSpec(proto, first, last)):
            return "the door does not open these ports"
        if expires > now + timeout_seconds(grant.timeout) + 1:  # type: ignore[operator]
            return "expires later than the door's timeout allows"
    return None


def _comment_expiry(expires: float) -> int:
    return math.ceil(expires)


def _group(items: Iterable[tuple[Key, float]]) -> list[OpenEntry]:
    """One entry per (address, door), as `list` shows them."""
    ports: dict[tuple[str, str], list[PortSpec]] = {}
    expiry: dict[tuple[str, str], float] = {}
    for (address, door, proto, first, last), expires in items:
        group = (address, door)
        ports.setdefault(group, []).append(PortSpec(proto, first, last))
        expiry[group] = max(expiry.get(group, 0.0), expires)
    return sorted(
        OpenEntry(a, d, ", ".join(str(p) for p in sorted(set(specs))), expiry[(a, d)])
        for (a, d), specs in ports.items()
    )


def _closed(rows: list[tuple[Key, float]], stray: Iterable[Rule]) -> list[OpenEntry]:
    """What a close or flush removed: the database's rows and rules it did not know."""
    known = {key for key, _ in rows}
    return _group([*rows, *((r.key, float(r.expires)) for r in stray if r.key not in known)])


class IptablesBackend(FirewallBackend):
    """Doors as tagged ACCEPT rules in chain TUMBLER, closed on time by the daemon."""

    name = "iptables"
    binary = "iptables"
    kernel_timeouts = False

    def __init__(
        self, state_path: str, runner: Runner | None = None, binary: str | None = None
    ) -> None:
        super().__init__(runner)
        if binary is not None:
            self.binary = binary
        if not self.binary.startswith("iptables"):
            raise FirewallError(f"not an iptables binary: {self.binary!r}")
        self.state = StateStore(state_path)
        # IP versions whose chain and jump are known to be in place (see `_open_lines`).
        self._ready: set[int] = set()

    # -- plumbing -----------------------------------------------------------

    def tool(self, version: int) -> str:
        """`iptables[-variant]` or its `ip6tables[-variant]` twin."""
        return self.binary if version == 4 else "ip6" + self.binary[2:]

    @classmethod
    def probe(cls, runner: Runner | None = None) -> str | None:
        try:
            (runner or Runner()).run([cls.binary, *WAIT, "-S", "INPUT"])
        except FirewallError as exc:
            return str(exc)
        return None

    def _ipt(self, version: int, *args: str, check: bool = True) -> tuple[int, str]:
        result = self.runner.run([self.tool(version), *WAIT, *args], check=check)
        return result.returncode, result.stdout

    def _ensure_chain(self, version: int) -> list[Rule]:
        """Create TUMBLER and the jump to it if missing; return tumbler's rules in it."""
        code, out = self._ipt(version, "-S", CHAIN, check=False)
        if code != 0:
            self._ipt(version, "-N", CHAIN)
            out = ""
        code, _ = self._ipt(version, "-C", "INPUT", "-j", CHAIN, check=False)
        if code != 0:
            self._ipt(version, "-I", "INPUT", "1", "-j", CHAIN)
        rules = [rule for line in out.splitlines() if (rule := parse_rule(line))]
        if self.forward_doors:
            rules += self._tagged_rules(version, FORWARD_CHAIN)
        return rules

    def _tagged_rules(self, version: int, chain: str) -> list[Rule]:
        code, out = self._ipt(version, "-S", chain, check=False)
        if code != 0:
            return []
        return [rule for line in out.splitlines() if (rule := parse_rule(line))]

    def _kernel_rules(self, version: int) -> list[Rule]:
        """Tumbler's rules now in its chains; none from a chain that does not exist."""
        return self._tagged_rules(version, CHAIN) + self._tagged_rules(version, FORWARD_CHAIN)

    def _rule(self, key: Key, expires: float) -> Rule:
        """The rule for a state database row: a forward door's goes to TUMBLER-FWD."""
        return Rule(*key, _comment_expiry(expires), forward=key[1] in self.forward_doors)

    def _restore(self, version: int, lines: list[str]) -> None:
        """Apply `-A`/`-D` lines for the filter table in one atomic batch."""
        if not lines:
            return
        text = "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"
        self.runner.run([f"{self.tool(version)}-restore", *WAIT, "--noflush"], input=text)

    @staticmethod
    def _line(op: str, rule: Rule) -> str:
        """A restore line; a forward opening goes above the guards' DROPs."""
        if op == "-A" and rule.forward:
            return restore_line(["-I", rule.chain, "1", *rule.spec()])
        return restore_line([op, rule.chain, *rule.spec()])

    @staticmethod
    def _undo(lines: list[str]) -> list[str]:
        undone: list[str] = []
        for line in reversed(lines):
            tokens = shlex.split(line)
            op, chain, spec = tokens[0], tokens[1], tokens[2:]
            if op == "-I":
                undone.append(restore_line(["-D", chain, *spec[1:]]))
            elif op == "-A":
                undone.append(restore_line(["-D", chain, *spec]))
            elif op == "-D" and chain == FORWARD_CHAIN:
                undone.append(restore_line(["-I", chain, "1", *spec]))
            elif op == "-D":
                undone.append(restore_line(["-A", chain, *spec]))
        return undone

    def _record(
        self, version: int, lines: list[str], write: Callable[[sqlite3.Connection], None]
    ) -> None:
        """Write the rows for a batch already applied, in a transaction of its own; undo
        the batch if that fails.

        No transaction is ever open while a firewall program runs: every other writer
        of the state database (replay claims among them) would wait for the program.
        """
        try:
            with self.state.transaction() as db:
                write(db)
        except (sqlite3.Error, FirewallError) as exc:
            try:
                self._restore(version, self._undo(lines))
            except FirewallError:
                log.exception("could not undo a firewall change after a state database error")
            raise FirewallError(f"state database {self.state.path}: {exc}") from exc

    # -- lifecycle ----------------------------------------------------------

    def open(
        self, door: str, address: str, ports: Sequence[PortSpec], timeout: float, now: float
    ) -> float:
        check_door(door)
        addr, version = normalise_address(address)
        expires = now + timeout_seconds(timeout)
        wanted = [
            self._rule((addr, door, p.proto, p.first, p.last), expires) for p in sorted(set(ports))
        ]
        if not wanted:
            raise FirewallError("a door with no ports to open")

        def write(db: sqlite3.Connection) -> None:
            for rule in wanted:
                self.state.upsert(db, rule.key, expires)

        with self._lock:
            try:
                known = self._recorded(addr, door) if version in self._ready else None
            except sqlite3.Error as exc:
                raise FirewallError(f"state database {self.state.path}: {exc}") from exc
            lines = self._open_lines(version, wanted, known)
            self._record(version, lines, write)
        return expires

    def _recorded(self, address: str, door: str) -> list[Rule]:
        """The rules the state database says are in the chain for this address and door."""
        rows = self.state.rows("address = ? AND door = ?", [address, door])
        return [self._rule(key, expires) for key, expires in rows]

    def _open_lines(self, version: int, wanted: list[Rule], known: list[Rule] | None) -> list[str]:
        """Apply the rules a knock wants; return the lines applied.

        Once the chain is known to be in place, the state database says what is in it, so a
        knock costs one `iptables-restore` and no listing. If the kernel disagrees (the
        chain was flushed by hand, say), the batch fails whole, and the kernel is read and
        the batch rebuilt from what is really there.
        """
        if known is not None:
            lines = self._converge(wanted, known)
            try:
                self._restore(version, lines)
                return lines
            except FirewallError as exc:
                log.info("iptables: chain not as recorded (%s); reading it again", exc)
                self._ready.discard(version)
        lines = self._converge(wanted, self._ensure_chain(version))
        self._restore(version, lines)
        self._ready.add(version)
        return lines

    def _converge(self, wanted: list[Rule], existing: list[Rule]) -> list[str]:
        """Lines that leave exactly one rule per wanted key, with the wanted comment."""
        lines: list[str] = []
        for rule in wanted:
            same = [r for r in existing if r.key == rule.key]
            if rule in same:
                same.remove(rule)
            else:
                lines.append(self._line("-A", rule))
            lines.extend(self._line("-D", old) for old in same)
        return lines

    def _close_keys(self, keys: set[Key], extra: Iterable[Rule] = ()) -> None:
        """Delete every rule with one of these keys (plus `extra`), and their rows."""
        versions = {6 if ":" in key[0] else 4 for key in keys}
        versions |= {r.version for r in extra}
        extra = list(extra)
        for version in sorted(versions):
            doomed = [r for r in self._kernel_rules(version) if r.key in keys or r in extra]
            lines = [self._line("-D", r) for r in dict.fromkeys(doomed)]
            self._restore(version, lines)
        # Only once the rules are gone: a row left by a failure here closes again later.
        with self.state.transaction() as db:
            self.state.delete(db, keys)

    def _checked(
        self, rows: list[tuple[Key, float]], doors: Mapping[str, DoorGrant] | None, now: float
    ) -> list[tuple[Key, float]]:
        """The rows that pass `row_problem`; the rest are deleted and logged, never used."""
        good, bad = [], []
        for key, expires in rows:
            problem = row_problem(key, expires, doors, now)
            if problem is None:
                good.append((key, expires))
            else:
                bad.append(key)
                log.warning(
                    "state database: dropped a row (%s): address %r door %r ports %r %r-%r "
                    "expires %r",
                    problem,
                    *key,
                    expires,
                )
        if bad:
            with self.state.transaction() as db:
                self.state.delete(db, bad)
        return good

    def expire(self, now: float) -> list[OpenEntry]:
        with self._lock:
            due = self._checked(self.state.rows("expires <= ?", [now]), None, now)
            if not due:
                return []
            self._close_keys({key for key, _ in due})
        return _group(due)

    def restore(self, now: float, doors: Mapping[str, DoorGrant] | None = None) -> list[OpenEntry]:
        closed: list[tuple[Key, float]] = []
        with self._lock:
            rows = dict(self._checked(self.state.rows(), doors, now))
            for version in (4, 6):
                mine = {k: e for k, e in rows.items() if (6 if ":" in k[0] else 4) == version}
                try:
                    existing = self._ensure_chain(version)
                except FirewallError:
                    if mine:
                        raise
                    log.warning("IPv%d firewall unavailable; nothing to restore there", version)
                    continue
                due = [(key, e) for key, e in mine.items() if e <= now]
                closed.extend(due)
                wanted = [self._rule(key, e) for key, e in mine.items() if e > now]
                adopted: list[Rule] = []
                for rule in existing:
                    if rule.key in rows:
                        continue
                    problem = row_problem(rule.key, rule.expires, doors, now)
                    if problem is not None:  # closed below, and not reported as a door
                        log.warning("iptables: removing %r from %s (%s)", rule, rule.chain, problem)
                    elif rule.expires <= now:  # no row: the comment says when it was due
                        closed.append((rule.key, float(rule.expires)))
                    else:
                        adopted.append(rule)
                wanted += adopted
                wanted_keys = {r.key for r in wanted}
                lines = self._converge(wanted, [r for r in existing if r.key in wanted_keys])
                unnamed: list[Rule] = []
                for rule in existing:
                    if rule.key not in wanted_keys:
                        try:
                            lines.append(self._line("-D", rule))
                        except FirewallError:  # a tag no batch line can name
                            unnamed.append(rule)
                self._restore(version, lines)
                for rule in unnamed:  # an argv needs no quoting: delete it on its own
                    self._ipt(version, "-D", rule.chain, *rule.spec())

                def write(
                    db: sqlite3.Connection,
                    due: list[tuple[Key, float]] = due,
                    adopted: list[Rule] = adopted,
                ) -> None:
                    self.state.delete(db, [key for key, _ in due])
                    for rule in adopted:
                        self.state.upsert(db, rule.key, float(rule.expires))

                self._record(version, lines, write)
                self._ready.add(version)
        return _group(closed)

    def list_open(self, now: float) -> list[OpenEntry]:
        with self._lock:
            rows = self.state.rows("expires > ?", [now])
            return _group([row for row in rows if row_problem(*row, None, now) is None])

    def close(self, address: str, door: str | None = None, *, now: float) -> list[OpenEntry]:
        addr, version = normalise_address(address)
        with self._lock:
            rows = [
                row
                for row in self.state.rows("address = ?", [addr])
                if door is None or row[0][1] == door
            ]
            stray = [
                r
                for r in self._kernel_rules(version)
                if r.address == addr and (door is None or r.door == door)
            ]
            self._close_keys({key for key, _ in rows}, stray)
        return _closed(rows, stray)

    def flush(self, now: float) -> list[OpenEntry]:
        with self._lock:
            rows = self.state.rows()
            stray = [r for version in (4, 6) for r in self._safe_rules(version)]
            self._close_keys({key for key, _ in rows}, stray)
        return _closed(rows, stray)

    def _safe_rules(self, version: int) -> list[Rule]:
        try:
            return self._kernel_rules(version)
        except FirewallError:
            log.warning("IPv%d firewall unavailable; nothing to flush there", version)
            return []

    # -- policy -------------------------------------------------------------

    @staticmethod
    def policy_rules(
        version: int, knock_port: KnockPorts, ipv6_prefix: int = IPV6_PREFIX
    ) -> list[list[str]]:
        """INPUT rules of the default-closed policy, after the jump to TUMBLER.

        Each is tagged `tumbler:policy`, so that `init` run again, or `remove`, finds
        exactly these and leaves the administrator's own rules alone.
        """
        rules = [
            ["-i", "lo"],
            ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"],
        ]
        if version == 6:
            rules.extend(["-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", t] for t in ND_TYPES)
        limit = [
            *("-m", "hashlimit", "--hashlimit-above", f"{KNOCK_RATE}/sec"),
            *("--hashlimit-burst", str(KNOCK_BURST), "--hashlimit-mode", "srcip"),
            *("--hashlimit-name", "tumbler_knock"),
            # An IPv6 source counts by its /`ipv6_prefix`: a /64 holds 2^64 addresses.
            *(("--hashlimit-srcmask", str(ipv6_prefix)) if version == 6 else ()),
        ]
        targets = ["ACCEPT"] * len(rules)
        for port in knock_ports(knock_port):
            knock = ["-p", "udp", "-m", "udp", "--dport", str(port)]
            rules += [[*knock, *limit], knock]
            targets += ["DROP", "ACCEPT"]
        rules.append(["-p", "udp"])
        targets.append("DROP")
        return [
            [*rule, *POLICY_TAG, "-j", target] for rule, target in zip(rules, targets, strict=True)
        ]

    @staticmethod
    def output_rules(version: int) -> list[list[str]]:
        """OUTPUT rules: no ICMP port unreachable leaves for another host.

        Without them, UDP to the knock port while tumblerd is stopped (or on an address it
        does not listen on) draws a port unreachable, while every other UDP port is silent.
        """
        match = (
            ["-p", "icmp", "-m", "icmp", "--icmp-type", "3/3"]
            if version == 4
            else ["-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", "1/4"]
        )
        return [["!", "-o", "lo", *match, *POLICY_TAG, "-j", "DROP"]]

    def render_policy(self, knock_port: KnockPorts) -> list[str]:
        lines: list[str] = []
        for version in (4, 6):
            tool = self.tool(version)
            lines.append(shlex.join([tool, "-N", CHAIN]))
            lines.append(shlex.join([tool, "-I", "INPUT", "1", "-j", CHAIN]))
            lines.extend(
                shlex.join([tool, "-A", "INPUT", *rule])
                for rule in self.policy_rules(version, knock_port, self.ipv6_prefix)
            )
            lines.extend(
                shlex.join([tool, "-A", "OUTPUT", *rule]) for rule in self.output_rules(version)
            )
            lines.append(shlex.join([tool, "-P", "INPUT", "DROP"]))
        return lines

    def guard_forward(self, doors: Mapping[str, Sequence[PortSpec]]) -> None:
        guarded = {check_door(d): tuple(p) for d, p in doors.items() if p}
        with self._lock:
            for version in (4, 6):
                self._guard_forward(version, guarded)
            self.forward_doors = guarded

    def _guard_forward(self, version: int, doors: Mapping[str, Sequence[PortSpec]]) -> None:
        """Make TUMBLER-FWD and its jump, and replace its guards in one batch."""
        code, out = self._ipt(version, "-S", FORWARD_CHAIN, check=False)
        if code != 0:
            self._ipt(version, "-N", FORWARD_CHAIN)
            out = ""
        parent = next(
            (c for c in FORWARD_PARENTS if self._ipt(version, "-S", c, check=False)[0] == 0),
            "FORWARD",
        )
        jump = [*NEW, "-j", FORWARD_CHAIN]
        if self._ipt(version, "-C", parent, *jump, check=False)[0] != 0:
            self._ipt(version, "-I", parent, "1", *jump)
        lines = [
            restore_line(["-D", *shlex.split(line)[1:]])
            for line in out.splitlines()
            if GUARD_PREFIX in line and line.startswith(f"-A {FORWARD_CHAIN} ")
        ]
        lines += [restore_line(["-A", FORWARD_CHAIN, *rule]) for rule in guard_rules(doors)]
        self._restore(version, lines)

    def render_forward(self, doors: Mapping[str, Sequence[PortSpec]]) -> list[str]:
        guarded = {check_door(d): tuple(p) for d, p in doors.items() if p}
        if not guarded:
            return []
        lines = [
            f"# forward doors ({', '.join(sorted(guarded))}): new forwarded connections to "
            "their ports are dropped unless a knock opened them;",
            f"# {FORWARD_CHAIN} is jumped to from DOCKER-USER, or from FORWARD where Docker "
            "made no DOCKER-USER",
        ]
        for version in (4, 6):
            tool = self.tool(version)
            lines.append(shlex.join([tool, "-N", FORWARD_CHAIN]))
            lines.append(shlex.join([tool, "-I", "DOCKER-USER", "1", *NEW, "-j", FORWARD_CHAIN]))
            lines.extend(
                shlex.join([tool, "-A", FORWARD_CHAIN, *rule]) for rule in guard_rules(guarded)
            )
        return lines

    def _chain_rules(self, version: int, chain: str) -> tuple[str, list[list[str]]]:
        """(policy, rules) of a built-in chain as `iptables -S` shows them, tokenised."""
        _, out = self._ipt(version, "-S", chain)
        policy, rules = "ACCEPT", []
        for line in out.splitlines():
            tokens = shlex.split(line)
            if tokens[:2] == ["-P", chain] and len(tokens) == 3:
                policy = tokens[2]
            elif tokens[:2] == ["-A", chain]:
                rules.append(tokens[2:])
        return policy, rules

    def _policy_plan(
        self, version: int, knock_port: KnockPorts | None
    ) -> tuple[list[str], list[str]]:
        """(batch, undo) that bring one family's policy to `knock_port`, or remove it (None).

        Only reads the kernel; the batch replaces every rule tagged `tumbler:policy`, so a
        changed knock port leaves no trace of the old one. `undo` puts back what was there.
        """
        policy, rules = self._chain_rules(version, "INPUT")
        has_chain = self._ipt(version, "-S", CHAIN, check=False)[0] == 0
        has_jump = ["-j", CHAIN] in rules
        _, output = self._chain_rules(version, "OUTPUT")
        old = [["INPUT", *rule] for rule in rules if _is_policy(rule)]
        old += [["OUTPUT", *rule] for rule in output if _is_policy(rule)]
        new = []
        if knock_port is not None:
            wanted = self.policy_rules(version, knock_port, self.ipv6_prefix)
            new = [["INPUT", *rule] for rule in wanted]
            new += [["OUTPUT", *rule] for rule in self.output_rules(version)]
        jump = ["INPUT", "1", "-j", CHAIN]
        batch: list[str] = []
        undo: list[str] = []
        if knock_port is not None:
            if not has_chain:
                batch.append(f":{CHAIN} - [0:0]")
            if not has_jump:
                batch.append(restore_line(["-I", *jump]))
            batch.append(":INPUT DROP [0:0]")
        else:
            if has_chain:
                undo.append(f":{CHAIN} - [0:0]")
            if has_jump:
                batch.append(restore_line(["-D", "INPUT", "-j", CHAIN]))
            if has_chain:
                batch.extend([f"-F {CHAIN}", f"-X {CHAIN}"])
            batch.append(":INPUT ACCEPT [0:0]")
        batch.extend(restore_line(["-D", *rule]) for rule in old)
        batch.extend(restore_line(["-A", *rule]) for rule in new)
        undo.extend(restore_line(["-D", *rule]) for rule in reversed(new))
        undo.extend(restore_line(["-A", *rule]) for rule in old)
        undo.append(f":INPUT {policy} [0:0]")
        if knock_port is not None:
            if not has_jump:
                undo.append(restore_line(["-D", "INPUT", "-j", CHAIN]))
            if not has_chain:
                undo.append(f"-X {CHAIN}")
        elif has_jump:
            undo.append(restore_line(["-I", *jump]))
        return batch, undo

    def _apply_both(self, knock_port: KnockPorts | None) -> None:
        """Apply one family's plan, then the other's; if the second fails, undo the first.

        Both families are read (and so known to work) before either changes, and a policy
        that closed IPv4 while IPv6 stayed wide open is never left behind.
        """
        plans = {version: self._policy_plan(version, knock_port) for version in (4, 6)}
        applied: list[int] = []
        for version, (batch, _) in plans.items():
            try:
                self._restore(version, batch)
            except FirewallError as exc:
                for done in applied:
                    try:
                        self._restore(done, plans[done][1])
                    except FirewallError:
                        log.exception("could not undo the IPv%d policy change", done)
                kept = " and ".join(f"IPv{v}" for v in applied) or "nothing"
                raise FirewallError(
                    f"IPv{version}: {exc} (so {kept} was put back as it was: both or neither)"
                ) from exc
            applied.append(version)
        self._ready.clear()

    def apply_policy(self, knock_port: KnockPorts) -> None:
        """Put the policy in place for both families or for neither, one batch each.

        The policy change rides in the same batch as the accepts, so an
        administrator on SSH is never cut off half-way.
        """
        self._apply_both(knock_port)

    def remove_policy(self, now: float) -> list[OpenEntry]:
        """Delete the policy rules and chain TUMBLER, set INPUT's policy to ACCEPT; take the
        forward guards (TUMBLER-FWD and its jump) away too, as nftables' table goes whole."""
        with self._lock:
            rows = self.state.rows()
            stray = [r for version in (4, 6) for r in self._safe_rules(version)]
            self._apply_both(None)
            for version in (4, 6):
                self._remove_forward(version)
            self.forward_doors = {}
            with self.state.transaction() as db:
                self.state.delete(db, [key for key, _ in rows])
        return _closed(rows, stray)

    def _remove_forward(self, version: int) -> None:
        """Delete TUMBLER-FWD and the jumps to it, in one batch; nothing if it is not there."""
        if self._ipt(version, "-S", FORWARD_CHAIN, check=False)[0] != 0:
            return
        jump = [*NEW, "-j", FORWARD_CHAIN]
        lines = [
            restore_line(["-D", parent, *jump])
            for parent in FORWARD_PARENTS
            if self._ipt(version, "-C", parent, *jump, check=False)[0] == 0
        ]
        self._restore(version, [*lines, f"-F {FORWARD_CHAIN}", f"-X {FORWARD_CHAIN}"])

    def policy_warnings(self) -> list[str]:
        """ACCEPT rules of the administrator's own in INPUT: what they match stays open."""
        warnings = []
        for version in (4, 6):
            tool = self.tool(version)
            _, rules = self._chain_rules(version, "INPUT")
            for rule in rules:
                if rule[-2:] == ["-j", "ACCEPT"] and not _is_policy(rule) and not _harmless(rule):
                    spec = shlex.join(rule)
                    warnings.append(
                        f"INPUT also accepts '{spec}', not tumbler's rule, so that stays open; "
                        f"to close it: {tool} -D INPUT {spec}"
                    )
        return warnings


def _harmless(rule: Sequence[str]) -> bool:
    """An ACCEPT that lets in nothing the policy does not: loopback, replies, IPv6 ND.

    These are what the policy itself accepts (an older `init` left them untagged), so
    reporting them would only bury the rules that do keep a port open.
    """
    core = list(rule[:-2])  # without the final -j ACCEPT
    if core == ["-i", "lo"]:
        return True
    states = {"RELATED,ESTABLISHED", "ESTABLISHED,RELATED", "ESTABLISHED"}
    if len(core) == 4 and core[:3] == ["-m", "conntrack", "--ctstate"] and core[3] in states:
        return True
    nd = ["-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type"]
    return len(core) == 6 and core[:5] == nd and core[5] in ND_TYPES


def _is_policy(rule: Sequence[str]) -> bool:
    """True for a rule tumbler's policy added (tagged `tumbler:policy`)."""
    return any(
        flag == "--comment" and value == POLICY_COMMENT for flag, value in itertools.pairwise(rule)
    )


class IptablesNftBackend(IptablesBackend):
    """The same, pinned to iptables-nft."""

    name = "iptables-nft"
    binary = "iptables-nft"


class IptablesLegacyBackend(IptablesBackend):
    """The same, pinned to iptables-legacy (x_tables in the kernel)."""

    name = "iptables-legacy"
    binary = "iptables-legacy"
