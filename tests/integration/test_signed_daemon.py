"""Signed knocks against a real tumblerd on loopback: keys from ssh-keygen, real UDP."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Tumblerd
from tests.sshkeys import make_key, need
from tests.waiting import wait_until
from tumbler.client.signed import send_signed_knocks
from tumbler.client.sshagent import FileSigner, load_key_file, sign_knock
from tumbler.daemon.control import request

REALM = "lab"


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, FileSigner]:
    need("ssh-keygen")
    return {
        "alice": load_key_file(make_key(tmp_path, "alice", "ed25519")),
        "bob": load_key_file(make_key(tmp_path, "bob", "ecdsa", "256")),
        "carol": load_key_file(make_key(tmp_path, "carol", "rsa", "3072")),
    }


def authorized(path: Path, *signers: FileSigner, extra: str = "") -> None:
    path.write_text(extra + "".join(f"{s.key.openssh(s.comment)}\n" for s in signers))


@pytest.fixture
def daemon(tmp_path: Path, keys: dict[str, FileSigner]) -> Iterator[Tumblerd]:
    authorized(
        tmp_path / "ssh-users",
        keys["alice"],
        keys["carol"],
        extra='restrict,command="/bin/false" ' + keys["bob"].key.openssh("bob@test") + "\n",
    )
    doors = (
        "[door-ssh]\n"
        f"   authorized_keys = {tmp_path / 'ssh-users'}\n"
        '   command = echo "%NAME% %IP%" >> OUT\n'
    )
    running = Tumblerd(tmp_path, doors, common=f"   realm = {REALM}\n   window_seconds = 30\n")
    running.start()
    yield running
    running.stop()


def counters(daemon: Tumblerd) -> dict[str, int]:
    """The daemon's counters (its control socket is up before it says READY=1)."""
    return request(str(daemon.folder / "control.sock"), {"command": "status"})["counters"]


def knock(daemon: Tumblerd, signer: FileSigner, **kwargs: object) -> bytes:
    kwargs.setdefault("realm", REALM)
    [sent] = send_signed_knocks("127.0.0.1", daemon.port, [signer], **kwargs)  # type: ignore[arg-type]
    return sent.datagram


def wait_count(daemon: Tumblerd, name: str, n: int = 1) -> None:
    wait_until(lambda: counters(daemon).get(name, 0) >= n, what=f"counter {name} to reach {n}")


def test_each_key_type_opens_and_the_log_names_the_key(daemon, keys):
    for n, name in enumerate(("alice", "bob", "carol"), start=1):
        knock(daemon, keys[name])
        wait_until(lambda n=n: len(daemon.lines()) == n, what=f"{name}'s knock")
        assert daemon.lines()[-1] == "ssh 127.0.0.1"
        label = f"{keys[name].comment} {keys[name].key.fingerprint}"
        assert f"knock accepted: door ssh from 127.0.0.1 by key {label}" in daemon.log_text()
    log = daemon.log_text()
    assert "options restrict, command do not apply" in log
    assert str(daemon.folder / "ssh-users") in log


def test_two_knocks_in_one_second_both_work_and_a_replay_does_not(daemon, keys):
    now = int(time.time())
    first = knock(daemon, keys["alice"], when=now)
    knock(daemon, keys["alice"], when=now)
    wait_until(lambda: len(daemon.lines()) == 2, what="two knocks of one second")
    daemon.send(first).close()
    wait_count(daemon, "replay")
    # A restart keeps the replay cache (sqlite): the captured knock is still refused.
    daemon.stop()
    daemon.start()
    daemon.send(first).close()
    wait_count(daemon, "replay")
    knock(daemon, keys["alice"])
    wait_until(lambda: len(daemon.lines()) == 3, what="a fresh knock after the replays")
    assert counters(daemon).get("signed-bad-signature", 0) == 0


