"""The wire protocol, version 1: stamps, addresses, digests and the datagram's strict shape."""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tumbler.errors import MalformedDatagram, TumblerError
from tumbler.protocols.tumbler1 import (
    DEFAULT_PORT,
    digest_bytes,
    encode_datagram,
    knock_digest,
    make_knock,
    minute_stamp,
    minute_stamps,
    normalize_address,
    parse_datagram,
)

# The DESIGN.md test vector.
VECTOR_T = "10410271530"
VECTOR_A = "192.168.0.5"
VECTOR_S = "open-pAsSwOrD"
VECTOR_K = "44e0543454e4c7a7633a216671b3f5068e332bd6e7b1c13cbc69b0d91bb044cb"
VECTOR_WHEN = datetime(2004, 11, 27, 15, 30, tzinfo=UTC)
K = VECTOR_K.encode("ascii")


def test_default_port_is_the_articles():
    assert DEFAULT_PORT == 8675


# --- minute stamp ---------------------------------------------------------------------------


def test_stamp_of_the_test_vector_moment():
    assert minute_stamp(VECTOR_WHEN) == VECTOR_T


def test_stamp_ignores_seconds_within_the_minute():
    assert minute_stamp(VECTOR_WHEN + timedelta(seconds=59, microseconds=999_999)) == VECTOR_T


def test_january_is_month_00():
    assert minute_stamp(datetime(2024, 1, 5, 7, 8, tzinfo=UTC)) == "12400050708"


def test_december_is_month_11_and_fields_are_zero_padded():
    assert minute_stamp(datetime(2000, 12, 1, 0, 0, tzinfo=UTC)) == "10011010000"


def test_last_minute_of_a_year():
    assert minute_stamp(datetime(2025, 12, 31, 23, 59, tzinfo=UTC)) == "12511312359"


def test_next_minute_crosses_into_the_new_year():
    last = datetime(2025, 12, 31, 23, 59, 30, tzinfo=UTC)
    assert minute_stamp(last + timedelta(minutes=1)) == "12600010000"


def test_leap_day():
    assert minute_stamp(datetime(2024, 2, 29, 12, 0, tzinfo=UTC)) == "12401291200"


def test_other_timezones_are_converted_to_utc():
    plus_one = timezone(timedelta(hours=1))
    assert minute_stamp(datetime(2004, 11, 27, 16, 30, tzinfo=plus_one)) == VECTOR_T
    # Local midnight of 1 January east of UTC is still the previous year in UTC.
    assert minute_stamp(datetime(2026, 1, 1, 0, 30, tzinfo=plus_one)) == "12511312330"


def test_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="aware"):
        minute_stamp(datetime(2004, 11, 27, 15, 30))


def test_minute_stamps_window_1_is_current_previous_next():
    assert minute_stamps(VECTOR_WHEN, 1) == ["10410271530", "10410271529", "10410271531"]


def test_minute_stamps_window_2_order():
    assert minute_stamps(VECTOR_WHEN, 2) == [
        "10410271530",
        "10410271529",
        "10410271531",
        "10410271528",
        "10410271532",
    ]


def test_minute_stamps_window_0_is_only_the_current_minute():
    assert minute_stamps(VECTOR_WHEN, 0) == [VECTOR_T]


def test_minute_stamps_across_the_new_year():
    when = datetime(2025, 12, 31, 23, 59, 1, tzinfo=UTC)
    assert minute_stamps(when, 1) == ["12511312359", "12511312358", "12600010000"]


def test_minute_stamps_refuses_a_negative_window():
    with pytest.raises(ValueError):
        minute_stamps(VECTOR_WHEN, -1)


def test_minute_stamps_refuses_naive_datetime():
    with pytest.raises(ValueError):
        minute_stamps(datetime(2004, 11, 27, 15, 30), 1)


