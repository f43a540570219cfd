"""`tumbler sniff`: text parsing of both tcpdump formats, pairing, pcap and the CLI."""

from __future__ import annotations

import io
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tumbler.audit import sniff
from tumbler.cli import sniff as sniff_cli
from tumbler.protocols.tumbler1 import knock_digest, make_knock

DATA = Path(__file__).resolve().parents[1] / "data"
SECRET = "open-pAsSwOrD"

# The article's scene in the current (4.99) format, as tcpdump -n prints it.
NEW = """\
08:28:31.848226 IP 10.77.0.1.41412 > 10.77.0.2.42: Flags [S], seq 1395990444, win 64240, options [mss 1460,sackOK,TS val 1477044088 ecr 0,nop,wscale 10], length 0
08:28:32.862362 IP 10.77.0.1.41412 > 10.77.0.2.42: Flags [S], seq 1395990444, win 64240, options [mss 1460,sackOK,TS val 1477045103 ecr 0,nop,wscale 10], length 0
08:28:33.150021 IP 10.77.0.1.38328 > 10.77.0.2.196: Flags [S], seq 448679403, win 64240, options [mss 1460,sackOK,TS val 3805648094 ecr 0,nop,wscale 10], length 0
08:28:35.761727 IP 10.77.0.1.34194 > 10.77.0.2.2222: Flags [S], seq 1143034969, win 64240, options [mss 1460,sackOK,TS val 2631710901 ecr 0,nop,wscale 10], length 0
08:28:35.761755 IP 10.77.0.2.2222 > 10.77.0.1.34194: Flags [S.], seq 3534328925, ack 1143034970, win 65160, options [mss 1460,sackOK,TS val 2939222512 ecr 2631710901,nop,wscale 10], length 0
08:28:35.761775 IP 10.77.0.1.34194 > 10.77.0.2.2222: Flags [.], ack 1, win 63, options [nop,nop,TS val 2631710901 ecr 2939222512], length 0
08:28:34.451911 IP 10.77.0.1.34524 > 10.77.0.2.69: Flags [S], seq 2509036502, win 64240, options [mss 1460,sackOK,TS val 2138540098 ecr 0,nop,wscale 10], length 0
08:28:35.962980 IP 10.77.0.1.53452 > 10.77.0.2.8675: UDP, length 74
"""  # noqa: E501 (lines exactly as tcpdump prints them)

# The article's era (tcpdump 3.x), with -t, as its filter `tcp[13] == 2 or tcp[13] == 18` shows.
OLD = """\
192.168.0.5.3456 > 192.168.0.3.42: S 123:123(0) win 5840 <mss 1460,sackOK,timestamp 1 0,nop,wscale 0> (DF)
192.168.0.5.3457 > 192.168.0.3.22: S 900:900(0) win 5840 <mss 1460> (DF)
192.168.0.3.22 > 192.168.0.5.3457: S 1:1(0) ack 901 win 5792 <mss 1460> (DF)
192.168.0.5.3458 > 192.168.0.3.196: S 456:456(0) win 5840 <mss 1460> (DF)
192.168.0.5.3458 > 192.168.0.3.196: S 456:456(0) win 5840 <mss 1460> (DF)
192.168.0.5.3459 > 192.168.0.3.69: S 789:789(0) win 5840 <mss 1460> (DF)
"""  # noqa: E501


def run(text: str, **kw: object) -> sniff.Report:
    stats = sniff.Stats()
    packets = list(sniff.iter_text_packets(text.splitlines(), stats))
    return sniff.analyze(packets, stats=stats, **kw)  # type: ignore[arg-type]


def ports(report: sniff.Report) -> list[tuple[str, str, int]]:
    return [(k.src, k.dst, k.dport) for k in report.knocks]


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = sniff_cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------- text formats


def test_new_format_knocks_in_order_and_real_connection_left_out() -> None:
    report = run(NEW)
    assert ports(report) == [("10.77.0.1", "10.77.0.2", p) for p in (42, 196, 69)]
    assert report.knocks[0].retransmissions == 1
    assert [(c.dst, c.dport) for c in report.connections] == [("10.77.0.2", 2222)]
    assert report.stats.skipped == 0
    assert report.knocks[0].time is None  # a time of day has no date
    assert report.knocks[0].time_text == "08:28:31.848226"


