"""fwknop replays across a fleet: two daemons sharing a real redis-server refuse by content.

The daemons decide in-process (their `handle`, the one receive path) so that no firewall
of this machine is touched: what an accepted packet would open is recorded instead of
acted on. The packet is built by the real fwknop client when it is installed.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from tests.integration.redislab import RedisServer
from tumbler.config.daemon import parse_config
from tumbler.daemon.wiring import Daemon
from tumbler.protocols import fwknop as spa

KEY = base64.b64encode(secrets.token_bytes(32)).decode()
HMAC_KEY = base64.b64encode(secrets.token_bytes(64)).decode()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


def daemon(folder: Path, redis_url: str) -> tuple[Daemon, list[str]]:
    """A daemon with one fwknop door whose actions are recorded, not taken."""
    folder.mkdir()
    config = parse_config(
        "[common]\n"
        f"   replay = {redis_url}\n"
        f"   state = {folder / 'state.db'}\n"
        "[door-ssh]\n   kind = fwknop\n"
        f"   fwknop_key_base64 = {KEY}\n   fwknop_hmac_key_base64 = {HMAC_KEY}\n"
        "   open = tcp/22\n",
        str(folder / "tumblerd.conf"),
    )
    made = Daemon(config)
    acted: list[str] = []

    def record(coro: Coroutine[Any, Any, None]) -> None:
        acted.append(coro.cr_frame.f_locals["address"])
        coro.close()

    made.dispatcher.spawn = record  # type: ignore[method-assign]
    return made, acted


def packet(tmp_path: Path) -> bytes:
    client = shutil.which("fwknop")
    if client is None:
        keys = spa.SpaKeys.from_text(key_base64=KEY, hmac_key_base64=HMAC_KEY)
        return spa.build_packet(
            keys, allow_ip="10.0.0.2", ports=["tcp/22"], user="u", timestamp=int(time.time())
        )
    out = tmp_path / "spa"
    subprocess.run(
        [
            *(client, "--no-rc-file", "-A", "tcp/22", "-a", "10.0.0.2", "-D", "10.0.0.1", "-T"),
            *("--use-hmac", "--key-base64-rijndael", KEY, "--key-base64-hmac", HMAC_KEY),
            *("-B", str(out)),
        ],
        env={**os.environ, "HOME": str(tmp_path)},
        check=True,
        capture_output=True,
    )
    return out.read_bytes().strip()


def test_a_packet_accepted_by_one_is_a_replay_at_the_other_even_re_encrypted(
    tmp_path: Path, redis_url: str
) -> None:
    (a, opened_a), (b, opened_b) = (
        daemon(tmp_path / "a", redis_url),
        daemon(tmp_path / "b", redis_url),
    )
    try:
        data = packet(tmp_path)
        now = time.time()
        assert a.handle(data, "10.0.0.2", now) is not None
        assert opened_a == ["10.0.0.2"]
        keys = spa.SpaKeys.from_text(key_base64=KEY, hmac_key_base64=HMAC_KEY)
        message = spa.open_packet(data, keys)
        again = spa.wrap(
            f"{message.encoded}:{spa._digest(message.digest_type, message.encoded)}", keys
        )
        assert again != data
        assert b.handle(again, "10.0.0.9", now) is None
        assert b.handle(data, "10.0.0.9", now) is None
        assert b.stats.total["replay"] == 2 and opened_b == []
        fresh = spa.build_packet(
            keys, allow_ip="10.0.0.3", ports=["tcp/22"], user="u", timestamp=int(now)
        )
        assert b.handle(fresh, "10.0.0.3", now) is not None and opened_b == ["10.0.0.3"]
    finally:
        a.replay.close()
        b.replay.close()
