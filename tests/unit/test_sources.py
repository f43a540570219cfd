"""Every source has one shape: started on a loop with a sink, stopped, whatever it reads."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.unit.test_logfile import line_for
from tumbler.events import ConnectionAttempt
from tumbler.sources.base import Source
from tumbler.sources.logfile import LogFileSource
from tumbler.sources.nflog import NflogSource
from tumbler.sources.spec import KINDS, SourceSpec, open_source
from tumbler.sources.udp import UdpSource

WAIT = 10.0  # a bound for a hang, not a pace: each wait ends on its event


def test_every_sequence_source_kind_has_a_builder(tmp_path: Path) -> None:
    specs = {"nflog": SourceSpec("nflog"), "file": SourceSpec("file", str(tmp_path / "kern.log"))}
    assert set(specs) == set(KINDS)
    for kind, spec in specs.items():
        source: Source[object] = open_source(spec, nflog_group=7)
        assert source.name == kind
        source.stop()  # stopping an unstarted source does nothing
    assert isinstance(open_source(specs["nflog"], nflog_group=7), NflogSource)
    made = open_source(
        SourceSpec("file", "/var/log/ulog.log", "FW:"), nflog_group=7, on_foreign=print
    )
    assert isinstance(made, LogFileSource)
    assert (made.path, made.prefix, made.on_foreign) == ("/var/log/ulog.log", "FW:", print)


def test_log_file_source_hands_each_attempt_on_and_survives_a_failing_sink(
    tmp_path: Path,
) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")

    async def run() -> list[ConnectionAttempt]:
        got: list[ConnectionAttempt] = []
        second = asyncio.Event()

        def sink(event: ConnectionAttempt) -> None:
            got.append(event)
            if len(got) == 1:
                raise RuntimeError("a bug in deciding")
            second.set()

        source = LogFileSource(str(log), clock=lambda: 42.0, poll=0.01)
        source.start(asyncio.get_running_loop(), sink)
        try:
            with log.open("a") as out:
                out.write("gate kernel: " + line_for(7000) + "\n")
                out.write("gate kernel: " + line_for(8000) + "\n")
            await asyncio.wait_for(second.wait(), WAIT)
        finally:
            source.stop()
            source.stop()
        return got

    got = asyncio.run(run())
    assert [(e.port, e.when) for e in got] == [(7000, 42.0), (8000, 42.0)]


def test_udp_source_hands_on_datagrams_and_closes_its_sockets_at_stop() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]

    async def run() -> list[tuple[bytes, str]]:
        got: list[tuple[bytes, str]] = []
        arrived = asyncio.Event()

        def sink(data: bytes, address: str, now: float) -> None:
            got.append((data, address))
            arrived.set()

        source = UdpSource([sock], size=lambda: 8)
        source.start(asyncio.get_running_loop(), sink)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.sendto(b"knock-knock", ("127.0.0.1", port))
            await asyncio.wait_for(arrived.wait(), WAIT)
        finally:
            source.stop()
        return got

    assert asyncio.run(run()) == [(b"knock-kn", "127.0.0.1")]  # read at the size asked for
    assert sock.fileno() == -1


def test_nflog_source_that_failed_to_start_stops_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    from tumbler.sources import nflog

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise nflog.NflogError("no netlink here")

    monkeypatch.setattr(nflog, "NflogReader", refuse)
    source = NflogSource(7)
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(nflog.NflogError):
            source.start(loop, lambda event: None)
        source.stop()
    finally:
        loop.close()
