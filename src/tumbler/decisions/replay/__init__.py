"""Replay caches: an accepted digest is claimed once and refused while it could still be valid.

Stores are chosen by name (`sqlite`, `memory`, a Redis URL); this package holds the one
list of those names, in `open_replay_cache`.
"""

from __future__ import annotations

from tumbler.decisions.replay.base import ReplayCache
from tumbler.decisions.replay.local import MemoryReplayCache, SqliteReplayCache
from tumbler.decisions.replay.redisurl import PREFIXES, RedisAccess, is_redis_url, parse_redis_url
from tumbler.errors import ReplayStoreError

__all__ = [
    "LOCAL_STORES",
    "REMOTE_SCHEMES",
    "MemoryReplayCache",
    "ReplayCache",
    "SqliteReplayCache",
    "check_replay_spec",
    "open_replay_cache",
]

LOCAL_STORES = ("sqlite", "memory")
REMOTE_SCHEMES = PREFIXES


def check_replay_spec(spec: str) -> str:
    """`spec` if it names a store (a local one, or a Redis URL); else ValueError."""
    if spec in LOCAL_STORES:
        return spec
    if is_redis_url(spec):
        parse_redis_url(spec)  # raises ValueError naming what is wrong, never the password
        return spec
    raise ValueError(
        "replay must be sqlite, memory or a Redis URL (redis://, rediss://, unix://, "
        f"redis+sentinel://, redis+cluster://), got {spec.partition('://')[0]!r}"
    )


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
