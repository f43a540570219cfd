"""A replay cache shared by a fleet: each digest is claimed once, atomically, in Redis.

Several servers behind one name share their doors, so a knock captured on its way to one
could be replayed at another within the window. Claiming the digest with one
`SET key 1 NX PX ttl` makes exactly one server win it, whichever the order.

Redis may be one server, a Sentinel service or a Cluster (see `redisurl` beside this); the
client library follows a Sentinel failover or a Cluster's moved slots by itself, and a
change of primary is logged. Redis replicates asynchronously, so a claim the old primary
acknowledged may be missing on the replica promoted in its place, and the same knock would
then be accepted again. With `acks` = N the claim is followed by `WAIT N` on the same
connection; fewer than N replicas holding it in time counts as a failing store.

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
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tumbler.decisions.replay.redisurl import (
    DEFAULT_ACKS,
    RedisAccess,
    RedisTarget,
    parse_redis_url,
)
from tumbler.errors import ReplayStoreError

if TYPE_CHECKING:
    from tumbler.decisions.replay.base import ReplayCache

log = logging.getLogger("tumblerd")

MAX_PENDING = 100_000  # local claims kept for copying back; only valid knocks get here


def _import_redis() -> Any:
    try:
        import redis
        import redis.backoff
        import redis.cluster
        import redis.retry
        import redis.sentinel
    except ImportError as exc:
        raise ReplayStoreError(
            "a redis:// replay store needs the redis client: install the `redis` extra "
            "(pip install 'tumbler[redis]')"
        ) from exc
    return redis


class Unacknowledged(Exception):
    """Fewer replicas than `replay_acks` confirmed a claim in time: it may not survive."""


_PIPELINE_PREFIX = re.compile(r"Command # \d+ \(.*?\) of pipeline caused error: ", re.S)
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{32,}")


def _short(exc: BaseException) -> str:
    """The error's first line for a log, without the command that caused it.

    A pipeline's error quotes its command, which holds the claimed digest: logs name
    neither digests nor anything else a command may carry.
    """
    text = _PIPELINE_PREFIX.sub("", str(exc)).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return _HEX_DIGEST.sub("<digest>", text)[:200]


def _tls_kwargs(access: RedisAccess) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"ssl_cert_reqs": "required"}
    if access.tls_ca:
        kwargs["ssl_ca_certs"] = access.tls_ca
    if access.tls_cert:
        kwargs["ssl_certfile"] = access.tls_cert
    if access.tls_key:
        kwargs["ssl_keyfile"] = access.tls_key
    return kwargs


def connect(redis: Any, target: RedisTarget, access: RedisAccess, timeout: float) -> Any:
    """A redis-py client for what the URL names: one server, a Sentinel service, a Cluster.

    Fail fast, never retry inside the client: `claim` runs in the daemon's receive loop,
    and the store's own outage logic decides when to ask again.
    """
    common: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        "client_name": "tumblerd",
    }
    if access.user is not None:
        common["username"] = access.user
    if access.password is not None:
        common["password"] = access.password
    tls = _tls_kwargs(access) if target.tls else {}
    if target.kind == "single":
        if not target.tls and (access.tls_ca or access.tls_cert or access.tls_key):
            raise ValueError("replay_tls_* options need a rediss:// URL")
        return redis.Redis.from_url(target.url, **common, **tls)
    if not target.tls and (access.tls_ca or access.tls_cert or access.tls_key):
        raise ValueError(f"replay_tls_* options need a rediss+{target.kind}:// URL")
    if target.kind == "sentinel":
        to_sentinels: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        }
        if target.tls:
            to_sentinels |= {"ssl": True, **tls}
        sentinel = redis.sentinel.Sentinel(
            list(target.nodes),
            sentinel_kwargs=to_sentinels,
            db=target.db,
            ssl=target.tls,
            **common,
            **tls,
        )
        return sentinel.master_for(target.service)
    nodes = [redis.cluster.ClusterNode(host, port) for host, port in target.nodes]
    return redis.cluster.RedisCluster(startup_nodes=nodes, ssl=target.tls, **common, **tls)


def _address(address: Any) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class RedisReplayCache:
    """Claims digests in Redis; fails closed, or over to a local store, when it is down."""

    name = "redis"

    def __init__(
        self,
        url: str | RedisTarget,
        fallback: ReplayCache | None = None,
        key_prefix: str = "tumbler:replay:",
        *,
        access: RedisAccess | None = None,
        timeout: float = 0.5,
        retry_interval: float = 2.0,
        slack: float = 30.0,
        client: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        redis = _import_redis()
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.RedisError,
            redis.exceptions.RedisClusterException,
            OSError,
            Unacknowledged,
        )
        # What a node answers when it no longer serves a slot, or is gone.
        self._moved: tuple[type[BaseException], ...] = (
            redis.exceptions.AskError,  # MovedError is one
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )
        access = access or RedisAccess()
        try:
            self.target = url if isinstance(url, RedisTarget) else parse_redis_url(url)
        except ValueError as exc:
            raise ReplayStoreError(str(exc)) from exc
        self.where = self.target.where
        self.acks = access.acks if access.acks is not None else DEFAULT_ACKS[self.target.kind]
        self.ack_timeout = access.ack_timeout
        self.fallback = fallback
        self.key_prefix = key_prefix
        self.retry_interval = retry_interval
        self.slack = slack
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._next_try = 0.0
        self._last_error = ""
        self._pending: dict[str, float] = {}  # claimed locally during an outage
        self._primary: Any = None
        # WAIT blocks up to ack_timeout: the socket must outlast it.
        wait = self.ack_timeout if self.acks else 0.0
        self._connect = lambda: connect(redis, self.target, access, timeout + wait)
        self._client: Any = client
        if client is None:
            try:
                self._client = self._connect()
            except ValueError as exc:
                raise ReplayStoreError(f"bad redis URL {self.where}: {exc}") from exc
            except self._errors as exc:  # a cluster asks its nodes at once
                self._outage(exc)
        if self._client is not None:
            try:
                self._client.ping()
            except self._errors as exc:
                self._outage(exc)
            else:
                self._note_primary()

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
                    self._note_primary()
                    return fresh and self._write_through(digest, expires, now)
            return self._claim_locally(digest, expires, now)

    def _key(self, digest: str) -> str:
        return self.key_prefix + digest

    def _ttl_ms(self, expires: float, now: float) -> int:
        return max(1, math.ceil((expires + self.slack - now) * 1000))

    def _set(self, digest: str, expires: float, now: float) -> bool:
        key, px = self._key(digest), self._ttl_ms(expires, now)
        client = self._ready()
        if self.acks == 0:
            return bool(client.set(key, b"1", nx=True, px=px))
        if self.target.kind != "cluster":
            fresh, acked = self._set_and_wait(client, key, px)
        else:
            try:
                fresh, acked = self._set_and_wait(
                    client.get_redis_connection(client.get_node_from_key(key)), key, px
                )
            except self._moved:
                # Straight to the key's node, so no cluster client to follow a moved slot
                # (after a failover, a resharding): ask for the slots again, try once more.
                client.nodes_manager.initialize()
                fresh, acked = self._set_and_wait(
                    client.get_redis_connection(client.get_node_from_key(key)), key, px
                )
        if fresh and acked < self.acks:
            raise Unacknowledged(
                f"{acked} of {self.acks} replicas acknowledged the claim within "
                f"{self.ack_timeout * 1000:.0f} ms"
            )
        return bool(fresh)

    def _set_and_wait(self, client: Any, key: str, px: int) -> tuple[Any, int]:
        """SET NX then WAIT on one connection: WAIT counts replicas holding its writes."""
        pipe = client.pipeline(transaction=False)
        pipe.set(key, b"1", nx=True, px=px)
        pipe.wait(self.acks, max(1, round(self.ack_timeout * 1000)))
        fresh, acked = pipe.execute()
        return fresh, int(acked)

    def _ready(self) -> Any:
        """The client, made now if a cluster was unreachable when the daemon started."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _healthy(self) -> None:
        """Raise unless the store answers: one server or primary, or every cluster primary.

        A cluster is asked for its slots again first: after a failover they live elsewhere,
        and a primary that died without one is still in the map, so it fails the probe.
        """
        client = self._ready()
        if self.target.kind != "cluster":
            client.ping()
            return
        client.nodes_manager.initialize()
        client.ping(target_nodes=client.PRIMARIES)

    def _note_primary(self) -> None:
        """Say which server Sentinel named primary, and when it names another."""
        if self.target.kind != "sentinel":
            return
        address = getattr(self._client.connection_pool, "master_address", None)
        if address is None or address == self._primary:
            return
        if self._primary is None:
            log.info("replay store %s: primary is %s", self.where, _address(address))
        else:
            log.warning(
                "replay store %s: primary changed from %s to %s (failover)",
                self.where,
                _address(self._primary),
                _address(address),
            )
        self._primary = address

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
            raise ReplayStoreError(f"redis {self.where} failing: {self._last_error}")
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
                "replay store redis %s failing (%s): refusing every knock until it is back",
                self.where,
                self._last_error,
            )
        else:
            log.warning(
                "replay store redis %s failing (%s): claiming knocks in the local %s store "
                "until it is back; meanwhile a knock replayed to another server is not refused",
                self.where,
                self._last_error,
                self.fallback.name,
            )

    def _recover(self, now: float) -> None:
        """Copy the outage's local claims to Redis, then count Redis as up again."""
        live = {d: e for d, e in self._pending.items() if e > now}
        client = self._ready()
        if self.target.kind == "cluster":
            client.nodes_manager.initialize()  # the slots may have moved during the outage
        if live:
            pipe = client.pipeline(transaction=False)
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
        self._note_primary()

    # -- housekeeping -------------------------------------------------------------------------

    def probe(self) -> None:
        """Ask a down Redis, at most every retry_interval, whether it is back.

        A failover ends without any knock to notice it: this is how the daemon learns it
        (and logs it) within seconds.
        """
        if self._down_since is None or self._clock() < self._next_try:
            return
        try:
            self._healthy()  # outside the lock: a slow probe must not hold up claims
        except self._errors as exc:
            with self._lock:
                self._outage(exc)
            return
        with self._lock:
            if self._down_since is not None:
                try:
                    self._recover(time.time())
                except self._errors as exc:
                    self._outage(exc)

    def prune(self, now: float) -> int:
        """Redis expires its keys itself; this prunes the fallback and probes a down Redis."""
        self.probe()
        with self._lock:
            self._pending = {d: e for d, e in self._pending.items() if e > now}
            return self.fallback.prune(now) if self.fallback is not None else 0

    def close(self) -> None:
        try:
            if self._client is not None:
                self._client.close()
        except self._errors:
            pass
        if self.fallback is not None:
            self.fallback.close()
