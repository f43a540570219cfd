"""NFLOG messages and IP packets built byte by byte, config requests, and rendered rules."""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tumbler.actions.firewall import seqlog
from tumbler.actions.firewall.runner import Runner
from tumbler.actions.firewall.seqlog import install_rules, render_rules
from tumbler.errors import FirewallError
from tumbler.events import ConnectionAttempt
from tumbler.ports import PortSpec
from tumbler.sources.nflog import build_config_messages, parse_ip_packet, parse_nflog_message

SYN, ACK, RST = 0x02, 0x10, 0x04


def tcp(sport: int, dport: int, flags: int = SYN) -> bytes:
    return struct.pack(">HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 64240, 0, 0)


def udp(sport: int, dport: int, data: bytes = b"x") -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(data), 0) + data


def ipv4(
    src: str, dst: str, proto: int, l4: bytes, frag: int = 0x4000, options: bytes = b""
) -> bytes:
    ihl = 5 + len(options) // 4
    header = struct.pack(
        ">BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        ihl * 4 + len(l4),
        1,
        frag,
        64,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return header + options + l4


def ipv6(src: str, dst: str, next_header: int, rest: bytes) -> bytes:
    return (
        struct.pack(">IHBB", 6 << 28, len(rest), next_header, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + rest
    )


def attr(kind: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return (struct.pack("=HH", length, kind) + value).ljust((length + 3) & ~3, b"\0")


def nflog_packet(payload: bytes, prefix: str | None = "tumbler", group: int = 7) -> bytes:
    attrs = attr(1, struct.pack(">HBB", 0x0800, 1, 0))  # NFULA_PACKET_HDR
    attrs += attr(3, struct.pack(">QQ", 1_700_000_000, 5))  # NFULA_TIMESTAMP
    if prefix is not None:
        attrs += attr(10, prefix.encode() + b"\0")
    attrs += attr(4, struct.pack(">I", 2))  # NFULA_IFINDEX_INDEV
    attrs += attr(9, payload)
    body = struct.pack("!BBH", socket.AF_INET, 0, group) + attrs
    return struct.pack("=IHHII", 16 + len(body), 0x0400, 0, 0, 0) + body


SYN4 = ipv4("192.168.0.5", "192.168.0.3", 6, tcp(40000, 42))


# ------------------------------------------------------------------------ parse_ip_packet


def test_ipv4_syn() -> None:
    assert parse_ip_packet(SYN4, 3.0) == ConnectionAttempt(
        "192.168.0.5", "192.168.0.3", "tcp", 42, 3.0, 40000
    )


def test_ipv4_with_options() -> None:
    packet = ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 196), options=b"\x01\x01\x01\x00")
    assert parse_ip_packet(packet, 0).port == 196  # type: ignore[union-attr]


@pytest.mark.parametrize("flags", [SYN | ACK, ACK, RST, RST | ACK, 0x01])
def test_tcp_not_a_new_connection(flags: int) -> None:
    assert parse_ip_packet(ipv4("1.2.3.4", "5.6.7.8", 6, tcp(1, 42, flags)), 0) is None


def test_syn_with_ecn_flags_counts() -> None:
    packet = ipv4("1.2.3.4", "5.6.7.8", 6, tcp(1, 42, SYN | 0x40 | 0x80))
    assert parse_ip_packet(packet, 0) is not None


def test_ipv4_udp() -> None:
    packet = ipv4("10.0.0.9", "10.0.0.1", 17, udp(33000, 500))
    assert parse_ip_packet(packet, 1) == ConnectionAttempt(
        "10.0.0.9", "10.0.0.1", "udp", 500, 1, 33000
    )


def test_ipv4_non_first_fragment_ignored() -> None:
    assert parse_ip_packet(ipv4("1.2.3.4", "5.6.7.8", 17, udp(1, 500), frag=0x2000 | 3), 0) is None
    first = ipv4("1.2.3.4", "5.6.7.8", 17, udp(1, 500), frag=0x2000)
    assert parse_ip_packet(first, 0) is not None


def test_ipv6_syn_normalized() -> None:
    packet = ipv6("fd00:0:0::5", "FD00::3", 6, tcp(51234, 196))
    assert parse_ip_packet(packet, 2) == ConnectionAttempt(
        "fd00::5", "fd00::3", "tcp", 196, 2, 51234
    )


def test_ipv6_extension_headers() -> None:
    hop_by_hop = bytes([44, 0]) + b"\x01\x04\0\0\0\0"  # next: fragment
    fragment = bytes([17, 0]) + struct.pack(">HI", 0x0001, 99)  # offset 0, more fragments
    packet = ipv6("2001:db8::1", "2001:db8::2", 0, hop_by_hop + fragment + udp(7, 500))
    assert parse_ip_packet(packet, 0).port == 500  # type: ignore[union-attr]
    later = bytes([17, 0]) + struct.pack(">HI", (8 << 3) | 1, 99)
    assert parse_ip_packet(ipv6("2001:db8::1", "2001:db8::2", 44, later + b"\0" * 8), 0) is None


@pytest.mark.parametrize(
    ("src", "dst"),
    [("::ffff:192.0.2.7", "2001:db8::1"), ("2001:db8::7", "::ffff:192.0.2.1")],
)
def test_ipv4_mapped_address_in_an_ipv6_packet_is_dropped(src: str, dst: str) -> None:
    """An IPv6 sender using ::ffff:a.b.c.d is not the IPv4 host a.b.c.d."""
    for l4, proto in ((tcp(1, 42), 6), (udp(1, 500), 17)):
        assert parse_ip_packet(ipv6(src, dst, proto, l4), 0) is None
    assert parse_nflog_message(nflog_packet(ipv6(src, dst, 6, tcp(1, 42)))) == []
    assert parse_ip_packet(ipv6("2001:db8::7", "2001:db8::1", 6, tcp(1, 42)), 0) is not None


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x50" + b"\0" * 60,  # version 5
        ipv4("1.2.3.4", "5.6.7.8", 1, b"\x08\0\0\0\0\0\0\0"),  # ICMP
        ipv4("1.2.3.4", "5.6.7.8", 6, tcp(1, 0)),  # port 0
        ipv6("::1", "::2", 59, b""),  # no next header
        b"\x45" + b"\0" * 3,
        b"\x4f" + b"\0" * 30,  # header length beyond the data
        b"\x44" + b"\0" * 30,  # header length below the minimum
    ],
)
def test_not_attempts(packet: bytes) -> None:
    assert parse_ip_packet(packet, 0) is None


