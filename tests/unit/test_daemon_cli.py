"""tumblerd's administration commands, for a user who is not root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tumbler.cli import tumblerd as daemon_cli
from tumbler.config.daemon import Config, default_control_path
from tumbler.errors import TumblerError


def test_status_as_a_user_says_it_needs_root(monkeypatch, tmp_path: Path) -> None:
    root_socket = tmp_path / "run" / "control.sock"
    root_socket.parent.mkdir()
    monkeypatch.setattr(daemon_cli.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(daemon_cli, "ROOT_CONTROL", str(root_socket))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "user"))
    config = Config(path="(built-in defaults)", control=default_control_path())
    with pytest.raises(TumblerError, match=r"tumblerd status needs root .*run it with sudo"):
        daemon_cli._ask(config, {"command": "status"})


def test_close_of_something_that_is_not_an_address_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        daemon_cli.main(["close", "not-an-ip"])
    assert exit_.value.code == 2
    assert "not an IPv4 or IPv6 address" in capsys.readouterr().err


def test_a_door_the_config_lacks_is_a_usage_error_before_any_request(capsys, tmp_path) -> None:
    config = tmp_path / "tumblerd.conf"
    control = tmp_path / "nothing-listens-here.sock"
    config.write_text(
        f"[common]\n   control = {control}\n"
        "[door-ssh]\n   secret = s3cret-ssh\n   command = true\n"
        "[door-web]\n   secret = s3cret-web\n   command = true\n"
    )
    config.chmod(0o600)
    for argv in (["status", "sshd"], ["close", "192.0.2.7", "--door", "sshd"]):
        assert daemon_cli.main([*argv, "-c", str(config)]) == 2
        err = capsys.readouterr().err
        assert err == f"tumblerd: error: no door 'sshd' in {config} (its doors: ssh, web)\n"
    # A door the config has gets as far as asking the daemon, which is not running.
    assert daemon_cli.main(["status", "ssh", "-c", str(config)]) == 1
    assert "is tumblerd running?" in capsys.readouterr().err
