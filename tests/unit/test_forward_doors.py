"""Forward doors (`path = forward`): the config key and the rules both backends write for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tumbler.actions.firewall.iptables import FORWARD_CHAIN, IptablesBackend, Rule, parse_rule
from tumbler.actions.firewall.nftables import forward_rules
from tumbler.config.daemon import parse_config
from tumbler.errors import ConfigError
from tumbler.ports import PortSpec

DOOR = "[door-web]\n   secret = s3cret-web\n   open = tcp/8080\n"


def test_path_defaults_to_input_and_takes_forward(tmp_path: Path) -> None:
    assert parse_config(DOOR, "x.conf", tmp_path).doors[0].path == "input"
    config = parse_config(DOOR + "   path = forward\n", "x.conf", tmp_path)
    assert config.doors[0].path == "forward"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("   path = output\n", "path"),
        ("   path = forward\n   set = inet filter s\n", "not a set"),
    ],
)
def test_bad_forward_doors_are_refused(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(DOOR + extra, "x.conf", tmp_path)


def test_path_needs_an_open(tmp_path: Path) -> None:
    text = "[door-web]\n   secret = s3cret-web\n   command = true\n   path = forward\n"
    with pytest.raises(ConfigError, match="path needs an open"):
        parse_config(text, "x.conf", tmp_path)


def test_nft_forward_rules_open_before_any_drop() -> None:
    rules = [
        text
        for text, _ in forward_rules(
            {
                "web": (PortSpec("tcp", 8080, 8080),),
                "api": (PortSpec("tcp", 9000, 9010), PortSpec("udp", 53, 53)),
            }
        )
    ]
    first_drop = next(i for i, t in enumerate(rules) if t.endswith(" drop"))
    assert all(t.endswith(" accept") for t in rules[:first_drop])
    assert all(t.endswith(" drop") for t in rules[first_drop:])
    assert (
        "ct state new meta l4proto tcp ct original proto-dst { 8080 } ip saddr @fwd4_web accept"
        in rules
    )
    assert "ct state new meta l4proto tcp ct original proto-dst { 9000-9010 } drop" in rules
    assert len(rules) == 3 * 2 + 3  # per door and protocol: two openings, one drop


def test_iptables_forward_rule_round_trips_through_its_listing() -> None:
    rule = Rule("10.213.0.2", "web", "tcp", 8080, 8080, 1030, forward=True)
    line = IptablesBackend._line("-A", rule)
    assert line.startswith(f"-I {FORWARD_CHAIN} 1 ")  # above the guards' DROPs
    assert "--ctorigdstport 8080" in line and line.endswith("-j RETURN")
    listed = "-A" + line.removeprefix("-I").replace(f"{FORWARD_CHAIN} 1 ", f"{FORWARD_CHAIN} ", 1)
    assert parse_rule(listed) == rule
    assert IptablesBackend._undo([line]) == ["-D" + listed[2:]]
    assert IptablesBackend._undo(["-D" + listed[2:]]) == [line]
