"""`tumbler ssh-proxy` end to end: a default-closed server namespace, a real tumblerd
with a firewall door, a real TCP service (an echo server, and a real sshd when the
machine has one), and a client namespace that connects only through the proxy.

Topology (tests/netns/netns.py): server 10.213.0.1 / fd00:213::1, client A .2, B .3.
The server's input policy is tumbler's own nftables chain (`tumblerd firewall init`):
everything but the knock port is dropped until a knock opens it for one address.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netns.netns import Namespace, Topology, start_tumblerd

pytestmark = pytest.mark.netns

SECRET = "netns-ssh-proxy-secret"
ECHO_PORT = 7000
SSH_PORT = 22
TUMBLER = [sys.executable, "-m", "tumbler"]
TUMBLERD = [sys.executable, "-m", "tumbler.cli.tumblerd"]
SSHD = "/usr/sbin/sshd"
PAYLOAD = bytes(range(256)) * 256 + b"\x00end"

# An echo server on [::] (both families), one thread per connection.
_ECHO = """
import socket, sys, threading
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
def serve(c):
    with c:
        while data := c.recv(65536):
            c.sendall(data)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# Prints how a TCP connection attempt ends: ok, refused or timeout (a dropped SYN).
_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("ok")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
"""


def _probe(ns: Namespace, host: str, port: int, timeout: float = 1.0) -> str:
    return ns.run([sys.executable, "-c", _PROBE, host, str(port), str(timeout)]).stdout.strip()


def _wait_for(check: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _clean_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUMBLER_")}
    env["XDG_CONFIG_HOME"] = str(folder / "xdg")
    return env


@dataclass
class DoorServer:
    """The server side: policy applied, tumblerd serving; the client's profile file."""

    topo: Topology
    folder: Path
    log: Path
    profiles: Path

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def door_server(topology: Topology, tmp_path: Path) -> Iterator[DoorServer]:
    secret = tmp_path / "door.secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    log = tmp_path / "tumblerd.log"
    config = tmp_path / "tumblerd.conf"
    config.write_text(
        "[common]\n"
        f"   listen = {topology.server4}, {topology.server6}\n"
        f"   log = {log}\n"
        f"   state = {tmp_path / 'state.db'}\n"
        f"   control = {tmp_path / 'control.sock'}\n"
        "   firewall = nftables\n"
        "[door-ssh]\n"
        f"   secret_file = {secret}\n"
        f"   open = tcp/{SSH_PORT}, tcp/{ECHO_PORT}\n"
        "   timeout = 60s\n"
    )
    config.chmod(0o600)
    server = topology.server
    server.run([*TUMBLERD, "firewall", "--config", str(config), "init"])
    start_tumblerd(server, config, log)
    profiles = tmp_path / "hosts.conf"
    profiles.write_text(
        "[host-srv]\n"
        f"   url = tumbler://{topology.server4}/\n"
        f"   secret_file = {secret}\n"
        "   retry_after = 2\n"
        "[host-srv6]\n"
        f"   url = tumbler://[{topology.server6}]/\n"
        f"   secret_file = {secret}\n"
        "   retry_after = 2\n"
    )
    profiles.chmod(0o600)
    yield DoorServer(topology, tmp_path, log, profiles)
    # The lab kills tumblerd and deletes the namespaces, rules and all.


@pytest.mark.parametrize("family", [4, 6])
def test_ssh_proxy_opens_the_door_and_relays(door_server: DoorServer, family: int) -> None:
    topo = door_server.topo
    server = topo.server4 if family == 4 else topo.server6
    client = topo.a4 if family == 4 else topo.a6
    ready = topo.server.popen(
        [sys.executable, "-c", _ECHO, str(ECHO_PORT)], stdout=subprocess.PIPE
    ).stdout
    assert ready is not None and ready.readline().strip() == b"ready"
    assert _probe(topo.a, server, ECHO_PORT) == "timeout"  # default closed: SYNs dropped

    argv = topo.a.argv(
        [*TUMBLER, "ssh-proxy", server, str(ECHO_PORT), "--profiles", str(door_server.profiles)]
    )
    proc = subprocess.run(
        argv, input=PAYLOAD, capture_output=True, timeout=60, env=_clean_env(door_server.folder)
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == PAYLOAD
    assert proc.stderr == b""
    log = door_server.log_text()
    assert f"knock accepted: door ssh from {client}" in log
    assert f"for {client} until" in log
    # Opened for A only: B's SYNs are still dropped.
    assert _probe(topo.b, server, ECHO_PORT) == "timeout"


@pytest.fixture
def sshd(door_server: DoorServer) -> Iterator[Path]:
    """A real sshd in the server namespace, root logs in with a key made for the test."""
    if not (os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen")):
        reason = "needs openssh-server and openssh-client (sshd, ssh, ssh-keygen)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the sshd test, but it {reason}", pytrace=False)
        pytest.skip(reason)
    folder = door_server.folder
    for name in ("host_key", "id_client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)],
            check=True,
            capture_output=True,
        )
    authorized = folder / "authorized_keys"
    authorized.write_text((folder / "id_client.pub").read_text())
    config = folder / "sshd_config"
    config.write_text(
        f"ListenAddress {door_server.topo.server4}:{SSH_PORT}\n"
        f"HostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {authorized}\n"
        "PidFile none\n"
        "StrictModes no\n"
        "UsePAM no\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
    )
    # sshd insists on its privilege-separation directory; make it only if missing.
    privsep = Path("/run/sshd")
    made_privsep = not privsep.exists()
    if made_privsep:
        privsep.mkdir(mode=0o755)
    errors = folder / "sshd.stderr"
    try:
        with open(errors, "wb") as stderr:
            door_server.topo.server.popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=stderr
            )
        _wait_for(lambda: "Server listening" in errors.read_text(), "sshd to listen")
        yield folder / "id_client"
    finally:
        if made_privsep:
            shutil.rmtree(privsep, ignore_errors=True)


def test_real_ssh_through_the_proxy(door_server: DoorServer, sshd: Path) -> None:
    topo = door_server.topo
    assert _probe(topo.a, topo.server4, SSH_PORT) == "timeout"  # sshd is behind the door
    proxy = shlex.join([*TUMBLER, "ssh-proxy", "%h", "%p", "--profiles", str(door_server.profiles)])
    ssh = [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        f"ProxyCommand={proxy}",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
        "-i",
        str(sshd),
        f"root@{topo.server4}",
        "echo hello",
    ]
    proc = subprocess.run(
        topo.a.argv(ssh),
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(door_server.folder),
        stdin=subprocess.DEVNULL,
    )
    sshd_log = (door_server.folder / "sshd.stderr").read_text()
    assert proc.returncode == 0, f"ssh: {proc.stderr}\nsshd: {sshd_log}"
    assert proc.stdout == "hello\n"
    assert f"knock accepted: door ssh from {topo.a4}" in door_server.log_text()
    assert f"Accepted publickey for root from {topo.a4}" in sshd_log
