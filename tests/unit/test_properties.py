"""Property tests: parsers of untrusted input raise only their own error type."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tumbler.config.daemon import parse_config
from tumbler.errors import ConfigError, MalformedDatagram
from tumbler.ports import parse_port_spec
from tumbler.protocols.tumbler1 import (
    encode_datagram,
    minute_stamp,
    parse_datagram,
    stamp_for_minute,
)

K = b"44e0543454e4c7a7633a216671b3f5068e332bd6e7b1c13cbc69b0d91bb044cb"

# Relative secret_file references in generated configs resolve inside this empty directory.
_BASE = Path(tempfile.mkdtemp(prefix="tumbler-prop-"))


def _near_misses() -> st.SearchStrategy[bytes]:
    """Bytes close to a real datagram: prefix variants, hex runs, separators, line ends."""
    part = st.sampled_from(
        [
            *(b"TUMBLER1:", b"TUMBLER1: ", b"tumbler1:", b"TUMBLER2:"),
            *(b" ", b"\n", b"\r", b"\r\n", b"\x00", b"0", b"g", b"\xff"),
            *(K, K[:63], K.upper()),
        ]
    )
    return st.lists(part, max_size=6).map(b"".join)


@given(st.one_of(st.binary(max_size=200), _near_misses()))
@example(b"")
@example(b"\x00" * 65536)
@example(b"TUMBLER1:  " + K)
@example(b"TUMBLER1: " + K + b"\r")
def test_parse_datagram_raises_only_malformed(data):
    try:
        digest = parse_datagram(data)
    except MalformedDatagram:
        return
    # Whatever was accepted is one of the allowed shapes around a 64-hex-digit digest.
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")
    body = data[len(b"TUMBLER1:") :]
    assert data.startswith(b"TUMBLER1:")
    assert body.lower() in {
        sep + digest.encode() + end for sep in (b"", b" ") for end in (b"", b"\n", b"\r\n")
    }


@given(
    digest=st.binary(min_size=32, max_size=32).map(bytes.hex),
    space=st.booleans(),
    upper=st.booleans(),
    end=st.sampled_from([b"", b"\n", b"\r\n"]),
)
def test_encode_parse_round_trip_with_accepted_variants(digest, space, upper, end):
    canonical = encode_datagram(digest)
    assert len(canonical) == 74
    assert parse_datagram(canonical) == digest
    hex_part = digest.upper() if upper else digest
    variant = b"TUMBLER1:" + (b" " if space else b"") + hex_part.encode() + end
    assert parse_datagram(variant) == digest


@given(
    digest=st.binary(min_size=32, max_size=32).map(bytes.hex),
    junk=st.binary(min_size=1, max_size=4).filter(lambda b: b not in (b"\n", b"\r\n")),
)
def test_any_other_suffix_is_refused(digest, junk):
    try:
        parse_datagram(encode_datagram(digest) + junk)
    except MalformedDatagram:
        return
    raise AssertionError(f"accepted trailing {junk!r}")


_CONFIG_WORDS = st.sampled_from(
    [
        "[common]",
        "[door-a]",
        "[door-b]",
        "[door-",
        "[",
        "]",
        "=",
        " = ",
        "\n",
        "\r\n",
        "\r",
        "\x00",
        "#",
        ";",
        "%IP%",
        "\ufeff",
        "\u2028",
        "\x0c",
        "port",
        "listen",
        "window",
        "replay",
        "replay_fallback",
        "redis://h",
        "command_timeout",
        "secret",
        "secret_file",
        "command",
        "open",
        "timeout",
        "firewall",
        "set",
        "sequence",
        "sequence_timeout",
        "nflog_group",
        "sequence_source",
        "tcp/22",
        "udp/1-2",
        "nftables",
        "inet filter s",
        "5m",
        "8675",
        "0",
        "70000",
        "::1",
        "fe80::1%x",
        "x",
        "/",
        "..",
        "\u00b2",
        "\u0662",
    ]
)


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=300), st.lists(_CONFIG_WORDS, max_size=40).map("".join)))
@example("[door-a]\n secret_file = a\x00b\n command = t\n")
@example("[door-a]\n secret = x\n open = tcp/\u00b2\n")
@example("[common]\n port = \u0662\u0662\n")
def test_config_reader_raises_only_config_error(text):
    try:
        config = parse_config(text, "<prop>", _BASE)
    except ConfigError as err:
        assert str(err).startswith("<prop>")
        return
    assert config.doors


@given(st.text(max_size=40))
@example("tcp/\u00b2")
@example("tcp/" + "9" * 5000)
def test_parse_port_spec_raises_only_value_error(text):
    try:
        spec = parse_port_spec(text)
    except ValueError:
        return
    assert spec.proto in ("tcp", "udp")
    assert 1 <= spec.first <= spec.last <= 65535


@given(
    st.one_of(
        st.text(alphabet="tcpudTCPUD/-0123456789 ", max_size=16),
        st.from_regex(r"(tcp|udp)/[0-9]{1,6}(-[0-9]{1,6})?", fullmatch=True),
    )
)
def test_parse_port_spec_near_misses(text):
    try:
        spec = parse_port_spec(text)
    except ValueError:
        return
    assert parse_port_spec(str(spec)) == spec


@given(st.integers(min_value=0, max_value=(2**33) // 60))
@example(minute=1104537540 // 60)  # 2004-12-31 23:59 UTC, the last minute of a year
def test_stamp_for_minute_agrees_with_minute_stamp(minute):
    when = datetime.fromtimestamp(minute * 60, UTC)
    assert stamp_for_minute(minute) == minute_stamp(when)