def test_article_output_form() -> None:
    out = sniff.format_report(run(OLD))
    assert out == (
        "From 192.168.0.5:\n"
        "  Knock on 192.168.0.3:42\n"
        "  Knock on 192.168.0.3:196\n"
        "  Knock on 192.168.0.3:69\n"
    )


def test_old_format_with_timestamps_and_ip_tag() -> None:
    text = "\n".join(
        f"12:00:0{i}.000000 " + ("IP " if i % 2 else "") + line
        for i, line in enumerate(OLD.splitlines())
    )
    report = run(text)
    assert [k.dport for k in report.knocks] == [42, 196, 69]
    assert report.knocks[1].retransmissions == 1
    assert report.knocks[0].seq == 123


def test_without_timestamps_same_result() -> None:
    stripped = "\n".join(line.split(" ", 1)[1] for line in NEW.splitlines())
    assert ports(run(stripped)) == ports(run(NEW))


def test_retransmission_counts_once_but_new_sequence_number_is_a_new_attempt() -> None:
    text = (
        "IP 10.0.0.1.5000 > 10.0.0.2.42: Flags [S], seq 1, win 1, length 0\n"
        "IP 10.0.0.1.5000 > 10.0.0.2.42: Flags [S], seq 1, win 1, length 0\n"
        "IP 10.0.0.1.5000 > 10.0.0.2.42: Flags [S], seq 1, win 1, length 0\n"
        "IP 10.0.0.1.5000 > 10.0.0.2.42: Flags [S], seq 777, win 1, length 0\n"
    )
    report = run(text)
    assert [k.retransmissions for k in report.knocks] == [2, 0]


def test_same_port_from_another_source_port_is_another_knock() -> None:
    text = (
        "IP 10.0.0.1.5000 > 10.0.0.2.42: Flags [S], seq 1, win 1, length 0\n"
        "IP 10.0.0.1.5001 > 10.0.0.2.42: Flags [S], seq 1, win 1, length 0\n"
    )
    assert [k.dport for k in run(text).knocks] == [42, 42]


def test_syn_ack_only_answers_its_own_four_tuple() -> None:
    text = (
        "IP 10.0.0.1.5000 > 10.0.0.2.22: Flags [S], seq 1, win 1, length 0\n"
        "IP 10.0.0.1.5001 > 10.0.0.2.22: Flags [S], seq 9, win 1, length 0\n"
        "IP 10.0.0.2.22 > 10.0.0.1.5001: Flags [S.], seq 5, ack 10, win 1, length 0\n"
        "IP 10.0.0.2.22 > 10.0.0.3.5000: Flags [S.], seq 5, ack 2, win 1, length 0\n"
    )
    report = run(text)
    assert [(k.sport, k.dport) for k in report.knocks] == [(5000, 22)]
    assert [c.sport for c in report.connections] == [5001]


def test_grouping_by_source_keeps_order_within_each() -> None:
    text = (
        "IP 10.0.0.1.5000 > 10.0.0.9.42: Flags [S], seq 1, win 1, length 0\n"
        "IP 10.0.0.7.6000 > 10.0.0.9.7: Flags [S], seq 1, win 1, length 0\n"
        "IP 10.0.0.1.5001 > 10.0.0.9.196: Flags [S], seq 1, win 1, length 0\n"
        "IP 10.0.0.7.6001 > 10.0.0.9.8: Flags [S], seq 1, win 1, length 0\n"
    )
    assert sniff.format_report(run(text)) == (
        "From 10.0.0.1:\n"
        "  Knock on 10.0.0.9:42\n"
        "  Knock on 10.0.0.9:196\n"
        "From 10.0.0.7:\n"
        "  Knock on 10.0.0.9:7\n"
        "  Knock on 10.0.0.9:8\n"
    )


