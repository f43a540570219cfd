"""Knowing that a tumblerd has started: its READY=1 on a notify socket, not a log line.

tumblerd speaks sd_notify whenever $NOTIFY_SOCKET names a socket, systemd or not. A path
socket (not an abstract one) is reachable from every network namespace of the host, so the
demo, the tests and the benchmarks start each daemon with one and wait for READY=1.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol


class Process(Protocol):
    def poll(self) -> int | None: ...


class NotReady(RuntimeError):
    """The daemon exited, or stayed silent, before it said READY=1; `proc` is the process."""

    proc: subprocess.Popen[Any] | None = None


class ReadyWatch:
    """A notify socket for one daemon at a time; `wait` returns its READY=1 message."""

    def __init__(self) -> None:
        # A short folder of its own: a socket path may not exceed 107 bytes.
        self._folder = tempfile.mkdtemp(prefix="tumbler-notify-")
        self.path = str(Path(self._folder) / "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.bind(self.path)
        os.chmod(self.path, 0o600)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) with NOTIFY_SOCKET set to this socket."""
        return {**(os.environ if base is None else base), "NOTIFY_SOCKET": self.path}

    def wait(self, proc: Process | None = None, timeout: float = 15.0) -> str:
        """The first message holding READY=1; NotReady if `proc` exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NotReady(f"no READY=1 within {timeout:g} s")
            readable, _, _ = select.select([self._sock], [], [], min(left, 0.2))
            if readable:
                message = self._sock.recv(4096).decode("utf-8", "replace")
                if "READY=1" in message.splitlines():
                    return message
            elif proc is not None and proc.poll() is not None:
                raise NotReady(f"exited with status {proc.poll()} before READY=1")

    def close(self) -> None:
        self._sock.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> ReadyWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start_ready(
    popen: Callable[..., subprocess.Popen[Any]],
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 15.0,
    **kwargs: Any,
) -> subprocess.Popen[Any]:
    """Start a daemon with `popen` (subprocess.Popen, or a namespace's) and wait for READY=1.

    Raises NotReady, whose `proc` the caller stops (or a lab's clean-up kills).
    """
    with ReadyWatch() as watch:
        proc = popen(argv, env=watch.env(env), **kwargs)
        try:
            watch.wait(proc, timeout)
        except NotReady as exc:
            exc.proc = proc
            raise
    return proc
