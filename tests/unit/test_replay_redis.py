"""RedisReplayCache logic against a tiny fake client: claims, fail-closed, fallback switching."""

from __future__ import annotations

import logging
import re
import sys
import time
from dataclasses import replace

import pytest
import redis

from tumbler.decisions.replay import ReplaySpec, open_replay_cache
from tumbler.decisions.replay.local import MemoryReplayCache
from tumbler.decisions.replay.redis import RedisReplayCache
from tumbler.decisions.replay.redisurl import RedisAccess, redact_url
from tumbler.errors import ReplayStoreError

D1 = "a" * 64
D2 = "b" * 64
D3 = "c" * 64


class FakeRedis:
    """The four calls the cache makes, with SET NX semantics and a switch to go down."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}  # key -> px
        self.down = False
        self.calls = 0
        self.replicas = 0  # how many replicas acknowledge a WAIT
        self.waits: list[tuple[int, int]] = []
        self.connection_pool = type("Pool", (), {"master_address": None})()

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise redis.exceptions.ConnectionError("Connection refused")

    def ping(self) -> bool:
        self._check()
        return True

    def set(self, key: str, value: bytes, nx: bool = False, px: int | None = None) -> bool | None:
        self._check()
        assert nx and px is not None and px > 0
        if key in self.keys:
            return None
        self.keys[key] = px
        return True

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    def wait(self, replicas: int, timeout_ms: int) -> int:
        self._check()
        self.waits.append((replicas, timeout_ms))
        return self.replicas

    def close(self) -> None:
        pass


class FakePipeline:
    def __init__(self, client: FakeRedis) -> None:
        self.client = client
        self.queued: list[tuple[str, bytes, int] | tuple[int, int]] = []

    def set(self, key: str, value: bytes, nx: bool = False, px: int | None = None) -> None:
        assert px is not None
        self.queued.append((key, value, px))

    def wait(self, replicas: int, timeout_ms: int) -> None:
        self.queued.append((replicas, timeout_ms))

    def execute(self) -> list[bool | int | None]:
        results: list[bool | int | None] = []
        for item in self.queued:
            if len(item) == 2:
                results.append(self.client.wait(*item))
            else:
                key, value, px = item
                results.append(self.client.set(key, value, nx=True, px=px))
        return results


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def fake() -> FakeRedis:
    return FakeRedis()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(
    fake: FakeRedis,
    clock: Clock,
    fallback: MemoryReplayCache | None = None,
    url: str = "redis://127.0.0.1:1/0",
    acks: int | None = None,
):
    return RedisReplayCache(
        url,
        fallback=fallback,
        client=fake,
        clock=clock,
        retry_interval=2.0,
        access=RedisAccess(acks=acks),
    )


def test_claim_once_with_prefixed_key_and_ttl_with_slack(fake, clock):
    cache = make(fake, clock)
    expires = time.time() + 120
    assert cache.claim(D1, expires, time.time()) is True
    assert cache.claim(D1, expires, time.time()) is False
    assert cache.claim(D2, expires, time.time()) is True
    assert set(fake.keys) == {"tumbler:replay:" + D1, "tumbler:replay:" + D2}
    px = fake.keys["tumbler:replay:" + D1]
    assert 149_000 <= px <= 150_001  # 120 s to go + 30 s slack, in ms
    assert cache.name == "redis"


def test_expired_already_still_gets_a_positive_ttl(fake, clock):
    cache = make(fake, clock)
    assert cache.claim(D1, time.time() - 3600, time.time()) is True
    assert fake.keys["tumbler:replay:" + D1] == 1


def test_down_without_fallback_fails_closed_and_logs_once(fake, clock, caplog):
    cache = make(fake, clock)
    fake.down = True
    with caplog.at_level(logging.INFO, logger="tumblerd"):
        for _ in range(3):
            with pytest.raises(
                ReplayStoreError,
                match=re.escape("redis redis://127.0.0.1:1/0 failing: Connection refused"),
            ):
                cache.claim(D1, time.time() + 120, time.time())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "refusing every knock" in errors[0].getMessage()
    assert not cache.up


def test_down_is_not_retried_before_the_interval(fake, clock):
    cache = make(fake, clock)
    fake.down = True
    with pytest.raises(ReplayStoreError):
        cache.claim(D1, time.time() + 120, time.time())
    calls = fake.calls
    for _ in range(50):  # a replay flood during an outage costs no network round trip
        with pytest.raises(ReplayStoreError):
            cache.claim(D1, time.time() + 120, time.time())
    assert fake.calls == calls
    clock.t += 2.0
    with pytest.raises(ReplayStoreError):
        cache.claim(D1, time.time() + 120, time.time())
    assert fake.calls == calls + 1


def test_back_up_logs_info_and_claims_in_redis_again(fake, clock, caplog):
    cache = make(fake, clock)
    fake.down = True
    with pytest.raises(ReplayStoreError):
        cache.claim(D1, time.time() + 120, time.time())
    fake.down = False
    clock.t += 5
    with caplog.at_level(logging.INFO, logger="tumblerd"):
        assert cache.claim(D1, time.time() + 120, time.time()) is True
    assert cache.up
    assert any("is back after 5 s" in r.getMessage() for r in caplog.records)


def test_fallback_claims_locally_warns_once_then_copies_back(fake, clock, caplog):
    local = MemoryReplayCache()
    cache = make(fake, clock, fallback=local)
    fake.down = True
    expires = time.time() + 120
    with caplog.at_level(logging.INFO, logger="tumblerd"):
        assert cache.claim(D1, expires, time.time()) is True
        assert (
            cache.claim(D1, expires, time.time()) is False
        )  # the local store still refuses replays
        assert cache.claim(D2, expires, time.time()) is True
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "local memory store" in warnings[0].getMessage()
        assert "not refused" in warnings[0].getMessage()
        fake.down = False
        clock.t += 3
        # D1 was claimed locally during the outage: copied back first, so refused now.
        assert cache.claim(D1, expires, time.time()) is False
        assert cache.claim(D3, expires, time.time()) is True
    assert {"tumbler:replay:" + d for d in (D1, D2, D3)} == set(fake.keys)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("is back" in m and "2 local claims copied" in m for m in infos)


def test_write_through_refuses_what_this_server_already_accepted(fake, clock):
    local = MemoryReplayCache()
    cache = make(fake, clock, fallback=local)
    expires = time.time() + 120
    assert cache.claim(D1, expires, time.time()) is True
    fake.keys.clear()  # Redis restarted without persistence and forgot every key
    assert cache.claim(D1, expires, time.time()) is False
    assert len(local) == 1


def test_prune_probes_a_down_redis_and_prunes_the_fallback(fake, clock, caplog):
    local = MemoryReplayCache()
    cache = make(fake, clock, fallback=local)
    fake.down = True
    now = time.time()
    cache.claim(D1, now + 120, time.time())
    cache.claim(D2, now + 1, time.time())
    assert cache.prune(now + 10) == 1  # D2 expired in the fallback
    assert not cache.up
    fake.down = False
    clock.t += 2
    with caplog.at_level(logging.INFO, logger="tumblerd"):
        cache.prune(now + 10)
    assert cache.up
    assert set(fake.keys) == {"tumbler:replay:" + D1}  # only the live local claim is copied
    assert any("is back" in r.getMessage() for r in caplog.records)


def test_prune_without_fallback_is_a_noop(fake, clock):
    cache = make(fake, clock)
    cache.claim(D1, time.time() + 120, time.time())
    calls = fake.calls
    assert cache.prune(time.time() + 1000) == 0
    assert fake.calls == calls  # Redis expires its keys by itself


def test_down_at_start_is_logged_at_once(fake, clock, caplog):
    fake.down = True
    with caplog.at_level(logging.INFO, logger="tumblerd"):
        cache = make(fake, clock)
    assert not cache.up
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_logs_never_show_the_password_or_the_digest(fake, clock, caplog):
    fake.down = True
    with caplog.at_level(logging.DEBUG, logger="tumblerd"):
        cache = RedisReplayCache(
            "redis://user:hunter2@10.0.0.1:6390/2?password=hunter3",
            fallback=MemoryReplayCache(),
            client=fake,
            clock=clock,
        )
        cache.claim(D1, time.time() + 60, time.time())
    text = caplog.text
    assert "hunter" not in text
    assert D1[:16] not in text
    assert "redis://10.0.0.1:6390/2" in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@[::1]:6379/0", "redis://[::1]:6379/0"),
        ("rediss://h.example/1", "rediss://h.example/1"),
        ("unix:///run/redis/redis.sock?db=2&password=x", "unix:///run/redis/redis.sock"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_missing_redis_package_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ReplayStoreError, match=r"install the `redis` extra"):
        RedisReplayCache("redis://127.0.0.1:1/0")


def test_open_replay_cache_builds_redis_with_fallback(tmp_path):
    # A real client on a port where nothing listens: down at start, local claims work.
    spec = replace(ReplaySpec.parse("redis://127.0.0.1:1/0"), fallback="sqlite")
    cache = open_replay_cache(spec, str(tmp_path / "r.db"))
    try:
        assert cache.name == "redis"
        assert cache.claim(D1, time.time() + 60, time.time()) is True
        assert cache.claim(D1, time.time() + 60, time.time()) is False
    finally:
        cache.close()


def test_bad_url_is_a_replay_store_error():
    with pytest.raises(ReplayStoreError, match="bad redis URL"):
        RedisReplayCache("redis://127.0.0.1:notaport/0")


# -- acknowledgements by replicas (WAIT) and the primary named by Sentinel -------------------


def test_default_acks_zero_for_one_server_one_for_sentinel_and_cluster(fake, clock):
    assert make(fake, clock).acks == 0
    assert make(fake, clock, url="redis+sentinel://127.0.0.1:26379/tumbler").acks == 1
    assert make(fake, clock, url="redis+cluster://127.0.0.1:7000").acks == 1
    assert make(fake, clock, url="redis+sentinel://127.0.0.1:26379/t", acks=0).acks == 0


def test_claim_held_by_enough_replicas_counts(fake, clock):
    cache = make(fake, clock, acks=2)
    fake.replicas = 2
    expires = time.time() + 120
    assert cache.claim(D1, expires, time.time()) is True
    assert fake.waits == [(2, 250)]
    assert cache.claim(D1, expires, time.time()) is False


def test_claim_not_acknowledged_in_time_is_refused_as_when_down(fake, clock, caplog):
    cache = make(fake, clock, acks=1)
    fake.replicas = 0
    with caplog.at_level(logging.INFO, logger="tumblerd"):
        with pytest.raises(ReplayStoreError, match="0 of 1 replicas acknowledged"):
            cache.claim(D1, time.time() + 120, time.time())
        with pytest.raises(ReplayStoreError):  # the same knock again: still no
            cache.claim(D1, time.time() + 120, time.time())
    assert not cache.up
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "refusing every knock" in errors[0]
    fake.replicas = 1
    clock.t += 2
    assert cache.claim(D2, time.time() + 120, time.time()) is True
    assert cache.up


def test_unacknowledged_claim_falls_back_like_an_outage(fake, clock):
    local = MemoryReplayCache()
    cache = make(fake, clock, fallback=local, acks=1)
    assert cache.claim(D1, time.time() + 120, time.time()) is True  # claimed locally
    assert len(local) == 1
    assert not cache.up


def test_a_replay_is_refused_even_when_replicas_lag(fake, clock):
    cache = make(fake, clock, acks=1)
    fake.replicas = 1
    assert cache.claim(D1, time.time() + 120, time.time()) is True
    fake.replicas = 0
    assert cache.claim(D1, time.time() + 120, time.time()) is False  # refused, not an outage
    assert cache.up


def test_sentinel_primary_is_logged_and_a_change_warned(fake, clock, caplog):
    fake.connection_pool.master_address = ("10.0.0.1", 6379)
    fake.replicas = 1
    with caplog.at_level(logging.INFO, logger="tumblerd"):
        cache = make(fake, clock, url="redis+sentinel://10.0.0.9:26379/tumbler")
        assert cache.claim(D1, time.time() + 120, time.time()) is True
        fake.connection_pool.master_address = ("10.0.0.2", 6379)
        assert cache.claim(D2, time.time() + 120, time.time()) is True
        assert cache.claim(D3, time.time() + 120, time.time()) is True
    messages = [r.getMessage() for r in caplog.records]
    assert (
        messages.count(
            "replay store redis+sentinel://10.0.0.9:26379/tumbler: primary is 10.0.0.1:6379"
        )
        == 1
    )
    changes = [m for m in messages if "primary changed" in m]
    assert changes == [
        "replay store redis+sentinel://10.0.0.9:26379/tumbler: primary changed from "
        "10.0.0.1:6379 to 10.0.0.2:6379 (failover)"
    ]


def test_sentinel_over_tls_trusts_the_ca_for_sentinels_and_primary_alike():
    from tumbler.decisions.replay.redis import connect
    from tumbler.decisions.replay.redisurl import parse_redis_url

    target = parse_redis_url("rediss+sentinel://127.0.0.1:1,127.0.0.1:2/tumbler/2")
    access = RedisAccess(user="u", password="pw", tls_ca="/etc/ca.pem")
    client = connect(redis, target, access, 0.5)
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    assert pool.service_name == "tumbler"
    assert issubclass(pool.connection_class, redis.SSLConnection)
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("u", "pw", 2)
    assert kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    assert kwargs["ssl_cert_reqs"] == "required"
    to_sentinels = pool.sentinel_manager.sentinel_kwargs
    assert to_sentinels["ssl"] is True and to_sentinels["ssl_ca_certs"] == "/etc/ca.pem"
    assert "password" not in to_sentinels  # sentinels often have no password, or another one


def test_tls_files_without_a_tls_url_are_refused():
    with pytest.raises(ReplayStoreError, match="rediss"):
        RedisReplayCache("redis://127.0.0.1:1/0", access=RedisAccess(tls_ca="/etc/ca.pem"))


def test_a_pipeline_error_is_logged_without_its_command_or_digest(fake, clock, caplog):
    cache = make(fake, clock, acks=1)

    def failing(*args, **kwargs):
        raise redis.exceptions.ResponseError(
            f"Command # 1 (SET tumbler:replay:{D1} 1 NX PX 150000) of pipeline caused error: "
            f"READONLY You can't write against a read only replica. {D2}"
        )

    fake.set = failing  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="tumblerd"):
        with pytest.raises(ReplayStoreError) as info:
            cache.claim(D1, time.time() + 60, time.time())
    assert "READONLY You can't write against a read only replica. <digest>" in str(info.value)
    for text in (caplog.text, str(info.value)):
        assert D1[:16] not in text and D2[:16] not in text and "SET" not in text