def test_ipv6_and_rst_answers() -> None:
    text = (DATA / "sniff-rst-v6.txt").read_text()
    report = run(text)
    assert [(k.src, k.dst, k.dport, k.answer) for k in report.knocks] == [
        ("fd77::1", "fd77::2", 7000, "refused"),
        ("10.77.0.1", "10.77.0.2", 8000, "refused"),
    ]
    assert [(c.src, c.dport) for c in report.connections] == [("fd77::1", 2222)]
    assert "  Knock on [fd77::2]:7000\n" in sniff.format_report(report)
    assert run(text, include_refused=False).knocks == []


def test_ipv6_addresses_are_canonical() -> None:
    text = "IP6 FD00:0:0::1.40000 > fd00::2.42: Flags [S], seq 1, win 1, length 0\n"
    assert run(text).knocks[0].src == "fd00::1"


def test_udp_knocks_only_with_flag_and_only_unanswered() -> None:
    text = (
        "IP 10.0.0.1.40000 > 10.0.0.2.500: UDP, length 1\n"
        "IP 10.0.0.1.40001 > 10.0.0.2.53: 1234+ A? example.org. (29)\n"
        "IP 10.0.0.2.53 > 10.0.0.1.40001: 1234 NXDomain 0/0/0 (29)\n"
        "IP 10.0.0.1.40002 > 10.0.0.2.4500:  [|isakmp]\n"
    )
    assert run(text).knocks == []
    report = run(text, udp_knocks=True)
    assert [(k.kind, k.dport) for k in report.knocks] == [("udp", 500), ("udp", 4500)]
    assert "  Knock on 10.0.0.2:udp/500\n" in sniff.format_report(report)


def test_old_udp_and_likely_tumbler_by_size_and_port() -> None:
    text = (
        "192.168.0.5.1024 > 192.168.0.3.8675: udp 74\n"
        "192.168.0.5.1024 > 192.168.0.3.8675: udp 20\n"
        "IP 192.168.0.5.1025 > 192.168.0.3.9999: UDP, length 74\n"
    )
    report = run(text)
    assert [(t.number, t.length, t.digest) for t in report.tumbler] == [(1, 74, None)]
    assert run(text, tumbler_port=9999).tumbler[0].dport == 9999
    with_secret = run(text, secrets=[SECRET])
    assert with_secret.tumbler[0].check == sniff.Check("no-payload", window=10)


def test_verbose_two_line_form() -> None:
    report = run((DATA / "sniff-knocks.v.txt").read_text())
    assert [k.dport for k in report.knocks] == [42, 196, 69]
    assert report.knocks[0].time_text == "08:28:31.848226"
    assert len(report.tumbler) == 3
    report6 = run((DATA / "sniff-rst-v6.v.txt").read_text(), udp_knocks=True)
    assert [(k.kind, k.dport) for k in report6.knocks] == [
        ("tcp", 7000),
        ("tcp", 8000),
        ("udp", 500),
    ]


def test_link_level_headers_with_e() -> None:
    text = (
        "08:28:38.736973 aa:9a:ed:a0:03:7b > a2:d3:6f:12:3f:d8, ethertype IPv6 (0x86dd), "
        "length 94: fd77::1.48292 > fd77::2.7000: Flags [S], seq 2820679559, win 64800, "
        "length 0\n"
        "08:28:38.742041 aa:9a:ed:a0:03:7b > a2:d3:6f:12:3f:d8, ethertype IPv4 (0x0800), "
        "length 43: 10.77.0.1.58986 > 10.77.0.2.500:  [|isakmp]\n"
    )
    report = run(text, udp_knocks=True)
    assert [(k.kind, k.dst, k.dport) for k in report.knocks] == [
        ("tcp", "fd77::2", 7000),
        ("udp", "10.77.0.2", 500),
    ]


def test_hex_dump_recovers_tumbler_payload_and_epoch_time() -> None:
    report = run((DATA / "sniff-knocks.ttX.txt").read_text(), secrets=[SECRET])
    t1, t2, t3 = report.tumbler
    assert t1.digest is not None and t2.digest == t1.digest and t3.digest != t1.digest
    assert (t1.replay_of, t2.replay_of, t3.replay_of) == (None, 1, None)
    assert t1.check is not None and t1.check.status == "match" and t1.check.for_source
    assert t1.time is not None and t1.time.year == 2026
    assert t3.check is not None and t3.check.status == "no-match"