@pytest.mark.parametrize(
    ("kwargs", "counter"),
    [
        ({"source": "127.0.0.2"}, "signed-bad-signature"),  # made for another address
        ({"realm": "other"}, "signed-bad-signature"),  # made for another server
        ({"when": -3600}, "signed-stale"),  # seconds from now, added when the test runs
        ({"when": +45}, "signed-stale"),
    ],
)
def test_knocks_that_must_not_open(daemon, keys, kwargs, counter):
    if "when" in kwargs:
        kwargs = {"when": int(time.time()) + kwargs["when"]}
    knock(daemon, keys["alice"], **kwargs)
    wait_count(daemon, counter)
    knock(daemon, keys["bob"])  # a good knock after it shows the daemon went on
    wait_until(daemon.lines, what="the good knock")
    assert daemon.lines() == ["ssh 127.0.0.1"]
    if counter == "signed-stale":
        assert "clock off by" in daemon.log_text()
        assert "window 30 s" in daemon.log_text()


def test_unknown_key_and_junk_reusing_a_key_id(daemon, keys, tmp_path):
    stranger = load_key_file(make_key(tmp_path, "stranger", "ed25519"))
    knock(daemon, stranger)
    wait_count(daemon, "signed-unknown-key")
    good = sign_knock(keys["alice"], "127.0.0.1", REALM, int(time.time()), os.urandom(16))
    for _ in range(200):  # the key id of a real key, a signature of random bytes
        forged = good[:20] + os.urandom(16) + good[36:-64] + os.urandom(64)
        daemon.send(forged).close()
    wait_until(
        lambda: (
            counters(daemon).get("signed-bad-signature", 0)
            + counters(daemon).get("signed-rate-limited", 0)
            == 200
        ),
        what="the forged knocks to be refused",
    )
    assert daemon.alive()
    assert daemon.lines() == []


def test_a_key_removed_and_reloaded_no_longer_opens(daemon, keys):
    knock(daemon, keys["carol"])
    wait_until(daemon.lines, what="carol's knock")
    authorized(daemon.folder / "ssh-users", keys["alice"])
    reloads = daemon.log_text().count("reloaded")
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: daemon.log_text().count("reloaded") > reloads, what="the reload")
    knock(daemon, keys["carol"])
    wait_count(daemon, "signed-unknown-key")
    knock(daemon, keys["alice"])
    wait_until(lambda: len(daemon.lines()) == 2, what="alice's knock")
    assert daemon.lines() == ["ssh 127.0.0.1"] * 2


def test_an_unreadable_key_file_on_reload_trusts_nobody(daemon, keys):
    (daemon.folder / "ssh-users").unlink()
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "cannot read authorized_keys" in daemon.log_text(), what="the warning")
    wait_until(lambda: "reloaded" in daemon.log_text(), what="the reload")
    knock(daemon, keys["alice"])
    wait_count(daemon, "signed-unknown-key")
    assert daemon.lines() == []


def test_without_cryptography_v1_doors_still_work_and_the_log_says_why(tmp_path, keys, monkeypatch):
    blocked = tmp_path / "blocked" / "cryptography"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text('raise ImportError("cryptography blocked by the test")\n')
    monkeypatch.setenv("PYTHONPATH", str(blocked.parent))
    authorized(tmp_path / "ssh-users", keys["alice"])
    doors = (
        "[door-ssh]\n"
        f"   authorized_keys = {tmp_path / 'ssh-users'}\n"
        '   command = echo "%NAME% %IP%" >> OUT\n'
        "[door-v1]\n"
        "   secret = v1-secret\n"
        '   command = echo "%NAME% %IP%" >> OUT\n'
    )
    running = Tumblerd(tmp_path, doors).start()
    try:
        log = running.log_text()
        assert "door ssh takes no signed knocks: checking SSH signatures needs the " in log
        assert "pip install 'tumbler[ssh]'" in log
        knock(running, keys["alice"], realm="")
        wait_count(running, "signed-unknown-key")
        running.knock("v1-secret")
        wait_until(running.lines, what="the v1 knock")
        assert running.lines() == ["v1 127.0.0.1"]
    finally:
        running.stop()


def test_ipv6_signed_knock(daemon, keys):
    [sent] = send_signed_knocks("::1", daemon.port, [keys["carol"]], realm=REALM)
    assert sent.address == "::1"
    wait_until(daemon.lines, what="the IPv6 knock")
    assert daemon.lines() == ["ssh ::1"]
