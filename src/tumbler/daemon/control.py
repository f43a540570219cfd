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


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end, as the kernel vouches for it."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class ControlServer:
    """Serves control requests with `handler`, for root and the daemon's own user only."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = Path(path)
        self.handler = handler
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a run that died
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock)
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
        except (TimeoutError, ValueError):
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
    except ValueError:
        raise ControlError("the daemon sent no answer") from None
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error", "request failed")))
    return answer
