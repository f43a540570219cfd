"""The replay stores of one host: in memory, or in SQLite so that a restart remembers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from tumbler.errors import ReplayStoreError
from tumbler.statedb import open_state_db

_SCHEMA = "CREATE TABLE IF NOT EXISTS replay (digest TEXT PRIMARY KEY, expires REAL NOT NULL)"


class MemoryReplayCache:
    """In-process store: fast, but a restart forgets what was accepted."""

    name = "memory"

    def __init__(self) -> None:
        self._claims: dict[str, float] = {}
        self._lock = threading.Lock()  # the daemon prunes from a worker thread

    def claim(self, digest: str, expires: float, now: float) -> bool:
        with self._lock:
            held = self._claims.get(digest)
            if held is not None and held > now:
                return False
            self._claims[digest] = expires
            return True

    def prune(self, now: float) -> int:
        with self._lock:
            stale = [d for d, expires in self._claims.items() if expires <= now]
            for digest in stale:
                del self._claims[digest]
            return len(stale)

    def __len__(self) -> int:
        return len(self._claims)

    def close(self) -> None:
        self._claims.clear()


class SqliteReplayCache:
    """Store on disk, so that a restart does not reopen the replay window.

    WAL mode with the row committed before the daemon acts: a crash after a door opened
    cannot forget the claim.
    """

    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = open_state_db(self.path, _SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ReplayStoreError(f"cannot open replay database {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def claim(self, digest: str, expires: float, now: float) -> bool:
        try:
            with self._lock, self._db:
                self._db.execute(
                    "DELETE FROM replay WHERE digest = ? AND expires <= ?", (digest, now)
                )
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO replay (digest, expires) VALUES (?, ?)",
                    (digest, expires),
                )
                return cur.rowcount == 1
        except sqlite3.Error as exc:
            raise ReplayStoreError(f"replay database {self.path}: {exc}") from exc

    def prune(self, now: float) -> int:
        try:
            with self._lock, self._db:
                return self._db.execute("DELETE FROM replay WHERE expires <= ?", (now,)).rowcount
        except sqlite3.Error as exc:
            raise ReplayStoreError(f"replay database {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
