"""The client's memory of the knocks it sent: a second knock never repeats a digest."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tumbler.client import knock
from tumbler.client.knock import KnockOptions
from tumbler.client.sentknocks import SentKnocks
from tumbler.protocols import tumbler1 as protocol

WHEN = datetime(2030, 1, 1, 12, 0, 20, tzinfo=UTC)


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def test_knocks_in_one_minute_take_the_neighbouring_minutes_then_stop(
    receiver, tmp_path: Path
) -> None:
    port = receiver.getsockname()[1]
    sent = SentKnocks(tmp_path / "sent")
    stamps = []
    for _ in range(3):
        result = knock.send_knock("127.0.0.1", port, "s3cret", KnockOptions(when=WHEN, sent=sent))
        assert receiver.recv(100) == result.datagram
        stamps.append(result.stamp)
    assert stamps == ["13000011200", "13000011201", "13000011159"]
    with pytest.raises(knock.NoFreshMinute, match=r"try again in 40 s"):
        knock.send_knock("127.0.0.1", port, "s3cret", KnockOptions(when=WHEN, sent=sent))
    # Another secret (another door) has minutes of its own.
    other = knock.send_knock("127.0.0.1", port, "other", KnockOptions(when=WHEN, sent=sent))
    assert other.stamp == "13000011200"


def test_the_memory_holds_digests_only_and_forgets_them(tmp_path: Path) -> None:
    path = tmp_path / "state" / "sent"
    sent = SentKnocks(path)
    digest = protocol.knock_digest("13000011200", "127.0.0.1", "s3cret")
    assert sent.claim_first([(digest, 1000.0)], now=900.0) == 0
    assert sent.claim_first([(digest, 1000.0)], now=999.0) is None
    assert "s3cret" not in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert sent.claim_first([(digest, 2000.0)], now=1000.0) == 0  # expired, so fresh again


def test_a_dry_run_is_not_remembered(tmp_path: Path) -> None:
    sent = SentKnocks(tmp_path / "sent")
    url = knock.parse_url("tumbler://127.0.0.1:9/")
    first = knock.knock_url(url, "s", KnockOptions(when=WHEN, sent=sent), dry_run=True)
    again = knock.knock_url(url, "s", KnockOptions(when=WHEN, sent=sent), dry_run=True)
    assert first.stamp == again.stamp == "13000011200"
    assert not (tmp_path / "sent").exists()


def test_the_file_is_rewritten_in_place_and_cut_when_it_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "sent"
    sent = SentKnocks(path)
    for n in range(3):
        assert sent.claim_first([(f"{n:064x}", 1000.0)], now=900.0) == 0
    assert path.read_text().splitlines() == [f"{n:064x} 1000" for n in range(3)]
    path.write_bytes(path.read_bytes() + b"junk without a number\n\xff\xfe 12\n")
    # The three expire: one line is left, and nothing of the longer file after it.
    assert sent.claim_first([("e" * 64, 2000.0)], now=1500.0) == 0
    assert path.read_text() == f"{'e' * 64} 2000\n"
