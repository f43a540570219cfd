"""Real SSH keys and a real ssh-agent for tests: made by ssh-keygen, run by ssh-agent -D."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.waiting import wait_until

# (file name, ssh-keygen -t, -b) for every key type signed knocks take.
KEY_SPECS = [
    ("id_ed25519", "ed25519", None),
    ("id_ecdsa256", "ecdsa", "256"),
    ("id_ecdsa384", "ecdsa", "384"),
    ("id_ecdsa521", "ecdsa", "521"),
    ("id_rsa", "rsa", "3072"),
]


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (openssh-client)")


def make_key(
    directory: Path, name: str, kind: str, bits: str | None = None, passphrase: str = ""
) -> Path:
    """A new key pair from ssh-keygen; returns the private key's path (`.pub` beside it)."""
    path = directory / name
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", f"{name}@test", "-f", path]
    if bits:
        argv[4:4] = ["-b", bits]
    subprocess.run([str(a) for a in argv], check=True, stdin=subprocess.DEVNULL)
    return path


def keygen_verify(
    directory: Path, public_line: str, signature_text: str, message: bytes
) -> subprocess.CompletedProcess[str]:
    """Run `ssh-keygen -Y verify -n tumbler` on an armoured signature of `message`."""
    signers = directory / "allowed_signers"
    signers.write_text(f'knocker namespaces="tumbler" {public_line}\n')
    sig = directory / "knock.sig"
    sig.write_text(signature_text)
    return subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", signers, "-I", "knocker", "-n", "tumbler", "-s", sig],
        input=message.decode("latin-1"),
        encoding="latin-1",
        capture_output=True,
        check=False,
    )


class SshAgent:
    """An ssh-agent of the test's own, on a socket in the test's directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "agent.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SshAgent:
        self.process = subprocess.Popen(
            ["ssh-agent", "-D", "-a", str(self.socket)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.socket.exists, "ssh-agent's socket")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)
        self.process = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "SSH_AUTH_SOCK": str(self.socket)}

    def add(self, key: Path, passphrase: str = "") -> None:
        """ssh-add the key; a passphrase goes through SSH_ASKPASS as a user would type it."""
        env = self.env()
        if passphrase:
            askpass = self.directory / "askpass.sh"
            askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$TUMBLER_TEST_PASSPHRASE"\n')
            askpass.chmod(0o700)
            env |= {
                "SSH_ASKPASS": str(askpass),
                "SSH_ASKPASS_REQUIRE": "force",
                "DISPLAY": ":0",
                "TUMBLER_TEST_PASSPHRASE": passphrase,
            }
        subprocess.run(
            ["ssh-add", str(key)],
            env=env,
            stdin=subprocess.DEVNULL,
            check=True,
            capture_output=True,
        )

    def remove(self, key: Path) -> None:
        subprocess.run(["ssh-add", "-d", str(key)], env=self.env(), check=True, capture_output=True)
