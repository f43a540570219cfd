"""The firewall backend lifecycle the daemon drives, and what backends share.

The daemon calls these methods from a worker thread, never concurrently with
itself in spirit, but each backend still serialises its own calls with a lock
so that a `list` from the CLI thread cannot interleave with an `open`.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from tumbler.actions.firewall.runner import Runner
from tumbler.addresses import IPV6_PREFIX, address_version, normalize_address
from tumbler.doors import is_door_name
from tumbler.errors import FirewallError
from tumbler.ports import PortSpec

# A door name ends up inside rule comments (`tumbler:<door>:<expiry>`) and nft
# element comments, so it is kept to characters that need no quoting anywhere.

COMMENT_PREFIX = "tumbler:"

# The default-closed policy lets each source send at most KNOCK_RATE knock datagrams a
# second (after a burst of KNOCK_BURST); the kernel drops the rest before tumblerd's
# socket, so a flood from a few addresses cannot crowd out a genuine knock.
KNOCK_RATE = 25
KNOCK_BURST = 100


@dataclass(frozen=True, order=True)
class OpenEntry:
    """One opening: which door let which address through to which ports, until when."""

    address: str
    door: str
    ports: str
    expires: float

    def remaining(self, now: float) -> float:
        """Seconds left before it closes (0 when due)."""
        return max(0.0, self.expires - now)


@dataclass(frozen=True)
class DoorGrant:
    """What the config lets one door open: these ports, for at most `timeout` seconds."""

    ports: tuple[PortSpec, ...]
    timeout: float

    def allows(self, spec: PortSpec) -> bool:
        """True if one of the door's port specs covers all of `spec`."""
        return any(
            p.proto == spec.proto and p.first <= spec.first and spec.last <= p.last
            for p in self.ports
        )


def check_door(door: str) -> str:
    """Return the door name, or raise FirewallError if it could not be a rule tag."""
    if not is_door_name(door):
        raise FirewallError(
            f"door name {door!r} cannot tag a firewall rule "
            "(use letters, digits and _ . -, at most 64)"
        )
    return door


def normalise_address(address: str) -> tuple[str, int]:
    """Return (address text, 4 or 6); an IPv4-mapped IPv6 address counts as IPv4."""
    try:
        text = normalize_address(address.strip())
    except ValueError as exc:
        raise FirewallError(f"not an IP address: {address!r}") from exc
    return text, address_version(text)


def timeout_seconds(timeout: float) -> int:
    """Whole seconds (rounded up, at least 1): what the kernel's timers can hold."""
    if not math.isfinite(timeout) or timeout <= 0:
        raise FirewallError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return max(1, math.ceil(timeout))


# The knock port, or several (tumblerd's own and fwknop's 62201), that the policy keeps open.
KnockPorts = int | Sequence[int]


def knock_ports(knock: KnockPorts) -> tuple[int, ...]:
    """The knock ports as a tuple, whether one port or several was given."""
    return (knock,) if isinstance(knock, int) else tuple(knock)


def ports_text(ports: Sequence[PortSpec]) -> str:
    """The ports as a door's `open` key writes them: `tcp/22, udp/60000-60010`."""
    return ", ".join(str(p) for p in ports)


