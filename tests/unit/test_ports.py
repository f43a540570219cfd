"""Port specs as `open` and `sequence` write them."""

from __future__ import annotations

import pytest

from tumbler.ports import PortSpec, parse_port_list, parse_port_spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp/22", PortSpec("tcp", 22, 22)),
        ("udp/500", PortSpec("udp", 500, 500)),
        ("22", PortSpec("tcp", 22, 22)),
        ("  TCP/22  ", PortSpec("tcp", 22, 22)),
        ("UDP/60001-60010", PortSpec("udp", 60001, 60010)),
        ("tcp/1", PortSpec("tcp", 1, 1)),
        ("tcp/65535", PortSpec("tcp", 65535, 65535)),
        ("tcp/7-7", PortSpec("tcp", 7, 7)),
        ("tcp/1-65535", PortSpec("tcp", 1, 65535)),
    ],
)
def test_parse_port_spec(text, expected):
    assert parse_port_spec(text) == expected


def test_default_protocol_applies_to_a_bare_port():
    assert parse_port_spec("53", default_proto="udp") == PortSpec("udp", 53, 53)
    assert parse_port_spec("tcp/53", default_proto="udp") == PortSpec("tcp", 53, 53)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tcp/",
        "/22",
        "tcp/0",
        "tcp/65536",
        "tcp/70000",
        "tcp/abc",
        "abc",
        "0",
        "-1",
        "tcp/-1",
        "tcp/22-",
        "tcp/-22",
        "tcp/10-5",
        "tcp/6-5",
        "tcp/1-2-3",
        "tcp/+22",
        "tcp/2 2",
        "tcp/22.0",
        "sctp/22",
        "icmp/1",
        "tcp//22",
        "tcp/22/udp",
        "tcp/\u00b2",
    ],
)
def test_parse_port_spec_refuses(text):
    with pytest.raises(ValueError):
        parse_port_spec(text)


def test_range_can_be_forbidden():
    with pytest.raises(ValueError, match="range"):
        parse_port_spec("tcp/6000-6010", allow_range=False)
    assert parse_port_spec("tcp/6000", allow_range=False) == PortSpec("tcp", 6000, 6000)


def test_str_round_trips():
    for text in ("tcp/22", "udp/60001-60010"):
        spec = parse_port_spec(text)
        assert str(spec) == text
        assert parse_port_spec(str(spec)) == spec


def test_specs_order_by_protocol_then_ports():
    specs = [PortSpec("udp", 1, 1), PortSpec("tcp", 22, 22), PortSpec("tcp", 10, 20)]
    assert sorted(specs) == [PortSpec("tcp", 10, 20), PortSpec("tcp", 22, 22), specs[0]]


def test_parse_port_list_keeps_order():
    assert parse_port_list("tcp/22, udp/60001-60010") == (
        PortSpec("tcp", 22, 22),
        PortSpec("udp", 60001, 60010),
    )
    assert parse_port_list("udp/3,tcp/2,1") == (
        PortSpec("udp", 3, 3),
        PortSpec("tcp", 2, 2),
        PortSpec("tcp", 1, 1),
    )


def test_parse_port_list_ignores_empty_items():
    assert parse_port_list("tcp/22,, tcp/23,") == (PortSpec("tcp", 22, 22), PortSpec("tcp", 23, 23))


@pytest.mark.parametrize("text", ["", " ", ",", " , ,"])
def test_parse_port_list_refuses_empty(text):
    with pytest.raises(ValueError, match="empty"):
        parse_port_list(text)


def test_parse_port_list_refuses_a_bad_item_and_a_forbidden_range():
    with pytest.raises(ValueError):
        parse_port_list("tcp/22, tcp/0")
    with pytest.raises(ValueError):
        parse_port_list("tcp/22, tcp/23-24", allow_range=False)