# --- address normalisation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("192.168.0.5", "192.168.0.5"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("2001:db8::0:1", "2001:db8::1"),
        # RFC 5952 4.2.2: a single zero field is not compressed.
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        # RFC 5952 4.2.3: the longest run is compressed, the first one on a tie.
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("::", "::"),
        ("FE80::ABCD", "fe80::abcd"),
        # IPv4-mapped counts as the IPv4 address, whatever the spelling.
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::FFFF:C000:0201", "192.0.2.1"),
        ("0:0:0:0:0:ffff:192.0.2.1", "192.0.2.1"),
        # Scope ids are stripped.
        ("fe80::1%eth0", "fe80::1"),
        ("FE80:0:0:0:0:0:0:1%2", "fe80::1"),
        ("::ffff:192.0.2.1%eth0", "192.0.2.1"),
    ],
)
def test_normalize_address(given, expected):
    assert normalize_address(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (ipaddress.IPv4Address("10.0.0.1"), "10.0.0.1"),
        (ipaddress.IPv6Address("2001:DB8::1"), "2001:db8::1"),
        (ipaddress.IPv6Address("::ffff:10.0.0.1"), "10.0.0.1"),
        (ipaddress.IPv6Address("fe80::1%eth0"), "fe80::1"),
    ],
)
def test_normalize_address_objects(given, expected):
    assert normalize_address(given) == expected


@pytest.mark.parametrize("bad", ["", "host.example", "192.168.0.256", "1.2.3", "::g", "01.2.3.4"])
def test_normalize_address_refuses_non_addresses(bad):
    with pytest.raises(ValueError):
        normalize_address(bad)


# --- knock digest ----------------------------------------------------------------------------


def test_design_test_vector():
    assert knock_digest(VECTOR_T, VECTOR_A, VECTOR_S) == VECTOR_K


def test_digest_is_sha256_of_the_concatenation():
    expected = hashlib.sha256(b"12600010000" + b"2001:db8::1" + "s\u00e9cret".encode()).hexdigest()
    assert knock_digest("12600010000", "2001:db8::1", "s\u00e9cret") == expected


def test_digest_normalises_the_address_first():
    plain = knock_digest(VECTOR_T, "192.0.2.1", VECTOR_S)
    assert knock_digest(VECTOR_T, "::ffff:192.0.2.1", VECTOR_S) == plain
    v6 = knock_digest(VECTOR_T, "2001:db8::1", VECTOR_S)
    assert knock_digest(VECTOR_T, "2001:DB8:0:0:0:0:0:1", VECTOR_S) == v6
    assert knock_digest(VECTOR_T, "2001:db8::1%eth0", VECTOR_S) == v6


def test_digest_depends_on_every_input():
    others = {
        knock_digest("10410271531", VECTOR_A, VECTOR_S),
        knock_digest(VECTOR_T, "192.168.0.6", VECTOR_S),
        knock_digest(VECTOR_T, VECTOR_A, "open-pAsSwOrd"),
    }
    assert VECTOR_K not in others
    assert len(others) == 3


# --- datagram encoding -----------------------------------------------------------------------


def test_make_knock_of_the_test_vector():
    datagram = make_knock(VECTOR_S, VECTOR_A, VECTOR_WHEN + timedelta(seconds=42))
    assert datagram == b"TUMBLER1: " + K
    assert len(datagram) == 74


def test_encode_datagram_lowercases():
    assert encode_datagram(VECTOR_K.upper()) == b"TUMBLER1: " + K


@pytest.mark.parametrize("bad", ["", VECTOR_K[:63], VECTOR_K + "0", VECTOR_K[:63] + "g"])
def test_encode_datagram_refuses_non_digests(bad):
    with pytest.raises(ValueError):
        encode_datagram(bad)


# --- datagram parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "datagram",
    [
        b"TUMBLER1: " + K,
        b"TUMBLER1:" + K,
        b"TUMBLER1: " + K.upper(),
        b"TUMBLER1:" + K.upper(),
        b"TUMBLER1: " + K + b"\n",
        b"TUMBLER1: " + K + b"\r\n",
        b"TUMBLER1:" + K + b"\r\n",
        b"TUMBLER1: " + K[:32].upper() + K[32:] + b"\n",
    ],
)
def test_parse_accepts_the_allowed_variants(datagram):
    assert parse_datagram(datagram) == VECTOR_K