class FirewallBackend(ABC):
    """Opens ports for an address for a while, and makes sure they close again.

    Every method either completes or raises `FirewallError` leaving the firewall
    as it was before the call. Times are epoch seconds passed in by the caller,
    so tests can freeze the clock.
    """

    name: ClassVar[str]
    # True when the kernel itself closes what was opened on time (nftables' timed set
    # elements), so an opening outlives the daemon safely; False when only a running
    # daemon closes it (iptables rules), so the daemon closes all it opened when it stops.
    kernel_timeouts: ClassVar[bool] = False

    def __init__(self, runner: Runner | None = None) -> None:
        self.runner = runner if runner is not None else Runner()
        self._lock = threading.RLock()
        # Doors with `path = forward`: their ports are guarded on the forward path, and
        # their openings let the knocker through to forwarded (DNATed) ports.
        self.forward_doors: dict[str, tuple[PortSpec, ...]] = {}
        # How much of an IPv6 source the policy's kernel rate limit counts as one source
        # (the config's `ipv6_prefix`): one /64 holds more addresses than any set could.
        self.ipv6_prefix = IPV6_PREFIX

    @classmethod
    @abstractmethod
    def probe(cls, runner: Runner | None = None) -> str | None:
        """None if this backend can work on this host, else the reason it cannot."""

    @abstractmethod
    def open(
        self, door: str, address: str, ports: Sequence[PortSpec], timeout: float, now: float
    ) -> float:
        """Let `address` reach `ports` for `timeout` seconds; return the expiry.

        A repeated knock refreshes the expiry and never adds a duplicate.
        """

    @abstractmethod
    def expire(self, now: float) -> list[OpenEntry]:
        """Close what is due at `now`; return what was closed."""

    @abstractmethod
    def restore(self, now: float, doors: Mapping[str, DoorGrant] | None = None) -> list[OpenEntry]:
        """At daemon start and reload: close what expired while it was down, re-arm the rest.

        `doors` is what the current config lets each door open; whatever a backend kept
        that no door could have opened is dropped (None checks the form only). Returns
        what was closed.
        """

    @abstractmethod
    def list_open(self, now: float) -> list[OpenEntry]:
        """What is open at `now`, sorted by address then door."""

    @abstractmethod
    def close(self, address: str, door: str | None = None, *, now: float) -> list[OpenEntry]:
        """Close early everything open for `address` (only `door`'s if given) at `now`."""

    @abstractmethod
    def flush(self, now: float) -> list[OpenEntry]:
        """Close everything this daemon opened, at `now` (the policy, if any, stays)."""

    @abstractmethod
    def render_policy(self, knock_port: KnockPorts) -> list[str]:
        """The default-closed policy as text an administrator can read (`--print`)."""

    @abstractmethod
    def apply_policy(self, knock_port: KnockPorts) -> None:
        """Apply the default-closed policy; running it again converges on the same rules.

        A changed knock port (or set of ports) replaces the old one.
        """

    @abstractmethod
    def remove_policy(self, now: float) -> list[OpenEntry]:
        """Take the default-closed policy away again, closing the doors it held open at `now`."""

    def policy_warnings(self) -> list[str]:
        """What in the firewall keeps open what the policy claims to close."""
        return []

    def guard_forward(self, doors: Mapping[str, Sequence[PortSpec]]) -> None:
        """Drop new forwarded connections to these doors' ports unless a knock opened them.

        Replaces the previous guards; running it again changes nothing. Ports are matched
        as the client addressed them (before any DNAT), so a door names the published port.
        """
        raise FirewallError(f"the {self.name} backend cannot guard forwarded ports")

    def render_forward(self, doors: Mapping[str, Sequence[PortSpec]]) -> list[str]:
        """The guards `guard_forward` puts in place, as text an administrator can read."""
        if not any(doors.values()):
            return []
        raise FirewallError(f"the {self.name} backend cannot guard forwarded ports")

    def init_policy(
        self, knock_port: KnockPorts, apply: bool = True, ipv6_prefix: int | None = None
    ) -> list[str]:
        """Render the default-closed policy and, with `apply`, put it in place.

        `ipv6_prefix` (the config's) replaces the prefix the kernel limit counts by.
        """
        for port in knock_ports(knock_port):
            if not 1 <= port <= 65535:
                raise FirewallError(f"knock port {port} out of range 1-65535")
        if ipv6_prefix is not None:
            if not 1 <= ipv6_prefix <= 128:
                raise FirewallError(f"IPv6 prefix /{ipv6_prefix} out of range 1-128")
            self.ipv6_prefix = ipv6_prefix
        lines = self.render_policy(knock_port)
        if apply:
            with self._lock:
                self.apply_policy(knock_port)
        return lines
