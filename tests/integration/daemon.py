"""Start a real tumblerd process on loopback for tests, and talk to it over real UDP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tumbler.lab.ready import start_ready
from tumbler.protocols.tumbler1 import make_knock

TUMBLERD = [sys.executable, "-m", "tumbler.cli.tumblerd"]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tumblerd:
    """A tumblerd process with its config, log, state and command output in one folder."""

    def __init__(self, folder: Path, doors: str, common: str = "") -> None:
        self.folder = folder
        self.port = free_udp_port()
        self.out = folder / "out"
        self.log = folder / "tumblerd.log"
        self.config = folder / "tumblerd.conf"
        self.write_config(doors, common)
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, doors: str, common: str = "") -> None:
        text = (
            "[common]\n"
            f"   port = {self.port}\n"
            f"   log = {self.log}\n"
            "   listen = 127.0.0.1, ::1\n"
            f"   state = {self.folder / 'state.db'}\n"
            f"   control = {self.folder / 'control.sock'}\n"
            f"{common}"
            f"{doors.replace('OUT', str(self.out))}"
        )
        self.config.write_text(text)
        self.config.chmod(0o600)

    def start(self) -> Tumblerd:
        """Start tumblerd; return once it said READY=1 (sockets bound, control socket up)."""
        with open(self.folder / "stderr", "ab") as stderr:
            self.proc = start_ready(
                subprocess.Popen,
                [*TUMBLERD, "--config", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def send(self, data: bytes, family: int = socket.AF_INET) -> socket.socket:
        """Send one datagram from loopback; return the socket so callers can listen on it."""
        host = "127.0.0.1" if family == socket.AF_INET else "::1"
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.sendto(data, (host, self.port))
        return sock

    def knock(
        self,
        secret: str,
        address: str = "127.0.0.1",
        when: datetime | None = None,
        family: int = socket.AF_INET,
    ) -> bytes:
        data = make_knock(secret, address, when or datetime.now(UTC))
        self.send(data, family).close()
        return data

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""
