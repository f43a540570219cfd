"""`tumblerd status` and `tumblerd close` against a real daemon over its control socket."""

from __future__ import annotations

import json
import os
import socket
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
    assert bad.returncode == 2  # a usage error, found before asking the daemon
    assert "not an IPv4 or IPv6 address" in bad.stderr


def test_status_without_a_daemon_says_so(tmp_path) -> None:
    daemon = Tumblerd(tmp_path, "[door-a]\n   secret = s\n   command = true\n")
    result = tumblerd_cli(daemon, "status")
    assert result.returncode == 1
    assert "is tumblerd running?" in result.stderr


def test_a_second_daemon_on_a_live_control_socket_refuses_to_start(
    tumblerd: Tumblerd, tmp_path_factory
) -> None:
    pid = tumblerd.proc.pid
    second = Tumblerd(
        tmp_path_factory.mktemp("second"), "[door-b]\n   secret = b\n   command = true\n"
    )
    text = second.config.read_text().replace(
        str(second.folder / "control.sock"), str(tumblerd.folder / "control.sock")
    )
    second.config.write_text(text)
    result = subprocess.run(
        [*TUMBLERD, "--config", str(second.config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert f"control socket {tumblerd.folder / 'control.sock'} is in use" in result.stderr
    assert f"(pid {pid})" in result.stderr
    # The first daemon is still reachable after the second gave up.
    assert tumblerd_cli(tumblerd, "status").returncode == 0


def test_a_stale_control_socket_is_replaced(tmp_path) -> None:
    daemon = Tumblerd(tmp_path, "[door-a]\n   secret = s\n   command = true\n")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "control.sock"))  # the file of a socket nobody listens on
    stale.close()
    daemon.start()
    try:
        assert tumblerd_cli(daemon, "status").returncode == 0
    finally:
        daemon.stop()


def test_a_port_in_use_is_named(tumblerd: Tumblerd, tmp_path_factory) -> None:
    second = Tumblerd(
        tmp_path_factory.mktemp("second"), "[door-b]\n   secret = b\n   command = true\n"
    )
    result = subprocess.run(
        [*TUMBLERD, "--config", str(second.config), "--port", str(tumblerd.port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"udp 127.0.0.1:{tumblerd.port}: Address already in use" in result.stderr
    assert not (second.folder / "control.sock").exists()


def test_deeply_nested_json_is_a_bad_request(tumblerd: Tumblerd) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(tumblerd.folder / "control.sock"))
        sock.sendall(b"[" * 4000 + b"\n")
        answer = json.loads(sock.makefile().readline())
    assert answer == {"ok": False, "error": "bad request"}
    assert tumblerd.alive()
    assert "Traceback" not in (tumblerd.folder / "stderr").read_text()


def test_status_into_a_closed_pipe_is_quiet(tumblerd: Tumblerd) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -1` that has already exited
    try:
        result = subprocess.run(
            [*TUMBLERD, "status", "--config", str(tumblerd.config)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert result.stderr == ""


def test_one_door_the_daemon_does_not_have(tumblerd: Tumblerd) -> None:
    """A door in the file but not yet in the daemon (no reload): a run-time error, status 1."""
    with open(tumblerd.config, "a") as config:
        config.write("[door-later]\n   secret = later-secret\n   command = true\n")
    for argv in (["status", "later"], ["close", "192.0.2.1", "--door", "later"]):
        result = tumblerd_cli(tumblerd, *argv)
        assert result.returncode == 1, result
        assert "the running daemon has no door 'later'" in result.stderr
    wrong = tumblerd_cli(tumblerd, "status", "sentinel2")
    assert wrong.returncode == 2
    assert "(its doors: open-ssh, sentinel, later)" in wrong.stderr
    sock = str(tumblerd.folder / "control.sock")
    with pytest.raises(ControlError, match="has no door"):
        request(sock, {"command": "close", "address": "192.0.2.1", "door": ["open-ssh"]})
    assert tumblerd.alive()
    assert tumblerd_cli(tumblerd, "status", "sentinel").stdout.splitlines() == [
        "door sentinel: knocks accepted since the daemon started: 0",
        "open: nothing",
    ]
