"""Replay caches: claim once, again only after expiry, prune, persist across reopen."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tumbler.decisions.replay import open_replay_cache
from tumbler.decisions.replay.local import MemoryReplayCache, SqliteReplayCache
from tumbler.errors import ReplayStoreError, TumblerError

D1 = "a" * 64
D2 = "b" * 64
T0 = 1_000_000.0


@pytest.fixture(params=["memory", "sqlite"])
def cache(request, tmp_path):
    store = (
        MemoryReplayCache() if request.param == "memory" else SqliteReplayCache(tmp_path / "r.db")
    )
    yield store
    store.close()


def test_claim_once(cache):
    assert cache.claim(D1, T0 + 120, now=T0) is True
    assert cache.claim(D1, T0 + 120, now=T0 + 1) is False
    assert cache.claim(D1, T0 + 500, now=T0 + 119.9) is False


def test_digests_are_independent(cache):
    assert cache.claim(D1, T0 + 120, now=T0) is True
    assert cache.claim(D2, T0 + 120, now=T0) is True
    assert cache.claim(D2, T0 + 120, now=T0) is False


def test_reclaim_after_expiry(cache):
    assert cache.claim(D1, T0 + 120, now=T0) is True
    assert cache.claim(D1, T0 + 300, now=T0 + 120) is True
    # The new claim holds until its own expiry.
    assert cache.claim(D1, T0 + 400, now=T0 + 299) is False
    assert cache.claim(D1, T0 + 400, now=T0 + 300) is True


def test_prune_forgets_only_expired_claims(cache):
    cache.claim(D1, T0 + 60, now=T0)
    cache.claim(D2, T0 + 180, now=T0)
    assert cache.prune(T0 + 59) == 0
    assert cache.prune(T0 + 60) == 1
    assert cache.claim(D2, T0 + 500, now=T0 + 61) is False
    assert cache.prune(T0 + 1000) == 1
    assert cache.prune(T0 + 1000) == 0


def test_claim_uses_the_clock_when_no_now_is_given(cache):
    assert cache.claim(D1, time.time() + 60, time.time()) is True
    assert cache.claim(D1, time.time() + 60, time.time()) is False
    # A claim whose expiry is already past does not block the next one.
    assert cache.claim(D2, time.time() - 1, time.time()) is True
    assert cache.claim(D2, time.time() + 60, time.time()) is True


def test_memory_cache_len_and_close():
    cache = MemoryReplayCache()
    cache.claim(D1, T0 + 60, now=T0)
    cache.claim(D2, T0 + 60, now=T0)
    assert len(cache) == 2
    cache.prune(T0 + 60)
    assert len(cache) == 0


def test_sqlite_persists_across_reopen(tmp_path):
    path = tmp_path / "state" / "replay.db"
    first = SqliteReplayCache(path)
    assert first.claim(D1, T0 + 120, now=T0) is True
    first.close()
    second = SqliteReplayCache(path)
    try:
        assert second.claim(D1, T0 + 120, now=T0 + 10) is False
        assert second.claim(D2, T0 + 120, now=T0 + 10) is True
        assert second.claim(D1, T0 + 240, now=T0 + 120) is True
    finally:
        second.close()


def test_sqlite_two_handles_on_one_file_share_claims(tmp_path):
    path = tmp_path / "replay.db"
    a, b = SqliteReplayCache(path), SqliteReplayCache(path)
    try:
        assert a.claim(D1, T0 + 120, now=T0) is True
        assert b.claim(D1, T0 + 120, now=T0) is False
    finally:
        a.close()
        b.close()


def test_sqlite_concurrent_claims_have_one_winner(tmp_path):
    cache = SqliteReplayCache(tmp_path / "replay.db")
    results: list[bool] = []
    lock = threading.Lock()

    def claim() -> None:
        won = cache.claim(D1, T0 + 120, now=T0)
        with lock:
            results.append(won)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache.close()
    assert sorted(results) == [False] * 7 + [True]


def test_sqlite_creates_parent_directories(tmp_path):
    path = tmp_path / "a" / "b" / "replay.db"
    SqliteReplayCache(path).close()
    assert path.exists()


def test_sqlite_under_a_regular_file_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ReplayStoreError, match="replay database"):
        SqliteReplayCache(blocker / "replay.db")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_sqlite_in_proc_raises():
    # /proc refuses new files even to root, so this holds whoever runs the tests.
    with pytest.raises(ReplayStoreError):
        SqliteReplayCache("/proc/replay.db")


def test_sqlite_on_a_directory_raises(tmp_path):
    with pytest.raises(ReplayStoreError):
        SqliteReplayCache(tmp_path)


def test_sqlite_on_a_non_database_file_raises(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ReplayStoreError):
        SqliteReplayCache(junk)


def test_sqlite_error_after_close_is_a_replay_store_error(tmp_path):
    cache = SqliteReplayCache(tmp_path / "r.db")
    cache.close()
    with pytest.raises(ReplayStoreError):
        cache.claim(D1, T0 + 60, now=T0)
    with pytest.raises(ReplayStoreError):
        cache.prune(T0)


def test_replay_store_error_is_a_tumbler_error():
    assert issubclass(ReplayStoreError, TumblerError)


def test_sqlite_file_holds_the_claim(tmp_path):
    path = tmp_path / "r.db"
    cache = SqliteReplayCache(path)
    cache.claim(D1, T0 + 60, now=T0)
    cache.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT digest, expires FROM replay").fetchall() == [(D1, T0 + 60)]


def test_open_replay_cache_by_name(tmp_path):
    memory = open_replay_cache("memory", str(tmp_path / "unused.db"))
    assert isinstance(memory, MemoryReplayCache)
    assert not (tmp_path / "unused.db").exists()
    sqlite = open_replay_cache("sqlite", str(tmp_path / "s.db"))
    try:
        assert isinstance(sqlite, SqliteReplayCache)
        assert sqlite.name == "sqlite"
    finally:
        sqlite.close()
    with pytest.raises(ReplayStoreError):
        open_replay_cache("postgres", str(tmp_path / "x.db"))


# -- the receive loop never waits on a locked database --------------------------------------


def _locker(path):
    """Another connection that holds the write lock of the state database until closed."""
    other = sqlite3.connect(str(path), timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_claims_during_a_lock_are_decided_in_memory_and_written_after(tmp_path):
    path = tmp_path / "state.db"
    cache = SqliteReplayCache(path)
    other = _locker(path)
    try:
        assert cache.claim(D1, T0 + 60, now=T0) is True  # no wait, no error
        assert cache.claim(D1, T0 + 60, now=T0 + 1) is False  # still a replay
        assert cache.locked and cache.pending == 1
    finally:
        other.rollback()
        other.close()
    assert cache.claim(D2, T0 + 60, now=T0 + 2) is True  # the lock is gone: both written
    assert not cache.locked and cache.pending == 0
    with sqlite3.connect(str(path)) as db:
        rows = sorted(db.execute("SELECT digest FROM replay").fetchall())
    assert rows == sorted([(D1,), (D2,)])
    cache.close()


def test_a_claim_from_before_a_restart_is_refused_while_the_file_is_locked(tmp_path):
    path = tmp_path / "state.db"
    first = SqliteReplayCache(path)
    assert first.claim(D1, T0 + 60, now=T0)
    first.close()
    second = SqliteReplayCache(path, now=T0 + 1)
    other = _locker(path)
    try:
        assert second.claim(D1, T0 + 60, now=T0 + 1) is False
    finally:
        other.rollback()
        other.close()
        second.close()


def test_close_writes_what_a_lock_kept_pending(tmp_path):
    path = tmp_path / "state.db"
    cache = SqliteReplayCache(path)
    other = _locker(path)
    assert cache.claim(D1, T0 + 60, now=T0)
    other.rollback()
    other.close()
    cache.close()
    with sqlite3.connect(str(path)) as db:
        assert db.execute("SELECT digest FROM replay").fetchall() == [(D1,)]
