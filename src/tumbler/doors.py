"""Doors as the config describes them, validated once where they are built."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from tumbler.doornames import DOOR_NAME_RULE, is_door_name
from tumbler.ports import PROTOCOLS, PortSpec

__all__ = [
    "DEFAULT_OPEN_TIMEOUT",
    "DEFAULT_SEQUENCE_TIMEOUT",
    "DOOR_NAME_RULE",
    "SequenceDoor",
    "Step",
    "is_door_name",
]

DEFAULT_SEQUENCE_TIMEOUT = 10.0  # seconds from a sequence's first knock to its last
DEFAULT_OPEN_TIMEOUT = 30.0  # seconds a knock keeps a door's ports open


Step = tuple[str, int]


def _step(item: PortSpec | tuple[str, int]) -> Step:
    if isinstance(item, PortSpec):
        if item.first != item.last:
            raise ValueError(f"a sequence step is one port, not a range: {item}")
        proto, port = item.proto, item.first
    else:
        proto, port = item
    if proto not in PROTOCOLS:
        raise ValueError(f"unknown protocol {proto!r} in a sequence (use tcp or udp)")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port {port!r} out of range 1-65535")
    return (proto, port)


@dataclass(frozen=True)
class SequenceDoor:
    """A door opened by connection attempts to `steps`, in order, within `timeout` seconds.

    Rejects what a scan could complete by itself: fewer than two steps, and two consecutive
    steps on neighbouring ports of one protocol (a scan touches nothing between them).
    """

    name: str
    steps: tuple[Step, ...]
    timeout: float = DEFAULT_SEQUENCE_TIMEOUT

    def __init__(
        self,
        name: str,
        steps: Iterable[PortSpec | tuple[str, int]],
        timeout: float = DEFAULT_SEQUENCE_TIMEOUT,
    ) -> None:
        normalized = tuple(_step(item) for item in steps)
        if len(normalized) < 2:
            raise ValueError(f"sequence of door {name!r} needs at least two ports")
        for (proto_a, port_a), (proto_b, port_b) in itertools.pairwise(normalized):
            if proto_a == proto_b and abs(port_a - port_b) == 1:
                raise ValueError(
                    f"sequence of door {name!r} has neighbouring ports {proto_a}/{port_a} and "
                    f"{proto_b}/{port_b} in a row: a port scan would knock them in order"
                )
        if not timeout > 0:
            raise ValueError(f"sequence timeout of door {name!r} must be positive")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "steps", normalized)
        object.__setattr__(self, "timeout", float(timeout))
