"""Port specifications as the `open` and `sequence` keys write them: `tcp/22`, `udp/6000-6010`."""

from __future__ import annotations

from collections.abc import Iterable

from tumbler.records import NamedTuple

PROTOCOLS = ("tcp", "udp")

# nftables keeps what a door opens port by port (one set element each, so that doors with
# overlapping ranges never collide); this bounds how many ports one door may open there.
MAX_PORTS_EACH = 1024


class PortSpec(NamedTuple):
    """A protocol and an inclusive port range; a single port has first == last.

    A named tuple rather than a dataclass: the client's knock path imports this, and
    `dataclasses` pulls in `inspect` and more at start-up.
    """

    proto: str
    first: int
    last: int

    def __str__(self) -> str:
        ports = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        return f"{self.proto}/{ports}"


def parse_port(text: str) -> int:
    """A port number, 1 to 65535, written in at most five ASCII digits; else ValueError.

    The one port rule: for the config, URLs, profiles and options alike (`int()` would also
    take signs, spaces, underscores and non-ASCII digits).
    """
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise ValueError(f"bad port {text!r}")
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(f"port {value} out of range 1-65535")
    return value


def parse_port_spec(text: str, default_proto: str = "tcp", allow_range: bool = True) -> PortSpec:
    """Parse `tcp/22`, `udp/500`, `22` or `tcp/6000-6010`; raise ValueError with the reason."""
    text = text.strip().lower()
    proto, sep, ports = text.partition("/")
    if not sep:
        proto, ports = default_proto, text
    if proto not in PROTOCOLS:
        raise ValueError(f"unknown protocol {proto!r} in {text!r} (use tcp or udp)")
    first_text, dash, last_text = ports.partition("-")
    if dash and not allow_range:
        raise ValueError(f"a range is not allowed here: {text!r}")
    first = parse_port(first_text)
    last = parse_port(last_text) if dash else first
    if last < first:
        raise ValueError(f"empty port range {text!r}")
    return PortSpec(proto, first, last)


def parse_port_list(
    text: str, default_proto: str = "tcp", allow_range: bool = True
) -> tuple[PortSpec, ...]:
    """Parse a comma-separated list of port specs, keeping order."""
    items = [item for item in (part.strip() for part in text.split(",")) if item]
    if not items:
        raise ValueError("empty port list")
    return tuple(parse_port_spec(item, default_proto, allow_range) for item in items)


def port_count(specs: Iterable[PortSpec]) -> int:
    """How many distinct protocol/port pairs the specs cover."""
    return len({(s.proto, port) for s in specs for port in range(s.first, s.last + 1)})
