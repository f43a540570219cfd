"""Replay caches: an accepted digest is claimed once and refused while it could still be valid.

Stores are chosen by name (`sqlite`, `memory`, a Redis URL); this package holds the one
list of those names, in `open_replay_cache`.
"""

from __future__ import annotations

from tumbler.config.redisurl import RedisAccess, is_redis_url
from tumbler.decisions.replay.base import ReplayCache
from tumbler.decisions.replay.local import MemoryReplayCache, SqliteReplayCache
from tumbler.errors import ReplayStoreError

__all__ = ["MemoryReplayCache", "ReplayCache", "SqliteReplayCache", "open_replay_cache"]


def open_replay_cache(
    spec: str,
    state_path: str,
    fallback: str | None = None,
    access: RedisAccess | None = None,
) -> ReplayCache:
    """The store a config's `replay` key names."""
    if spec == "memory":
        return MemoryReplayCache()
    if spec == "sqlite":
        return SqliteReplayCache(state_path)
    if is_redis_url(spec):
        from tumbler.decisions.replay.redis import RedisReplayCache  # optional extra

        local = open_replay_cache(fallback, state_path) if fallback else None
        return RedisReplayCache(spec, fallback=local, access=access)
    raise ReplayStoreError(f"unknown replay store {spec!r}")
