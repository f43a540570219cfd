"""`tumblerd firewall init|list|flush|remove`: library functions the argparse front-end calls."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TextIO

from tumbler.actions.firewall.base import FirewallBackend, KnockPorts, OpenEntry, knock_ports
from tumbler.errors import FirewallError
from tumbler.ports import PortSpec

ACTIONS = ("init", "list", "flush", "remove")

REMOVE_WARNING = (
    "tumbler's default-closed policy is removed: every port it kept closed is reachable "
    "again, unless another firewall blocks it"
)


CAP_NET_ADMIN = 12
NEEDS_ROOT = "needs root (or CAP_NET_ADMIN)"


def can_change_firewall() -> bool:
    """True for root, or for a process whose effective capabilities hold CAP_NET_ADMIN."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError):
        pass
    return False


def format_table(entries: Sequence[OpenEntry], now: float) -> list[str]:
    """Open doors as aligned text columns; times in local ISO form for an administrator."""
    header = ("ADDRESS", "DOOR", "PORTS", "UNTIL", "REMAINING")
    rows = [
        (
            e.address,
            e.door,
            e.ports,
            datetime.fromtimestamp(e.expires).astimezone().isoformat(timespec="seconds"),
            f"{int(e.remaining(now))}s",
        )
        for e in entries
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def firewall_command(
    action: str,
    backend: FirewallBackend,
    knock_port: KnockPorts,
    print_only: bool,
    out: TextIO,
    err: TextIO | None = None,
    now: float | None = None,
    forward: Mapping[str, Sequence[PortSpec]] | None = None,
    ipv6_prefix: int | None = None,
) -> int:
    """Run one `tumblerd firewall` action; return the exit status (0 ok, 1 failed, 2 misuse).

    `print_only` only matters to `init` (`--print`): show the policy, change nothing.
    `forward` names the forward doors' ports: `init` guards them too (the daemon does at
    its start), and `--print` shows those guards after the policy. `ipv6_prefix` is how
    much of an IPv6 source the policy's kernel limit counts as one (the config's).
    """
    err = err if err is not None else sys.stderr
    now = time.time() if now is None else now
    forward = {door: ports for door, ports in (forward or {}).items() if ports}
    try:
        if action == "init":
            # Rendered first: a backend that cannot guard fails before it changes anything.
            guards = backend.render_forward(forward)
            policy = backend.init_policy(knock_port, not print_only, ipv6_prefix)
            lines = policy + guards
            if print_only:
                out.write("\n".join(lines) + "\n")
            else:
                if forward:
                    backend.guard_forward(forward)
                warnings = backend.policy_warnings()
                ports = ", ".join(f"udp/{p}" for p in knock_ports(knock_port))
                out.write(
                    f"default-closed policy applied ({backend.name}); "
                    f"knock port {ports} stays reachable\n"
                    if not warnings
                    else f"policy applied ({backend.name}), but {len(warnings)} rule(s) not "
                    "tumbler's still accept traffic: not default-closed\n"
                )
                for door, guarded in sorted(forward.items()):
                    shown = ", ".join(str(p) for p in guarded)
                    out.write(f"door {door}: forwarded {shown} guarded\n")
                for warning in warnings:
                    err.write(f"warning: {warning}\n")
        elif action == "list":
            entries = backend.list_open(now)
            if entries:
                out.write("\n".join(format_table(entries, now)) + "\n")
            else:
                out.write("nothing is open\n")
        elif action == "flush":
            closed = backend.flush(now)
            out.write(f"closed {len(closed)} opening(s)\n")
            for e in closed:
                out.write(f"  {e.address}  {e.door}  {e.ports}\n")
        elif action == "remove":
            closed = backend.remove_policy(now)
            err.write(f"warning: {REMOVE_WARNING} ({backend.name})\n")
            out.write(f"policy removed; closed {len(closed)} opening(s)\n")
        else:
            err.write(f"tumblerd firewall: unknown action {action!r} (use {', '.join(ACTIONS)})\n")
            return 2
    except FirewallError as exc:
        err.write(f"tumblerd firewall {action}: {exc}\n")
        return 1
    return 0
