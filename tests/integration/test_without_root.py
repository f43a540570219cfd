"""What an administrator sees running tumblerd's root-only commands as an ordinary user.

Run as `nobody` through setpriv (so the tests need root to start with): printing the
policy works, and every command that needs root says so in one short line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="dropping to another user needs root and setpriv",
)


SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module", autouse=True)
def _readable_copy() -> Iterator[None]:
    """A copy of the package that user nobody can read, and an interpreter it can run.

    The checkout (and the virtualenv's interpreter) may sit in a folder only root can
    enter, as a fresh clone in a private temporary folder does.
    """
    global READABLE
    folder = Path(tempfile.mkdtemp(prefix="tumbler-nobody-"))
    try:
        folder.chmod(0o755)
        shutil.copytree(
            SRC / "tumbler", folder / "tumbler", ignore=shutil.ignore_patterns("__pycache__")
        )
        for path in folder.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        READABLE = folder
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


READABLE = Path("/nonexistent")
# Debian's interpreter, which any user can run; the virtualenv's may live under /root.
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def as_nobody(*args: str, root_daemon: bool = False) -> subprocess.CompletedProcess[str]:
    """`tumblerd ARGS` as user nobody, with no config of its own (the built-in defaults).

    With `root_daemon`, a private /run (a tmpfs in a mount namespace of its own, so the
    host's /run is untouched) holds root's /run/tumbler, as a running root daemon leaves it.
    """
    drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "PYTHONPATH": str(READABLE),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    argv = [*drop, PYTHON, "-m", "tumbler.cli.tumblerd", *args]
    if root_daemon:
        setup = 'mount -t tmpfs tmpfs /run && mkdir -m 700 /run/tumbler && exec "$@"'
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh", *argv]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd="/",
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("backend", ["auto", "nftables", "iptables-nft", "iptables-legacy"])
def test_init_print_needs_no_root(backend: str) -> None:
    done = as_nobody("firewall", "init", "--print", "--backend", backend)
    assert done.returncode == 0, done.stderr
    assert "policy drop" in done.stdout or "-P INPUT DROP" in done.stdout, done.stdout


@pytest.mark.parametrize("action", ["init", "list", "flush", "remove"])
def test_firewall_change_says_root_in_one_line(action: str) -> None:
    done = as_nobody("firewall", action)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"tumblerd: error: firewall {action} needs root (or CAP_NET_ADMIN)"
    ]


@pytest.mark.parametrize("command", [["status"], ["close", "192.0.2.7"]])
def test_status_says_root_not_is_it_running(command: list[str]) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("a private /run needs unshare")
    done = as_nobody(*command, root_daemon=True)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert f"{command[0]} needs root" in line and "is tumblerd running" not in line, line
