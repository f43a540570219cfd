"""`tumblerd demo`: show a knock opening a port, end to end, on the embedded defaults.

As root it builds a small lab of network namespaces (a server with a default-closed
firewall and a real TCP service, a client A who knows the secret, a bystander B), runs
the real `tumblerd` and `tumbler` programs in them, and checks at every step that what
should connect connects and what should not does not. Without root it shows the same
protocol on loopback with a door whose command records the knock. Either way it cleans up
everything it made and exits 0 only if every step behaved.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from tumbler.lab.netns import Lab, Namespace, Topology, can_connect, unavailable_reason
from tumbler.lab.ready import NotReady, start_ready
from tumbler.protocols import tumbler2
from tumbler.protocols.tumbler1 import DEFAULT_PORT, make_knock

PYTHON = sys.executable
SERVICE_PORT = 22
ADMIN_PORT = 8443  # the v2 door's port


class Demo:
    """Narrates each step and remembers whether every expectation held."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failures = 0

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def expect(self, what: str, ok: bool) -> None:
        self.say(f"  [{'ok' if ok else 'FAILED'}] {what}")
        self.failures += 0 if ok else 1


def _wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def _config(folder: Path, secret: str, door: str, more: str = "") -> Path:
    path = folder / "tumblerd.conf"
    path.write_text(
        "# The demo's config: everything not named here is tumblerd's default.\n"
        "[common]\n"
        f"   log = {folder / 'tumblerd.log'}\n"
        f"   state = {folder / 'state.db'}\n"
        f"   control = {folder / 'control.sock'}\n"
        f"{door}"
        f"   secret = {secret}\n"
        f"{more}"
    )
    path.chmod(0o600)
    return path


def _start_tumblerd(
    popen: Callable[..., subprocess.Popen[Any]], argv: list[str]
) -> tuple[subprocess.Popen[Any], bool]:
    """tumblerd started, and whether it said READY=1 (sockets bound, doors restored)."""
    try:
        return start_ready(popen, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), True
    except NotReady as exc:
        assert exc.proc is not None
        return exc.proc, False


def run_lab(demo: Demo, folder: Path) -> None:
    """The real thing: namespaces, a default-closed server, a knock, a connection."""
    secret = secrets.token_urlsafe(12)
    key = tumbler2.encode_key(secrets.token_bytes(tumbler2.KEY_LEN))
    admin = f"[door-admin]\n   protocol = 2\n   key = {key}\n   open = tcp/{ADMIN_PORT}\n"
    config = _config(
        folder, secret, f"[door-ssh]\n   open = tcp/{SERVICE_PORT}\n   timeout = 30\n", admin
    )
    client_env = _client_env(folder)
    tumblerd = [PYTHON, "-m", "tumbler.cli.tumblerd", "--config", str(config)]
    lab = Lab("tmbdemo")
    try:
        topo: Topology = lab.topology()
        server: Namespace = topo.server
        demo.say(f"lab: server {topo.server4}, client A {topo.a4}, bystander B {topo.b4}")
        demo.say("\n1. The server closes everything: tumblerd firewall init")
        policy = server.run([*tumblerd, "firewall", "init"], check=False)
        demo.say("\n".join("     " + line for line in policy.stdout.splitlines()[:12]))
        demo.expect("default-closed policy applied", policy.returncode == 0)
        server.listen(SERVICE_PORT)
        server.listen(ADMIN_PORT)
        demo.say(f"\n2. A TCP service listens on port {SERVICE_PORT}; nobody can reach it")
        demo.expect("A cannot connect", not can_connect(topo.a, topo.server4, SERVICE_PORT, 0.5))
        demo.expect("B cannot connect", not can_connect(topo.b, topo.server4, SERVICE_PORT, 0.5))
        demo.say("\n3. tumblerd starts on the server (udp port 8675)")
        daemon, ready = _start_tumblerd(server.popen, tumblerd)
        demo.expect("tumblerd ready", ready)
        url = f"tumbler://{topo.server4}:{DEFAULT_PORT}/"
        demo.say(f"\n4. A knocks: tumbler --open {url} (secret from TUMBLER_SECRET)")
        secret_env = dict(client_env, TUMBLER_SECRET=secret)
        _knock_and_connect(demo, topo, url, secret_env, SERVICE_PORT, "A connects now")
        demo.say("\n5. B replays A's knock: the digest is bound to A's address and used once")
        data = make_knock(secret, topo.a4, datetime.now(UTC))
        replay = [PYTHON, "-c", _SEND, topo.server4, str(DEFAULT_PORT), data.hex()]
        topo.b.run(replay)
        time.sleep(0.3)
        demo.expect("B still cannot", not can_connect(topo.b, topo.server4, SERVICE_PORT, 0.5))
        demo.say("\n6. What is open: tumblerd firewall list")
        listing = server.run([*tumblerd, "firewall", "list"], check=False)
        demo.say("\n".join("     " + line for line in listing.stdout.splitlines()))
        demo.expect("A's opening is listed", topo.a4 in listing.stdout)
        _knock_v2(demo, topo, key, client_env)
        daemon.terminate()
        daemon.wait(10)
        demo.say("\n8. The daemon's log")
        log = (folder / "tumblerd.log").read_text().splitlines()
        demo.say("\n".join("     " + line.split(": ", 1)[-1] for line in log))
    finally:
        lab.cleanup()
        demo.say("\nlab removed: namespaces, processes and their firewall rules are gone")


