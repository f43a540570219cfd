"""`tumbler ssh-proxy` and `tumbler open` with a v2 door, against a real tumblerd on loopback.

The echo server behind the door listens only once the door's command has run (see
test_ssh_proxy.py), so a connection proves the daemon accepted a v2 knock.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Tumblerd
from tests.integration.proxylab import (
    PAYLOAD,
    TUMBLER,
    GatedEcho,
    accepted,
    client_env,
    door_daemon,
    gated_echo,
    proxy_with_first_knock_lost,
    write_profile,
)
from tumbler.protocols import tumbler2

KEY_TEXT = tumbler2.encode_key(bytes(range(7, 39)))
REALM = "proxy.example"
DOORS = f"""\
[door-ssh2]
   key = {KEY_TEXT}
   command = echo "%NAME% %IP%" >> OUT
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Tumblerd]:
    yield from door_daemon(tmp_path, DOORS, f"   realm = {REALM}\n")


@pytest.fixture
def echo(daemon: Tumblerd) -> Iterator[GatedEcho]:
    yield from gated_echo(daemon)


def _profile(tmp_path: Path, daemon: Tumblerd, extra: str = "") -> Path:
    url = f"tumbler2://127.0.0.1:{daemon.port}/?realm={REALM}"
    return write_profile(tmp_path, url, KEY_TEXT, extra)


def test_ssh_proxy_with_a_v2_profile(tmp_path: Path, daemon: Tumblerd, echo: GatedEcho):
    daemon.start()
    profiles = _profile(tmp_path, daemon)
    argv = [*TUMBLER, "ssh-proxy", "127.0.0.1", str(echo.port), "--profiles", str(profiles)]
    proc = subprocess.run(
        argv, input=PAYLOAD, capture_output=True, timeout=30, env=client_env(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == PAYLOAD
    assert proc.stderr == b""
    (line,) = accepted(daemon)
    assert "door ssh2 from 127.0.0.1 (v2)" in line


def test_lost_first_v2_knock_is_simply_sent_again(
    tmp_path: Path, daemon: Tumblerd, echo: GatedEcho
):
    """The daemon starts after the first knock: the retry is a fresh knock, at any second."""
    profiles = _profile(tmp_path, daemon, "   retry_after = 1\n   wait_timeout = 20\n")
    argv = [*TUMBLER, "ssh-proxy", "-v", "127.0.0.1", str(echo.port), "--profiles", str(profiles)]
    status, out, narrative = proxy_with_first_knock_lost(
        argv, client_env(tmp_path), "knock 1 sent (fresh nonce)", daemon
    )
    assert status == 0, "".join(narrative)
    assert out == PAYLOAD
    assert any("knock 2 sent (fresh nonce)" in line for line in narrative), narrative
    assert not any("minute" in line for line in narrative), narrative
    assert len(accepted(daemon)) >= 1


def test_open_with_a_v2_profile(tmp_path: Path, daemon: Tumblerd, echo: GatedEcho):
    daemon.start()
    profiles = _profile(tmp_path, daemon, f"   wait = {echo.port}\n")
    argv = [*TUMBLER, "open", "lo", "--profiles", str(profiles)]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env=client_env(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    assert f"lo: tcp/{echo.port} on 127.0.0.1 answers after" in proc.stdout
    assert daemon.lines() == ["ssh2 127.0.0.1"]