def test_ascii_dump_recovers_payload_but_minute_is_unknown() -> None:
    report = run((DATA / "sniff-knocks.A.txt").read_text(), secrets=[SECRET])
    assert [t.replay_of for t in report.tumbler] == [None, 1, None]
    assert all(t.check and t.check.status == "unknown-time" for t in report.tumbler)
    assert [k.dport for k in report.knocks] == [42, 196, 69]


# A real capture's -X text: each datagram to the closed knock port draws an ICMP port
# unreachable that quotes it, and an unrelated ICMPv6 packet falls in between.
HEX_WITH_ICMP = """\
08:51:06.179344 IP 10.213.0.2.59590 > 10.213.0.1.8675: UDP, length 74
	0x0000:  4500 0066 ac3d 4000 4011 789d 0ad5 0002  E..f.=@.@.x.....
	0x0010:  0ad5 0001 e8c6 21e3 0052 1610 5455 4d42  ......!..R..TUMB
	0x0020:  4c45 5231 3a20 6162 3137 6132 6436 3965  LER1:.ab17a2d69e
	0x0030:  6665 6266 3836 6661 3536 3034 3661 3963  febf86fa56046a9c
	0x0040:  3932 3535 6561 3536 3564 3032 3462 3661  9255ea565d024b6a
	0x0050:  3837 3964 6633 3332 6330 3934 6530 6637  879df332c094e0f7
	0x0060:  3363 6236 3062                           3cb60b
08:51:06.179406 IP 10.213.0.1 > 10.213.0.2: ICMP 10.213.0.1 udp port 8675 unreachable, length 110
	0x0000:  45c0 0082 1941 0000 4001 4ace 0ad5 0001  E....A..@.J.....
	0x0010:  0ad5 0002 0303 81a6 0000 0000 4500 0066  ............E..f
	0x0020:  ac3d 4000 4011 789d 0ad5 0002 0ad5 0001  .=@.@.x.........
	0x0030:  e8c6 21e3 0052 1610 5455 4d42 4c45 5231  ..!..R..TUMBLER1
	0x0040:  3a20 6162 3137 6132 6436 3965 6665 6266  :.ab17a2d69efebf
	0x0050:  3836 6661 3536 3034 3661 3963 3932 3535  86fa56046a9c9255
	0x0060:  6561 3536 3564 3032 3462 3661 3837 3964  ea565d024b6a879d
	0x0070:  6633 3332 6330 3934 6530 6637 3363 6236  f332c094e0f73cb6
	0x0080:  3062                                     0b
08:51:06.302349 IP6 fe80::1001:99ff:fec4:efc4 > ff02::16: HBH ICMP6, multicast listener report v2, 2 group record(s), length 48
	0x0000:  6000 0000 0038 0001 fe80 0000 0000 0000  `....8..........
	0x0010:  1001 99ff fec4 efc4 ff02 0000 0000 0000  ................
	0x0020:  0000 0000 0000 0016 3a00 0502 0000 0100  ........:.......
	0x0030:  8f00 e473 0000 0002 0400 0000 ff02 0000  ...s............
	0x0040:  0000 0000 0000 0001 ffc4 efc4 0400 0000  ................
	0x0050:  ff02 0000 0000 0000 0000 0000 0000 006a  ...............j
08:51:06.335790 IP 10.213.0.2.46603 > 10.213.0.1.8675: UDP, length 74
	0x0000:  4500 0066 45b4 4000 4011 df26 0ad5 0002  E..fE.@.@..&....
	0x0010:  0ad5 0001 b60b 21e3 0052 1610 5455 4d42  ......!..R..TUMB
	0x0020:  4c45 5231 3a20 6162 3137 6132 6436 3965  LER1:.ab17a2d69e
	0x0030:  6665 6266 3836 6661 3536 3034 3661 3963  febf86fa56046a9c
	0x0040:  3932 3535 6561 3536 3564 3032 3462 3661  9255ea565d024b6a
	0x0050:  3837 3964 6633 3332 6330 3934 6530 6637  879df332c094e0f7
	0x0060:  3363 6236 3062                           3cb60b
"""  # noqa: E501 (lines exactly as tcpdump prints them)


