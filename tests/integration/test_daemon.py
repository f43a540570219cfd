"""A real tumblerd process on loopback, real UDP, real commands writing a real file."""

from __future__ import annotations

import os
import random
import select
import signal
import socket
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.daemon import TUMBLERD, Tumblerd
from tests.waiting import wait_until
from tumbler.protocols.tumbler1 import PREFIX, knock_digest, minute_stamp


def settle(daemon: Tumblerd, expected: int) -> list[str]:
    """Knock the sentinel door and wait for its line: every datagram before it was decided
    and, if accepted, logged. Then wait for the command of each accepted one: a command
    may finish after the sentinel's, so its line is awaited, not given a lucky delay."""
    daemon.knock("sentinel-secret", when=datetime.now(UTC) + timedelta(seconds=random.random()))
    wait_until(
        lambda: [x for x in daemon.lines() if x.startswith("sentinel")], what="the sentinel knock"
    )
    accepted = [
        line
        for line in daemon.log_text().splitlines()
        if "knock accepted: door " in line and "knock accepted: door sentinel " not in line
    ]
    assert len(accepted) == expected, accepted

    def others() -> list[str]:
        return [x for x in daemon.lines() if not x.startswith("sentinel")]

    wait_until(lambda: len(others()) >= expected, what=f"the commands of {expected} knocks")
    lines = others()
    assert len(lines) == expected, lines
    return lines


def test_valid_knock_runs_the_command_once_with_address_and_door(tumblerd: Tumblerd) -> None:
    tumblerd.knock("open-pAsSwOrD")
    wait_until(tumblerd.lines, what="the door's command")
    assert tumblerd.lines() == ["open-ssh 127.0.0.1 open-ssh 127.0.0.1"]
    assert "knock accepted: door open-ssh from 127.0.0.1" in tumblerd.log_text()


def test_ipv6_knock(tumblerd: Tumblerd) -> None:
    tumblerd.knock("open-pAsSwOrD", address="::1", family=socket.AF_INET6)
    wait_until(tumblerd.lines, what="the door's command")
    assert tumblerd.lines() == ["open-ssh ::1 open-ssh ::1"]


def test_replayed_datagram_does_nothing_even_after_restart(tumblerd: Tumblerd) -> None:
    data = tumblerd.knock("open-pAsSwOrD")
    wait_until(tumblerd.lines, what="the first knock")
    tumblerd.send(data).close()
    tumblerd.stop()
    tumblerd.start()
    tumblerd.send(data).close()
    settle(tumblerd, expected=1)
    assert "replay" in tumblerd.log_text()


def test_knocks_that_must_not_open(tumblerd: Tumblerd) -> None:
    now = datetime.now(UTC)
    tumblerd.knock("open-pAsSwOrD", address="192.0.2.7")  # made for another address
    tumblerd.knock("wrong-pAsSwOrD")
    tumblerd.knock("open-pAsSwOrD", when=now - timedelta(minutes=5))
    tumblerd.knock("open-pAsSwOrD", when=now + timedelta(minutes=5))
    settle(tumblerd, expected=0)


def test_previous_and_next_minute_are_accepted(tumblerd: Tumblerd) -> None:
    now = datetime.now(UTC)
    tumblerd.knock("open-pAsSwOrD", when=now - timedelta(minutes=1))
    tumblerd.knock("open-pAsSwOrD", when=now + timedelta(minutes=1))
    settle(tumblerd, expected=2)


def _with_nul(digest: bytes, at: int) -> bytes:
    # Always a change: replacing a letter that may not occur would leave the knock valid.
    return digest[:at] + b"\x00" + digest[at + 1 :]


def _junk(rng: random.Random, n: int) -> list[bytes]:
    stamp = minute_stamp(datetime.now(UTC))
    good = knock_digest(stamp, "127.0.0.1", "open-pAsSwOrD").encode()
    shapes = [
        lambda: b"",
        lambda: rng.randbytes(65507),
        lambda: rng.randbytes(rng.randint(1, 200)),
        lambda: PREFIX[: rng.randint(0, len(PREFIX))] + rng.randbytes(64),
        lambda: b"TUMBLER2: " + good,
        lambda: b"tumbler1: " + good,
        lambda: PREFIX + b" " + good[: rng.choice([62, 63])],
        lambda: PREFIX + b" " + good + b"0",
        lambda: PREFIX + b"  " + good,
        lambda: PREFIX + b" " + good + b"\n\n",
        lambda: PREFIX + b" " + good[:-1] + b"g",
        lambda: PREFIX + b" " + rng.randbytes(32).hex().encode(),  # right shape, wrong digest
        lambda: PREFIX + b" " + _with_nul(good, rng.randrange(len(good))),
    ]
    return [rng.choice(shapes)() for _ in range(n)]


