"""Replay URLs: one server, a Sentinel service, a Cluster; bad ones say why, never the password."""

from __future__ import annotations

import pytest

from tumbler.decisions.replay.redisurl import parse_redis_url, redact_url


def test_sentinel_hosts_service_and_database():
    t = parse_redis_url("redis+sentinel://10.0.0.1:26379,[::1]:26380,sentinel.example/tumbler/3")
    assert t.kind == "sentinel"
    assert not t.tls
    assert t.nodes == (("10.0.0.1", 26379), ("::1", 26380), ("sentinel.example", 26379))
    assert t.service == "tumbler"
    assert t.db == 3


def test_cluster_nodes_over_tls():
    t = parse_redis_url("rediss+cluster://a:7000,b:7001")
    assert (t.kind, t.tls, t.nodes) == ("cluster", True, (("a", 7000), ("b", 7001)))


def test_one_server_keeps_its_url_for_the_client():
    t = parse_redis_url("rediss://user:pw@redis.example:6380/2")
    assert (t.kind, t.tls, t.url) == ("single", True, "rediss://user:pw@redis.example:6380/2")
    assert t.where == "rediss://redis.example:6380/2"
    assert "pw" not in repr(t)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h:26379", "needs the service name"),
        ("redis+sentinel://h:26379/s/x", "bad database number"),
        ("redis+sentinel://h:26379/a/1/2", "needs the service name"),
        ("redis+sentinel:///svc", "at least one HOST:PORT"),
        ("redis+sentinel://u:secretpw@h/svc", "no password in the URL"),
        ("redis+cluster://h:7000/0", "only database 0"),
        ("redis+cluster://h:99999", "bad port"),
        ("redis+cluster://h:7000?password=secretpw", "takes no query"),
        ("redis://h:notaport/0", "bad redis URL"),
        ("redis:///0", "no host"),
        ("memcached://h", "not a redis URL"),
    ],
)
def test_bad_urls_say_why_and_never_echo_a_password(url, why):
    with pytest.raises(ValueError, match=why) as info:
        parse_redis_url(url)
    assert "secretpw" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis+sentinel://a:1,b:2/svc/1", "redis+sentinel://a:1,b:2/svc/1"),
        ("rediss+cluster://x@a:1,b:2", "rediss+cluster://a:1,b:2"),
        ("redis://:pw@[::1]:6379/0?x=1", "redis://[::1]:6379/0"),
        ("nope", "<unparsable redis URL>"),
    ],
)
def test_redact(url, shown):
    assert redact_url(url) == shown
