"""Log lines fit for journald: a syslog priority prefix on every line written to stderr.

Under systemd, stderr goes to the journal, which stamps the time itself and reads a
leading `<N>` as the line's priority; then `journalctl -p warning -u tumblerd` finds the
refused knocks and outages, and errors show in red.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

# syslog priorities (sd-daemon(3)): crit, err, warning, info, debug.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def priority(levelno: int) -> int:
    """The syslog priority of a logging level."""
    for level, prio in _PRIORITIES:
        if levelno >= level:
            return prio
    return 7


class JournalFormatter(logging.Formatter):
    """Prefixes each line with `<N>`: journald splits a traceback into one entry per line."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        text = super().format(record)
        return "\n".join(prefix + line for line in text.split("\n"))


def stderr_is_journal(stream: TextIO | None = None) -> bool:
    """True when stderr is the journal stream systemd gave us, not merely inherited the name.

    $JOURNAL_STREAM is `DEVICE:INODE` of that stream; a child whose stderr was redirected
    keeps the variable, so compare it with what stderr really is (systemd.exec(5)).
    """
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))