@pytest.mark.parametrize(
    "packet",
    [SYN4, ipv6("fd00::5", "fd00::3", 6, tcp(1, 42)), ipv4("1.1.1.1", "2.2.2.2", 17, udp(1, 2))],
)
def test_every_truncation_is_skipped_quietly(packet: bytes) -> None:
    assert parse_ip_packet(packet, 0) is not None
    for cut in range(len(packet) - 1):
        result = parse_ip_packet(packet[:cut], 0)
        assert result is None or result.port > 0


# ---------------------------------------------------------------------- parse_nflog_message


def test_one_message() -> None:
    assert parse_nflog_message(nflog_packet(SYN4), 9.0) == [
        ConnectionAttempt("192.168.0.5", "192.168.0.3", "tcp", 42, 9.0, 40000)
    ]


def test_batched_messages_keep_order_and_skip_others() -> None:
    packets = [ipv4("10.0.0.5", "10.0.0.1", 6, tcp(40000 + i, p)) for i, p in enumerate((42, 196))]
    ack = ipv4("10.0.0.5", "10.0.0.1", 6, tcp(1, 22, ACK))
    config = struct.pack("=IHHII", 20, 0x0401, 0, 0, 0) + b"\0" * 4
    done = struct.pack("=IHHII", 20, 3, 2, 0, 0) + b"\0" * 4
    v6 = ipv6("fd00::5", "fd00::1", 17, udp(9, 500))
    data = nflog_packet(packets[0]) + config + nflog_packet(ack) + nflog_packet(packets[1])
    data += done + nflog_packet(v6, prefix=None)
    events = parse_nflog_message(data, 1.0)
    assert [(e.source, e.proto, e.port) for e in events] == [
        ("10.0.0.5", "tcp", 42),
        ("10.0.0.5", "tcp", 196),
        ("fd00::5", "udp", 500),
    ]


def test_over_limit_prefix_becomes_port_zero() -> None:
    (event,) = parse_nflog_message(nflog_packet(SYN4, prefix="tumbler-over"))
    assert event.port == 0 and event.source == "192.168.0.5"


def test_attribute_type_flags_are_masked() -> None:
    data = bytearray(nflog_packet(SYN4, prefix=None))
    # the payload attribute is the last one: set NLA_F_NET_BYTEORDER on its type
    offset = len(data) - ((4 + len(SYN4) + 3) & ~3)
    struct.pack_into("=H", data, offset + 2, 9 | 0x4000)
    assert len(parse_nflog_message(bytes(data))) == 1


def test_truncated_datagrams() -> None:
    data = nflog_packet(SYN4) * 2
    for cut in range(len(data)):
        events = parse_nflog_message(data[:cut])
        assert len(events) <= 2


@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    parse_nflog_message(data)
    parse_ip_packet(data, 0)


@given(st.binary(min_size=0, max_size=120))
def test_random_payload_in_valid_envelope_never_raises(payload: bytes) -> None:
    parse_nflog_message(nflog_packet(payload))
    parse_nflog_message(nflog_packet(b"\x45" + payload))
    parse_nflog_message(nflog_packet(b"\x60" + payload))


# --------------------------------------------------------------------------- config requests


