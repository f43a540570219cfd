"""systemd readiness notification (sd_notify), written without a dependency.

With `Type=notify`, systemd starts the units ordered after tumblerd only once it says
READY=1, that is once its sockets are bound: a knock sent right after `systemctl start`
is heard. Outside systemd ($NOTIFY_SOCKET unset) every call is a cheap no-op, and a
failure to notify never stops the daemon: it returns False.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["notify", "ready", "reloading", "status", "stopping"]


def _address(spec: str) -> str | None:
    """The socket address $NOTIFY_SOCKET names: a path, or `@name` for an abstract one."""
    if spec.startswith("@"):
        return "\0" + spec[1:]
    if spec.startswith("/"):
        return spec
    return None  # e.g. vsock: addresses, which a local daemon never gets


def notify(state: str) -> bool:
    """Send one state message (newline-separated `KEY=value` lines); True if it was sent."""
    spec = os.environ.get("NOTIFY_SOCKET", "")
    address = _address(spec) if spec else None
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError:
        return False
    return True


def ready(status_text: str | None = None) -> bool:
    """The daemon serves: sockets bound, config loaded. Also send it after each reload."""
    return notify("READY=1" + (f"\nSTATUS={_one_line(status_text)}" if status_text else ""))


def reloading() -> bool:
    """A reload begins; `ready()` must follow when it is done (also for Type=notify-reload)."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def stopping() -> bool:
    """Shutdown begins: systemd stops waiting for anything else from us."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """A one-line status that `systemctl status tumblerd` shows."""
    return notify(f"STATUS={_one_line(text)}")


def _one_line(text: str) -> str:
    return " ".join(text.split())
