"""Debian's unchanged `fwknop` client opens a tumblerd nftables door, over IPv4 and IPv6.

Server 10.213.0.1 / fd00:213::1 runs the real tumblerd behind its default-closed policy
(`tumblerd firewall init`, which keeps udp/8675 and fwknop's udp/62201 reachable), with
one door of kind fwknop opening tcp/PORT, and TCP listeners on PORT and OTHER. Client A
(.2 / ::2) runs the real fwknop client with HOME in the test's folder. Client B (.3 / ::3)
is the bystander that must stay shut out.

The fwknop client sends over IPv4 only; for IPv6 it builds the packet (`-s`, so the
server takes the packet's source address) without sending it (`-T -B FILE`), and the
test sends those bytes from A over IPv6.

Refusals are observed by events, never by waiting: tumblerd reads its socket in order,
so once a later good packet has opened the door for B, an earlier one from A was decided.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.netns.netns import BANNER, Namespace, Topology, reach, start_tumblerd, wait_until
from tumbler.protocols import fwknop as spa

PORT = 2222
OTHER = 2223
KEY = base64.b64encode(secrets.token_bytes(32)).decode()
HMAC_KEY = base64.b64encode(secrets.token_bytes(64)).decode()
TUMBLERD = [sys.executable, "-m", "tumbler.cli.tumblerd"]
_SEND = (
    "import socket, sys\n"
    "host, port = sys.argv[1], int(sys.argv[2])\n"
    "family = socket.AF_INET6 if ':' in host else socket.AF_INET\n"
    "socket.socket(family, socket.SOCK_DGRAM).sendto(sys.stdin.buffer.read(), (host, port))\n"
)


class Server:
    """tumblerd with one fwknop door in the server namespace, driven as an admin would."""

    proc: subprocess.Popen[Any] | None = None

    def __init__(self, topo: Topology, folder: Path) -> None:
        self.topo, self.folder = topo, folder
        self.log = folder / "tumblerd.log"
        self.config = folder / "tumblerd.conf"
        self.config.write_text(
            "[common]\n"
            f"   listen = {topo.server4}, {topo.server6}\n"
            f"   log = {self.log}\n"
            f"   state = {folder / 'state.db'}\n"
            f"   control = {folder / 'control.sock'}\n"
            "   firewall = nftables\n"
            "[door-ssh]\n"
            "   kind = fwknop\n"
            f"   fwknop_key_base64 = {KEY}\n"
            f"   fwknop_hmac_key_base64 = {HMAC_KEY}\n"
            f"   open = tcp/{PORT}\n"
            "   timeout = 60\n"
        )
        self.config.chmod(0o600)
        out = self.cli("firewall", "init")
        assert "udp/8675, udp/62201 stays reachable" in out, out
        topo.server.listen(PORT)
        topo.server.listen(OTHER)
        self.start()

    def start(self) -> None:
        """Start tumblerd; return once it said READY=1, taking SPA packets on 62201."""
        before = self.log_text().count("SPA packets taken on udp port 62201")
        self.proc = start_tumblerd(self.topo.server, self.config, self.log)
        assert self.log_text().count("SPA packets taken on udp port 62201") > before

    def restart(self) -> None:
        """SIGTERM, as systemd stops it, then start again."""
        assert self.proc is not None
        self.proc.terminate()
        assert self.proc.wait(15) == 0
        self.proc = None
        self.start()

    def cli(self, *args: str) -> str:
        return self.topo.server.run([*TUMBLERD, *args, "--config", str(self.config)]).stdout

    def log_text(self) -> str:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"tumblerd exited: {(self.folder / 'tumblerd.stderr').read_text()}"
            )
        return self.log.read_text() if self.log.exists() else ""

    def counters(self) -> dict[str, int]:
        counters: dict[str, int] = json.loads(self.cli("status", "--json"))["counters"]
        return counters

    def wait_opened(self, address: str) -> None:
        wait_until(
            lambda: f"opened tcp/{PORT} for {address} until" in self.log_text(),
            f"the door to open for {address}",
        )


def fwknop(ns: Namespace, home: Path, *args: str, hmac_key: str = HMAC_KEY) -> Path:
    """Run the real client in `ns` (HOME in the test folder); the packet it built, saved."""
    client = shutil.which("fwknop")
    if client is None:
        pytest.fail("the fwknop client is not installed: ./dev installs fwknop-client")
    home.mkdir(exist_ok=True)
    saved = home / f"packet-{len(list(home.glob('packet-*')))}"
    argv = [
        *(client, "--no-rc-file", "--use-hmac", "--key-base64-rijndael", KEY),
        *("--key-base64-hmac", hmac_key, "-B", str(saved), *args),
    ]
    ns.run(["env", f"HOME={home}", *argv])
    return saved


def send(ns: Namespace, host: str, data: bytes, port: int = spa.DEFAULT_PORT) -> None:
    ns.run([sys.executable, "-c", _SEND, host, str(port)], input=data.decode("ascii"))


def spa_plaintext(message: spa.SpaMessage) -> str:
    """The plaintext a message was decrypted from (its digest recomputed)."""
    return f"{message.encoded}:{spa._digest(message.digest_type, message.encoded)}"


@pytest.fixture
def server(topology: Topology, tmp_path: Path) -> Server:
    return Server(topology, tmp_path)


def test_fwknop_client_opens_the_door_over_ipv4(
    topology: Topology, server: Server, tmp_path: Path
) -> None:
    fwknop(
        topology.a,
        tmp_path / "home",
        "-A",
        f"tcp/{PORT}",
        "-a",
        topology.a4,
        "-D",
        topology.server4,
    )
    server.wait_opened(topology.a4)
    assert reach(topology, PORT) == {"a4": True, "b4": False, "a6": False, "b6": False}
    assert reach(topology, OTHER, "a4") == {"a4": False}
    assert server.counters()["accepted"] == 1


def test_fwknop_packet_opens_the_door_over_ipv6(
    topology: Topology, server: Server, tmp_path: Path
) -> None:
    saved = fwknop(
        topology.a, tmp_path / "home", "-A", f"tcp/{PORT}", "-s", "-D", topology.server4, "-T"
    )
    send(topology.a, topology.server6, saved.read_bytes().strip())
    server.wait_opened(topology.a6)
    assert reach(topology, PORT) == {"a4": False, "b4": False, "a6": True, "b6": False}


def test_wrong_hmac_old_and_port_not_allowed_refused(
    topology: Topology, server: Server, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    to_server = ("-D", topology.server4, "-a", topology.a4)
    wrong = base64.b64encode(secrets.token_bytes(64)).decode()
    fwknop(topology.a, home, "-A", f"tcp/{PORT}", *to_server, hmac_key=wrong)
    fwknop(topology.a, home, "-A", f"tcp/{PORT}", *to_server, "--time-offset-minus", "300s")
    fwknop(topology.a, home, "-A", f"tcp/{OTHER}", *to_server)
    fwknop(topology.a, home, "-A", f"tcp/{PORT},tcp/{OTHER}", *to_server)
    # Last, a good one from B: once it has opened, the four from A were decided.
    fwknop(topology.b, home, "-A", f"tcp/{PORT}", "-D", topology.server4, "-a", topology.b4)
    server.wait_opened(topology.b4)
    assert reach(topology, PORT, "a4", "b4") == {"a4": False, "b4": True}
    assert reach(topology, OTHER, "a4", "b4") == {"a4": False, "b4": False}
    counters = server.counters()
    assert counters["no-door"] == 1  # the wrong HMAC: no door's keys open it
    assert counters["fwknop-age"] == 1
    assert counters["fwknop-port"] == 2
    assert counters["accepted"] == 1
    assert f"refused: port: tcp/{OTHER} is not among the door's ports" in server.log_text()


def test_replays_refused_by_content(topology: Topology, server: Server, tmp_path: Path) -> None:
    saved = fwknop(
        topology.a,
        tmp_path / "home",
        "-A",
        f"tcp/{PORT}",
        "-a",
        topology.a4,
        "-D",
        topology.server4,
        "-T",
    )
    data = saved.read_bytes().strip()
    send(topology.a, topology.server4, data)
    server.wait_opened(topology.a4)
    send(topology.b, topology.server4, data)  # the same bytes, replayed
    # The same plaintext under a new salt: different bytes, the same request.
    keys = spa.SpaKeys.from_text(key_base64=KEY, hmac_key_base64=HMAC_KEY)
    message = spa.open_packet(data, keys)
    again = spa.wrap(spa_plaintext(message), keys)
    assert again != data
    send(topology.b, topology.server4, again, port=8675)  # and on tumblerd's own port
    wait_until(lambda: server.counters().get("replay", 0) == 2, "two replays counted")
    assert server.counters()["accepted"] == 1
    # The claims are on disk: after a restart the same request is still a replay.
    server.restart()
    send(topology.b, topology.server4, spa.wrap(spa_plaintext(message), keys))
    wait_until(lambda: server.counters().get("replay", 0) == 1, "a replay after the restart")
    assert server.counters().get("accepted", 0) == 0


def _rc(folder: Path, server: str) -> Path:
    """An .fwknoprc with the door's keys, as a user of the fwknop client keeps it."""
    rc = folder / "fwknoprc"
    rc.write_text(
        "[default]\nUSE_HMAC Y\n\n[srv]\n"
        f"SPA_SERVER {server}\nACCESS tcp/{PORT}\n"
        f"KEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {HMAC_KEY}\n"
    )
    rc.chmod(0o600)
    return rc


