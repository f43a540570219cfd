"""`tumbler ssh-proxy` and `tumbler open` against a real tumblerd on loopback (v1 door).

The door, the echo server behind it and the client's files are tests/integration/
proxylab.py's, shared with the v2 tests.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
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
from tests.waiting import wait_until

SECRET = "ssh-pRoXy-secret"
DOORS = f"""\
[door-ssh]
   secret = {SECRET}
   command = echo "%NAME% %IP%" >> OUT
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Tumblerd]:
    yield from door_daemon(tmp_path, DOORS)


@pytest.fixture
def echo(daemon: Tumblerd) -> Iterator[GatedEcho]:
    yield from gated_echo(daemon)


def _profile(tmp_path: Path, daemon: Tumblerd, extra: str = "") -> Path:
    return write_profile(tmp_path, f"tumbler://127.0.0.1:{daemon.port}/", SECRET, extra)


def _away_from_a_minute_boundary(seconds_needed: float) -> None:
    """Sleep past the next minute if the test's knocks could straddle one."""
    now = datetime.now(UTC)
    if now.second + now.microsecond / 1e6 > 60 - seconds_needed:
        time.sleep(60.5 - now.second - now.microsecond / 1e6)


def test_ssh_proxy_knocks_connects_and_relays(tmp_path: Path, daemon: Tumblerd, echo: GatedEcho):
    daemon.start()
    profiles = _profile(tmp_path, daemon)
    argv = [*TUMBLER, "ssh-proxy", "127.0.0.1", str(echo.port), "--profiles", str(profiles)]
    proc = subprocess.run(
        argv, input=PAYLOAD, capture_output=True, timeout=30, env=client_env(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == PAYLOAD  # byte for byte, nothing added (ssh reads stdout)
    assert proc.stderr == b""  # quiet without -v
    assert daemon.lines() == ["ssh 127.0.0.1"]
    (line,) = accepted(daemon)
    assert "door ssh from 127.0.0.1 (minute +0)" in line
    assert echo.connections == 1


def test_lost_first_knock_is_retried_with_the_next_minute(
    tmp_path: Path, daemon: Tumblerd, echo: GatedEcho
):
    """The daemon starts only after the first knock went out: that knock is lost.

    The retry must not repeat the first digest (a daemon that had seen it would refuse
    a replay); it is stamped with the next minute, which the default window accepts.
    """
    _away_from_a_minute_boundary(10)
    profiles = _profile(tmp_path, daemon, "   retry_after = 3\n   wait_timeout = 20\n")
    argv = [*TUMBLER, "ssh-proxy", "-v", "127.0.0.1", str(echo.port), "--profiles", str(profiles)]
    status, out, narrative = proxy_with_first_knock_lost(
        argv, client_env(tmp_path), "knock 1 sent (minute +0)", daemon
    )
    assert status == 0, "".join(narrative)
    assert out == PAYLOAD
    assert any("knock 2 sent (minute +1)" in line for line in narrative), narrative
    assert any("connected to tcp/" in line for line in narrative), narrative
    (line,) = accepted(daemon)
    assert "door ssh from 127.0.0.1 (minute +1)" in line


def test_ssh_proxy_without_profile_uses_url_and_env_secret(
    tmp_path: Path, daemon: Tumblerd, echo: GatedEcho
):
    daemon.start()
    url = f"tumbler://127.0.0.1:{daemon.port}/"
    argv = [*TUMBLER, "ssh-proxy", "--url", url, "127.0.0.1", str(echo.port)]
    env = client_env(tmp_path, TUMBLER_SECRET=SECRET)
    proc = subprocess.run(argv, input=b"hello\n", capture_output=True, timeout=30, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"hello\n", b"")


def test_ssh_proxy_gives_up_with_one_line(tmp_path: Path, daemon: Tumblerd):
    """Three knocks in one minute (now, next, previous), all accepted: no digest repeats."""
    daemon.start()
    _away_from_a_minute_boundary(8)
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))  # never listens: every connection is refused
    port = closed.getsockname()[1]
    # Knocks at 0, 2 and 4 s, a fourth not before 6 s: 1.5 s to spare for a busy machine.
    profiles = _profile(tmp_path, daemon, "   retry_after = 2\n   wait_timeout = 5.5\n")
    argv = [*TUMBLER, "ssh-proxy", "lo", str(port), "--profiles", str(profiles)]
    try:
        proc = subprocess.run(
            argv, input=b"", capture_output=True, timeout=30, env=client_env(tmp_path)
        )
    finally:
        closed.close()
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert proc.stderr.decode() == (
        f"tumbler: error: tcp/{port} on 127.0.0.1 did not answer within 5.5 s "
        "(3 knocks; last: Connection refused)\n"
    )
    wait_until(lambda: len(accepted(daemon)) == 3, what="three knocks accepted")
    minutes = [line.rsplit("(minute ", 1)[1] for line in accepted(daemon)]
    assert minutes == ["+0)", "+1)", "-1)"]


def test_open_waits_for_the_port(tmp_path: Path, daemon: Tumblerd, echo: GatedEcho):
    daemon.start()
    profiles = _profile(tmp_path, daemon, f"   wait = {echo.port}\n")
    argv = [*TUMBLER, "open", "lo", "--profiles", str(profiles)]
    proc = subprocess.run(
        argv, capture_output=True, timeout=30, env=client_env(tmp_path), text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith(f"lo: tcp/{echo.port} on 127.0.0.1 answers after ")
    assert proc.stdout.endswith(" s (1 knock)\n")
    assert daemon.lines() == ["ssh 127.0.0.1"]
