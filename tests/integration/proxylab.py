"""What the ssh-proxy and `tumbler open` tests share, on loopback: a real tumblerd with a
door, an echo server behind it, the client's environment and profile file, and a proxy run
whose first knock is lost.

The service behind the door is a TCP echo server whose socket is bound from the start
(so connections are refused, as at a closed port) and listens only once the door's
command has run: a connection can only succeed after the daemon accepted a knock.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from tests.integration.daemon import Tumblerd

TUMBLER = [sys.executable, "-m", "tumbler"]
PAYLOAD = bytes(range(256)) * 512 + b"\r\n~.\x00 end"  # binary, 128 KiB, no line structure


class GatedEcho:
    """An echo server on 127.0.0.1 that starts listening when `flag` appears."""

    def __init__(self, flag: Path) -> None:
        self.flag = flag
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self.flag.exists():
            if self._stop.wait(0.02):
                return
        self.sock.listen(4)
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(10)
                while data := conn.recv(65536):
                    conn.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def door_daemon(folder: Path, doors: str, common: str = "") -> Iterator[Tumblerd]:
    """A `daemon` fixture's body: tumblerd with `doors` (started by the test), stopped after."""
    made = Tumblerd(folder, doors, common)
    yield made
    made.stop()


def gated_echo(daemon: Tumblerd) -> Iterator[GatedEcho]:
    """An `echo` fixture's body: the echo server behind the daemon's door command."""
    server = GatedEcho(daemon.out)
    yield server
    server.close()


def client_env(folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUMBLER_")}
    env["XDG_CONFIG_HOME"] = str(folder / "xdg")  # never the real user's profiles
    env.update(extra)
    return env


def write_profile(folder: Path, url: str, secret: str, extra: str = "") -> Path:
    """hosts.conf with one profile, [host-lo]: `url`, its secret (or key) in a file."""
    secret_file = folder / "door.secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    path = folder / "hosts.conf"
    path.write_text(f"[host-lo]\n   url = {url}\n   secret_file = {secret_file}\n{extra}")
    path.chmod(0o600)
    return path


def accepted(daemon: Tumblerd) -> list[str]:
    return [line for line in daemon.log_text().splitlines() if "knock accepted" in line]


def proxy_with_first_knock_lost(
    argv: list[str], env: dict[str, str], first: str, daemon: Tumblerd
) -> tuple[int, bytes, list[str]]:
    """Run `argv` (ssh-proxy -v), start the daemon only once stderr says `first` (the first
    knock, lost), then relay PAYLOAD; the exit status, stdout and the narrative."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert proc.stderr is not None
        narrative: list[str] = []
        while not any(first in line for line in narrative):
            line = proc.stderr.readline().decode()
            assert line, f"ssh-proxy ended early: {narrative}"
            narrative.append(line)
        daemon.start()
        out, err = proc.communicate(PAYLOAD, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    narrative += err.decode().splitlines(keepends=True)
    return proc.returncode, out, narrative