@pytest.mark.parametrize(
    "datagram",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"TUMBLER1:", id="prefix-only"),
        pytest.param(b"TUMBLER1: ", id="prefix-and-space"),
        pytest.param(b"TUMBLER1: " + K[:63], id="63-hex"),
        pytest.param(b"TUMBLER1: " + K + b"0", id="65-hex"),
        pytest.param(b"TUMBLER1:" + K + b"0", id="65-hex-no-space"),
        pytest.param(b"TUMBLER1: " + K[:63] + b"g", id="non-hex"),
        pytest.param(b"TUMBLER1: " + K[:10] + b"-" + K[11:], id="dash"),
        pytest.param(b"TUMBLER1: 0x" + K[2:], id="0x"),
        pytest.param(b"TUMBLER1:  " + K, id="two-spaces"),
        pytest.param(b"TUMBLER1:\t" + K, id="tab"),
        pytest.param(b" TUMBLER1: " + K, id="leading-space"),
        pytest.param(b"TUMBLER2: " + K, id="TUMBLER2"),
        pytest.param(b"TUMBLER0: " + K, id="TUMBLER0"),
        pytest.param(b"tumbler1: " + K, id="lowercase-prefix"),
        pytest.param(b"TUMBLER1 " + K, id="no-colon"),
        pytest.param(b"TUMBLER1: " + K + b"x", id="trailing-junk"),
        pytest.param(b"TUMBLER1: " + K + b" ", id="trailing-space"),
        pytest.param(b"TUMBLER1: " + K + b" \n", id="space-then-newline"),
        pytest.param(b"TUMBLER1: " + K + b"\n\n", id="two-newlines"),
        pytest.param(b"TUMBLER1: " + K + b"\r\n\r\n", id="two-crlf"),
        pytest.param(b"TUMBLER1: " + K + b"\r", id="cr-alone"),
        pytest.param(b"TUMBLER1: " + K + b"\n\r", id="lf-cr"),
        pytest.param(b"TUMBLER1: " + K + b"\x00", id="trailing-nul"),
        pytest.param(b"TUMBLER1:\x00" + K, id="nul-for-space"),
        pytest.param(b"TUMBLER1: " + K[:20] + b"\x00" + K[21:], id="nul-inside"),
        pytest.param(b"\x00" * 74, id="all-nul"),
        pytest.param(b"\n" + b"TUMBLER1: " + K, id="leading-newline"),
        pytest.param(b"TUMBLER1: " + K + b"\n" + b"TUMBLER1: " + K, id="two-knocks"),
        pytest.param(b"TUMBLER1: " + K + b"\x00" * (65536 - 74), id="64KiB"),
        pytest.param(b"A" * 65536, id="64KiB-junk"),
        pytest.param(b"TUMBLER1: " + "\uff41".encode() * 21 + b"a", id="non-ascii"),
    ],
)
def test_parse_refuses_bad_shapes(datagram):
    with pytest.raises(MalformedDatagram):
        parse_datagram(datagram)


def test_malformed_datagram_is_a_tumbler_error():
    with pytest.raises(TumblerError):
        parse_datagram(b"nope")


def _digest_bytes_or_none(data: bytes) -> bytes | None:
    try:
        return digest_bytes(data)
    except MalformedDatagram:
        return None


def _parsed_or_none(data: bytes) -> bytes | None:
    try:
        return bytes.fromhex(parse_datagram(data))
    except MalformedDatagram:
        return None


_HEXDIGITS = st.sampled_from(list(b"0123456789abcdefABCDEF g\x00\n"))


@settings(max_examples=300)
@given(
    head=st.sampled_from([b"TUMBLER1: ", b"TUMBLER1:", b"TUMBLER1:  ", b"tumbler1: ", b""]),
    body=st.lists(_HEXDIGITS, min_size=60, max_size=68).map(bytes),
    tail=st.sampled_from([b"", b"\n", b"\r\n", b" "]),
)
def test_digest_bytes_accepts_exactly_what_parse_datagram_accepts(head, body, tail):
    data = head + body + tail
    assert _digest_bytes_or_none(data) == _parsed_or_none(data)


@given(st.binary(max_size=80))
def test_digest_bytes_on_random_bytes(data):
    assert _digest_bytes_or_none(data) == _parsed_or_none(data)


def test_digest_bytes_of_a_knock():
    knock = make_knock("open-pAsSwOrD", "192.168.0.5", datetime(2004, 11, 27, 15, 30, tzinfo=UTC))
    assert digest_bytes(knock).hex() == parse_datagram(knock)
    assert len(digest_bytes(knock)) == 32
    assert digest_bytes(knock.upper().replace(b"TUMBLER1", b"TUMBLER1")) == digest_bytes(knock)
    with pytest.raises(MalformedDatagram):
        digest_bytes(knock[:-1] + b"g")
