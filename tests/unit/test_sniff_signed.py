"""`tumbler sniff` on signed knocks: key id as a fingerprint prefix, replays, key checks."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import dpkt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from tumbler.audit import sniff
from tumbler.cli import sniff as sniff_cli
from tumbler.client.sshagent import FileSigner, sign_knock
from tumbler.protocols.authorized_keys import parse_authorized_keys

WHEN = 1_764_547_200
CAPTURED = datetime.fromtimestamp(WHEN + 2, UTC)
ALICE = FileSigner(ed25519.Ed25519PrivateKey.generate(), "alice@laptop")
STRANGER = FileSigner(ed25519.Ed25519PrivateKey.generate(), "stranger")


def packet(src: str, payload: bytes) -> sniff.Packet:
    return sniff.Packet(
        "udp", src, 40000, "10.0.0.9", 8675, time=CAPTURED, length=len(payload), payload=payload
    )


def knocks() -> list[sniff.Packet]:
    good = sign_knock(ALICE, "10.0.0.1", "lab", WHEN, os.urandom(16))
    return [
        packet("10.0.0.1", good),
        packet("10.0.0.66", good),  # the same datagram again, from elsewhere
        packet("10.0.0.2", sign_knock(ALICE, "10.0.0.2", "other", WHEN, os.urandom(16))),
        packet("10.0.0.3", sign_knock(STRANGER, "10.0.0.3", "lab", WHEN, os.urandom(16))),
    ]


def test_without_keys_the_key_id_shows_the_fingerprint_prefix_and_replays():
    report = sniff.analyze(knocks())
    t1, t2, t3, t4 = report.tumbler
    assert t1.signed is not None and t1.signed.key is None and t1.signed.signature is None
    assert t1.signed.offset_seconds == -2
    assert ALICE.key.fingerprint.startswith(sniff.fingerprint_prefix(t1.signed.key_id)[:-3])
    assert (t2.replay_of, t3.replay_of, t4.replay_of) == (1, None, None)
    out = sniff.format_report(report)
    prefix = ALICE.key.fingerprint[:17]
    assert f"Signed knock #1 on 10.0.0.9:8675 key {prefix}... sent 2025-12-01 00:00:00 UTC" in out
    assert "(-2 s from capture)" in out
    assert "REPLAY of #1" in out


def test_with_keys_each_knock_is_named_and_checked():
    keys = parse_authorized_keys(ALICE.key.openssh(ALICE.comment)).keys
    report = sniff.analyze(knocks(), ssh_keys=keys, realm="lab")
    verdicts = [t.signed.signature for t in report.tumbler if t.signed is not None]
    assert verdicts == ["for its source", "for 10.0.0.1, NOT its source", "bad", None]
    out = sniff.format_report(report)
    assert f"by alice@laptop {ALICE.key.fingerprint}: signature valid for its source" in out
    assert "signature valid for 10.0.0.1, NOT its source" in out
    assert "signature valid for no address in the capture (or another realm)" in out


def test_cli_reads_a_pcap_with_authorized_keys(tmp_path: Path, capsys):
    capture = tmp_path / "knocks.pcap"
    with open(capture, "wb") as f:
        writer = dpkt.pcap.Writer(f)
        for p in knocks():
            udp = dpkt.udp.UDP(sport=p.sport, dport=p.dport, data=p.payload)
            udp.ulen = len(udp)
            ip = dpkt.ip.IP(
                src=socket.inet_aton(p.src), dst=socket.inet_aton(p.dst), p=17, data=udp
            )
            ip.len = len(ip)
            eth = dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
            writer.writepkt(bytes(eth), ts=CAPTURED.timestamp())
    keys = tmp_path / "ssh-users"
    keys.write_text(ALICE.key.openssh(ALICE.comment) + "\nssh-dss AAAA bad\n")
    argv = [str(capture), "--authorized-keys", str(keys), "--realm", "lab", "--json"]
    assert sniff_cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert "ssh-users:2: key type ssh-dss is not supported for signed knocks" in err
    sources = json.loads(out)["sources"]
    first = sources[0]["tumbler"][0]["signed"]
    assert first["key"] == f"alice@laptop {ALICE.key.fingerprint}"
    assert first["signature"] == "for its source"
    assert first["time"] == WHEN and first["offset_seconds"] == -2
    assert first["key_id"] == ALICE.key.key_id.hex()
    assert sources[1]["tumbler"][0]["replay_of"] == 1


@pytest.mark.parametrize("cut", [1, 37, 60])
def test_a_damaged_signed_knock_is_just_a_udp_datagram(cut):
    good = sign_knock(ALICE, "10.0.0.1", "", WHEN, os.urandom(16))
    report = sniff.analyze([packet("10.0.0.1", good[:-cut])], udp_knocks=True)
    assert report.tumbler == []
    assert [k.kind for k in report.knocks] == ["udp"]
