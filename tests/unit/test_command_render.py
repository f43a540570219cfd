"""command.render: only a normalised address and a safe door name reach the shell text."""

from __future__ import annotations

import pytest

from tumbler.actions.command import render

LISTING_TWO_OPEN = "iptables -I INPUT -p tcp -s %IP% --dport 22 -j ACCEPT"


def test_substitutes_ip():
    assert render(LISTING_TWO_OPEN, "192.168.0.5", "open-ssh") == (
        "iptables -I INPUT -p tcp -s 192.168.0.5 --dport 22 -j ACCEPT"
    )


def test_substitutes_every_occurrence_of_both_macros():
    rendered = render("echo %NAME% %IP% %IP% %NAME%", "2001:db8::1", "door_1.a")
    assert rendered == "echo door_1.a 2001:db8::1 2001:db8::1 door_1.a"


def test_leaves_other_text_alone():
    assert render("echo %ip% %name% 100%", "10.0.0.1", "x") == "echo %ip% %name% 100%"


@pytest.mark.parametrize(
    "address",
    [
        "2001:DB8::1",
        "2001:db8:0:0:0:0:0:1",
        "::ffff:192.0.2.1",
        "::ffff:c000:201",
        "fe80::1%eth0",
        # A scope id is free text to the ipaddress module; it must never reach the shell.
        "fe80::1%$(reboot)",
        "fe80::1%a;rm",
        "192.168.0.5 ",
        " 192.168.0.5",
        "192.168.0.5; rm -rf /",
    ],
)
def test_refuses_non_normalised_address(address):
    with pytest.raises(ValueError):
        render(LISTING_TWO_OPEN, address, "open-ssh")


@pytest.mark.parametrize("address", ["", "host.example", "$(id)", "`id`"])
def test_refuses_non_address(address):
    with pytest.raises(ValueError):
        render(LISTING_TWO_OPEN, address, "open-ssh")


@pytest.mark.parametrize(
    "door",
    [
        "",
        "-rf",
        ".hidden",
        "a b",
        "a;b",
        "a$(id)",
        "a`id`",
        "a\nb",
        "door\n",
        "x" * 65,
        "caf\u00e9",
    ],
)
def test_refuses_bad_door_name(door):
    with pytest.raises(ValueError):
        render("echo %NAME%", "10.0.0.1", door)


def test_accepts_longest_door_name():
    name = "a" * 64
    assert render("%NAME%", "10.0.0.1", name) == name
