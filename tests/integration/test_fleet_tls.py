"""A Redis that is not open: TLS with the fleet's own CA, and an ACL user with a password."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import DOORS
from tests.integration.daemon import Tumblerd
from tests.integration.redislab import RedisServer, make_tls_files, redis_binary
from tests.waiting import wait_until
from tumbler.decisions.replay.redis import RedisReplayCache
from tumbler.decisions.replay.redisurl import RedisAccess
from tumbler.errors import ReplayStoreError

SECRET = "open-pAsSwOrD"
PASSWORD = "fleet-Pa55-w0rd"
ADMIN = "admin-Pa55-w0rd"
# What the store needs, and no more: its own keys, SET, WAIT, PING and the client's hello.
ACL = ["tumbler", "on", f">{PASSWORD}", "~tumbler:*", "+set", "+wait", "+ping", "+client"]


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    files = make_tls_files(tmp_path / "pki")
    server = RedisServer(
        redis_binary(),
        tmp_path / "redis",
        "--requirepass",
        ADMIN,
        "--user",
        *ACL,
        tls=files,
        login={"password": ADMIN},  # the test's own client: the default user
    )
    yield server.start()
    server.stop()


def test_a_daemon_claims_over_tls_as_its_acl_user(tmp_path, tls_redis):
    (tmp_path / "redis.pass").write_text(PASSWORD + "\n")
    (tmp_path / "redis.pass").chmod(0o600)
    folder = tmp_path / "a"
    folder.mkdir()
    daemon = Tumblerd(
        folder,
        DOORS,
        common=f"   replay = {tls_redis.url}\n   replay_user = tumbler\n"
        f"   replay_password_file = {tmp_path / 'redis.pass'}\n"
        f"   replay_tls_ca = {tls_redis.tls['ca'] if tls_redis.tls else ''}\n",
    )
    daemon.start()
    try:
        data = daemon.knock(SECRET)
        wait_until(daemon.lines, what="the knock to be accepted over TLS")
        daemon.send(data).close()
        wait_until(lambda: "replay 1" in daemon.log_text(), what="the replay to be refused")
    finally:
        daemon.stop()
    assert tls_redis.client().dbsize() == 1
    log = daemon.log_text()
    assert PASSWORD not in log and "failing" not in log and "readable by" not in log


def test_a_password_in_a_readable_config_is_warned_about_and_never_logged(tmp_path, tls_redis):
    folder = tmp_path / "a"
    folder.mkdir()
    daemon = Tumblerd(
        folder,
        DOORS,
        common=f"   replay = {tls_redis.url}\n   replay_user = tumbler\n"
        f"   replay_password = {PASSWORD}x\n"  # wrong: refused, and the error names no password
        f"   replay_tls_ca = {tls_redis.tls['ca'] if tls_redis.tls else ''}\n",
    )
    daemon.config.chmod(0o644)
    daemon.start()
    try:
        daemon.knock(SECRET)
        wait_until(lambda: "refused, replay store failing" in daemon.log_text(), what="refusal")
    finally:
        daemon.stop()
    log = daemon.log_text()
    assert f"{daemon.config} holds a secret or password and is readable" in log
    assert PASSWORD not in log
    assert daemon.lines() == []


@pytest.mark.parametrize(
    ("password", "trust_ca", "why"),
    [
        ("wrong", True, "invalid username-password"),
        (PASSWORD, False, "certificate verify failed"),  # the test CA is not the system's
    ],
    ids=["wrong-password", "unknown-ca"],
)
def test_without_the_right_password_or_ca_the_store_fails_closed(
    tls_redis, caplog, password, trust_ca, why
):
    assert tls_redis.tls is not None
    ca = tls_redis.tls["ca"] if trust_ca else None
    access = RedisAccess(user="tumbler", password=password, tls_ca=ca)
    with caplog.at_level(logging.INFO, logger="tumblerd"):
        cache = RedisReplayCache(tls_redis.url, access=access)
        assert not cache.up
        with pytest.raises(ReplayStoreError, match="failing"):
            cache.claim("f" * 64, time.time() + 60, time.time())
        cache.close()
    assert why in caplog.text.lower()
    assert PASSWORD not in caplog.text
