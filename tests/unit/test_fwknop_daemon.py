"""The daemon's one receive path with fwknop doors, decided in-process.

What an accepted packet would open is recorded instead of acted on, so no firewall is
touched; the decisions (shape, keys, authorization, replay) are the daemon's own.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tumbler.config.daemon import parse_config
from tumbler.daemon import wiring
from tumbler.daemon.wiring import Daemon
from tumbler.protocols import fwknop as spa
from tumbler.protocols.tumbler1 import make_knock

KEY = base64.b64encode(b"k" * 32).decode()
HMAC_KEY = base64.b64encode(b"h" * 64).decode()
KEYS = spa.SpaKeys(b"k" * 32, b"h" * 64)
CONFIG = f"""\
[common]
   replay = memory
[door-classic]
   secret = a-tumbler-secret
   open = tcp/22
[door-spa]
   kind = fwknop
   fwknop_key_base64 = {KEY}
   fwknop_hmac_key_base64 = {HMAC_KEY}
   open = tcp/22
   fwknop_max_timeout = 60
"""


def daemon(tmp_path: Path) -> tuple[Daemon, list[tuple[str, str, Any, Any]]]:
    made = Daemon(parse_config(CONFIG, str(tmp_path / "tumblerd.conf")))
    acted: list[tuple[str, str, Any, Any]] = []

    def record(coro: Coroutine[Any, Any, None]) -> None:
        frame = coro.cr_frame.f_locals
        acted.append((frame["door"].name, frame["address"], frame["ports"], frame["timeout"]))
        coro.close()

    made.dispatcher.spawn = record  # type: ignore[method-assign]
    return made, acted


def packet(now: float, **kw: Any) -> bytes:
    kw.setdefault("allow_ip", "10.0.0.2")
    kw.setdefault("ports", ["tcp/22"])
    return spa.build_packet(KEYS, user="u", timestamp=int(now), **kw)


def test_both_kinds_on_one_path(tmp_path: Path) -> None:
    d, acted = daemon(tmp_path)
    now = time.time()
    knock = make_knock("a-tumbler-secret", "10.0.0.7", datetime.fromtimestamp(now, UTC))
    assert d.handle(knock, "10.0.0.7", now).name == "classic"  # type: ignore[union-attr]
    assert d.handle(packet(now, client_timeout=600), "10.0.0.9", now).name == "spa"  # type: ignore[union-attr]
    assert acted[0] == ("classic", "10.0.0.7", None, None)
    assert acted[1][:2] == ("spa", "10.0.0.2") and acted[1][3] == 60  # capped at the maximum
    assert d.handle(b"A" * 300, "10.0.0.9", now) is None  # SPA-shaped junk: no door's keys
    assert d.handle(b"junk", "10.0.0.9", now) is None
    assert d.stats.total["no-door"] == 1 and d.stats.total["malformed"] == 1
    d.replay.close()


def test_a_refused_packet_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d, acted = daemon(tmp_path)
    now = time.time()
    data = packet(now, ports=["tcp/23"])
    with caplog.at_level(logging.INFO, logger="tumblerd"):
        for _ in range(3):
            assert d.handle(data, "10.0.0.9", now) is None
    assert acted == []
    assert d.stats.total["fwknop-port"] == 1 and d.stats.total["replay"] == 2
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].getMessage() == (
        "fwknop packet for door spa from 10.0.0.9 refused: port: tcp/23 is not among the "
        "door's ports"
    )
    d.replay.close()


def test_without_cryptography_fwknop_doors_are_off_and_the_others_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(wiring.spa, "crypto_missing", lambda: "no cryptography here")
    with caplog.at_level(logging.ERROR, logger="tumblerd"):
        d, _ = daemon(tmp_path)
    assert "fwknop doors spa disabled, the other doors serve: no cryptography here" in caplog.text
    now = time.time()
    assert d.handle(packet(now), "10.0.0.9", now) is None
    knock = make_knock("a-tumbler-secret", "10.0.0.7", datetime.fromtimestamp(now, UTC))
    assert d.handle(knock, "10.0.0.7", now) is not None
    d.replay.close()
