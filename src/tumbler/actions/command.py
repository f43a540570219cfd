"""A door's own shell command, the article's action, run without blocking the daemon.

The command is the administrator's shell text; only validated values are substituted into
it (a normalised IP address, a door name of safe characters), and the same values are
given in the environment so that a careful script need not parse its command line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from tumbler.addresses import normalize_address
from tumbler.doors import is_door_name

OUTPUT_LIMIT = 4096


def render(template: str, address: str, door: str) -> str:
    """Substitute %IP% and %NAME% after checking both can carry nothing but their value."""
    # normalize_address, not ip_address().compressed: the latter keeps a scope id
    # (fe80::1%$(cmd) parses) and an IPv4-mapped form the protocol never produces.
    if normalize_address(address) != address:
        raise ValueError(f"refusing to substitute a non-normalised address {address!r}")
    if not is_door_name(door):
        raise ValueError(f"refusing to substitute door name {door!r}")
    return template.replace("%IP%", address).replace("%NAME%", door)


async def run_command(
    template: str, address: str, door: str, timeout: float, log: logging.Logger
) -> int | None:
    """Run the door's command; return its exit status, or None if it failed to run or timed out."""
    command = render(template, address, door)
    env = dict(os.environ, TUMBLER_IP=address, TUMBLER_DOOR=door)
    try:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        log.error("door %s: command for %s could not start: %s", door, address, exc)
        return None
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        log.error("door %s: command for %s killed after %.0f s", door, address, timeout)
        return None
    text = output[:OUTPUT_LIMIT].decode("utf-8", "replace").strip()
    more = " [truncated]" if len(output) > OUTPUT_LIMIT else ""
    level = logging.INFO if proc.returncode == 0 else logging.WARNING
    log.log(
        level,
        "door %s: command for %s exited %s%s%s",
        door,
        address,
        proc.returncode,
        f": {text}" if text else "",
        more,
    )
    return proc.returncode