def test_config_messages() -> None:
    bind, mode = build_config_messages(8675, copy_range=80)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", bind)
    assert (length, kind, flags, seq, pid) == (len(bind), 0x0401, 0x1 | 0x4, 1, 0)
    assert struct.unpack_from("!BBH", bind, 16) == (socket.AF_UNSPEC, 0, 8675)
    assert bind[20:] == struct.pack("=HH", 5, 1) + b"\x01\0\0\0"  # NFULA_CFG_CMD: BIND
    assert len(bind) % 4 == 0 and len(mode) % 4 == 0
    attrs = mode[20:]
    assert attrs[:12] == struct.pack("=HH", 10, 2) + struct.pack(">IBB", 80, 2, 0) + b"\0\0"
    assert attrs[12:20] == struct.pack("=HH", 8, 5) + struct.pack(">I", 1)  # QTHRESH 1
    assert struct.unpack_from("=I", mode, 0)[0] == len(mode)


@pytest.mark.parametrize("group", [-1, 65536])
def test_bad_group(group: int) -> None:
    with pytest.raises(ValueError):
        build_config_messages(group)
    with pytest.raises(ValueError):
        render_rules(group)


# ----------------------------------------------------------------------------------- rules


def rules_of(document: dict) -> list[list[dict]]:
    return [c["add"]["rule"]["expr"] for c in document["nftables"] if "rule" in c.get("add", {})]


def test_rules_document_shape() -> None:
    document = render_rules(7)
    commands = document["nftables"]
    assert commands[:3] == [
        {"add": {"table": {"family": "inet", "name": "tumbler_seq"}}},
        {"delete": {"table": {"family": "inet", "name": "tumbler_seq"}}},
        {"add": {"table": {"family": "inet", "name": "tumbler_seq"}}},
    ]
    (chain,) = [c["add"]["chain"] for c in commands if "chain" in c.get("add", {})]
    assert (chain["hook"], chain["prio"], chain["policy"]) == ("input", -150, "accept")
    logs = [s["log"] for rule in rules_of(document) for s in rule if "log" in s]
    assert {log["group"] for log in logs} == {7}
    assert [log["prefix"] for log in logs] == ["tumbler-over", "tumbler-over", "tumbler"]
    assert rules_of(document)[0] == [
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}},
        {"return": None},
    ]
    assert "knock_ports" not in json.dumps(document)
    json.dumps(document)  # serializable as is


def test_rules_with_loopback_and_ports_hint() -> None:
    document = render_rules(
        7, [PortSpec("tcp", 42, 42), ("udp", 500), ("tcp", 42)], include_loopback=True
    )
    assert '"iifname"' not in json.dumps(document)
    (ports,) = [
        c["add"]["set"]
        for c in document["nftables"]
        if c.get("add", {}).get("set", {}).get("name") == "knock_ports"
    ]
    assert ports["elem"] == [{"concat": ["tcp", 42]}, {"concat": ["udp", 500]}]


@pytest.mark.parametrize("longest", [1.0, 10.0, 119.5, 300.0, 3600.5])
def test_knocking_sources_are_tracked_past_the_longest_sequence(longest: float) -> None:
    track = seqlog.track_timeout_for(longest)
    assert track >= seqlog.TRACK_MINIMUM and track > longest
    document = render_rules(7, [("tcp", 42)], track_timeout=track)
    timeouts = {
        c["add"]["set"]["name"]: c["add"]["set"].get("timeout")
        for c in document["nftables"]
        if "set" in c.get("add", {})
    }
    assert timeouts["knocking4"] == timeouts["knocking6"] == track


def test_bad_track_timeout() -> None:
    with pytest.raises(ValueError):
        render_rules(7, [("tcp", 42)], track_timeout=0)


def test_bad_hint_port() -> None:
    with pytest.raises(ValueError):
        render_rules(7, [("tcp", 0)])


class FakeRunner:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None]] = []

    def run(self, argv: list[str], input: str | None = None, check: bool = True) -> None:
        self.calls.append((list(argv), input))


def test_install_and_remove_run_nft_with_json_on_stdin() -> None:
    runner = FakeRunner()
    install_rules(7, [("tcp", 42)], runner=runner, rate=3)  # type: ignore[arg-type]
    seqlog.remove_rules(runner=runner)  # type: ignore[arg-type]
    (argv, doc), (argv2, doc2) = runner.calls
    assert argv == argv2 == ["nft", "-j", "-f", "-"]
    assert json.loads(doc or "") == render_rules(7, [("tcp", 42)], rate=3)
    assert json.loads(doc2 or "") == seqlog.render_removal()


def test_install_failure_raises_firewall_error() -> None:
    failing = Runner(prefix=(sys.executable, "-c", "import sys; sys.exit('no nft here')"))
    with pytest.raises(FirewallError, match="no nft here"):
        install_rules(7, runner=failing)
    with pytest.raises(FirewallError):
        install_rules(7, runner=Runner(prefix=("/nonexistent/prefix",)))
