"""The real `tumbler` console script, run as a process, knocking on loopback sockets.

Each test binds its own sockets on 127.0.0.1 or ::1 and checks what arrives; nothing
leaves the machine.
"""

from __future__ import annotations

import os
import pty
import select
import selectors
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.daemon import Tumblerd
from tests.loopback import HAVE_IPV6
from tests.waiting import wait_until
from tumbler import __version__
from tumbler.addresses import normalize_address
from tumbler.protocols import tumbler1 as protocol

VECTOR_DIGEST = "44e0543454e4c7a7633a216671b3f5068e332bd6e7b1c13cbc69b0d91bb044cb"
SECRET = "s3cret-for-tests"


def _find_tumbler() -> str:
    beside = Path(sys.executable).with_name("tumbler")
    found = str(beside) if beside.exists() else shutil.which("tumbler")
    if found is None:
        pytest.fail("the tumbler console script is not installed (pip install -e .)")
    return found


TUMBLER = _find_tumbler()


LOOPBACKS = [
    pytest.param(socket.AF_INET, "127.0.0.1", id="ipv4"),
    pytest.param(
        socket.AF_INET6,
        "::1",
        id="ipv6",
        marks=pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback here"),
    ),
]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TUMBLER_SECRET"}
    env.update(extra)
    return env


