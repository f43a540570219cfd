"""Version 2 knocks against a real tumblerd on loopback: real UDP, real commands, real counters.

Each test counts the datagrams it sent and waits until the daemon has decided that many
(its status counters), then checks what was decided: no test waits on a delay.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import TUMBLERD, Tumblerd
from tests.loopback import HAVE_IPV6
from tests.waiting import wait_until
from tumbler.daemon.control import request
from tumbler.protocols import tumbler2
from tumbler.protocols.tumbler1 import make_knock

KEY = bytes(range(32))
KEY_TEXT = tumbler2.encode_key(KEY)
MIGRATING = bytes(range(100, 132))
REALM = "fleet.example"

DOORS = f"""\
[door-v2]
   protocol = 2
   key = {KEY_TEXT}
   command = echo "%NAME% %IP%" >> OUT
[door-both]
   protocol = 1, 2
   secret = old-pAsSwOrD
   key = {tumbler2.encode_key(MIGRATING)}
   command = echo "%NAME% %IP%" >> OUT
"""
COMMON = f"   realm = {REALM}\n   replay = sqlite\n"
DECIDED = ("accepted", "malformed", "no-door", "bad-mac", "clock-skew", "replay")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Tumblerd]:
    d = Tumblerd(tmp_path, DOORS, COMMON)
    d.start()
    yield d
    d.stop()


def status(daemon: Tumblerd) -> dict:
    """The daemon's status (its control socket is up before it says READY=1)."""
    return request(str(daemon.folder / "control.sock"), {"command": "status"})


def counters(daemon: Tumblerd) -> dict[str, int]:
    return status(daemon)["counters"]


def decided(daemon: Tumblerd, n: int) -> dict[str, int]:
    """Wait until the daemon has decided `n` datagrams in all; return its counters."""
    return wait_until(
        lambda: (c := counters(daemon)) and sum(c.get(k, 0) for k in DECIDED) >= n and c,
        what=f"{n} datagrams to be decided",
    )


def knock2(
    daemon: Tumblerd,
    key: bytes = KEY,
    *,
    address: str = "127.0.0.1",
    realm: str = REALM,
    when: float | None = None,
    nonce: bytes | None = None,
    family: int = socket.AF_INET,
) -> bytes:
    now = time.time() if when is None else when
    data = tumbler2.build(key, now, nonce or secrets.token_bytes(16), address, realm)
    daemon.send(data, family).close()
    return data


def test_a_v2_knock_runs_the_door_command(daemon: Tumblerd) -> None:
    knock2(daemon)
    wait_until(daemon.lines, what="the door's command")
    assert daemon.lines() == ["v2 127.0.0.1"]
    assert counters(daemon)["accepted"] == 1
    assert "knock accepted: door v2 from 127.0.0.1" in daemon.log_text()


@pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback here")
def test_a_v2_knock_over_ipv6(daemon: Tumblerd) -> None:
    knock2(daemon, address="::1", family=socket.AF_INET6)
    wait_until(daemon.lines, what="the door's command")
    assert daemon.lines() == ["v2 ::1"]


def test_two_knocks_in_the_same_second_both_open(daemon: Tumblerd) -> None:
    now = float(int(time.time()))
    knock2(daemon, when=now)
    knock2(daemon, when=now)
    c = decided(daemon, 2)
    assert c["accepted"] == 2
    wait_until(lambda: len(daemon.lines()) == 2, what="both commands")


def test_a_replay_is_refused_even_after_a_restart(daemon: Tumblerd) -> None:
    data = knock2(daemon)
    daemon.send(data).close()
    c = decided(daemon, 2)
    assert (c["accepted"], c["replay"]) == (1, 1)
    daemon.stop()
    daemon.start()
    daemon.send(data).close()
    c = decided(daemon, 1)
    assert c.get("accepted", 0) == 0 and c["replay"] == 1


def test_knocks_that_must_not_open(daemon: Tumblerd) -> None:
    knock2(daemon, bytes(32))  # a key no door has
    knock2(daemon, address="192.0.2.7")  # made for another address
    knock2(daemon, realm="other.example")  # made for another realm
    knock2(daemon, realm="")  # made for no realm
    good = tumbler2.build(KEY, time.time(), secrets.token_bytes(16), "127.0.0.1", REALM)
    daemon.send(good[:-1]).close()  # truncated
    daemon.send(good + b"\x00").close()  # padded
    daemon.send(good[:40] + bytes(28)).close()  # a right key id, a wrong MAC
    c = decided(daemon, 7)
    assert c.get("accepted", 0) == 0
    assert (c["no-door"], c["bad-mac"], c["malformed"]) == (1, 4, 2)
    assert daemon.lines() == []


