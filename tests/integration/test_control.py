"""`tumblerd status` and `tumblerd close` against a real daemon over its control socket."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from tests.integration.daemon import TUMBLERD, Tumblerd
from tests.waiting import wait_until
from tumbler.daemon.control import ControlError, request


def tumblerd_cli(daemon: Tumblerd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TUMBLERD, *args, "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_status_reports_counters_and_doors(tumblerd: Tumblerd) -> None:
    tumblerd.knock("open-pAsSwOrD")
    wait_until(tumblerd.lines, what="the knock")
    tumblerd.send(b"junk").close()
    result = tumblerd_cli(tumblerd, "status", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["counters"]["accepted"] == 1
    wait_until(
        lambda: (
            json.loads(tumblerd_cli(tumblerd, "status", "--json").stdout)["counters"].get(
                "malformed"
            )
            == 1
        ),
        what="the junk to be counted",
    )
    assert answer["doors"] == ["open-ssh", "sentinel"]
    assert answer["port"] == tumblerd.port
    text = tumblerd_cli(tumblerd, "status").stdout
    assert "accepted 1" in text and "open: nothing" in text


def test_control_socket_is_for_root_only(tumblerd: Tumblerd) -> None:
    sock = tumblerd.folder / "control.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    if os.geteuid() != 0:
        pytest.skip("needs root to try the socket as another user")
    os.chmod(tumblerd.folder, 0o755)  # let the other user reach the socket's directory
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child becomes nobody, then asks
        code = 0
        try:
            os.setgid(65534)
            os.setuid(65534)
            request(str(sock), {"command": "status"})
        except ControlError as exc:
            os.write(write_end, str(exc).encode())
            code = 3
        finally:
            os._exit(code)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    message = os.read(read_end, 4096).decode()
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 3
    assert "permission denied" in message


def test_close_of_an_address_with_nothing_open(tumblerd: Tumblerd) -> None:
    result = tumblerd_cli(tumblerd, "close", "192.0.2.1")
    assert result.returncode == 0, result.stderr
    assert "nothing was open for 192.0.2.1" in result.stdout
    bad = tumblerd_cli(tumblerd, "close", "not-an-address")
    assert bad.returncode == 1
    assert "not an IP address" in bad.stderr


def test_status_without_a_daemon_says_so(tmp_path) -> None:
    daemon = Tumblerd(tmp_path, "[door-a]\n   secret = s\n   command = true\n")
    result = tumblerd_cli(daemon, "status")
    assert result.returncode == 1
    assert "is tumblerd running?" in result.stderr
