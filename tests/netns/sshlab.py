"""What the ssh-proxy namespace tests share (plain and signed knocks): a door server, a real
sshd behind it, ssh through `tumbler ssh-proxy`, and a probe that tells a dropped SYN from
a refused one.

The door server runs tumblerd with its own nftables policy (`tumblerd firewall init`):
everything but the knock port is dropped until a knock opens it for one address. tumblerd
is started through `tests.netns.netns.start_tumblerd`, which waits for its READY=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.netns.netns import TUMBLERD, Namespace, Topology, start_tumblerd, wait_until

TUMBLER = [sys.executable, "-m", "tumbler"]
SSHD = "/usr/sbin/sshd"
SSH_PORT = 22

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


def probe(ns: Namespace, host: str, port: int, timeout: float = 1.0) -> str:
    return ns.run([sys.executable, "-c", _PROBE, host, str(port), str(timeout)]).stdout.strip()


def need_openssh(*programs: str) -> None:
    """Skip without sshd and `programs` (ssh, ssh-keygen, ssh-agent); in CI, fail instead."""
    if not (os.path.exists(SSHD) and all(shutil.which(p) for p in programs)):
        reason = f"needs openssh-server and openssh-client (sshd, {', '.join(programs)})"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the sshd tests, but this machine {reason}", pytrace=False)
        pytest.skip(reason)


def serve_door(
    topology: Topology, folder: Path, door: str, common: str = ""
) -> tuple[Path, subprocess.Popen[bytes]]:
    """tumblerd in the server namespace, on both families, with one `door` section (and
    `common` lines added to [common]); its policy applied first. Its log file and process."""
    log = folder / "tumblerd.log"
    config = folder / "tumblerd.conf"
    config.write_text(
        "[common]\n"
        f"   listen = {topology.server4}, {topology.server6}\n"
        f"   log = {log}\n"
        f"   state = {folder / 'state.db'}\n"
        f"   control = {folder / 'control.sock'}\n"
        "   firewall = nftables\n"
        f"{common}"
        f"{door}"
    )
    config.chmod(0o600)
    topology.server.run([*TUMBLERD, "firewall", "--config", str(config), "init"])
    return log, start_tumblerd(topology.server, config, log)


@contextmanager
def sshd(ns: Namespace, folder: Path, listen: str, authorized_keys: str) -> Iterator[Path]:
    """A real sshd in `ns` on `listen`:22 taking `authorized_keys` for root; yields its log.

    sshd insists on its privilege-separation directory; it is made only if missing, and
    then removed. The lab kills sshd with the namespaces.
    """
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key")],
        check=True,
        capture_output=True,
    )
    keys = folder / "sshd_authorized_keys"
    keys.write_text(authorized_keys)
    config = folder / "sshd_config"
    config.write_text(
        f"ListenAddress {listen}:{SSH_PORT}\n"
        f"HostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {keys}\n"
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
    log = folder / "sshd.stderr"
    try:
        with open(log, "wb") as stderr:
            ns.popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=stderr
            )
        wait_until(lambda: "Server listening" in log.read_text(), "sshd to listen")
        yield log
    finally:
        if made_privsep:
            shutil.rmtree(privsep, ignore_errors=True)


def ssh_argv(proxy: str, target: str, *options: str) -> list[str]:
    """`ssh TARGET echo hello` with `proxy` as its ProxyCommand, no user config, no prompts."""
    argv = ["ssh", "-F", "/dev/null", "-o", f"ProxyCommand={proxy}"]
    for option in ("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes"):
        argv += ["-o", option]
    return [*argv, *options, "-o", "LogLevel=ERROR", target, "echo hello"]
