"""The one way to open tumblerd's SQLite state database, shared by its users.

The replay cache and the iptables backend keep their tables in the same file (`state`);
opening it one way keeps their settings from fighting: WAL, so readers never wait for a
writer, and no sync on every commit (what a power cut could lose is a knock's claim or a
pending close that the reboot has made moot anyway).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

BUSY_TIMEOUT = 10.0  # seconds a writer waits for another connection's transaction


def open_state_db(
    path: str | os.PathLike[str], schema: str, busy_timeout: float = BUSY_TIMEOUT
) -> sqlite3.Connection:
    """Connect (making the folder, private, if need be) and run `schema`, one CREATE statement.

    `busy_timeout` is how long a write waits for another connection's transaction; the
    replay cache, which answers in the receive loop, passes 0 and never waits.
    Raises OSError or sqlite3.Error; callers say which store failed in their own words.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = sqlite3.connect(os.fspath(path), timeout=BUSY_TIMEOUT, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        with db:
            db.execute(schema)
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    except sqlite3.Error:
        db.close()
        raise
    return db
