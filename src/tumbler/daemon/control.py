"""The daemon's control socket: `tumblerd status` and `tumblerd close ADDR`.

A Unix stream socket in a directory only its owner can enter, with the socket itself mode
0600, and the peer's uid checked with SO_PEERCRED on every connection: only root (or the
daemon's own user) may ask. One JSON request line, one JSON answer line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tumbler.errors import TumblerError

log = logging.getLogger("tumblerd")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST = 4096


class ControlError(TumblerError):
    """The control socket could not be reached or refused the request."""


def peer_creds(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end, as the kernel vouches for them."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


def answering_pid(path: Path) -> int | None:
    """The pid of a live server on the socket at `path`, or None if nothing answers there.

    A socket file left by a daemon that died refuses connections, and may be replaced;
    one that accepts belongs to a running daemon, whose pid the kernel tells us.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        except OSError as exc:
            raise ControlError(f"control socket {path}: {exc.strerror or exc}") from None
        return peer_creds(probe)[0]


class ControlServer:
    """Serves control requests with `handler`, for root and the daemon's own user only."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = Path(path)
        self.handler = handler
        self._server: asyncio.base_events.Server | None = None
        self._inode: int | None = None

    async def start(self) -> None:
        """Listen; refuse (ControlError) when another daemon already answers on the path.

        Two daemons on one control socket would each take it from the other, and the one
        that stopped last would leave the survivor unreachable.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.path.exists() or self.path.is_symlink():
            pid = answering_pid(self.path)
            if pid is not None:
                raise ControlError(
                    f"control socket {self.path} is in use by a running tumblerd (pid {pid}); "
                    "stop it first, or give this daemon its own `control` path"
                )
            self.path.unlink()  # a stale socket from a run that died
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._inode = os.lstat(self.path).st_ino

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        # Remove the socket only if it is still ours, never one that replaced it.
        with contextlib.suppress(FileNotFoundError):
            if self._inode is not None and os.lstat(self.path).st_ino == self._inode:
                self.path.unlink()
        self._inode = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            _pid, uid = peer_creds(sock)
            if uid not in (0, os.geteuid()):
                log.warning("control: refused a request from uid %d", uid)
                answer: dict[str, Any] = {"ok": False, "error": "permission denied"}
            else:
                answer = await self._answer(reader)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            log.debug("control: connection dropped: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            request = json.loads(line[:MAX_REQUEST])
        except (TimeoutError, ValueError, RecursionError):  # RecursionError: deep nesting
            return {"ok": False, "error": "bad request"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "bad request"}
        try:
            return await self.handler(request)
        except TumblerError as exc:
            return {"ok": False, "error": str(exc)}


def request(path: str, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a running daemon and return its answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise ControlError(f"no control socket at {path}: is tumblerd running?") from None
    except PermissionError:
        raise ControlError(f"permission denied on {path}: run as root") from None
    except OSError as exc:
        raise ControlError(f"control socket {path}: {exc}") from None
    try:
        answer = json.loads(data)
    except (ValueError, RecursionError):
        raise ControlError("the daemon sent no answer") from None
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "request failed")))
    return answer
