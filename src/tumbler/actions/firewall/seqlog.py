"""The nftables table that logs connection attempts to an NFLOG group for the sequence doors.

tumblerd adds a table of its own, `inet tumbler_seq`, whose chain sits at the input hook
before the filter (priority -150, after conntrack), so it also sees the attempts the filter
will drop. It logs each new inbound attempt (TCP SYN without ACK, new UDP flow) to an NFLOG
group with the first bytes of the packet; `tumbler.sources.nflog` reads that group.
Logging is limited per source; the packet that crosses the limit carries the prefix
`tumbler-over` (see `tumbler.events`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from tumbler.actions.firewall.runner import Runner
from tumbler.events import NFLOG_COPY_RANGE as DEFAULT_COPY_RANGE
from tumbler.events import NFLOG_GROUP as DEFAULT_GROUP
from tumbler.events import NFLOG_PREFIX as PREFIX
from tumbler.events import NFLOG_PREFIX_OVER as PREFIX_OVER
from tumbler.ports import PortSpec

TABLE = "tumbler_seq"
CHAIN = "knocks"
TRACK_MINIMUM = 120
"""Seconds a source that hit a sequence port stays tracked, whatever the doors' timeouts."""
TRACK_SLACK = 10
"""Seconds tracked beyond the longest sequence timeout: the matcher times attempts when it
reads them, a little after the kernel saw them."""


