"""Messages between the receiving processes and the main one: JSON, one per packet.

JSON rather than pickle: a receiving process reads the network and runs with fewer rights,
so what it says is data the main process checks (addresses, door names, ports) before use,
never code it could be made to run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from tumbler.addresses import normalize_address
from tumbler.daemon.pipeline import Candidate
from tumbler.doors import is_door_name
from tumbler.ports import parse_port_spec

KINDS = ("knock", "signed", "fwknop")
MAX_MESSAGE = 64 * 1024  # a candidate or a batch of counters is far smaller
MAX_OUTCOME = 64


class BadMessage(ValueError):
    """A message from a receiving process that is not one it may send."""


def candidate(c: Candidate) -> bytes:
    """A proved knock, for the main process to claim."""
    return json.dumps(
        {
            "candidate": {
                "key": c.key,
                "expires": c.expires,
                "now": c.now,
                "address": c.address,
                "doors": list(c.doors),
                "kind": c.kind,
                "detail": c.detail,
                "target": c.target,
                "ports": None if c.ports is None else [str(p) for p in c.ports],
                "timeout": c.timeout,
            }
        }
    ).encode()


def counts(outcomes: Mapping[str, int], skew: Mapping[str, Any] | None = None) -> bytes:
    """What a receiving process decided since it last said, and its last clock-skew report."""
    return json.dumps({"counts": dict(outcomes), "skew": skew}).encode()


def claimed(key: str, until: float) -> bytes:
    """Main to receivers: `key` is claimed until `until`; repeats of it are replays."""
    return json.dumps({"claimed": key, "until": until}).encode()


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadMessage(f"not a number: {value!r}")
    return float(value)


def _text(value: object, limit: int = 512) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise BadMessage("not a short text")
    return value


def parse(data: bytes) -> dict[str, Any]:
    """The message as a dict with one known key; BadMessage for anything else."""
    try:
        message = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadMessage(f"not JSON: {exc}") from None
    if not isinstance(message, dict) or not ({"candidate", "counts", "claimed"} & message.keys()):
        raise BadMessage("not a message")
    return message


def parse_candidate(fields: object) -> Candidate:
    """A candidate checked as if it came from outside: normalised addresses, door names, ports."""
    if not isinstance(fields, dict):
        raise BadMessage("a candidate is an object")
    try:
        address = normalize_address(_text(fields.get("address")))
        target = fields.get("target")
        if target is not None:
            target = normalize_address(_text(target))
        doors = fields.get("doors")
        if not isinstance(doors, list) or not doors:
            raise BadMessage("a candidate names its doors")
        names = tuple(_text(name) for name in doors)
        if not all(is_door_name(name) for name in names):
            raise BadMessage("bad door name")
        kind = fields.get("kind")
        if kind not in KINDS:
            raise BadMessage(f"unknown kind {kind!r}")
        ports = fields.get("ports")
        specs = None
        if ports is not None:
            if not isinstance(ports, list):
                raise BadMessage("ports are a list")
            specs = tuple(parse_port_spec(_text(p, 32)) for p in ports)
        timeout = fields.get("timeout")
        return Candidate(
            key=_text(fields.get("key"), 1024),
            expires=_number(fields.get("expires")),
            now=_number(fields.get("now")),
            address=address,
            doors=names,
            kind=kind,
            detail=_text(fields.get("detail")),
            target=target,
            ports=specs,
            timeout=None if timeout is None else _number(timeout),
        )
    except ValueError as exc:  # a bad address or port, said as BadMessage
        if isinstance(exc, BadMessage):
            raise
        raise BadMessage(str(exc)) from None


def parse_counts(fields: object) -> dict[str, int]:
    """Outcome counters: short names, positive whole numbers."""
    if not isinstance(fields, dict):
        raise BadMessage("counts are an object")
    out: dict[str, int] = {}
    for outcome, n in fields.items():
        if not isinstance(outcome, str) or len(outcome) > MAX_OUTCOME:
            raise BadMessage("bad outcome name")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise BadMessage("bad count")
        out[outcome] = n
    return out


def parse_skew(fields: object) -> dict[str, Any] | None:
    """A clock-skew report as status shows it: door or key, address, offset, time."""
    if fields is None:
        return None
    if not isinstance(fields, dict):
        raise BadMessage("a skew report is an object")
    try:
        address = normalize_address(_text(fields.get("address")))
    except ValueError as exc:
        raise BadMessage(str(exc)) from None
    skew: dict[str, Any] = {"address": address, "at": _number(fields.get("at"))}
    offset = fields.get("offset")
    skew["offset"] = None if offset is None else int(_number(offset))
    if "door" in fields:
        skew["door"] = _text(fields["door"])
    else:
        skew["key"] = _text(fields.get("key"))
    return skew
