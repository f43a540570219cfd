"""`tumbler sniff` and v2 datagrams: shown with key id, time and replays; --key checks them."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import dpkt
import pytest

from tumbler.audit import sniff
from tumbler.cli import sniff as sniff_cli
from tumbler.protocols import tumbler2

KEY = bytes(range(32))
KEY_TEXT = tumbler2.encode_key(KEY)
T = 1_764_554_400  # 2025-12-01 02:00:00 UTC
A, B, S = "10.0.0.2", "10.0.0.3", "10.0.0.1"


def packet(src: str, data: bytes, at: float = T + 2, dport: int = 8675) -> sniff.Packet:
    return sniff.Packet(
        "udp",
        src,
        40000,
        S,
        dport,
        time=datetime.fromtimestamp(at, UTC),
        length=len(data),
        payload=data,
    )


def knock(src: str = A, at: int = T, realm: str = "", nonce: bytes = bytes(16)) -> bytes:
    return tumbler2.build(KEY, at, nonce, src, realm)


def test_v2_knocks_are_shown_with_key_id_time_and_replays():
    first = knock()
    report = sniff.analyze(
        [packet(A, first), packet(B, first), packet(A, knock(nonce=b"\x01" * 16))]
    )
    one, two, three = report.tumbler
    assert one.v2 is not None and one.v2.key_id == tumbler2.key_id(KEY).hex()
    assert one.v2.sent == T
    assert (one.replay_of, two.replay_of, three.replay_of) == (None, 1, None)
    text = sniff.format_report(report)
    assert (
        f"Tumbler v2 knock #1 on {S}:8675 key id {one.v2.key_id} sent 2025-12-01T02:00:00" in text
    )
    assert "REPLAY of #1" in text


def test_key_check_tells_source_offset_and_replays_from_elsewhere():
    first = knock(at=T - 187)
    report = sniff.analyze([packet(A, first), packet(B, first)], keys=[bytes(32), KEY])
    mine, copy = report.tumbler
    assert mine.check is not None and copy.check is not None
    assert (mine.check.status, mine.check.secret, mine.check.for_source) == ("match", 2, True)
    assert mine.check.offset_seconds == -189
    assert (copy.check.made_for, copy.check.for_source) == (A, False)
    text = sniff.format_report(report)
    assert "made with key 2 (-189 s from capture) for its source" in text
    assert f"made with key 2 (-189 s from capture) for {A}, NOT its source" in text


def test_key_check_with_a_realm_and_without_the_right_key():
    report = sniff.analyze([packet(A, knock(realm="r"))], keys=[KEY])
    assert report.tumbler[0].check is not None
    assert report.tumbler[0].check.status == "bad-mac"
    report = sniff.analyze([packet(A, knock(realm="r"))], keys=[KEY], realm="r")
    assert report.tumbler[0].check is not None and report.tumbler[0].check.status == "match"
    report = sniff.analyze([packet(A, knock())], keys=[bytes(32)])
    assert report.tumbler[0].check is not None
    assert report.tumbler[0].check.status == "unknown-key"
    assert "no key given has this key id" in sniff.format_report(report)


def test_v1_secrets_do_not_touch_v2_knocks():
    report = sniff.analyze([packet(A, knock())], secrets=["open-pAsSwOrD"])
    assert report.tumbler[0].check is None


def test_a_68_byte_datagram_to_the_port_is_a_likely_knock_in_text():
    line = f"{T}.000000 IP {A}.40000 > {S}.8675: UDP, length 68\n"
    report = sniff.analyze(sniff.read_packets(io.BytesIO(line.encode())))
    assert [(t.length, t.digest) for t in report.tumbler] == [(68, None)]


def _pcap(packets: list[tuple[str, bytes, float]]) -> bytes:
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out, linktype=dpkt.pcap.DLT_RAW)
    for src, data, at in packets:
        udp = dpkt.udp.UDP(sport=40000, dport=8675, data=data)
        udp.ulen = len(udp)
        ip = dpkt.ip.IP(
            src=bytes(map(int, src.split("."))),
            dst=bytes(map(int, S.split("."))),
            p=dpkt.ip.IP_PROTO_UDP,
            data=udp,
        )
        ip.len = len(ip)
        writer.writepkt(bytes(ip), ts=at)
    return out.getvalue()


def test_cli_reads_a_pcap_and_checks_with_key_and_key_file(tmp_path, capsys):
    first = knock(realm="fleet")
    capture = tmp_path / "k.pcap"
    capture.write_bytes(_pcap([(A, first, T + 1), (B, first, T + 3)]))
    key_file = tmp_path / "k.key"
    key_file.write_text(KEY_TEXT + "\n")
    for option in (["--key", KEY_TEXT], ["--key-file", str(key_file)]):
        status = sniff_cli.main([str(capture), *option, "--realm", "fleet", "--json"])
        assert status == 0
        out = json.loads(capsys.readouterr().out)
        (a, b) = out["sources"]
        entry = a["tumbler"][0]
        assert (entry["version"], entry["key_id"], entry["sent"]) == (
            2,
            tumbler2.key_id(KEY).hex(),
            T,
        )
        assert entry["check"]["status"] == "match" and entry["check"]["offset_seconds"] == -1
        assert b["tumbler"][0]["replay_of"] == 1
        assert b["tumbler"][0]["check"]["for_source"] is False


@pytest.mark.parametrize("bad", ["hunter2", KEY.hex()])
def test_cli_refuses_a_bad_key_without_echoing_it(bad, tmp_path, capsys):
    capture = tmp_path / "k.pcap"
    capture.write_bytes(_pcap([]))
    assert sniff_cli.main([str(capture), "--key", bad]) == 2
    err = capsys.readouterr().err
    assert "v2 key" in err and bad not in err