def receive_queue(port: int) -> int | None:
    """Bytes waiting in the receive queue of the UDP socket bound to 127.0.0.1:`port`."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted:
            return int(fields[4].split(":")[1], 16)
    return None


def test_ten_thousand_junk_datagrams_no_crash_no_reply_no_command(tumblerd: Tumblerd) -> None:
    rng = random.Random(20041127)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(10)  # a busy machine may make the sender wait for buffer space
    for data in _junk(rng, 10_000):
        sock.sendto(data, ("127.0.0.1", tumblerd.port))
    # What the daemon could not take in time the kernel dropped; what it took, it has read
    # once its queue is empty, and only then can the sentinel not be dropped as well.
    wait_until(lambda: receive_queue(tumblerd.port) == 0, what="the daemon to drain the junk")
    settle(tumblerd, expected=0)
    assert tumblerd.alive()
    readable, _, _ = select.select([sock], [], [], 0.5)
    assert readable == [], "the daemon answered a datagram"
    sock.close()
    # Still serving after the junk.
    tumblerd.knock("open-pAsSwOrD")
    wait_until(tumblerd.lines, what="a valid knock after the junk")
    assert tumblerd.stop() == 0
    assert "Traceback" not in (tumblerd.folder / "stderr").read_text()
    assert "rejected datagrams: malformed" in tumblerd.log_text()


def test_valid_knock_gets_no_reply(tumblerd: Tumblerd) -> None:
    now = datetime.now(UTC)
    from tumbler.protocols.tumbler1 import make_knock

    sock = tumblerd.send(make_knock("open-pAsSwOrD", "127.0.0.1", now))
    wait_until(tumblerd.lines, what="the knock")
    readable, _, _ = select.select([sock], [], [], 0.5)
    assert readable == []
    sock.close()


def test_sighup_with_broken_config_keeps_serving_the_old_one(tumblerd: Tumblerd) -> None:
    tumblerd.config.write_text(tumblerd.config.read_text() + "[door-broken]\n   colour = red\n")
    tumblerd.signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in tumblerd.log_text(), what="the refusal")
    assert "unknown key 'colour'" in tumblerd.log_text()
    tumblerd.knock("open-pAsSwOrD")
    wait_until(tumblerd.lines, what="a knock on the old config")
    assert tumblerd.alive()


def test_sighup_with_good_config_takes_new_doors(tumblerd: Tumblerd) -> None:
    tumblerd.config.write_text(
        tumblerd.config.read_text()
        + f"[door-new]\n   secret = new-secret\n   command = echo %NAME% >> {tumblerd.out}\n"
    )
    tumblerd.signal(signal.SIGHUP)
    wait_until(lambda: "reloaded" in tumblerd.log_text(), what="the reload")
    tumblerd.knock("new-secret")
    wait_until(lambda: "new" in tumblerd.lines(), what="the new door")


def test_slow_command_does_not_block_and_is_killed_at_its_timeout(tmp_path: Path) -> None:
    doors = (
        "[door-slow]\n   secret = slow-secret\n   command = sleep 30\n"
        "[door-fast]\n   secret = fast-secret\n   command = echo fast >> OUT\n"
    )
    daemon = Tumblerd(tmp_path, doors, common="   command_timeout = 5\n").start()
    try:
        daemon.knock("slow-secret")
        daemon.knock("fast-secret")
        wait_until(lambda: daemon.lines() == ["fast"], what="fast door while slow runs")
        # The slow command was still running then: the fast one did not wait for it.
        assert "killed after" not in daemon.log_text()
        wait_until(lambda: "killed after" in daemon.log_text(), what="the kill")
    finally:
        assert daemon.stop() == 0


def test_failing_command_is_logged_with_status_and_output(tmp_path: Path) -> None:
    doors = "[door-bad]\n   secret = bad-secret\n   command = echo oops; exit 3\n"
    daemon = Tumblerd(tmp_path, doors).start()
    try:
        daemon.knock("bad-secret")
        wait_until(lambda: "exited 3: oops" in daemon.log_text(), what="the failure log")
    finally:
        daemon.stop()


def test_secrets_never_reach_the_log(tumblerd: Tumblerd) -> None:
    tumblerd.knock("open-pAsSwOrD")
    tumblerd.knock("wrong-pAsSwOrD")
    wait_until(tumblerd.lines, what="the knock")
    tumblerd.stop()
    text = tumblerd.log_text() + (tumblerd.folder / "stderr").read_text()
    assert "pAsSwOrD" not in text


def test_sigterm_stops_cleanly(tumblerd: Tumblerd) -> None:
    assert tumblerd.stop() == 0
    assert "tumblerd stopped" in tumblerd.log_text()


def run_tumblerd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TUMBLERD, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )


def test_check_config_accepts_listing_two(tmp_path: Path) -> None:
    config = tmp_path / "tumblerd.conf"
    config.write_text(
        "# Listing Two\n[common]\n   port = 8675\n   log = /var/log/tumblerd.log\n"
        "[door-open-ssh]\n   secret = open-pAsSwOrD\n"
        "   command = iptables -I INPUT -p tcp -s %IP% --dport 22 -j ACCEPT\n"
        "[door-close-ssh]\n   secret = close-pAsSwOrD\n"
        "   command = iptables -D INPUT -p tcp -s %IP% --dport 22 -j ACCEPT\n"
    )
    config.chmod(0o644)
    result = run_tumblerd("--check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "2 doors" in result.stdout
    assert "readable by group or others" in result.stderr
    assert "pAsSwOrD" not in result.stderr + result.stdout


def test_bad_config_names_file_and_line_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "tumblerd.conf"
    config.write_text("[common]\n   port = 99999\n[door-a]\n   secret = x\n   command = true\n")
    result = run_tumblerd("--config", str(config))
    assert result.returncode == 2
    assert f"{config}:2:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_firewall_init_print_works_before_any_config_exists() -> None:
    if os.path.exists("/etc/tumbler/tumblerd.conf"):
        pytest.skip("this machine has a real /etc/tumbler/tumblerd.conf")
    for backend, expected in (("nftables", "udp dport 8675 accept"), ("iptables", "--dport 8675")):
        result = run_tumblerd("firewall", "init", "--print", "--backend", backend)
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout


def test_firewall_init_print_counts_ipv6_sources_by_the_configured_prefix(tmp_path: Path) -> None:
    config = tmp_path / "tumblerd.conf"
    config.write_text("[common]\n   ipv6_prefix = 48\n[door-a]\n   secret = s\n   open = tcp/22\n")
    config.chmod(0o600)
    for backend, expected in (
        ("nftables", "ip6 saddr & ffff:ffff:ffff:: limit rate over"),
        ("iptables", "--hashlimit-srcmask 48"),
    ):
        result = run_tumblerd(
            "firewall", "init", "--print", "--config", str(config), "--backend", backend
        )
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout


def test_a_config_others_can_change_stops_the_start_with_the_fix(tmp_path: Path) -> None:
    daemon = Tumblerd(tmp_path, "[door-a]\n   secret = s3cret\n   command = true\n")
    daemon.config.chmod(0o666)
    for argv in (["--check-config"], []):
        result = subprocess.run(
            [*TUMBLERD, *argv, "--config", str(daemon.config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert (
            f"tumblerd: error: config file {daemon.config} is writable by group or others; "
            f"run: chmod go-w {daemon.config}"
        ) in result.stderr.splitlines()
    assert not daemon.log.exists()  # refused before anything was opened


def test_missing_log_and_state_folders_are_made_private(tmp_path: Path) -> None:
    daemon = Tumblerd(tmp_path, "[door-a]\n   secret = s3cret\n   command = echo %IP% >> OUT\n")
    text = daemon.config.read_text()
    log = tmp_path / "var" / "log" / "tumbler" / "tumblerd.log"
    state = tmp_path / "var" / "lib" / "tumbler" / "state.db"
    text = text.replace(str(daemon.log), str(log)).replace(str(tmp_path / "state.db"), str(state))
    daemon.config.write_text(text)
    daemon.log = log
    check = subprocess.run(
        [*TUMBLERD, "--check-config", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert not log.parent.exists()  # checking makes nothing
    daemon.start()
    try:
        daemon.knock("s3cret")
        wait_until(daemon.lines, what="the knock")
    finally:
        daemon.stop()
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o750
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700


def test_check_config_refuses_a_door_the_firewall_cannot_hold(tmp_path: Path) -> None:
    config = tmp_path / "tumblerd.conf"
    config.write_text(
        "[common]\n   firewall = nftables\n[door-wide]\n   secret = s\n   open = tcp/1-2000\n"
    )
    config.chmod(0o600)
    result = run_tumblerd("--check-config", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}:5: door wide opens 2000 ports" in result.stderr


def test_a_locked_state_database_never_stops_a_knock(tumblerd: Tumblerd) -> None:
    """Another process holds the database's write lock: knocks are still judged at once."""
    import sqlite3

    state = tumblerd.folder / "state.db"
    other = sqlite3.connect(str(state), timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        datagram = tumblerd.knock("open-pAsSwOrD")
        # Accepted while the lock is still held: the loop did not wait for it.
        wait_until(tumblerd.lines, what="the knock, with the database locked")
        tumblerd.send(datagram).close()
        wait_until(
            lambda: "locked by another connection" in tumblerd.log_text(),
            what="the daemon to say the database is locked",
        )
    finally:
        other.rollback()
        other.close()

    def claim_on_disk() -> bool:
        with sqlite3.connect(str(state)) as db:
            return db.execute("SELECT count(*) FROM replay").fetchone()[0] == 2

    tumblerd.knock("sentinel-secret")  # its claim writes the pending one too: two rows
    wait_until(claim_on_disk, what="the pending claim to reach the file")
    tumblerd.stop()
    tumblerd.start()
    tumblerd.send(datagram).close()
    # A knock on another door, in a later minute, sent after the replay: once its line is
    # there, the replay was judged, and it opened nothing.
    tumblerd.knock("sentinel-secret", when=datetime.now(UTC) + timedelta(minutes=1))
    wait_until(lambda: len(tumblerd.lines()) == 3, what="the second sentinel knock")
    assert [line.split()[0] for line in tumblerd.lines()] == ["open-ssh", "sentinel", "sentinel"]