def _client_env(folder: Path) -> dict[str, str]:
    """The client's environment: its memory of sent knocks stays in the demo's folder."""
    return dict(os.environ, XDG_STATE_HOME=str(folder / "client-state"))


def _knock_v2(demo: Demo, topo: Topology, key: str, env: dict[str, str]) -> None:
    """Step 7: a door of protocol v2, whose knock names its key and carries a fresh nonce."""
    url = f"tumbler2://{topo.server4}:{DEFAULT_PORT}/"
    demo.say(
        f"\n7. A door speaks v2 (port {ADMIN_PORT}): tumbler --open {url} (key from TUMBLER_SECRET)"
    )
    demo.expect("A cannot connect before", not can_connect(topo.a, topo.server4, ADMIN_PORT, 0.5))
    key_env = dict(env, TUMBLER_SECRET=key)
    _knock_and_connect(demo, topo, url, key_env, ADMIN_PORT, "A connects to the v2 door's port")


def _knock_and_connect(
    demo: Demo, topo: Topology, url: str, env: dict[str, str], port: int, connects: str
) -> None:
    """A runs the real client on `url`; then A, and A alone, reaches `port`."""
    knock = subprocess.run(
        topo.a.argv([PYTHON, "-m", "tumbler", "-v", "--open", url]),
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    demo.say("\n".join("     " + line for line in knock.stderr.splitlines()))
    demo.expect("knock sent", knock.returncode == 0)
    # Each try waits 2 s for the banner: a busy machine may be slow to let the server run.
    opened = _wait_for(lambda: can_connect(topo.a, topo.server4, port, 2.0), 20)
    demo.expect(connects, opened)
    demo.expect("B still cannot", not can_connect(topo.b, topo.server4, port, 0.5))


# Sends one datagram given in hex; used to replay a knock from another host.
_SEND = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.sendto(bytes.fromhex(sys.argv[3]), (sys.argv[1], int(sys.argv[2])))\n"
)


def run_loopback(demo: Demo, folder: Path) -> None:
    """Without root: the protocol on loopback, a door whose command records the knock."""
    secret = secrets.token_urlsafe(12)
    record = folder / "knocks"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    door = f'[door-hello]\n   command = echo "door %NAME% opened for %IP%" >> {record}\n'
    config = _config(folder, secret, door)
    text = config.read_text().replace(
        "[common]\n", f"[common]\n   port = {port}\n   listen = 127.0.0.1\n"
    )
    config.write_text(text)
    demo.say(f"1. tumblerd listens on 127.0.0.1:{port} with one door")
    daemon, ready = _start_tumblerd(
        subprocess.Popen, [PYTHON, "-m", "tumbler.cli.tumblerd", "--config", str(config)]
    )
    try:
        demo.expect("tumblerd ready", ready)
        url = f"tumbler://127.0.0.1:{port}/"
        demo.say(f"\n2. tumbler --open {url}")
        knock = subprocess.run(
            [PYTHON, "-m", "tumbler", "-v", "--open", url],
            env=dict(_client_env(folder), TUMBLER_SECRET=secret),
            capture_output=True,
            text=True,
            timeout=30,
        )
        demo.say("\n".join("     " + line for line in knock.stderr.splitlines()))
        demo.expect("the door's command ran", _wait_for(record.exists, 20))
        demo.say("     " + (record.read_text().strip() if record.exists() else ""))
        demo.say("\n3. The same knock again, and one with a wrong secret")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(make_knock(secret, "127.0.0.1", datetime.now(UTC)), ("127.0.0.1", port))
            sock.sendto(make_knock("wrong", "127.0.0.1", datetime.now(UTC)), ("127.0.0.1", port))
        time.sleep(0.5)
        lines = record.read_text().splitlines() if record.exists() else []
        demo.expect("nothing more opened", len(lines) <= 1)
    finally:
        daemon.terminate()
        daemon.wait(10)
    demo.say("\n4. The daemon's log")
    log = (folder / "tumblerd.log").read_text().splitlines()
    demo.say("\n".join("     " + line.split(": ", 1)[-1] for line in log))


def main(out: TextIO = sys.stdout) -> int:
    """Run the demo that fits this machine; 0 if every step behaved."""
    demo = Demo(out)
    reason = unavailable_reason()
    if reason is None and shutil.which("nft") is None and shutil.which("iptables") is None:
        reason = "neither nft nor iptables is installed"
    with tempfile.TemporaryDirectory(prefix="tumbler-demo-") as tmp:
        folder = Path(tmp)
        if reason is None:
            demo.say("tumbler demo: a knock opens a port in a lab of network namespaces\n")
            run_lab(demo, folder)
        else:
            demo.say(f"tumbler demo on loopback ({reason}; run as root for the firewall demo)\n")
            run_loopback(demo, folder)
    verdict = "every step behaved" if not demo.failures else f"{demo.failures} step(s) FAILED"
    demo.say(f"\ndemo finished: {verdict}")
    return 0 if not demo.failures else 1
