"""tumblerd in-process: deciding, reloading and control commands, with nothing acting.

The daemon's deciding half (`Pipeline`) needs no loop; its acting half (`Dispatcher`) is
replaced here by a recorder, so no command, firewall or subprocess runs.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tumbler.config.daemon import Config, Door, load_config
from tumbler.daemon.dispatch import Dispatcher
from tumbler.daemon.pipeline import Pipeline, build_runtime
from tumbler.daemon.stats import Stats
from tumbler.daemon.wiring import Daemon
from tumbler.decisions.replay.local import MemoryReplayCache
from tumbler.decisions.replay.recent import RecentClaims
from tumbler.events import ConnectionAttempt
from tumbler.protocols.tumbler1 import make_knock

NOW = datetime(2026, 12, 1, 3, 0, 20, tzinfo=UTC)
T = NOW.timestamp()
SOURCE = "192.0.2.7"

CONFIG = """\
[common]
replay = memory
state = {state}
control = {control}

[door-ssh]
secret = first door secret
command = true

[door-web]
secret = second door secret
command = true

[door-seq]
sequence = tcp/1000, tcp/2000, udp/3000
command = true
"""

RELOADED = """\
[common]
replay = memory
state = {state}
control = {control}

[door-mail]
secret = third door secret
command = true
"""


class Recorder(Dispatcher):
    """Acts on nothing: records what the daemon asked for."""

    def __init__(self, stats: Stats, state_path: str) -> None:
        super().__init__(stats, state_path)
        self.acted: list[tuple[str, str]] = []
        self.closed: list[tuple[str, str | None]] = []
        self.restored: list[list[str]] = []

    def act(  # type: ignore[override]
        self, door: Door, address: str, command_timeout: float, *_grant: object, now: float
    ) -> None:
        self.acted.append((door.name, address))

    def restore(self, doors, now: float) -> None:  # type: ignore[override]
        self.restored.append(sorted(d.name for d in doors))

    async def close(self, address: str, now: float, door: str | None = None):  # type: ignore[override]
        self.closed.append((address, door))
        return []


@pytest.fixture(autouse=True)
def no_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a subprocess was started")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", refuse)
    monkeypatch.setattr(asyncio, "create_subprocess_shell", refuse)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "tumblerd.conf"
    path.write_text(CONFIG.format(state=tmp_path / "state.db", control=tmp_path / "c.sock"))
    path.chmod(0o600)
    return path


@pytest.fixture
def daemon(conf: Path) -> Daemon:
    config = load_config(conf)
    return Daemon(config, dispatcher=Recorder(Stats(logging.getLogger("test")), config.state))


def recorder(daemon: Daemon) -> Recorder:
    assert isinstance(daemon.dispatcher, Recorder)
    return daemon.dispatcher


def knock(secret: str, when: datetime = NOW, source: str = SOURCE) -> bytes:
    return make_knock(secret, source, when)


def test_a_knock_is_decided_and_handed_to_the_acting_half(daemon: Daemon) -> None:
    door = daemon.handle(knock("first door secret"), SOURCE, T)
    assert door is not None and door.name == "ssh"
    assert recorder(daemon).acted == [("ssh", SOURCE)]
    assert daemon.stats.total["accepted"] == 1


def test_refusals_act_on_nothing(daemon: Daemon) -> None:
    data = knock("second door secret")
    assert daemon.handle(data, SOURCE, T) is not None
    assert daemon.handle(data, SOURCE, T) is None  # the same datagram, the clock frozen
    assert daemon.handle(data, SOURCE, T + 30) is None  # later in its window
    assert daemon.handle(knock("no such door"), SOURCE, T) is None
    assert daemon.handle(b"TUMBLER1: not hex", SOURCE, T) is None
    assert daemon.handle(knock("first door secret"), "192.0.2.8", T) is None  # made for another
    late = knock("first door secret", NOW - timedelta(minutes=5))
    assert daemon.handle(late, SOURCE, T) is None
    assert recorder(daemon).acted == [("web", SOURCE)]
    counts = dict(daemon.stats.total)
    assert counts == {"accepted": 1, "replay": 2, "no-door": 3, "malformed": 1}


def test_a_completed_sequence_is_handed_to_the_acting_half(daemon: Daemon) -> None:
    steps = [("tcp", 1000), ("tcp", 2000), ("udp", 3000)]
    opened = []
    for i, (proto, port) in enumerate(steps):
        attempt = ConnectionAttempt(SOURCE, "192.0.2.1", proto, port, T + i, 40000 + i)
        opened += daemon.attempt(attempt)
    assert [d.name for d in opened] == ["seq"]
    assert recorder(daemon).acted == [("seq", SOURCE)]
    assert daemon.stats.total["sequence"] == 1


def test_the_deciding_half_needs_no_daemon_and_no_loop(conf: Path) -> None:
    config: Config = load_config(conf)
    stats = Stats(logging.getLogger("test"))
    pipeline = Pipeline(build_runtime(config), RecentClaims(MemoryReplayCache()), stats)
    verdict = pipeline.decide(knock("first door secret"), SOURCE, T)
    assert (verdict.outcome, verdict.address, verdict.door and verdict.door.name) == (
        "accepted",
        SOURCE,
        "ssh",
    )
    assert pipeline.decide(knock("first door secret"), SOURCE, T).outcome == "replay"
    assert pipeline.decide(b"junk", SOURCE, T).outcome == "malformed"


def test_a_frozen_clock_never_lets_a_store_accept_a_digest_twice() -> None:
    store = MemoryReplayCache()
    assert store.claim("d" * 64, T + 120, T) is True
    assert store.claim("d" * 64, T + 120, T) is False
    front = RecentClaims(MemoryReplayCache())
    assert front.claim("e" * 64, T + 120, T) is True
    assert front.claim("e" * 64, T + 120, T) is False
    assert front.prune(T + 121) == 1
    assert front.claim("e" * 64, T + 300, T + 121) is True


def test_reload_takes_the_new_config_whole(daemon: Daemon, conf: Path, tmp_path: Path) -> None:
    conf.write_text(RELOADED.format(state=tmp_path / "state.db", control=tmp_path / "c.sock"))
    daemon.reload()
    assert sorted(daemon.runtime.doors) == ["mail"]
    assert recorder(daemon).restored == [["mail"]]
    assert daemon.handle(knock("first door secret"), SOURCE, T) is None
    assert daemon.handle(knock("third door secret"), SOURCE, T) is not None
    assert recorder(daemon).acted == [("mail", SOURCE)]


def test_a_bad_reload_keeps_the_running_config(daemon: Daemon, conf: Path) -> None:
    conf.write_text("[door-x]\n secret = s\n")  # a door that does nothing
    daemon.reload()
    assert sorted(daemon.runtime.doors) == ["seq", "ssh", "web"]
    assert recorder(daemon).restored == []
    assert daemon.handle(knock("first door secret"), SOURCE, T) is not None


def test_control_commands(daemon: Daemon) -> None:
    daemon.handle(knock("first door secret"), SOURCE, T)
    status = asyncio.run(daemon.control({"command": "status"}))
    assert status["ok"] is True
    assert status["doors"] == ["seq", "ssh", "web"]
    assert status["counters"] == {"accepted": 1}
    assert status["replay"] == "memory"
    assert status["open"] == []
    closed = asyncio.run(daemon.control({"command": "close", "address": "::ffff:192.0.2.7"}))
    assert closed == {"ok": True, "closed": []}
    assert status["accepted_by_door"] == {"ssh": 1}
    one = asyncio.run(daemon.control({"command": "close", "address": SOURCE, "door": "web"}))
    assert one == {"ok": True, "closed": []}
    assert recorder(daemon).closed == [(SOURCE, None), (SOURCE, "web")]
    for door in ("nope", ["web"], 7):
        refused = asyncio.run(daemon.control({"command": "close", "address": SOURCE, "door": door}))
        assert refused["ok"] is False and "has no door" in refused["error"]
    assert len(recorder(daemon).closed) == 2
    bad = asyncio.run(daemon.control({"command": "close", "address": "nope"}))
    assert bad["ok"] is False and "not an IP address" in bad["error"]
    unknown = asyncio.run(daemon.control({"command": "reboot"}))
    assert unknown["ok"] is False


def test_the_config_builds_each_sequence_door_once(daemon: Daemon) -> None:
    (door,) = daemon.runtime.config.sequence_doors
    assert daemon.runtime.matcher is not None
    assert daemon.runtime.matcher.doors == (door.sequence_door,)
    assert daemon.runtime.matcher.doors[0] is door.sequence_door
