"""nftables backend: timed set elements, so the kernel closes what was opened.

Every change is one JSON transaction fed to `nft -j -f -` (argv list, JSON on
stdin): either all of a knock's elements land or none do. Elements carry a
kernel timeout, so access ends on time even if the daemon is killed; `expire`
and `restore` therefore have nothing to do here.

Two set-ups are supported:

(a) tumbler's own table, `table inet tumbler`, with two sets keyed by
    `address . protocol . port` (`open4`: `ipv4_addr . inet_proto . inet_service`,
    `open6`: the same with `ipv6_addr`), `flags timeout`. `tumblerd firewall
    init` adds a base chain `input` (hook input, policy drop) that accepts
    loopback, established/related traffic, IPv6 neighbour discovery, the knock
    port, and whatever the two sets hold; other UDP is dropped without an ICMP
    reply, and a chain `output` drops the ICMP port unreachable the kernel would send
    for the knock port when nothing listens there. Use this when tumbler's chain is
    the host's input policy.

(b) an administrator's own ruleset. In nftables an `accept` in one table does
    not undo a `drop` in another table hooked at input, so tumbler's table
    cannot open a port his ruleset drops. Instead the door names a set in his
    table (`set = inet filter tumbler_ssh`) that his own rule refers to
    (`ip saddr @tumbler_ssh tcp dport 22 accept`), and tumbler only adds timed
    elements to it: the element is the bare address, and the ports are
    whatever his rule says (the door's `open` key is then ignored by the
    firewall). The set must be `type ipv4_addr` or `type ipv6_addr` with
    `flags timeout`. Addresses of the other family go to a companion set of the
    same name with `_v6` (or `_v4`) appended, e.g. `tumbler_ssh_v6` with
    `ip6 saddr @tumbler_ssh_v6 tcp dport 22 accept`; if it does not exist, a
    knock from that family fails with an error that says what to create.

Doors with `path = forward` guard ports forwarded through this host (a container's
published port, a router's port forward), which never pass the input hook. Their
guard is a base chain `forward` in tumbler's table on the forward hook at priority
-10, ahead of `filter` (0), where iptables-nft's FORWARD chain and so Docker's rules
hook: a new connection to the door's ports is dropped unless its source is in the
door's timed address set (`fwd4_<door>`, `fwd6_<door>`). A drop there is final, while
an accept only ends tumbler's chain, so what the host's own filters (Docker's too)
refuse stays refused. The port is matched as `ct original proto-dst`, the port the
client addressed before DNAT: the door names the published port, and a backend port
shared by several containers is not opened for them all.

A repeated knock refreshes the timeout. nft 1.0.6 with this kernel leaves the
timeout of an existing element untouched on `add`, so a knock adds, deletes
and adds each element again inside one transaction: the first add makes the
delete safe when the element is new, the second add starts a fresh timer, and
the set never holds a duplicate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
from tumbler.actions.firewall.libnft import default_runner
from tumbler.actions.firewall.runner import CommandError, Runner
from tumbler.addresses import IPV6_PREFIX, ipv6_prefix_mask
from tumbler.errors import FirewallError
from tumbler.ports import MAX_PORTS_EACH, PortSpec

NFT = "nft"
FAMILY = "inet"
TABLE = "tumbler"
CHAIN = "input"
FORWARD_CHAIN = "forward"
# Ahead of `filter` (0), where iptables-nft's FORWARD chain, Docker's rules among them, hooks.
FORWARD_PRIORITY = -10
SETS = {4: "open4", 6: "open6"}
SET_TYPES = {4: "ipv4_addr", 6: "ipv6_addr"}
SET_FAMILIES = ("inet", "ip", "ip6")  # families whose sets hold the addresses that knock
_NFT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Ranges are stored port by port (a plain hash set: no interval overlaps to
# trip over when two doors open overlapping ranges); this bounds one knock, and
# the config refuses a door that opens more.
MAX_PORTS = MAX_PORTS_EACH
LIMIT_SETS = {4: "knock4", 6: "knock6"}
LIMIT_SET_SIZE = 65535
LIMIT_SET_TIMEOUT = 60

Json = dict[str, Any]
# (set, element key, address, door, expiry) of one element tumbler added.
Element = tuple["SetRef", Any, str, str, float]


@dataclass(frozen=True)
class SetRef:
    """A named set in some table: `inet filter tumbler_ssh`."""

    family: str
    table: str
    name: str

    @classmethod
    def parse(cls, text: str) -> SetRef:
        """Parse `family table set` (the config's `set` key); ValueError naming the shape.

        The one rule for a set reference: an address family whose sets hold IP addresses
        and two plain nft identifiers, so nothing from the config reads as nft syntax.
        """
        parts = text.split()
        if (
            len(parts) != 3
            or parts[0] not in SET_FAMILIES
            or not all(_NFT_NAME.fullmatch(p) for p in parts[1:])
        ):
            raise ValueError(
                f"set must be 'FAMILY TABLE SET' (e.g. 'inet filter tumbler_ssh'): {text!r}"
            )
        return cls(*parts)

    @classmethod
    def of(cls, given: SetRef | str) -> SetRef:
        """`given` as a SetRef; text is parsed, and a bad one is a FirewallError."""
        if isinstance(given, SetRef):
            return given
        try:
            return cls.parse(given)
        except ValueError:
            raise FirewallError(
                f"set {given!r}: expected '<family> <table> <set>', e.g. 'inet filter tumbler_ssh'"
            ) from None

    def __str__(self) -> str:
        return f"{self.family} {self.table} {self.name}"

    def obj(self) -> Json:
        return {"family": self.family, "table": self.table, "name": self.name}


OWN_SETS = {v: SetRef(FAMILY, TABLE, name) for v, name in SETS.items()}


def forward_set(door: str, version: int) -> SetRef:
    """The timed address set of a forward door, for one IP version."""
    return SetRef(FAMILY, TABLE, f"fwd{version}_{door}")


def _port_values(specs: Sequence[PortSpec]) -> Any:
    values: list[Any] = [
        s.first if s.first == s.last else {"range": [s.first, s.last]} for s in sorted(set(specs))
    ]
    return values[0] if len(values) == 1 and isinstance(values[0], int) else {"set": values}


def forward_rules(doors: Mapping[str, Sequence[PortSpec]]) -> list[tuple[str, list[Json]]]:
    """The forward chain's rules, as (nft text, JSON expression): every door's opening
    first, then every door's drop, so two doors guarding one port both let their knockers in.
    """
    new = _match({"ct": {"key": "state"}}, "new", "in")
    dport = {"ct": {"key": "proto-dst", "dir": "original"}}
    opens: list[tuple[str, list[Json]]] = []
    drops: list[tuple[str, list[Json]]] = []
    for door, ports in sorted(doors.items()):
        for proto in sorted({p.proto for p in ports}):
            specs = [p for p in ports if p.proto == proto]
            listed = ", ".join(
                str(p.first) if p.first == p.last else f"{p.first}-{p.last}"
                for p in sorted(set(specs))
            )
            head = f"ct state new meta l4proto {proto} ct original proto-dst {{ {listed} }}"
            match = [new, _match(_meta("l4proto"), proto), _match(dport, _port_values(specs))]
            for version, field in ((4, "ip"), (6, "ip6")):
                ref = forward_set(door, version)
                opens.append(
                    (
                        f"{head} {field} saddr @{ref.name} accept",
                        [
                            *match,
                            _match(_payload(field, "saddr"), f"@{ref.name}"),
                            {"accept": None},
                        ],
                    )
                )
            drops.append((f"{head} drop", [*match, {"drop": None}]))
    return opens + drops


def _comment(door: str) -> str:
    return f"{COMMENT_PREFIX}{door}"


def _door_of(comment: object) -> str | None:
    if isinstance(comment, str) and comment.startswith(COMMENT_PREFIX):
        return comment[len(COMMENT_PREFIX) :]
    return None


def _compress(ports: Iterable[tuple[str, int]]) -> str:
    """`tcp/22, tcp/23, udp/53` -> `tcp/22-23, udp/53`, for listing."""
    specs: list[PortSpec] = []
    for proto, port in sorted(set(ports)):
        last = specs[-1] if specs else None
        if last is not None and last.proto == proto and last.last + 1 == port:
            specs[-1] = PortSpec(proto, last.first, port)
        else:
            specs.append(PortSpec(proto, port, port))
    return ", ".join(str(s) for s in specs)


def _match(left: Json, right: object, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _payload(protocol: str, field: str) -> Json:
    return {"payload": {"protocol": protocol, "field": field}}


def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _knock_limit(knock_port: int, version: int, ipv6_prefix: int) -> tuple[str, list[Json]]:
    """Drop knock datagrams beyond KNOCK_RATE from one source, before the daemon reads them.

    A flood from a few addresses then costs the kernel, not the daemon's socket buffer, so
    a genuine knock from another address still gets through. An IPv6 source counts by its
    /`ipv6_prefix`, since one prefix holds more addresses than any set could.
    """
    ip = "ip" if version == 4 else "ip6"
    key: Json = _payload(ip, "saddr")
    field = f"{ip} saddr"
    if version == 6:
        mask = ipv6_prefix_mask(ipv6_prefix)
        key = {"&": [key, mask]}
        field = f"{field} & {mask}"
    text = (
        f"udp dport {knock_port} add @{LIMIT_SETS[version]} "
        f"{{ {field} limit rate over {KNOCK_RATE}/second burst {KNOCK_BURST} packets }} drop"
    )
    limit = {"limit": {"rate": KNOCK_RATE, "burst": KNOCK_BURST, "per": "second", "inv": True}}
    update = {
        "set": {
            "op": "add",
            "elem": key,
            "set": f"@{LIMIT_SETS[version]}",
            "stmt": [limit],
        }
    }
    return text, [_match(_payload("udp", "dport"), knock_port), update, {"drop": None}]


def _limit_set_specs() -> list[Json]:
    return [
        {
            "family": FAMILY,
            "table": TABLE,
            "name": name,
            "type": SET_TYPES[version],
            "size": LIMIT_SET_SIZE,
            # The kernel marks these sets `dynamic` once a rule adds to them, so adding
            # them again differs ("File exists"): `apply_policy` deletes and remakes them.
            "flags": ["timeout"],
            "timeout": LIMIT_SET_TIMEOUT,
        }
        for version, name in LIMIT_SETS.items()
    ]


def policy_rules(
    knock_port: KnockPorts, ipv6_prefix: int = IPV6_PREFIX
) -> list[tuple[str, list[Json]]]:
    """The default-closed chain's rules, each as (nft text, JSON expression).

    Kept side by side so that `--print` shows exactly what `init` applies.
    """
    ports = knock_ports(knock_port)
    nd = ["nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert"]
    triple = [_meta("l4proto"), _payload("th", "dport")]
    return [
        ('iif "lo" accept', [_match(_meta("iif"), "lo"), {"accept": None}]),
        (
            "ct state established,related accept",
            [_match({"ct": {"key": "state"}}, ["established", "related"], "in"), {"accept": None}],
        ),
        (
            f"icmpv6 type {{ {', '.join(nd)} }} accept",
            [_match(_payload("icmpv6", "type"), {"set": nd}), {"accept": None}],
        ),
        *(_knock_limit(port, version, ipv6_prefix) for port in ports for version in (4, 6)),
        *(
            (f"udp dport {port} accept", [_match(_payload("udp", "dport"), port), {"accept": None}])
            for port in ports
        ),
        (
            f"ip saddr . meta l4proto . th dport @{SETS[4]} accept",
            [
                _match({"concat": [_payload("ip", "saddr"), *triple]}, f"@{SETS[4]}"),
                {"accept": None},
            ],
        ),
        (
            f"ip6 saddr . meta l4proto . th dport @{SETS[6]} accept",
            [
                _match({"concat": [_payload("ip6", "saddr"), *triple]}, f"@{SETS[6]}"),
                {"accept": None},
            ],
        ),
        (
            "meta l4proto udp drop",
            [_match(_meta("l4proto"), "udp"), {"drop": None}],
        ),
    ]


OUTPUT_CHAIN = "output"


def output_rules() -> list[tuple[str, list[Json]]]:
    """The output chain's rules: no ICMP port unreachable leaves for another host.

    Without them, UDP to the knock port while tumblerd is stopped (or on an address it
    does not listen on) draws a port unreachable, while every other UDP port is silent.
    """
    rules = []
    for proto in ("icmp", "icmpv6"):
        text = (
            f'oif != "lo" {proto} type destination-unreachable {proto} code port-unreachable drop'
        )
        expr = [
            _match(_meta("oif"), "lo", "!="),
            _match(_payload(proto, "type"), "destination-unreachable"),
            _match(_payload(proto, "code"), "port-unreachable"),
            {"drop": None},
        ]
        rules.append((text, expr))
    return rules


class NftablesBackend(FirewallBackend):
    """Doors as timed elements of nftables sets (see the module docstring)."""

    name = "nftables"
    kernel_timeouts = True

    def __init__(
        self,
        runner: Runner | None = None,
        set_name: SetRef | str | None = None,
        door_sets: Mapping[str, SetRef | str] | None = None,
    ) -> None:
        """`set_name` sends every door to an administrator's set, `door_sets` some doors.

        Without a runner, changes go through libnftables in-process when it loads (see
        `tumbler.actions.firewall.libnft`), else through the `nft` program.
        """
        super().__init__(runner if runner is not None else default_runner())
        self.default_set = SetRef.of(set_name) if set_name else None
        self.door_sets = {check_door(d): SetRef.of(s) for d, s in (door_sets or {}).items()}
        self._types: dict[SetRef, str] = {}

    # -- plumbing -----------------------------------------------------------

    @classmethod
    def probe(cls, runner: Runner | None = None) -> str | None:
        try:
            (runner or Runner()).run([NFT, "-j", "list", "tables"])
        except FirewallError as exc:
            return str(exc)
        return None

    def _apply(self, commands: list[Json]) -> None:
        """Run one atomic transaction."""
        self.runner.run([NFT, "-j", "-f", "-"], input=json.dumps({"nftables": commands}))

    def _list(self, *what: str) -> list[Json] | None:
        """`nft -j list <what>` as its objects; None if it does not exist."""
        result = self.runner.run([NFT, "-j", "list", *what], check=False)
        if result.returncode != 0:
            if "No such file or directory" in result.stderr:
                return None
            raise CommandError(result.argv, f"exit {result.returncode}: {result.stderr.strip()}")
        try:
            data = json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise FirewallError(f"nft -j list {' '.join(what)}: unreadable JSON: {exc}") from exc
        items = data.get("nftables", []) if isinstance(data, dict) else []
        return [item for item in items if isinstance(item, dict)]

    def _ensure_own(self) -> list[Json]:
        """Commands that create tumbler's table and sets if missing (idempotent)."""
        cmds: list[Json] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
        for version, ref in OWN_SETS.items():
            spec = {
                **ref.obj(),
                "type": [SET_TYPES[version], "inet_proto", "inet_service"],
                "flags": ["timeout"],
            }
            cmds.append({"add": {"set": spec}})
        return cmds

    def _set_type(self, ref: SetRef) -> str | None:
        """The type of an administrator's set, checked once; None if it does not exist."""
        if ref in self._types:
            return self._types[ref]
        items = self._list("set", ref.family, ref.table, ref.name)
        if items is None:
            return None
        sets = [item["set"] for item in items if "set" in item]
        if not sets:
            return None
        kind, flags = sets[0].get("type"), sets[0].get("flags", [])
        if kind not in SET_TYPES.values():
            raise FirewallError(f"set {ref} has type {kind}; tumbler needs ipv4_addr or ipv6_addr")
        if "timeout" not in flags:
            raise FirewallError(
                f"set {ref} lacks 'flags timeout', so tumbler could not time its elements"
            )
        self._types[ref] = kind
        return kind

    def _external_target(self, ref: SetRef, version: int) -> SetRef:
        """The administrator's set that holds addresses of this IP version."""
        wanted = SET_TYPES[version]
        kind = self._set_type(ref)
        if kind is None:
            raise FirewallError(f"set {ref} does not exist")
        if kind == wanted:
            return ref
        companion = SetRef(ref.family, ref.table, f"{ref.name}_v{version}")
        if self._set_type(companion) == wanted:
            return companion
        match = "ip6 saddr" if version == 6 else "ip saddr"
        raise FirewallError(
            f"set {ref} holds {kind} only; for IPv{version} knockers create "
            f"'set {companion.name} {{ type {wanted}; flags timeout; }}' in table "
            f"{ref.family} {ref.table} and a rule '{match} @{companion.name} ... accept'"
        )

    def _set_for_door(self, door: str) -> SetRef | None:
        return self.door_sets.get(door, self.default_set)

    def _external_sets(self) -> list[SetRef]:
        refs = {*self.door_sets.values()}
        if self.default_set is not None:
            refs.add(self.default_set)
        out: list[SetRef] = []
        for ref in sorted(refs, key=str):
            out.append(ref)
            for version in (4, 6):
                out.append(SetRef(ref.family, ref.table, f"{ref.name}_v{version}"))
        return out

    @staticmethod
    def _element_ops(ref: SetRef, elems: list[Json], keys: list[Any]) -> list[Json]:
        """add, delete, add: a fresh timer for existing elements, never a duplicate."""
        add = {"add": {"element": {**ref.obj(), "elem": elems}}}
        delete = {"delete": {"element": {**ref.obj(), "elem": keys}}}
        return [add, delete, add]

    # -- lifecycle ----------------------------------------------------------

    def open(
        self, door: str, address: str, ports: Sequence[PortSpec], timeout: float, now: float
    ) -> float:
        check_door(door)
        addr, version = normalise_address(address)
        seconds = timeout_seconds(timeout)
        comment = _comment(door)
        with self._lock:
            external = self._set_for_door(door)
            if door in self.forward_doors:
                ref = forward_set(door, version)
                elem = {"elem": {"val": addr, "timeout": seconds, "comment": comment}}
                commands = self._element_ops(ref, [elem], [addr])
            elif external is not None:
                ref = self._external_target(external, version)
                elem = {"elem": {"val": addr, "timeout": seconds, "comment": comment}}
                commands = self._element_ops(ref, [elem], [addr])
            else:
                keys = _port_keys(addr, ports)
                elems = [
                    {"elem": {"val": key, "timeout": seconds, "comment": comment}} for key in keys
                ]
                commands = self._ensure_own() + self._element_ops(OWN_SETS[version], elems, keys)
            try:
                self._apply(commands)
            except FirewallError:
                self._types.clear()
                raise
        return now + seconds

    def expire(self, now: float) -> list[OpenEntry]:
        """Nothing to do: the kernel removes elements whose timeout ran out."""
        return []

    def restore(self, now: float, doors: Mapping[str, DoorGrant] | None = None) -> list[OpenEntry]:
        """Nothing to do: elements kept timing out in the kernel while the daemon was down."""
        return []

    def _elements(self, now: float) -> list[Element]:
        """Every element tumbler added: (set, key, address, door, expiry)."""
        found: list[Element] = []
        # Each set on its own: listing the whole table would also dump the knock
        # rate-limit sets, up to 65,535 elements each during a flood.
        forward = [forward_set(d, v) for d in sorted(self.forward_doors) for v in (4, 6)]
        for ref in [*OWN_SETS.values(), *self._external_sets(), *forward]:
            for item in self._list("set", *str(ref).split()) or []:
                spec = item.get("set")
                if not spec or spec.get("name") != ref.name or spec.get("table") != ref.table:
                    continue
                for raw in spec.get("elem", []):
                    entry = raw.get("elem") if isinstance(raw, dict) else None
                    if not isinstance(entry, dict):
                        continue
                    door = _door_of(entry.get("comment"))
                    if door is None:
                        continue
                    key = entry.get("val")
                    address = key["concat"][0] if isinstance(key, dict) else key
                    expires = now + float(entry.get("expires", 0))
                    found.append((ref, key, str(address), door, expires))
        return found

    def list_open(self, now: float) -> list[OpenEntry]:
        with self._lock:
            return _group(self._elements(now), self.forward_doors)

    def _remove(self, elements: list[Element]) -> None:
        """Delete these elements in one transaction, even if some just timed out."""
        commands: list[Json] = []
        by_set: dict[SetRef, list[Any]] = {}
        for ref, key, *_ in elements:
            by_set.setdefault(ref, []).append(key)
        for ref, keys in by_set.items():
            # Adding first (a no-op when present) keeps the delete from failing
            # on an element the kernel timed out between the list and now.
            elems = [{"elem": {"val": key, "timeout": 1}} for key in keys]
            commands.append({"add": {"element": {**ref.obj(), "elem": elems}}})
            commands.append({"delete": {"element": {**ref.obj(), "elem": keys}}})
        if commands:
            self._apply(commands)

    def close(self, address: str, door: str | None = None, *, now: float) -> list[OpenEntry]:
        addr, _ = normalise_address(address)
        with self._lock:
            chosen = [
                e for e in self._elements(now) if e[2] == addr and (door is None or e[3] == door)
            ]
            self._remove(chosen)
        return _group(chosen, self.forward_doors)

    def flush(self, now: float) -> list[OpenEntry]:
        with self._lock:
            chosen = self._elements(now)
            self._remove(chosen)
        return _group(chosen, self.forward_doors)

    # -- policy -------------------------------------------------------------

    def render_policy(self, knock_port: KnockPorts) -> list[str]:
        lines = [f"table {FAMILY} {TABLE} {{"]
        for version, name in SETS.items():
            lines.append(
                f"\tset {name} {{ type {SET_TYPES[version]} . inet_proto . inet_service; "
                "flags timeout; }"
            )
        for spec in _limit_set_specs():
            lines.append(
                f"\tset {spec['name']} {{ type {spec['type']}; size {spec['size']}; "
                f"flags timeout; timeout {spec['timeout']}s; }}"
            )
        lines.append(f"\tchain {CHAIN} {{")
        lines.append("\t\ttype filter hook input priority filter; policy drop;")
        lines.extend(f"\t\t{text}" for text, _ in policy_rules(knock_port, self.ipv6_prefix))
        lines.append("\t}")
        lines.append(f"\tchain {OUTPUT_CHAIN} {{")
        lines.append("\t\ttype filter hook output priority filter; policy accept;")
        lines.extend(f"\t\t{text}" for text, _ in output_rules())
        lines.append("\t}")
        lines.append("}")
        return lines

    def policy_commands(self, knock_port: KnockPorts, existing: Sequence[str] = ()) -> list[Json]:
        """The JSON transaction `apply_policy` sends: converges, keeps open elements.

        `existing` names the rate-limit sets already in the kernel: they are deleted and
        made again (after the chain is flushed, so no rule refers to them), so a set
        made by an older version with other flags or size cannot make `add` fail.
        """
        chain = {"family": FAMILY, "table": TABLE, "name": CHAIN}
        base = {**chain, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}
        commands = self._ensure_own()
        commands.append({"add": {"chain": base}})
        commands.append({"flush": {"chain": chain}})
        for name in existing:
            commands.append({"delete": {"set": {"family": FAMILY, "table": TABLE, "name": name}}})
        commands.extend({"add": {"set": spec}} for spec in _limit_set_specs())
        for _, expr in policy_rules(knock_port, self.ipv6_prefix):
            rule = {"family": FAMILY, "table": TABLE, "chain": CHAIN, "expr": expr}
            commands.append({"add": {"rule": rule}})
        output = {"family": FAMILY, "table": TABLE, "name": OUTPUT_CHAIN}
        hook = {**output, "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}
        commands.append({"add": {"chain": hook}})
        commands.append({"flush": {"chain": output}})
        for _, expr in output_rules():
            rule = {"family": FAMILY, "table": TABLE, "chain": OUTPUT_CHAIN, "expr": expr}
            commands.append({"add": {"rule": rule}})
        return commands

    def _own_limit_sets(self) -> list[str]:
        """The rate-limit sets now in tumbler's table (none if the table does not exist)."""
        found = []
        for name in LIMIT_SETS.values():
            items = self._list("set", FAMILY, TABLE, name)
            if items and any("set" in item for item in items):
                found.append(name)
        return found

    def apply_policy(self, knock_port: KnockPorts) -> None:
        self._apply(self.policy_commands(knock_port, self._own_limit_sets()))

    def remove_policy(self, now: float) -> list[OpenEntry]:
        """Delete tumbler's table: the policy, its sets, and every door open in them."""
        with self._lock:
            closed = [e for e in self._elements(now) if e[0] in OWN_SETS.values()]
            if self._list("table", FAMILY, TABLE) is not None:
                self._apply([{"delete": {"table": {"family": FAMILY, "name": TABLE}}}])
        return _group(closed)

    def render_forward(self, doors: Mapping[str, Sequence[PortSpec]]) -> list[str]:
        guarded = {check_door(d): tuple(p) for d, p in doors.items() if p}
        if not guarded:
            return []
        lines = [
            f"# forward doors ({', '.join(sorted(guarded))}): new forwarded connections to "
            "their ports are dropped unless a knock opened them",
            f"table {FAMILY} {TABLE} {{",
        ]
        for door in sorted(guarded):
            for version in (4, 6):
                name = forward_set(door, version).name
                lines.append(f"\tset {name} {{ type {SET_TYPES[version]}; flags timeout; }}")
        lines.append(f"\tchain {FORWARD_CHAIN} {{")
        lines.append(f"\t\ttype filter hook forward priority {FORWARD_PRIORITY}; policy accept;")
        lines.extend(f"\t\t{text}" for text, _ in forward_rules(guarded))
        lines.append("\t}")
        lines.append("}")
        return lines

    def guard_forward(self, doors: Mapping[str, Sequence[PortSpec]]) -> None:
        guarded = {check_door(d): tuple(p) for d, p in doors.items() if p}
        chain = {"family": FAMILY, "table": TABLE, "name": FORWARD_CHAIN}
        base = {
            **chain,
            "type": "filter",
            "hook": "forward",
            "prio": FORWARD_PRIORITY,
            "policy": "accept",
        }
        commands: list[Json] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
        for door in sorted(guarded):
            for version in (4, 6):
                spec = {**forward_set(door, version).obj(), "type": SET_TYPES[version]}
                commands.append({"add": {"set": {**spec, "flags": ["timeout"]}}})
        commands += [{"add": {"chain": base}}, {"flush": {"chain": chain}}]
        for _, expr in forward_rules(guarded):
            rule = {"family": FAMILY, "table": TABLE, "chain": FORWARD_CHAIN, "expr": expr}
            commands.append({"add": {"rule": rule}})
        with self._lock:
            self._apply(commands)
            self.forward_doors = guarded


def _port_keys(address: str, ports: Sequence[PortSpec]) -> list[Json]:
    keys: list[Json] = []
    seen: set[tuple[str, int]] = set()
    for spec in ports:
        for port in range(spec.first, spec.last + 1):
            if (spec.proto, port) not in seen:
                seen.add((spec.proto, port))
                keys.append({"concat": [address, spec.proto, port]})
    if not keys:
        raise FirewallError("a door with no ports to open")
    if len(keys) > MAX_PORTS:
        raise FirewallError(f"a door may open at most {MAX_PORTS} ports, not {len(keys)}")
    return keys


def _group(
    elements: list[Element], forward: Mapping[str, Sequence[PortSpec]] | None = None
) -> list[OpenEntry]:
    """One entry per (address, door): its ports joined, its latest expiry."""
    forward = forward or {}
    ports: dict[tuple[str, str], list[tuple[str, int]]] = {}
    labels: dict[tuple[str, str], list[str]] = {}
    expiry: dict[tuple[str, str], float] = {}
    for ref, key, address, door, expires in elements:
        group = (address, door)
        ports.setdefault(group, [])
        if isinstance(key, dict):
            ports[group].append((str(key["concat"][1]), int(key["concat"][2])))
        elif door in forward and ref.name.startswith("fwd"):
            label = "forward " + ", ".join(str(p) for p in forward[door])
            if label not in labels.setdefault(group, []):
                labels[group].append(label)
        elif f"set {ref}" not in labels.setdefault(group, []):
            labels[group].append(f"set {ref}")
        expiry[group] = max(expiry.get(group, 0.0), expires)
    return sorted(
        OpenEntry(
            a, d, ", ".join(filter(None, [_compress(p), *labels.get((a, d), [])])), expiry[(a, d)]
        )
        for (a, d), p in ports.items()
    )