def test_hex_dump_of_a_following_icmp_packet_is_not_the_datagrams() -> None:
    report = run(HEX_WITH_ICMP)
    digest = "ab17a2d69efebf86fa56046a9c9255ea565d024b6a879df332c094e0f73cb60b"
    assert [(t.digest, t.replay_of) for t in report.tumbler] == [(digest, None), (digest, 1)]


# tcpdump -v prints the packet an ICMP error quotes as an indented pair of lines.
VERBOSE_WITH_ICMP = """\
08:51:06.179344 IP (tos 0x0, ttl 64, id 44093, offset 0, flags [DF], proto UDP (17), length 102)
    10.213.0.2.59590 > 10.213.0.1.8675: UDP, length 74
08:51:06.179406 IP (tos 0xc0, ttl 64, id 6465, offset 0, flags [none], proto ICMP (1), length 130)
    10.213.0.1 > 10.213.0.2: ICMP 10.213.0.1 udp port 8675 unreachable, length 110
\tIP (tos 0x0, ttl 64, id 44093, offset 0, flags [DF], proto UDP (17), length 102)
    10.213.0.2.59590 > 10.213.0.1.8675: UDP, length 74
"""


def test_packet_quoted_by_an_icmp_error_is_not_sent_again() -> None:
    report = run(VERBOSE_WITH_ICMP)
    assert [(t.src, t.sport, t.replay_of) for t in report.tumbler] == [("10.213.0.2", 59590, None)]


def test_tttt_dates_are_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        report = run((DATA / "sniff-knocks.tttt.txt").read_text())
        assert report.knocks[0].time == datetime(2026, 11, 27, 8, 28, 31, 848226, tzinfo=UTC)
        monkeypatch.setenv("TZ", "EST5")
        time.tzset()
        report = run((DATA / "sniff-knocks.tttt.txt").read_text())
        assert report.knocks[0].time == datetime(2026, 11, 27, 13, 28, 31, 848226, tzinfo=UTC)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_date_option_gives_time_of_day_a_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        stats = sniff.Stats()
        text = (DATA / "sniff-knocks.A.txt").read_text().splitlines()
        day = datetime(2026, 11, 27).date()
        report = sniff.analyze(
            sniff.iter_text_packets(text, stats, day), stats=stats, secrets=[SECRET]
        )
        assert report.tumbler[0].check is not None
        assert report.tumbler[0].check.status == "match"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_garbage_is_skipped_and_counted() -> None:
    text = (
        "tcpdump: verbose output suppressed, use -v[v]... for full protocol decode\n"
        "listening on lo, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n"
        "\n"
        "IP 10.0.0.2 > 10.0.0.1: ICMP 10.0.0.2 tcp port 42 unreachable, length 68\n"
        "IP 999.0.0.1.5 > 10.0.0.2.42: Flags [S], seq 1, win 1, length 0\n"
        "IP 10.0.0.1.99999 > 10.0.0.2.42: Flags [S], seq 1, win 1, length 0\n"
        "\x00\xff binary \ud800 junk > here.1: Flags [S]\n"
        "IP 10.0.0.1.5000 > 10.0.0.2.42: Flags [S], seq 1, win 1, length 0\n"
        "3 packets captured\n"
    )
    report = run(text)
    assert [k.dport for k in report.knocks] == [42]
    assert report.stats.skipped == 7
    assert report.stats.packets == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=120), max_size=20))
def test_never_crashes_on_arbitrary_lines(lines: list[str]) -> None:
    stats = sniff.Stats()
    packets = list(sniff.iter_text_packets(lines, stats))
    sniff.analyze(packets, stats=stats, udp_knocks=True, secrets=["x"], window=0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["10.0.0.1", "10.0.0.2", "fd00::1"]),
            st.integers(0, 70000),
            st.sampled_from(
                ["Flags [S]", "Flags [S.]", "Flags [R.]", "S 1:1(0)", "UDP, length 74"]
            ),
        ),
        max_size=15,
    )
)
def test_never_crashes_on_shuffled_packets(rows: list[tuple[str, int, str]]) -> None:
    text = "\n".join(f"IP {a}.{p} > 10.0.0.9.42: {f}, seq 1, ack 2, win 1" for a, p, f in rows)
    run(text)


