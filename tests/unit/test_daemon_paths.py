"""The start-up checks of the files and folders tumblerd trusts (sshd's StrictModes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tumbler.config.daemon import load_config
from tumbler.daemon import paths


def write_config(folder: Path, secret_file: Path | None = None) -> Path:
    secret = f"secret_file = {secret_file}" if secret_file else "secret = s3cret"
    config = folder / "tumblerd.conf"
    config.write_text(
        "[common]\n"
        f"   log = {folder / 'log' / 'tumblerd.log'}\n"
        f"   state = {folder / 'state' / 'state.db'}\n"
        f"   control = {folder / 'run' / 'control.sock'}\n"
        f"[door-a]\n   {secret}\n   command = true\n"
    )
    config.chmod(0o600)
    return config


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    tmp_path.chmod(0o700)
    return tmp_path


def test_a_private_setup_passes_and_missing_folders_are_made_private(folder: Path) -> None:
    config = load_config(write_config(folder))
    assert paths.check(config) == []
    paths.make_folders(config)
    modes = {name: (folder / name).stat().st_mode & 0o777 for name in ("log", "state", "run")}
    assert modes == {"log": 0o750, "state": 0o700, "run": 0o700}


@pytest.mark.parametrize("mode", [0o620, 0o602])
def test_a_config_others_can_change_is_refused_with_the_fix(folder: Path, mode: int) -> None:
    path = write_config(folder)
    path.chmod(mode)
    [problem] = paths.check(load_config(path))
    assert problem == (f"config file {path} is writable by group or others; run: chmod go-w {path}")


def test_a_secret_file_owned_by_another_user_is_refused(folder: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")
    secret = folder / "door.secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    os.chown(secret, 4321, -1)
    [problem] = paths.check(load_config(write_config(folder, secret)))
    assert problem == (
        f"secret file of door a {secret} is owned by uid 4321; run: chown root {secret}"
    )


def test_state_and_log_folders_others_can_write_are_refused(folder: Path) -> None:
    config = load_config(write_config(folder))
    for name in ("state", "log"):
        (folder / name).mkdir(mode=0o700)
    (folder / "state").chmod(0o777)
    (folder / "log").chmod(0o770)
    problems = paths.check(config)
    assert problems == [
        f"state folder {folder / 'state'} is writable by group or others; "
        f"run: chmod go-w {folder / 'state'}",
        f"log folder {folder / 'log'} is writable by group or others; "
        f"run: chmod go-w {folder / 'log'}",
    ]


def test_a_symlink_in_a_shared_folder_is_not_followed(folder: Path) -> None:
    shared = folder / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    real = folder / "real.secret"
    real.write_text("s3cret\n")
    real.chmod(0o600)
    link = shared / "door.secret"
    link.symlink_to(real)
    [problem] = paths.check(load_config(write_config(folder, link)))
    assert problem.startswith(f"secret file of door a {link} is a symlink in {shared}")


def test_a_folder_that_cannot_be_made_is_reported(folder: Path) -> None:
    config = load_config(write_config(folder))
    blocker = folder / "log"
    blocker.write_text("a file where the log folder should be")
    problems = paths.check(config)
    assert problems == [f"log folder {blocker} is not a folder"]


def _signed_config(folder: Path, keys: Path) -> Path:
    config = folder / "tumblerd.conf"
    config.write_text(
        "[common]\n"
        f"   log = {folder / 'log' / 'tumblerd.log'}\n"
        f"   state = {folder / 'state' / 'state.db'}\n"
        f"   control = {folder / 'run' / 'control.sock'}\n"
        f"[door-ssh]\n   authorized_keys = {keys}\n   command = true\n"
    )
    config.chmod(0o600)
    return config


def test_authorized_keys_may_be_a_users_own_but_not_writable_by_others(folder: Path) -> None:
    keys = folder / "authorized_keys"
    keys.write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4 a\n"
    )
    keys.chmod(0o644)
    if os.geteuid() == 0:
        os.chown(keys, 4321, -1)  # alice's own ~/.ssh/authorized_keys, as sshd allows
    config = load_config(_signed_config(folder, keys))
    assert paths.check(config) == []
    assert len(config.doors[0].keys) == 1
    keys.chmod(0o664)
    config = load_config(_signed_config(folder, keys))
    [problem] = paths.check(config)
    assert problem == (
        f"authorized_keys of door ssh {keys} is writable by group or others; run: chmod go-w {keys}"
    )
    # Read again (a reload), the same file gives the door no keys at all.
    assert config.doors[0].keys == ()
    assert any("takes no signed knocks" in w for w in config.warnings)


def test_a_missing_authorized_keys_file_is_refused_at_start(folder: Path) -> None:
    keys = folder / "nothing"
    [problem] = paths.check(load_config(_signed_config(folder, keys)))
    assert problem == f"authorized_keys of door ssh {keys} does not exist"
