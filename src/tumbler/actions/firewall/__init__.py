"""Firewall backends: open a door for an address, and close it again on time.

`get_backend` picks one by name (`nftables`, `iptables`, `iptables-nft`,
`iptables-legacy`, or `auto`, which probes nftables first).
"""

from __future__ import annotations

from collections.abc import Mapping

from tumbler.actions.firewall.base import DoorGrant, FirewallBackend, OpenEntry
from tumbler.actions.firewall.iptables import (
    IptablesBackend,
    IptablesLegacyBackend,
    IptablesNftBackend,
)
from tumbler.actions.firewall.nftables import NftablesBackend, SetRef
from tumbler.actions.firewall.runner import CommandError, CommandResult, Runner
from tumbler.errors import FirewallError

__all__ = [
    "BACKENDS",
    "NAMES",
    "CommandError",
    "CommandResult",
    "DoorGrant",
    "FirewallBackend",
    "IptablesBackend",
    "IptablesLegacyBackend",
    "IptablesNftBackend",
    "NftablesBackend",
    "OpenEntry",
    "Runner",
    "SetRef",
    "get_backend",
    "resolve_name",
]

BACKENDS: dict[str, type[FirewallBackend]] = {
    "nftables": NftablesBackend,
    "iptables": IptablesBackend,
    "iptables-nft": IptablesNftBackend,
    "iptables-legacy": IptablesLegacyBackend,
}


NAMES = ("auto", *BACKENDS)
"""What a config's `firewall` key may say: a backend, or `auto` to probe for one."""


def resolve_name(name: str, runner: Runner | None = None) -> str:
    """The concrete backend name for `name`; `auto` probes nftables, then iptables."""
    if name != "auto":
        if name not in BACKENDS:
            known = ", ".join([*BACKENDS, "auto"])  # the names, `auto` last
            raise FirewallError(f"unknown firewall backend {name!r} (use one of: {known})")
        return name
    reasons = []
    for candidate in ("nftables", "iptables"):
        reason = BACKENDS[candidate].probe(runner)
        if reason is None:
            return candidate
        reasons.append(f"{candidate}: {reason}")
    raise FirewallError("no usable firewall backend: " + "; ".join(reasons))


def get_backend(
    name: str,
    *,
    state_path: str,
    runner: Runner | None = None,
    set_name: SetRef | str | None = None,
    door_sets: Mapping[str, SetRef | str] | None = None,
) -> FirewallBackend:
    """Build the named backend.

    `state_path` is the SQLite state database (iptables keeps its pending closes
    there). `set_name` (every door) and `door_sets` (door -> set) name an
    administrator's nftables set, `family table set`, to fill instead of
    tumbler's own table; they need the nftables backend.
    """
    concrete = resolve_name(name, runner)
    if concrete == "nftables":
        return NftablesBackend(runner=runner, set_name=set_name, door_sets=door_sets)
    if set_name or door_sets:
        raise FirewallError(
            f"a door's 'set' key needs the nftables backend, not {concrete}"
            + (" (chosen by auto)" if name == "auto" else "")
        )
    backend = BACKENDS[concrete]
    assert issubclass(backend, IptablesBackend)
    return backend(state_path=state_path, runner=runner)
