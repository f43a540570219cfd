"""A replay cache shared by a fleet: each digest is claimed once, atomically, in Redis.

Several servers behind one name share their doors, so a knock captured on its way to one
could be replayed at another within the window. Claiming the digest with one
`SET key 1 NX PX ttl` makes exactly one server win it, whichever the order.

Expiry: a relative TTL (PX), computed from this daemon's clock, plus `slack` seconds. An
absolute expiry (PXAT) would also trust the Redis host's clock, and a Redis clock running
ahead would drop keys early; PX only trusts the daemon's own clock, which the protocol
trusts anyway, and the slack absorbs skew between the servers of the fleet.

Outages: Redis is asked with short timeouts, since `claim` runs in the daemon's receive
loop. After a failure it is not asked again for `retry_interval` seconds, so a replay flood
during an outage cannot stall the loop on every datagram. Meanwhile:

- without a fallback, `claim` raises ReplayStoreError: the daemon fails closed and refuses
  every knock (and says so) until Redis is back;
- with a fallback (the config's `replay_fallback`), `claim` claims in the local store.
  Trade-off: a local claim protects this server only; a knock captured during the outage
  can be replayed at another server of the fleet within its window (at most
  2 * window + 1 minutes). When Redis comes back the local claims are copied to it, which
  closes that gap from then on.

While Redis is up, accepted digests are also written through to the fallback, and a digest
the fallback already holds is refused: a Redis that lost its keys (a restart without
persistence) never makes this server accept a knock twice.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tumbler.errors import ReplayStoreError

if TYPE_CHECKING:
    from tumbler.decisions.replay.base import ReplayCache

log = logging.getLogger("tumblerd")

MAX_PENDING = 100_000  # local claims kept for copying back; only valid knocks get here


def _import_redis() -> Any:
    try:
        import redis
        import redis.backoff
        import redis.retry
    except ImportError as exc:
        raise ReplayStoreError(
            "a redis:// replay store needs the redis client: install the `redis` extra "
            "(pip install 'tumbler[redis]')"
        ) from exc
    return redis


def redact_url(url: str) -> str:
    """The URL without user, password or query, fit for a log line."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable redis URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


class RedisReplayCache:
    """Claims digests in Redis; fails closed, or over to a local store, when it is down."""

    name = "redis"

    def __init__(
        self,
        url: str,
        fallback: ReplayCache | None = None,
        key_prefix: str = "tumbler:replay:",
        *,
        timeout: float = 0.5,
        retry_interval: float = 2.0,
        slack: float = 30.0,
        client: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        redis = _import_redis()
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        self.where = redact_url(url)
        self.fallback = fallback
        self.key_prefix = key_prefix
        self.retry_interval = retry_interval
        self.slack = slack
        self._clock = clock
        if client is None:
            try:
                client = redis.Redis.from_url(
                    url,
                    socket_connect_timeout=timeout,
                    socket_timeout=timeout,
                    retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
                    client_name="tumblerd",
                )
            except ValueError as exc:
                raise ReplayStoreError(f"bad redis URL {self.where}: {exc}") from exc
        self._client = client
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._next_try = 0.0
        self._last_error = ""
        self._pending: dict[str, float] = {}  # claimed locally during an outage
        try:
            self._client.ping()
        except self._errors as exc:
            self._outage(exc)

    @property
    def up(self) -> bool:
        """Whether the last word from Redis was good."""
        return self._down_since is None

    # -- claims -----------------------------------------------------------------------------

    def claim(self, digest: str, expires: float, now: float) -> bool:
        with self._lock:
            if self._down_since is None or self._clock() >= self._next_try:
                try:
                    if self._down_since is not None:
                        self._recover(now)  # copy local claims first: one may be this digest
                    fresh = self._set(digest, expires, now)
                except self._errors as exc:
                    self._outage(exc)
                else:
                    return fresh and self._write_through(digest, expires, now)
            return self._claim_locally(digest, expires, now)

    def _key(self, digest: str) -> str:
        return self.key_prefix + digest

    def _ttl_ms(self, expires: float, now: float) -> int:
        return max(1, math.ceil((expires + self.slack - now) * 1000))

    def _set(self, digest: str, expires: float, now: float) -> bool:
        return bool(
            self._client.set(self._key(digest), b"1", nx=True, px=self._ttl_ms(expires, now))
        )

    def _write_through(self, digest: str, expires: float, now: float) -> bool:
        if self.fallback is None:
            return True
        try:
            return self.fallback.claim(digest, expires, now)
        except ReplayStoreError as exc:  # Redis has the claim; it is the one that matters
            log.warning(
                "replay fallback %s failing (redis claim kept): %s", self.fallback.name, exc
            )
            return True

    def _claim_locally(self, digest: str, expires: float, now: float) -> bool:
        if self.fallback is None:
            raise ReplayStoreError(f"redis {self.where} unreachable: {self._last_error}")
        fresh = self.fallback.claim(digest, expires, now)
        if fresh and len(self._pending) < MAX_PENDING:
            self._pending[digest] = expires
        return fresh

    # -- outage and recovery ----------------------------------------------------------------

    def _outage(self, exc: BaseException) -> None:
        self._last_error = _short(exc)
        self._next_try = self._clock() + self.retry_interval
        if self._down_since is not None:
            return
        self._down_since = self._clock()
        if self.fallback is None:
            log.error(
                "replay store redis %s unreachable (%s): refusing every knock until it is back",
                self.where,
                self._last_error,
            )
        else:
            log.warning(
                "replay store redis %s unreachable (%s): claiming knocks in the local %s store "
                "until it is back; meanwhile a knock replayed to another server is not refused",
                self.where,
                self._last_error,
                self.fallback.name,
            )

    def _recover(self, now: float) -> None:
        """Copy the outage's local claims to Redis, then count Redis as up again."""
        live = {d: e for d, e in self._pending.items() if e > now}
        if live:
            pipe = self._client.pipeline(transaction=False)
            for digest, expires in live.items():
                pipe.set(self._key(digest), b"1", nx=True, px=self._ttl_ms(expires, now))
            pipe.execute()
        self._pending.clear()
        down_for = self._clock() - (self._down_since or 0.0)
        log.info(
            "replay store redis %s is back after %.0f s%s",
            self.where,
            down_for,
            f"; {len(live)} local claims copied to it" if live else "",
        )
        self._down_since = None

    # -- housekeeping -------------------------------------------------------------------------

    def prune(self, now: float) -> int:
        """Redis expires its keys itself; this prunes the fallback and probes a down Redis."""
        if self._down_since is not None and self._clock() >= self._next_try:
            try:
                self._client.ping()  # outside the lock: a slow probe must not hold up claims
            except self._errors as exc:
                with self._lock:
                    self._outage(exc)
            else:
                with self._lock:
                    if self._down_since is not None:
                        try:
                            self._recover(now)
                        except self._errors as exc:
                            self._outage(exc)
        with self._lock:
            self._pending = {d: e for d, e in self._pending.items() if e > now}
            return self.fallback.prune(now) if self.fallback is not None else 0

    def close(self) -> None:
        try:
            self._client.close()
        except self._errors:
            pass
        if self.fallback is not None:
            self.fallback.close()