def test_clock_skew_is_refused_logged_with_the_offset_and_counted(daemon: Tumblerd) -> None:
    knock2(daemon, when=time.time() + 187)
    c = decided(daemon, 1)
    assert c["clock-skew"] == 1 and c.get("accepted", 0) == 0
    line = wait_until(
        lambda: [x for x in daemon.log_text().splitlines() if "clock off by" in x],
        what="the clock skew line",
    )
    assert len(line) == 1
    assert "door v2 from 127.0.0.1" in line[0]
    assert "window 60 s" in line[0]
    offset = int(line[0].split("clock off by ")[1].split(" s")[0])
    assert 185 <= offset <= 188  # the knock's second against the daemon's, a moment later
    # More skewed knocks within the rate limit are counted, not logged again.
    knock2(daemon, when=time.time() - 500)
    knock2(daemon, when=time.time() - 500)
    c = decided(daemon, 3)
    assert c["clock-skew"] == 3
    assert len([x for x in daemon.log_text().splitlines() if "clock off by" in x]) == 1
    assert daemon.lines() == []
    last = status(daemon)["last_clock_skew"]
    assert (last["door"], last["address"]) == ("v2", "127.0.0.1") and last["offset"] < -490
    text = subprocess.run(
        [*TUMBLERD, "status", "--config", str(daemon.config)], capture_output=True, text=True
    ).stdout
    assert "clock-skew 3" in text and "clock skew: last v2 knock refused for door v2" in text


def test_a_door_may_take_both_versions_during_a_migration(daemon: Tumblerd) -> None:
    knock2(daemon, MIGRATING)
    from datetime import UTC, datetime

    daemon.send(make_knock("old-pAsSwOrD", "127.0.0.1", datetime.now(UTC))).close()
    c = decided(daemon, 2)
    assert c["accepted"] == 2
    wait_until(lambda: len(daemon.lines()) == 2, what="both commands")
    assert daemon.lines() == ["both 127.0.0.1", "both 127.0.0.1"]


def test_a_v1_only_door_ignores_v2_and_the_other_way_round(tmp_path: Path) -> None:
    d = Tumblerd(
        tmp_path,
        "[door-old]\n   secret = old-pAsSwOrD\n   command = echo old >> OUT\n"
        f"[door-new]\n   key = {KEY_TEXT}\n   command = echo new >> OUT\n",
    )
    d.start()
    try:
        knock2(d, realm="")
        c = decided(d, 1)
        assert c["accepted"] == 1
        wait_until(d.lines, what="the command")
        assert d.lines() == ["new"]
        assert status(d)["doors"] == ["new", "old"]
    finally:
        d.stop()


def test_the_client_knocks_with_a_tumbler2_url(daemon: Tumblerd) -> None:
    url = f"tumbler2://{KEY_TEXT}@127.0.0.1:{daemon.port}/?realm={REALM}"
    from tests.integration.test_client_cli import TUMBLER

    result = subprocess.run([TUMBLER, "--open", url], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    wait_until(daemon.lines, what="the door's command")
    assert daemon.lines() == ["v2 127.0.0.1"]


def test_the_client_knocks_with_a_key_file(daemon: Tumblerd, tmp_path: Path) -> None:
    key_file = tmp_path / "door.key"
    key_file.write_text(KEY_TEXT + "\n")
    key_file.chmod(0o600)
    url = f"tumbler2://127.0.0.1:{daemon.port}/?realm={REALM}"
    from tests.integration.test_client_cli import TUMBLER

    result = subprocess.run(
        [TUMBLER, "--open", url, "--secret-file", str(key_file)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    wait_until(daemon.lines, what="the door's command")
    assert daemon.lines() == ["v2 127.0.0.1"]


def test_a_bad_key_in_the_config_names_the_line(tmp_path: Path) -> None:
    d = Tumblerd(tmp_path, "[door-x]\n   key = not-a-key\n   command = true\n")
    result = subprocess.run(
        [*TUMBLERD, "--config", str(d.config), "--check-config"], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "tumblerd.conf:" in result.stderr + result.stdout
    assert "not-a-key" not in result.stderr + result.stdout
