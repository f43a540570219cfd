"""Replay caches: an accepted digest is claimed once and refused while it could still be valid.

Stores are chosen by name (`sqlite`, `memory`, a Redis URL); this package holds the one
list of those names (LOCAL_STORES, and the Redis URL schemes), read by `ReplaySpec.parse`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tumbler.decisions.replay.base import ReplayCache
from tumbler.decisions.replay.local import MemoryReplayCache, SqliteReplayCache
from tumbler.decisions.replay.redisurl import (
    PREFIXES,
    RedisAccess,
    RedisTarget,
    is_redis_url,
    parse_redis_url,
)
from tumbler.errors import ReplayStoreError

__all__ = [
    "LOCAL_STORES",
    "REMOTE_SCHEMES",
    "MemoryReplayCache",
    "ReplayCache",
    "ReplaySpec",
    "SqliteReplayCache",
    "open_replay_cache",
]

LOCAL_STORES = ("sqlite", "memory")
REMOTE_SCHEMES = PREFIXES


@dataclass(frozen=True)
class ReplaySpec:
    """The replay store a config names, parsed once: a local store, or a Redis deployment.

    `store` is `sqlite`, `memory` or the Redis URL (which may hold a password, so it is kept
    out of repr); `target` is that URL parsed; `fallback` the local store to claim in while
    Redis is down; `access` the login, TLS files and acknowledgements beside the URL.
    """

    store: str = field(default="sqlite", repr=False)
    target: RedisTarget | None = None
    fallback: str | None = None
    access: RedisAccess = field(default_factory=RedisAccess)

    @classmethod
    def parse(cls, text: str) -> ReplaySpec:
        """The store `text` names (a local one, or a Redis URL); else ValueError."""
        if text in LOCAL_STORES:
            return cls(text)
        if is_redis_url(text):
            # raises ValueError naming what is wrong, never the password
            return cls(text, parse_redis_url(text))
        raise ValueError(
            "replay must be sqlite, memory or a Redis URL (redis://, rediss://, unix://, "
            f"redis+sentinel://, redis+cluster://), got {text.partition('://')[0]!r}"
        )


def open_replay_cache(spec: ReplaySpec | str, state_path: str) -> ReplayCache:
    """The store a config's `replay` key names (text is parsed by `ReplaySpec.parse`)."""
    if isinstance(spec, str):
        try:
            spec = ReplaySpec.parse(spec)
        except ValueError:
            raise ReplayStoreError(f"unknown replay store {spec!r}") from None
    if spec.store == "memory":
        return MemoryReplayCache()
    if spec.store == "sqlite":
        return SqliteReplayCache(state_path)
    assert spec.target is not None
    from tumbler.decisions.replay.redis import RedisReplayCache  # optional extra

    local = open_replay_cache(spec.fallback, state_path) if spec.fallback else None
    return RedisReplayCache(spec.target, fallback=local, access=spec.access)