# ------------------------------------------------------------------ Tumbler checks


def test_check_digest_finds_minute_and_source() -> None:
    digest = knock_digest("10410271530", "192.168.0.5", SECRET)
    assert digest == "44e0543454e4c7a7633a216671b3f5068e332bd6e7b1c13cbc69b0d91bb044cb"
    captured = datetime(2004, 11, 27, 15, 33, 59, tzinfo=UTC)
    check = sniff.check_digest(digest, "192.168.0.5", captured, ["other", SECRET])
    assert (check.status, check.stamp, check.offset_minutes) == ("match", "10410271530", -3)
    assert (check.secret, check.for_source, check.made_for) == (2, True, "192.168.0.5")
    replayed = sniff.check_digest(digest, "10.6.6.6", captured, [SECRET], 10, ["192.168.0.5"])
    assert (replayed.for_source, replayed.made_for) == (False, "192.168.0.5")
    assert sniff.check_digest(digest, "192.168.0.5", captured, [SECRET], 2).status == "no-match"
    assert sniff.check_digest(digest, "192.168.0.5", None, [SECRET]).status == "unknown-time"


def test_replay_from_another_host_is_named() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    datagram = make_knock(SECRET, "10.0.0.1", when)
    packets = [
        sniff.Packet("udp", "10.0.0.1", 4000, "10.0.0.2", 8675, when, None, payload=datagram),
        sniff.Packet("udp", "10.0.0.66", 4000, "10.0.0.2", 8675, when, None, payload=datagram),
        sniff.Packet("udp", "10.0.0.1", 4000, "10.0.0.2", 8675, when, None, payload=b"hello"),
    ]
    report = sniff.analyze(packets, secrets=[SECRET], udp_knocks=True)
    _first, second = report.tumbler
    assert second.replay_of == 1 and second.src == "10.0.0.66"
    assert second.check is not None and second.check.made_for == "10.0.0.1"
    assert second.check.for_source is False
    out = sniff.format_report(report)
    assert "REPLAY of #1" in out and "for 10.0.0.1, NOT its source" in out
    assert [k.dport for k in report.knocks] == [8675]  # the non-Tumbler datagram


# -------------------------------------------------------------------- pcap files


@pytest.mark.parametrize("name", ["sniff-knocks.pcap", "sniff-knocks.pcapng"])
def test_real_capture(name: str) -> None:
    stats = sniff.Stats()
    with open(DATA / name, "rb") as f:
        report = sniff.analyze(list(sniff.read_packets(f, stats)), stats=stats, secrets=[SECRET])
    assert stats.format == name.rsplit(".", 1)[1]
    assert stats.skipped == 0
    assert ports(report) == [("10.77.0.1", "10.77.0.2", p) for p in (42, 196, 69)]
    assert [k.retransmissions for k in report.knocks] == [1, 1, 1]
    assert [(c.dport, c.answer) for c in report.connections] == [(2222, "open")]
    t1, t2, t3 = report.tumbler
    assert (t1.replay_of, t2.replay_of, t3.replay_of) == (None, 1, None)
    assert t1.check is not None and t1.check.status == "match"
    assert t1.check.for_source and t1.check.offset_minutes == 0
    assert t1.time is not None and t1.check.stamp is not None
    assert t3.check is not None and t3.check.status == "no-match"


def test_text_and_pcap_agree() -> None:
    with open(DATA / "sniff-knocks.pcap", "rb") as f:
        from_pcap = sniff.analyze(sniff.read_packets(f))
    for name in ("sniff-knocks.txt", "sniff-knocks.t.txt", "sniff-knocks.v.txt"):
        assert ports(run((DATA / name).read_text())) == ports(from_pcap)


