"""Whether a file's mode lets others learn or change what it holds; one rule for every file.

Only regular files are judged: a pipe (`--secret-file <(pass show door)`) or a device has
no meaningful mode bits to fix.
"""

from __future__ import annotations

import os
import stat


def readable_by_others(mode: int) -> bool:
    """A regular file that group or others may read: a secret in it is not secret."""
    return stat.S_ISREG(mode) and bool(mode & (stat.S_IRGRP | stat.S_IROTH))


def writable_by_others(mode: int) -> bool:
    """A regular file that group or others may change: they could redirect what it says."""
    return stat.S_ISREG(mode) and bool(mode & (stat.S_IWGRP | stat.S_IWOTH))


def untrusted_because(st: os.stat_result, euid: int) -> str | None:
    """Why a file or folder a daemon relies on could be changed by someone else, or None.

    sshd's StrictModes rule: it must belong to root or to the daemon's own user, and
    neither its group nor others may write to it.
    """
    if st.st_uid not in (0, euid):
        return f"is owned by uid {st.st_uid}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "is writable by group or others"
    return None


def shared_directory(st: os.stat_result) -> bool:
    """A folder others may write to (/tmp): a name in it may be swapped for a symlink."""
    return stat.S_ISDIR(st.st_mode) and bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))