def tumbler(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TUMBLER, *argv],
        env=_env() if env is None else env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        start_new_session=True,  # no controlling terminal: a prompt cannot hang the test
    )


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _bound_udp(family: int, address: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    sock.settimeout(5)
    return sock


def _expected_knocks(secret: str, address: str, start: datetime, end: datetime) -> set[bytes]:
    """The knocks for every minute the process may have run in, plus one either side."""
    moments = [start - timedelta(minutes=1), start, end, end + timedelta(minutes=1)]
    return {protocol.make_knock(secret, address, moment) for moment in moments}


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int) -> None:
    assert result.returncode == status, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("tumbler: error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


# --- tumbler --open ----------------------------------------------------------------------


@pytest.mark.parametrize(("family", "address"), LOOPBACKS)
def test_open_sends_the_knock_for_now(family, address):
    with _bound_udp(family, address) as sock:
        url = f"tumbler://{_url_host(address)}:{sock.getsockname()[1]}/"
        start = datetime.now(UTC)
        result = tumbler("--open", url, env=_env(TUMBLER_SECRET=SECRET))
        end = datetime.now(UTC)
        data, peer = sock.recvfrom(4096)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert len(data) == 74
    digest = protocol.parse_datagram(data)
    assert data == protocol.encode_datagram(digest)
    assert normalize_address(peer[0]) == address
    assert data in _expected_knocks(SECRET, address, start, end)


@pytest.mark.parametrize(("family", "address"), LOOPBACKS)
def test_percent_encoded_url_secret(family, address):
    secret = "p@ss:wörd/100%"
    with _bound_udp(family, address) as sock:
        quoted = urllib.parse.quote(secret, safe="")
        url = f"tumbler://{quoted}@{_url_host(address)}:{sock.getsockname()[1]}/"
        start = datetime.now(UTC)
        result = tumbler("--open", url)
        end = datetime.now(UTC)
        data = sock.recv(4096)
    assert result.returncode == 0, result.stderr
    assert data in _expected_knocks(secret, address, start, end)


def test_secret_file_and_from(tmp_path):
    secret_file = tmp_path / "door"
    secret_file.write_text(f"{SECRET}\nignored second line\n")
    secret_file.chmod(0o600)
    with _bound_udp(socket.AF_INET, "127.0.0.1") as sock:
        url = f"tumbler://127.0.0.1:{sock.getsockname()[1]}/"
        start = datetime.now(UTC)
        result = tumbler("--open", url, "--secret-file", str(secret_file), "--from", "203.0.113.9")
        end = datetime.now(UTC)
        data = sock.recv(4096)
    assert (result.returncode, result.stderr) == (0, "")
    assert data in _expected_knocks(SECRET, "203.0.113.9", start, end)


def test_dry_run_sends_nothing_and_prints_the_vector():
    with _bound_udp(socket.AF_INET, "127.0.0.1") as sock:
        url = f"tumbler://open-pAsSwOrD@127.0.0.1:{sock.getsockname()[1]}/"
        result = tumbler(url, "--dry-run", "--from", "192.168.0.5", "--at", "2004-11-27T15:30:00Z")
        sock.settimeout(0.1)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
    assert result.returncode == 0, result.stderr
    assert f"TUMBLER1: {VECTOR_DIGEST}" in result.stdout
    assert "10410271530" in result.stdout
    assert "192.168.0.5" in result.stdout
    assert "pAsSwOrD" not in result.stdout + result.stderr


def test_python_dash_m():
    result = subprocess.run(
        [sys.executable, "-m", "tumbler", "--version"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, f"tumbler {__version__}\n")
    helped = subprocess.run(
        [sys.executable, "-m", "tumbler", "--help"], capture_output=True, text=True, timeout=20
    )
    assert helped.stdout.startswith("usage: tumbler ")


def test_prompt_on_the_terminal_without_echo():
    """A real pseudo-terminal: the prompt appears, the typed secret is not echoed."""
    with _bound_udp(socket.AF_INET, "127.0.0.1") as sock:
        url = f"tumbler://127.0.0.1:{sock.getsockname()[1]}/"
        start = datetime.now(UTC)
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once, whatever happens
            try:
                os.execve(TUMBLER, [TUMBLER, "--open", url], _env())
            finally:
                os._exit(127)
        seen = b""
        try:
            deadline = time.monotonic() + 10
            while b"Secret for" not in seen and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.5)[0]:
                    seen += os.read(fd, 1024)
            assert b"Secret for tumbler://127.0.0.1:" in seen
            os.write(fd, SECRET.encode() + b"\n")
            while time.monotonic() < deadline and select.select([fd], [], [], 0.5)[0]:
                try:
                    chunk = os.read(fd, 1024)
                except OSError:  # EIO: the child has gone and the terminal closed
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            _, wait_status = os.waitpid(pid, 0)
            os.close(fd)
        end = datetime.now(UTC)
        data = sock.recv(4096)
    assert os.waitstatus_to_exitcode(wait_status) == 0, seen
    assert SECRET.encode() not in seen
    assert data in _expected_knocks(SECRET, "127.0.0.1", start, end)


# --- errors ------------------------------------------------------------------------------


def test_no_secret_and_no_terminal():
    result = tumbler("--open", "tumbler://127.0.0.1:9/")
    assert_one_line_error(result, 2)
    assert "no terminal" in result.stderr


@pytest.mark.parametrize(
    ("argv", "env", "status", "message"),
    [
        (["--open", "tumbler:/hunter2@127.0.0.1/"], {}, 2, "bad URL"),
        (["--open", "ftp://hunter2@127.0.0.1/"], {}, 2, "bad URL"),
        (["--open", "tumbler://hunter2@fd00::1/"], {}, 2, "brackets"),
        (["--open", "tumbler://hunter2@127.0.0.1:99999/"], {}, 2, "port"),
        (["--open", "tumbler://hunter2@host.invalid/"], {}, 1, "cannot resolve host.invalid"),
        (["--open", "tumbler://127.0.0.1:9/"], {"TUMBLER_SECRET": ""}, 2, "empty secret"),
        (["--open", "tumbler://@127.0.0.1:9/"], {}, 2, "empty secret"),
        (["--open", "tumbler://hunter2@127.0.0.1/", "--from", "x"], {}, 2, "--from"),
        (["--open", "tumbler://hunter2@127.0.0.1/", "--nope"], {}, 2, "unrecognized"),
        (["knock", "127.0.0.1", "99999"], {}, 2, "bad knock port"),
        (["knock", "host.invalid", "42"], {}, 1, "cannot resolve host.invalid"),
    ],
)
def test_errors_exit_non_zero_with_one_line(argv, env, status, message):
    result = tumbler(*argv, env=_env(**env))
    assert_one_line_error(result, status)
    assert message in result.stderr
    assert "hunter2" not in result.stderr


# --- tumbler knock -----------------------------------------------------------------------


def _listeners(family: int, address: str, protos: list[str]) -> list[tuple[str, socket.socket]]:
    made = []
    for proto in protos:
        if proto == "tcp":
            sock = socket.create_server((address, 0), family=family, backlog=8)
        else:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((address, 0))
        sock.setblocking(False)
        made.append((proto, sock))
    return made


def _watch(listeners: list[tuple[str, socket.socket]], want: int) -> list[tuple[str, int, str]]:
    """Record (proto, port, peer address) in the order knocks arrive."""
    arrived: list[tuple[str, int, str]] = []
    with selectors.DefaultSelector() as selector:
        for proto, sock in listeners:
            selector.register(sock, selectors.EVENT_READ, proto)
        deadline = time.monotonic() + 10
        while len(arrived) < want and time.monotonic() < deadline:
            for key, _ in selector.select(0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                port = sock.getsockname()[1]
                if key.data == "tcp":
                    conn, peer = sock.accept()
                    conn.close()
                else:
                    _, peer = sock.recvfrom(64)
                arrived.append((key.data, port, peer[0]))
    return arrived


@pytest.mark.parametrize(("family", "address"), LOOPBACKS)
def test_knock_sequence_arrives_in_order(family, address):
    protos = ["tcp", "udp", "tcp", "tcp", "udp"]
    listeners = _listeners(family, address, protos)
    try:
        ports = [f"{proto}/{sock.getsockname()[1]}" for proto, sock in listeners]
        process = subprocess.Popen(
            [TUMBLER, "knock", "-v", address, *ports],  # the default delay, 100 ms
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        arrived = _watch(listeners, len(protos))
        out, err = process.communicate(timeout=20)
    finally:
        for _, sock in listeners:
            sock.close()
    assert (process.returncode, err) == (0, "")
    expected = [(spec.split("/")[0], int(spec.split("/")[1])) for spec in ports]
    assert [(proto, port) for proto, port, _ in arrived] == expected
    assert {normalize_address(peer) for _, _, peer in arrived} == {address}
    lines = out.splitlines()
    assert len(lines) == len(protos)
    for index, (line, spec) in enumerate(zip(lines, ports, strict=True)):
        assert line.startswith(f"knock {index + 1}/{len(protos)}: {spec} -> {address}: ")


def test_knock_on_closed_ports_still_succeeds():
    """Knocks are meant for closed ports: a RST (or silence) is not an error."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    result = tumbler("knock", "-v", "--delay", "10", "127.0.0.1", str(closed), f"{closed}:udp")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        f"knock 1/2: tcp/{closed} -> 127.0.0.1: refused",
        f"knock 2/2: udp/{closed} -> 127.0.0.1: sent",
    ]


def test_knock_delay_is_respected():
    listeners = _listeners(socket.AF_INET, "127.0.0.1", ["udp", "udp", "udp"])
    try:
        ports = [f"udp/{sock.getsockname()[1]}" for _, sock in listeners]
        started = time.monotonic()
        result = tumbler("knock", "--delay", "150", "127.0.0.1", *ports)
        elapsed = time.monotonic() - started
        for _, sock in listeners:
            sock.setblocking(True)
            sock.settimeout(2)
            assert sock.recv(64)
    finally:
        for _, sock in listeners:
            sock.close()
    assert result.returncode == 0, result.stderr
    assert elapsed >= 0.3  # two pauses of 150 ms between three knocks


def test_knocks_in_the_same_minute_are_all_accepted_then_the_client_says_wait(
    tmp_path: Path,
) -> None:
    daemon = Tumblerd(
        tmp_path,
        f"[door-a]\n   secret = {SECRET}\n   command = echo %IP% >> OUT\n",
        common="   window = 2\n",  # the test may cross a minute: the knocks stay inside
    )
    daemon.start()
    try:
        at = datetime.now(UTC).isoformat()
        url = f"tumbler://127.0.0.1:{daemon.port}/"
        env = _env(TUMBLER_SECRET=SECRET)
        for n in range(1, 4):
            result = tumbler("--open", url, "--at", at, env=env)
            assert result.returncode == 0, result.stderr
            wait_until(lambda n=n: len(daemon.lines()) == n, what=f"knock {n} accepted")
        fourth = tumbler("--open", url, "--at", at, env=env)
        assert fourth.returncode == 1
        assert "would refuse another as a replay; try again in" in fourth.stderr
    finally:
        daemon.stop()