def test_rst_v6_capture() -> None:
    with open(DATA / "sniff-rst-v6.pcap", "rb") as f:
        report = sniff.analyze(sniff.read_packets(f), udp_knocks=True)
    assert [(k.kind, k.dst, k.dport, k.answer) for k in report.knocks] == [
        ("tcp", "fd77::2", 7000, "refused"),
        ("tcp", "10.77.0.2", 8000, "refused"),
        ("udp", "10.77.0.2", 500, "none"),
    ]


def test_truncated_pcap_does_not_crash() -> None:
    data = (DATA / "sniff-knocks.pcap").read_bytes()
    stats = sniff.Stats()
    packets = list(sniff.read_packets(io.BytesIO(data[:300]), stats))
    assert 0 < len(packets) < 19
    assert stats.skipped == 1


def test_missing_dpkt_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "dpkt", None)
    code, out, err = cli([str(DATA / "sniff-knocks.pcap")], capsys)
    assert code == 2 and out == ""
    assert "tumbler[pcap]" in err


# ---------------------------------------------------------------------------- CLI


def test_main_text_from_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli([str(DATA / "sniff-knocks.txt")], capsys)
    assert code == 0
    assert out.splitlines()[:4] == [
        "From 10.77.0.1:",
        "  Knock on 10.77.0.2:42",
        "  Knock on 10.77.0.2:196",
        "  Knock on 10.77.0.2:69",
    ]
    assert err == ""


def test_main_reads_stdin_and_verbose_counts_skipped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"junk\n" + OLD.encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    code, out, err = cli(["-v"], capsys)
    assert code == 0
    assert "Knock on 192.168.0.3:69  [" in out
    assert "1 skipped" in err


def test_main_pcap_on_stdin_pipe(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Pipe(io.BytesIO):
        def seekable(self) -> bool:
            return False

    pipe = Pipe((DATA / "sniff-knocks.pcap").read_bytes())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(pipe))
    code, out, _ = cli(["-", "--json"], capsys)
    assert code == 0 and json.loads(out)["input"]["format"] == "pcap"


def test_main_json_structure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    code, out, _ = cli(
        ["--json", "--secret-file", str(secret_file), str(DATA / "sniff-knocks.pcapng")], capsys
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["version"] == 1
    assert doc["input"] == {"format": "pcapng", "lines": 19, "packets": 19, "skipped": 0}
    (source,) = doc["sources"]
    assert source["address"] == "10.77.0.1"
    assert [k["port"] for k in source["knocks"]] == [42, 196, 69]
    assert set(source["knocks"][0]) == {
        "kind",
        "host",
        "port",
        "source_port",
        "time",
        "time_text",
        "answer",
        "retransmissions",
    }
    assert source["knocks"][0]["time"].endswith("Z")
    t1, t2, t3 = source["tumbler"]
    assert t2["replay_of"] == 1 and t1["digest"] == t2["digest"]
    assert t1["check"]["status"] == "match" and t1["check"]["for_source"] is True
    assert t1["check"]["minute"].endswith(":00.000000Z")
    assert t3["check"]["status"] == "no-match"
    assert [c["port"] for c in doc["connections"]] == [2222]


def test_main_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli([str(tmp_path / "missing")], capsys)
    assert code == 2 and "missing" in err
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 5)
    code, _, err = cli([str(broken)], capsys)
    assert code == 2 and "unreadable pcap" in err


def test_main_no_knocks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, out, _ = cli([str(empty)], capsys)
    assert code == 0 and out == "No knocks found.\n"


# ----------------------------------------------------------------- hostile input


def _pcapng_with_times(times: dict[int, float]) -> bytes:
    """The test capture as pcapng, record N stamped `times[N]` seconds where given."""
    import dpkt

    with open(DATA / "sniff-knocks.pcapng", "rb") as f:
        records = list(dpkt.pcapng.Reader(f))
    out = io.BytesIO()
    writer = dpkt.pcapng.Writer(out, linktype=1)
    for index, (ts, buf) in enumerate(records):
        writer.writepkt(buf, ts=times.get(index, ts))
    return out.getvalue()


