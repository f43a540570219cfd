"""The files and folders tumblerd trusts, checked before it starts.

A root daemon that reads a secret, a config or its state from a file that another user
can change does what that user says, so tumblerd refuses to start on such files, the way
sshd's StrictModes does, and names the `chmod` or `chown` that fixes each one. A symlink
is not followed where it sits in a folder others may write to (such as /tmp): the
name could be pointed elsewhere between the check and the open.

Folders that are missing are made at start-up with private modes (0700 for the state
and control folders, 0750 for logs); `--check-config` only says whether they can be.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from tumbler.config.daemon import Config
from tumbler.filemodes import shared_directory, untrusted_because


@dataclass(frozen=True)
class Trusted:
    """One path the daemon relies on: what it is, and the mode a missing folder gets."""

    path: Path
    what: str
    folder: bool = False
    make_mode: int | None = None  # a folder made when missing, with this mode
    optional: bool = False  # a file that may not exist yet (the state database, the log)
    any_owner: bool = False  # a user's own file (~alice/.ssh/authorized_keys): mode only


def trusted_paths(config: Config) -> list[Trusted]:
    """What the daemon reads or writes with its privileges, in the order it uses them."""
    found: list[Trusted] = []
    if os.path.exists(config.path):
        found.append(Trusted(Path(config.path), "config file"))
    for door in config.doors:
        if door.secret_file is not None:
            found.append(Trusted(door.secret_file, f"secret file of door {door.name}"))
        if door.authorized_keys is not None:
            what = f"authorized_keys of door {door.name}"
            found.append(Trusted(Path(door.authorized_keys), what, any_owner=True))
    if config.replay.store == "sqlite" or any(d.open for d in config.doors):
        state = Path(config.state)
        found.append(Trusted(state.parent, "state folder", folder=True, make_mode=0o700))
        found.append(Trusted(state, "state database", optional=True))
    if config.log:
        log = Path(config.log)
        found.append(Trusted(log.parent, "log folder", folder=True, make_mode=0o750))
        found.append(Trusted(log, "log file", optional=True))
    control = Path(config.control)
    found.append(Trusted(control.parent, "control socket folder", folder=True, make_mode=0o700))
    return found


def _fix(item: Trusted, reason: str) -> str:
    if reason.startswith("is owned by"):
        return f"chown root {item.path}"
    return f"chmod go-w {item.path}"


def _missing_ok(item: Trusted) -> str | None:
    """None if a missing `item` is fine or can be made; else why not."""
    if item.optional:
        return None
    if item.make_mode is None:
        return "does not exist"
    ancestor = item.path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"does not exist and cannot be made (no write access to {ancestor})"
    return None


def check(config: Config, euid: int | None = None) -> list[str]:
    """One line per path that would make the daemon unsafe or unable to start."""
    euid = os.geteuid() if euid is None else euid
    problems: list[str] = []
    failed: set[Path] = set()  # folders already reported: what is inside them is moot
    for item in trusted_paths(config):
        if item.path.parent in failed:
            continue
        problem = _check_one(item, euid)
        if problem is not None:
            problems.append(problem)
            if item.folder:
                failed.add(item.path)
    return problems


def _check_one(item: Trusted, euid: int) -> str | None:
    """Why `item` must not be used as it is, or None."""
    try:
        link = os.lstat(item.path)
    except FileNotFoundError:
        reason = _missing_ok(item)
        return None if reason is None else f"{item.what} {item.path} {reason}"
    except OSError as exc:
        return f"{item.what} {item.path}: {exc.strerror}"
    if stat.S_ISLNK(link.st_mode) and shared_directory(os.stat(item.path.parent)):
        return (
            f"{item.what} {item.path} is a symlink in {item.path.parent}, which others can "
            "write to; tumblerd does not follow it: use the real path"
        )
    try:
        st = os.stat(item.path)
    except OSError as exc:
        return f"{item.what} {item.path}: {exc.strerror}"
    if item.folder and not stat.S_ISDIR(st.st_mode):
        return f"{item.what} {item.path} is not a folder"
    # As sshd does for a user's authorized_keys, the owner may be that user; the mode still
    # must not let anyone else add a key.
    reason = untrusted_because(st, st.st_uid if item.any_owner else euid)
    if reason is not None:
        return f"{item.what} {item.path} {reason}; run: {_fix(item, reason)}"
    return None


def make_folders(config: Config) -> None:
    """Make the missing folders the daemon writes to, private; raise OSError if one cannot be."""
    for item in trusted_paths(config):
        if item.make_mode is not None and not item.path.exists():
            item.path.mkdir(parents=True, mode=item.make_mode)
            os.chmod(item.path, item.make_mode)  # mkdir's mode passes through the umask
