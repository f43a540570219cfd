"""Whether a file's mode lets others learn or change what it holds; one rule for every file.

Only regular files are judged: a pipe (`--secret-file <(pass show door)`) or a device has
no meaningful mode bits to fix.
"""

from __future__ import annotations

import stat


def readable_by_others(mode: int) -> bool:
    """A regular file that group or others may read: a secret in it is not secret."""
    return stat.S_ISREG(mode) and bool(mode & (stat.S_IRGRP | stat.S_IROTH))


def writable_by_others(mode: int) -> bool:
    """A regular file that group or others may change: they could redirect what it says."""
    return stat.S_ISREG(mode) and bool(mode & (stat.S_IWGRP | stat.S_IWOTH))