def test_capture_times_no_date_can_hold_are_skipped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pcapng stamps in 64 bits: years up to 586,000 and more, which no datetime holds."""
    path = tmp_path / "hostile.pcapng"
    path.write_bytes(_pcapng_with_times({1: 1.8e13, 4: 1.84e13}))
    code, out, err = cli([str(path), "--secret", SECRET, "-v"], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    assert "19 lines/records, 17 packets, 2 skipped" in err
    assert "Knock on 10.77.0.2:42" in out and "Knock on 10.77.0.2:69" in out


@pytest.mark.parametrize(
    "moment",
    [datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC)],
)
def test_minutes_searched_past_the_ends_of_the_calendar_are_left_out(moment: datetime) -> None:
    digest = knock_digest(sniff.minute_stamp(moment), "10.0.0.1", SECRET)
    check = sniff.check_digest(digest, "10.0.0.1", moment, [SECRET], window=3)
    assert (check.status, check.offset_minutes) == ("match", 0)
    assert sniff.check_digest("0" * 64, "10.0.0.1", moment, [SECRET]).status == "no-match"


def test_text_time_at_the_end_of_the_calendar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        datagram = make_knock(SECRET, "10.0.0.1", datetime(2026, 1, 1, tzinfo=UTC)).decode()
        text = (
            "9999-12-31 23:59:59.000000 IP 10.0.0.1.40000 > 10.0.0.2.8675: UDP, length 74\n"
            f"E..f..@.@.......{datagram}\n"
        )
        report = run(text, secrets=[SECRET])
        (knock,) = report.tumbler
        assert knock.check is not None and knock.check.status == "no-match"
    finally:
        monkeypatch.undo()
        time.tzset()


SYN_LINE = "10:00:00.000000 IP 10.0.0.1.5000 > 10.0.0.2.42: Flags [S], seq 1, win 1, length 0"


def test_a_line_over_the_cap_is_skipped_unread() -> None:
    """A line longer than MAX_LINE counts as one skipped line, even when it ends in a
    packet; the next line is read as usual, from text and from a byte stream alike."""
    long = "x" * sniff.MAX_LINE + " " + SYN_LINE
    stats = sniff.Stats()
    packets = list(sniff.iter_text_packets([long, SYN_LINE.replace("42", "43")], stats))
    assert [p.dport for p in packets] == [43]
    assert (stats.lines, stats.skipped) == (2, 1)

    stream = io.BytesIO(f"{SYN_LINE}\n{long}\n{SYN_LINE.replace('42', '43')}\n".encode())
    stats = sniff.Stats()
    assert [p.dport for p in sniff.read_packets(stream, stats)] == [42, 43]
    assert (stats.lines, stats.skipped) == (3, 1)


def test_a_16_mib_line_is_one_skipped_line() -> None:
    stats = sniff.Stats()
    data = SYN_LINE.encode() + b"\n" + b"IP (" * (4 << 20)  # 16 MiB, no newline at the end
    assert [p.dport for p in sniff.read_packets(io.BytesIO(data), stats)] == [42]
    assert (stats.lines, stats.packets, stats.skipped) == (2, 1, 1)


def test_lines_just_under_the_cap_are_read() -> None:
    line = SYN_LINE + ", options " + "x" * (sniff.MAX_LINE - len(SYN_LINE) - 10)
    assert len(line) == sniff.MAX_LINE
    stats = sniff.Stats()
    data = (line + "\n" + line).encode()
    assert [p.dport for p in sniff.read_packets(io.BytesIO(data), stats)] == [42, 42]
    assert stats.skipped == 0


# The tag rule as one regular expression, which backtracks quadratically on `IP (IP (...`.
_IP_TAG_REFERENCE = (
    r"(?:(?:^|\s)IP6?\s*(?:\(.*\))?|ethertype IPv[46] \(0x[0-9a-f]+\), length \d+:)\s*$"
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "IP",
                "IP6",
                "IPX",
                " ",
                "(",
                ")",
                "x",
                "tos 0x0",
                "ethertype IPv4 (0x0800), length 60:",
            ]
        ),
        max_size=12,
    )
)
def test_ip_tag_rule_is_the_regular_expression_it_replaced(words: list[str]) -> None:
    import re

    before = "".join(words)
    assert sniff._ip_tagged(before) == (re.search(_IP_TAG_REFERENCE, before) is not None)
