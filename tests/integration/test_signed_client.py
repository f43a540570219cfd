"""`tumbler --open tumbler+ssh://`, `tumbler open` and `ssh-proxy` signing through a real
ssh-agent (holding a passphrase-protected key) against a real tumblerd on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Tumblerd
from tests.integration.test_ssh_proxy import PAYLOAD, GatedEcho
from tests.sshkeys import SshAgent, make_key, need
from tests.waiting import wait_until
from tumbler.daemon.control import request
from tumbler.protocols.sshkeys import parse_public_key_line

TUMBLER = [sys.executable, "-m", "tumbler"]
PASSPHRASE = "correct horse battery"
REALM = "lab"


@pytest.fixture
def user_key(tmp_path: Path) -> Path:
    need("ssh-keygen", "ssh-agent", "ssh-add")
    return make_key(tmp_path, "alice", "ed25519", passphrase=PASSPHRASE)


@pytest.fixture
def agent(tmp_path: Path, user_key: Path) -> Iterator[SshAgent]:
    running = SshAgent(tmp_path).start()
    try:
        running.add(user_key, PASSPHRASE)
        yield running
    finally:
        running.stop()


@pytest.fixture
def daemon(tmp_path: Path, user_key: Path) -> Iterator[Tumblerd]:
    keys = tmp_path / "ssh-users"
    keys.write_text(user_key.with_name("alice.pub").read_text())
    doors = f'[door-ssh]\n   authorized_keys = {keys}\n   command = echo "%NAME% %IP%" >> OUT\n'
    made = Tumblerd(tmp_path, doors, common=f"   realm = {REALM}\n")
    yield made
    made.stop()


def env(tmp_path: Path, agent: SshAgent | None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("TUMBLER_", "SSH_AUTH"))}
    out["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    out["HOME"] = str(tmp_path / "home")  # no ~/.ssh of the real user
    if agent is not None:
        out["SSH_AUTH_SOCK"] = str(agent.socket)
    return out


def label(user_key: Path) -> str:
    key, comment = parse_public_key_line(user_key.with_name("alice.pub").read_text())
    return f"{comment} {key.fingerprint}"


def test_open_url_signs_through_the_agent(tmp_path, agent, daemon, user_key):
    daemon.start()
    url = f"tumbler+ssh://alice@127.0.0.1:{daemon.port}/?realm={REALM}"
    dry = subprocess.run(
        [*TUMBLER, url, "--dry-run"], capture_output=True, text=True, env=env(tmp_path, agent)
    )
    assert dry.returncode == 0, dry.stderr
    assert f"key       {label(user_key)}" in dry.stdout
    assert "realm     lab" in dry.stdout
    assert "(dry run: nothing sent)" in dry.stdout
    sent = subprocess.run(
        [*TUMBLER, "--open", url, "-v"], capture_output=True, text=True, env=env(tmp_path, agent)
    )
    assert sent.returncode == 0, sent.stderr
    wait_until(daemon.lines, what="the signed knock")
    assert daemon.lines() == ["ssh 127.0.0.1"]  # one knock: the dry run sent nothing
    assert f"door ssh from 127.0.0.1 by key {label(user_key)}" in daemon.log_text()


def test_ssh_proxy_with_a_profile_needs_no_secret(tmp_path, agent, daemon, user_key):
    daemon.start()
    echo = GatedEcho(daemon.out)
    try:
        profiles = tmp_path / "hosts.conf"
        profiles.write_text(
            f"[host-lo]\n   url = tumbler+ssh://127.0.0.1:{daemon.port}/?realm={REALM}\n"
        )
        argv = [*TUMBLER, "ssh-proxy", "-v", "127.0.0.1", str(echo.port)]
        proc = subprocess.run(
            [*argv, "--profiles", str(profiles)],
            input=PAYLOAD,
            capture_output=True,
            timeout=30,
            env=env(tmp_path, agent),
        )
    finally:
        echo.close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == PAYLOAD
    narrative = proc.stderr.decode()
    assert f"signing with {label(user_key)}" in narrative
    assert "knock 1 sent (fresh nonce)" in narrative
    assert daemon.lines() == ["ssh 127.0.0.1"]


def test_lost_first_knock_is_retried_with_a_fresh_one(tmp_path, agent, daemon):
    echo = GatedEcho(daemon.out)
    url = f"tumbler+ssh://127.0.0.1:{daemon.port}/?realm={REALM}"
    argv = [*TUMBLER, "ssh-proxy", "-v", "127.0.0.1", str(echo.port), "--url", url]
    proc = subprocess.Popen(
        [*argv, "--retry-after", "1", "--wait-timeout", "30"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(tmp_path, agent),
    )
    try:
        assert proc.stderr is not None
        narrative: list[str] = []
        while not any("knock 1 sent (fresh nonce)" in line for line in narrative):
            line = proc.stderr.readline().decode()
            assert line, f"ssh-proxy ended early: {narrative}"
            narrative.append(line)
        daemon.start()  # the first knock went to nobody
        out, err = proc.communicate(PAYLOAD, timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        echo.close()
    assert proc.returncode == 0, err
    assert out == PAYLOAD
    assert daemon.lines() == ["ssh 127.0.0.1"]
    status = request(str(daemon.folder / "control.sock"), {"command": "status"})
    assert status["counters"].get("replay", 0) == 0


def test_ssh_key_file_without_an_agent(tmp_path, daemon):
    need("ssh-keygen")
    plain = make_key(tmp_path, "plain", "ecdsa", "384")
    (tmp_path / "ssh-users").write_text(plain.with_name("plain.pub").read_text())
    daemon.start()
    url = f"tumbler+ssh://127.0.0.1:{daemon.port}/?realm={REALM}"
    proc = subprocess.run(
        [*TUMBLER, url, "--ssh-key", str(plain)],
        capture_output=True,
        text=True,
        env=env(tmp_path, None),
    )
    assert proc.returncode == 0, proc.stderr
    wait_until(daemon.lines, what="the knock signed from the key file")
    assert "by key plain@test SHA256:" in daemon.log_text()


def test_usage_errors(tmp_path):
    run = lambda *a: subprocess.run(  # noqa: E731
        [*TUMBLER, *a], capture_output=True, text=True, env=env(tmp_path, None)
    )
    both = run("tumbler+ssh://h/", "--secret-file", "x")
    assert both.returncode == 2
    assert "takes an SSH key, not --secret-file" in both.stderr
    wrong = run("tumbler://h/", "--ssh-key", "x")
    assert wrong.returncode == 2
    assert "--ssh-key is for a tumbler+ssh:// door" in wrong.stderr
    nokey = run("tumbler+ssh://127.0.0.1/")
    assert nokey.returncode == 2
    assert "no SSH key to sign with" in nokey.stderr
