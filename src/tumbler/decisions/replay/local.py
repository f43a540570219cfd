"""The replay stores of one host: in memory, or in SQLite so that a restart remembers."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path

from tumbler.errors import ReplayStoreError
from tumbler.statedb import BUSY_TIMEOUT, open_state_db

log = logging.getLogger("tumblerd")

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

    def probe(self) -> None:
        """A local store has nothing to probe."""

    def close(self) -> None:
        self._claims.clear()


def _busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock: a wait, not a failure of the store."""
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteReplayCache:
    """Store on disk, so that a restart does not reopen the replay window.

    The receive loop never waits on the database: the claim is written with no busy
    timeout, and while another connection holds the write lock (the iptables backend's
    own work, an administrator's sqlite3 shell) it is decided in memory, kept pending and
    written as soon as the lock is free (at the next claim or prune, and at close). The
    memory holds every unexpired claim of the file, read at start, so a knock claimed
    before a restart is still refused while the file is locked. WAL mode, and the row is
    committed before the daemon acts whenever the file is free: a crash after a door
    opened cannot forget the claim, except one made during a lock that never freed.
    """

    name = "sqlite"

    def __init__(self, path: str | Path, now: float | None = None) -> None:
        self.path = Path(path)
        now = time.time() if now is None else now
        try:
            self._db = open_state_db(self.path, _SCHEMA, busy_timeout=0)
            rows = self._db.execute(
                "SELECT digest, expires FROM replay WHERE expires > ?", (now,)
            ).fetchall()
        except (OSError, sqlite3.Error) as exc:
            raise ReplayStoreError(f"cannot open replay database {self.path}: {exc}") from exc
        self._known: dict[str, float] = dict(rows)
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()
        self.locked = False  # the last write found the file locked by another connection

    def _write(self, claims: dict[str, float], now: float) -> dict[str, bool]:
        """Insert `claims` in one transaction; which of them were new to the file."""
        fresh: dict[str, bool] = {}
        with self._db:
            for digest, expires in claims.items():
                self._db.execute(
                    "DELETE FROM replay WHERE digest = ? AND expires <= ?", (digest, now)
                )
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO replay (digest, expires) VALUES (?, ?)",
                    (digest, expires),
                )
                fresh[digest] = cur.rowcount == 1
        return fresh

    def _flush(self, now: float) -> None:
        """Write the claims decided while the file was locked; keep them if it still is."""
        if not self._pending:
            return
        self._write(self._pending, now)
        self._pending.clear()

    def _set_locked(self, locked: bool) -> None:
        """Say once when the file locks and once when the claims made meanwhile are written."""
        if locked and not self.locked:
            log.warning(
                "replay database %s is locked by another connection; claims are decided in "
                "memory and written when it is free",
                self.path,
            )
        elif self.locked and not locked:
            log.info("replay database %s is free again; pending claims written", self.path)
        self.locked = locked

    def claim(self, digest: str, expires: float, now: float) -> bool:
        with self._lock:
            held = self._known.get(digest)
            if held is not None and held > now:
                return False
            try:
                self._flush(now)
                fresh = self._write({digest: expires}, now)[digest]
                self._set_locked(False)
            except sqlite3.Error as exc:
                if not _busy(exc):
                    raise ReplayStoreError(f"replay database {self.path}: {exc}") from exc
                self._set_locked(True)
                self._pending[digest] = expires
                fresh = True
            self._known[digest] = expires
            return fresh

    def prune(self, now: float) -> int:
        with self._lock:
            for digest in [d for d, e in self._known.items() if e <= now]:
                del self._known[digest]
            try:
                self._flush(now)
                with self._db:
                    pruned = self._db.execute(
                        "DELETE FROM replay WHERE expires <= ?", (now,)
                    ).rowcount
            except sqlite3.Error as exc:
                if not _busy(exc):
                    raise ReplayStoreError(f"replay database {self.path}: {exc}") from exc
                self._set_locked(True)
                return 0
            self._set_locked(False)
            return pruned

    @property
    def pending(self) -> int:
        """Claims decided during a lock and not yet on disk."""
        return len(self._pending)

    def probe(self) -> None:
        """A local store has nothing to probe."""

    def close(self) -> None:
        with self._lock:
            if self._pending:  # the last chance to put them on disk: wait for the lock
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
                    self._flush(time.time())
            self._db.close()