def _payload(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _set_stmt(op: str, elem: Any, name: str, stmt: list[Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"op": op, "elem": elem, "set": f"@{name}"}
    if stmt:
        body["stmt"] = stmt
    return {"set": body}


def _hint_steps(ports_hint: Iterable[PortSpec | tuple[str, int]]) -> list[tuple[str, int]]:
    steps: set[tuple[str, int]] = set()
    for item in ports_hint:
        if isinstance(item, PortSpec):
            steps.update((item.proto, port) for port in range(item.first, item.last + 1))
        else:
            steps.add((item[0], int(item[1])))
    for proto, port in steps:
        if proto not in ("tcp", "udp") or not 1 <= port <= 65535:
            raise ValueError(f"bad sequence port {proto}/{port}")
    return sorted(steps)


def track_timeout_for(longest_sequence_timeout: float) -> int:
    """Seconds the `knocking` sets keep a source, given the longest sequence timeout.

    The set's timer restarts at every hit on a sequence port, and a sequence must complete
    within its timeout of its first knock, so tracking a source for longer than the longest
    timeout shows the matcher every attempt between two knocks of any sequence it can still
    complete. Tracking for less lets a slow scan pace its probes past the set's timeout:
    the probes between knocks go unlogged, and the scan completes the sequence.
    """
    return max(TRACK_MINIMUM, math.ceil(longest_sequence_timeout) + TRACK_SLACK)


def render_rules(
    group: int = DEFAULT_GROUP,
    ports_hint: Iterable[PortSpec | tuple[str, int]] | None = None,
    *,
    include_loopback: bool = False,
    rate: int = 20,
    burst: int = 40,
    hold: int = 10,
    track_timeout: int = 120,
    snaplen: int = DEFAULT_COPY_RANGE,
    priority: int = -150,
    table: str = TABLE,
) -> dict[str, Any]:
    """The `nft -j -f -` document that (re)creates the logging table in one transaction.

    Without `ports_hint` every new inbound attempt is logged. With it (the sequence ports of
    all doors), only attempts to those ports are logged, plus every other attempt from a
    source that knocked on one of them in the last `track_timeout` seconds: enough for the
    resets, far less to read. `track_timeout` must exceed the longest sequence timeout
    (`track_timeout_for` gives it).
    Each source gets `rate`/s (burst `burst`) of log messages; see the module docstring.
    """
    if not 0 <= group <= 65535:
        raise ValueError(f"NFLOG group {group} out of range 0-65535")
    if track_timeout < 1:
        raise ValueError(f"track_timeout must be at least 1 s, not {track_timeout}")
    base = {"family": "inet", "table": table}
    commands: list[dict[str, Any]] = [
        {"add": {"table": {"family": "inet", "name": table}}},
        {"delete": {"table": {"family": "inet", "name": table}}},
        {"add": {"table": {"family": "inet", "name": table}}},
    ]

    def add_set(name: str, kind: Any, timeout: int | None, **extra: Any) -> None:
        spec: dict[str, Any] = {**base, "name": name, "type": kind, **extra}
        if timeout is not None:
            spec.update(flags=["timeout"], timeout=timeout, size=65535)
        commands.append({"add": {"set": spec}})

    rules: list[list[dict[str, Any]]] = []
    if not include_loopback:
        rules.append([_match(_meta("iifname"), "lo"), {"return": None}])
    rules.append(
        [
            _match(_meta("l4proto"), "tcp"),
            _match({"&": [_payload("tcp", "flags"), ["syn", "ack"]]}, "syn", "!="),
            {"return": None},
        ]
    )
    rules.append(
        [
            _match(_meta("l4proto"), "udp"),
            _match({"ct": {"key": "state"}}, "new", "!="),
            {"return": None},
        ]
    )
    rules.append([_match(_meta("l4proto"), {"set": ["tcp", "udp"]}, "!="), {"return": None}])

    families = (("ipv4", "ip", "ipv4_addr", "4"), ("ipv6", "ip6", "ipv6_addr", "6"))
    if ports_hint is not None:
        steps = _hint_steps(ports_hint)
        add_set(
            "knock_ports",
            ["inet_proto", "inet_service"],
            None,
            elem=[{"concat": [proto, port]} for proto, port in steps],
        )
        for nfproto, ip, addr_type, suffix in families:
            add_set(f"knocking{suffix}", addr_type, track_timeout)
            saddr = _payload(ip, "saddr")
            rules.append(
                [
                    _match(_meta("nfproto"), nfproto),
                    _match({"concat": [_meta("l4proto"), _payload("th", "dport")]}, "@knock_ports"),
                    _set_stmt("update", saddr, f"knocking{suffix}"),
                ]
            )
            rules.append(
                [
                    _match(_meta("nfproto"), nfproto),
                    _match(saddr, f"@knocking{suffix}", "!="),
                    {"return": None},
                ]
            )

    log = {"group": group, "snaplen": snaplen, "queue-threshold": 1}
    for nfproto, ip, addr_type, suffix in families:
        add_set(f"rate{suffix}", addr_type, 60)
        add_set(f"noisy{suffix}", addr_type, hold)
        saddr = _payload(ip, "saddr")
        rules.append(
            [
                _match(_meta("nfproto"), nfproto),
                _match(saddr, f"@noisy{suffix}"),
                _set_stmt("update", saddr, f"noisy{suffix}"),
                {"return": None},
            ]
        )
        over = {"limit": {"rate": rate, "burst": burst, "per": "second", "inv": True}}
        rules.append(
            [
                _match(_meta("nfproto"), nfproto),
                _set_stmt("update", saddr, f"rate{suffix}", [over]),
                _set_stmt("add", saddr, f"noisy{suffix}"),
                {"log": {"prefix": PREFIX_OVER, **log}},
                {"return": None},
            ]
        )
    rules.append([{"log": {"prefix": PREFIX, **log}}])

    commands.append(
        {
            "add": {
                "chain": {
                    **base,
                    "name": CHAIN,
                    "type": "filter",
                    "hook": "input",
                    "prio": priority,
                    "policy": "accept",
                }
            }
        }
    )
    commands.extend({"add": {"rule": {**base, "chain": CHAIN, "expr": expr}}} for expr in rules)
    return {"nftables": commands}


def render_removal(table: str = TABLE) -> dict[str, Any]:
    """The document that deletes the table; adding it first makes removal never fail."""
    return {
        "nftables": [
            {"add": {"table": {"family": "inet", "name": table}}},
            {"delete": {"table": {"family": "inet", "name": table}}},
        ]
    }


def install_rules(
    group: int = DEFAULT_GROUP,
    ports_hint: Iterable[PortSpec | tuple[str, int]] | None = None,
    *,
    runner: Runner | None = None,
    **options: Any,
) -> None:
    """(Re)create the `inet tumbler_seq` table in one transaction; options as `render_rules`.

    Runs `nft -j -f -` through the shared firewall `Runner` (argv, no shell); a runner with
    a prefix such as `ip netns exec ns1` installs into a namespace. Raises FirewallError.
    """
    document = render_rules(group, ports_hint, **options)
    (runner or Runner()).run(["nft", "-j", "-f", "-"], input=json.dumps(document))


def remove_rules(*, runner: Runner | None = None, table: str = TABLE) -> None:
    """Delete the table if it is there (never fails because it is not)."""
    (runner or Runner()).run(["nft", "-j", "-f", "-"], input=json.dumps(render_removal(table)))
