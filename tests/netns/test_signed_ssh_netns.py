"""Signed knocks end to end: one SSH key, held by a real ssh-agent behind a passphrase,
knocks on a real tumblerd (nftables, default closed) and logs in to a real sshd.

Topology (tests/netns/netns.py): server 10.213.0.1, client A .2, client B .3. The door's
`authorized_keys` file lists the user's key; removing the line and sending SIGHUP stops
the key from knocking, while sshd (with its own copy) would still take it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netns.netns import Topology, start_tumblerd, wait_until
from tests.sshkeys import SshAgent, make_key
from tumbler.daemon.control import request
from tumbler.protocols.sshkeys import parse_public_key_line

pytestmark = pytest.mark.netns

TUMBLER = [sys.executable, "-m", "tumbler"]
TUMBLERD = [sys.executable, "-m", "tumbler.cli.tumblerd"]
SSHD = "/usr/sbin/sshd"
SSH_PORT = 22
PASSPHRASE = "netns passphrase"
REALM = "netns-lab"

_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0).close()
    print("ok")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
"""


@dataclass
class Setup:
    topo: Topology
    folder: Path
    log: Path
    keys: Path  # the door's authorized_keys
    user_key: Path
    agent: SshAgent
    tumblerd: subprocess.Popen[bytes]
    sshd_log: Path

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def counters(self) -> dict[str, int]:
        answer = request(str(self.folder / "control.sock"), {"command": "status"})
        return answer["counters"]

    def probe(self, who: str) -> str:
        ns = self.topo.a if who == "a" else self.topo.b
        argv = [sys.executable, "-c", _PROBE, self.topo.server4, str(SSH_PORT)]
        return ns.run(argv).stdout.strip()

    def ssh(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """`ssh root@server echo hello` from client A, knocking through `tumbler ssh-proxy`."""
        profiles = self.folder / "hosts.conf"
        proxy = shlex.join([*TUMBLER, "ssh-proxy", "%h", "%p", "--profiles", str(profiles), *extra])
        argv = [
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
            "LogLevel=ERROR",
            f"root@{self.topo.server4}",
            "echo hello",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUMBLER_")}
        env |= {
            "SSH_AUTH_SOCK": str(self.agent.socket),
            "XDG_CONFIG_HOME": str(self.folder / "xdg"),
            "HOME": str(self.folder / "home"),
        }
        return subprocess.run(
            self.topo.a.argv(argv),
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            stdin=subprocess.DEVNULL,
        )


def _need_openssh() -> None:
    if not (os.path.exists(SSHD) and all(shutil.which(p) for p in ("ssh", "ssh-agent"))):
        reason = "needs openssh-server and openssh-client (sshd, ssh, ssh-agent)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the signed-knock sshd test, but it {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def setup(topology: Topology, tmp_path: Path) -> Iterator[Setup]:
    _need_openssh()
    (tmp_path / "home").mkdir()
    user_key = make_key(tmp_path, "alice", "ed25519", passphrase=PASSPHRASE)
    public = user_key.with_name("alice.pub").read_text()
    keys = tmp_path / "ssh-users"
    keys.write_text(f"no-pty {public}")  # an option for sshd only: warned about, ignored
    log = tmp_path / "tumblerd.log"
    config = tmp_path / "tumblerd.conf"
    config.write_text(
        "[common]\n"
        f"   listen = {topology.server4}, {topology.server6}\n"
        f"   log = {log}\n"
        f"   state = {tmp_path / 'state.db'}\n"
        f"   control = {tmp_path / 'control.sock'}\n"
        f"   realm = {REALM}\n"
        "   firewall = nftables\n"
        "[door-ssh]\n"
        f"   authorized_keys = {keys}\n"
        f"   open = tcp/{SSH_PORT}\n"
        "   timeout = 60s\n"
    )
    (tmp_path / "hosts.conf").write_text(
        f"[host-srv]\n   url = tumbler+ssh://root@{topology.server4}/?realm={REALM}\n"
        "   retry_after = 2\n"
    )
    server = topology.server
    server.run([*TUMBLERD, "firewall", "--config", str(config), "init"])
    tumblerd = start_tumblerd(server, config, log)

    # sshd with its own copy of the key: only the door decides who gets through.
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "host_key")],
        check=True,
        capture_output=True,
    )
    sshd_keys = tmp_path / "sshd_authorized_keys"
    sshd_keys.write_text(public)
    sshd_config = tmp_path / "sshd_config"
    sshd_config.write_text(
        f"ListenAddress {topology.server4}:{SSH_PORT}\n"
        f"HostKey {tmp_path / 'host_key'}\n"
        f"AuthorizedKeysFile {sshd_keys}\n"
        "PidFile none\n"
        "StrictModes no\n"
        "UsePAM no\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
    )
    privsep = Path("/run/sshd")
    made_privsep = not privsep.exists()
    if made_privsep:
        privsep.mkdir(mode=0o755)
    sshd_log = tmp_path / "sshd.stderr"
    agent = SshAgent(tmp_path)
    try:
        with open(sshd_log, "wb") as stderr:
            server.popen([SSHD, "-D", "-e", "-f", str(sshd_config)], stdout=None, stderr=stderr)
        wait_until(lambda: "Server listening" in sshd_log.read_text(), "sshd to listen")
        agent.start()
        agent.add(user_key, PASSPHRASE)
        yield Setup(topology, tmp_path, log, keys, user_key, agent, tumblerd, sshd_log)
    finally:
        agent.stop()
        if made_privsep:
            shutil.rmtree(privsep, ignore_errors=True)
    # The lab kills tumblerd and sshd and deletes the namespaces, rules and all.


def test_the_agents_key_knocks_and_logs_in_until_it_is_removed(setup: Setup) -> None:
    key, comment = parse_public_key_line(setup.user_key.with_name("alice.pub").read_text())
    topo = setup.topo
    assert setup.probe("a") == "timeout"  # sshd is behind the door
    assert "option no-pty does not apply" in setup.log_text()

    first = setup.ssh()
    sshd = setup.sshd_log.read_text()
    assert first.returncode == 0, f"ssh: {first.stderr}\nsshd: {sshd}\n{setup.log_text()}"
    assert first.stdout == "hello\n"
    accepted = f"knock accepted: door ssh from {topo.a4} by key {comment} {key.fingerprint}"
    assert accepted in setup.log_text()
    assert f"Accepted publickey for root from {topo.a4}" in sshd
    assert setup.probe("b") == "timeout"  # opened for A's address only

    # Revoke: the line goes, SIGHUP, and what is open is closed early.
    setup.keys.write_text("# alice has left\n")
    reloads = setup.log_text().count("reloaded")
    setup.tumblerd.send_signal(signal.SIGHUP)
    wait_until(lambda: setup.log_text().count("reloaded") > reloads, "the reload")
    assert "signed knocks: 0 keys for door ssh" in setup.log_text()
    subprocess.run(
        setup.topo.server.argv(
            [*TUMBLERD, "close", topo.a4, "--config", str(setup.folder / "tumblerd.conf")]
        ),
        check=True,
        capture_output=True,
    )
    assert setup.probe("a") == "timeout"

    second = setup.ssh("--wait-timeout", "4")
    assert second.returncode != 0
    assert "did not answer" in second.stderr
    assert setup.counters().get("signed-unknown-key", 0) >= 1
    assert setup.log_text().count("knock accepted") == 1
    assert setup.probe("a") == "timeout"
