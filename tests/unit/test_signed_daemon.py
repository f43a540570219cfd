"""Signed knocks on the daemon's one receive path, beside fwknop SPA and v1, in-process.

What an accepted knock would open is recorded instead of acted on, so no firewall is
touched; the claim step is the one every kind uses, so its replay-store behaviour (the
claim's length, one log line per outage) must be the same for signed knocks.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from tumbler.client.sshagent import FileSigner, sign_knock
from tumbler.config.daemon import MAX_WINDOW_SECONDS, parse_config
from tumbler.daemon.wiring import Daemon
from tumbler.errors import ReplayStoreError
from tumbler.protocols import fwknop as spa
from tumbler.protocols.tumbler1 import make_knock

KEYS = spa.SpaKeys(b"k" * 32, b"h" * 64)
ADDRESS = "10.0.0.7"


def config(keys_file: Path) -> str:
    return f"""\
[common]
   replay = memory
[door-classic]
   secret = a-tumbler-secret
   open = tcp/22
[door-signed]
   authorized_keys = {keys_file}
   open = tcp/22
[door-spa]
   kind = fwknop
   fwknop_key_base64 = {base64.b64encode(KEYS.key).decode()}
   fwknop_hmac_key_base64 = {base64.b64encode(KEYS.hmac_key or b"").decode()}
   open = tcp/22
"""


class Recording:
    """The daemon's replay store, with every claim written down (or refused: store down)."""

    def __init__(self, inner: Any, failing: bool = False) -> None:
        self.inner = inner
        self.failing = failing
        self.claims: list[tuple[str, float]] = []

    def claim(self, digest: str, expires: float, now: float) -> bool:
        if self.failing:
            raise ReplayStoreError("connection refused")
        self.claims.append((digest, expires))
        return bool(self.inner.claim(digest, expires, now))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def daemon(tmp_path: Path, failing: bool = False) -> tuple[Daemon, FileSigner, Recording, list]:
    signer = FileSigner(ed25519.Ed25519PrivateKey.generate(), "alice@laptop")
    keys_file = tmp_path / "ssh-users"
    keys_file.write_text(signer.key.openssh(signer.comment) + "\n")
    keys_file.chmod(0o600)
    made = Daemon(parse_config(config(keys_file), str(tmp_path / "tumblerd.conf")))
    store = Recording(made.replay.store, failing)
    made.replay.store = store  # type: ignore[assignment]
    acted: list[tuple[str, str]] = []

    def record(coro: Coroutine[Any, Any, None]) -> None:
        frame = coro.cr_frame.f_locals
        acted.append((frame["door"].name, frame["address"]))
        coro.close()

    made.dispatcher.spawn = record  # type: ignore[method-assign]
    return made, signer, store, acted


def test_signed_spa_and_v1_on_one_path(tmp_path: Path) -> None:
    d, signer, store, acted = daemon(tmp_path)
    now = time.time()
    when = int(now) - 5
    signed = sign_knock(signer, ADDRESS, "", when, os.urandom(16))
    assert d.handle(signed, ADDRESS, now).name == "signed"  # type: ignore[union-attr]
    spa_packet = spa.build_packet(
        KEYS, user="u", timestamp=int(now), allow_ip="10.0.0.2", ports=["tcp/22"]
    )
    assert d.handle(spa_packet, "10.0.0.9", now).name == "spa"  # type: ignore[union-attr]
    v1 = make_knock("a-tumbler-secret", ADDRESS, datetime.fromtimestamp(now, UTC))
    assert d.handle(v1, ADDRESS, now).name == "classic"  # type: ignore[union-attr]
    assert acted == [("signed", ADDRESS), ("spa", "10.0.0.2"), ("classic", ADDRESS)]
    # A signed claim lasts as long as the largest window could accept the knock, as v2's.
    assert store.claims[0][1] == when + MAX_WINDOW_SECONDS + 1
    assert d.handle(signed, ADDRESS, now + 1) is None
    assert d.stats.total["replay"] == 1 and d.stats.total["accepted"] == 3
    d.replay.close()


def test_store_down_refuses_signed_knocks_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d, signer, store, acted = daemon(tmp_path, failing=True)
    now = time.time()
    with caplog.at_level(logging.ERROR, logger="tumblerd"):
        for _ in range(3):
            knock = sign_knock(signer, ADDRESS, "", int(now), os.urandom(16))
            assert d.handle(knock, ADDRESS, now) is None
        v1 = make_knock("a-tumbler-secret", ADDRESS, datetime.fromtimestamp(now, UTC))
        assert d.handle(v1, ADDRESS, now) is None
    failing = [r for r in caplog.records if "replay store failing" in r.getMessage()]
    assert len(failing) == 1 and "door signed" in failing[0].getMessage()
    assert d.stats.total["store-down"] == 4 and acted == []
    store.failing = False  # the store answers again: the next knock opens, the next outage logs
    knock = sign_knock(signer, ADDRESS, "", int(now), os.urandom(16))
    assert d.handle(knock, ADDRESS, now).name == "signed"  # type: ignore[union-attr]
    store.failing = True
    with caplog.at_level(logging.ERROR, logger="tumblerd"):
        knock = sign_knock(signer, ADDRESS, "", int(now), os.urandom(16))
        assert d.handle(knock, ADDRESS, now) is None
    failing = [r for r in caplog.records if "replay store failing" in r.getMessage()]
    assert len(failing) == 2
    d.replay.close()