@pytest.mark.parametrize("family", ["4", "6"])
def test_tumbler_open_profile_of_fwknop_kind(
    topology: Topology, server: Server, tmp_path: Path, family: str
) -> None:
    host = topology.server4 if family == "4" else f"[{topology.server6}]"
    rc = _rc(tmp_path, topology.server4)
    hosts = tmp_path / "hosts.conf"
    hosts.write_text(
        f"[host-srv]\n   url = fwknop://srv@{host}/\n   fwknoprc = {rc}\n   wait = {PORT}\n"
    )
    hosts.chmod(0o600)
    out = topology.a.run([sys.executable, "-m", "tumbler", "open", "srv", "--profiles", str(hosts)])
    assert f"srv: tcp/{PORT} on" in out.stdout and "answers after" in out.stdout
    me = topology.a4 if family == "4" else topology.a6
    server.wait_opened(me)
    assert reach(topology, PORT, f"a{family}", f"b{family}") == {
        f"a{family}": True,
        f"b{family}": False,
    }


def test_ssh_proxy_through_a_tumblerd_fwknop_door(
    topology: Topology, server: Server, tmp_path: Path
) -> None:
    rc = _rc(tmp_path, topology.server4)
    argv = [
        *(sys.executable, "-m", "tumbler", "ssh-proxy", topology.server4, str(PORT)),
        *("--url", f"fwknop://srv@{topology.server4}/"),
    ]
    done = topology.a.run(["env", f"FWKNOPRC={rc}", *argv], input="")
    assert done.stdout.encode() == BANNER  # the listener's greeting, relayed
    server.wait_opened(topology.a4)
