"""tumbler+ssh:// URLs."""

from __future__ import annotations

import pytest

from tumbler.client.knock import KnockUsageError
from tumbler.client.signed import SshKnockURL, is_ssh_url, parse_ssh_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tumbler+ssh://host/", SshKnockURL("host")),
        (
            "tumbler+ssh://alice@host.example.org:9000/",
            SshKnockURL("host.example.org", 9000, "alice"),
        ),
        ("TUMBLER+SSH://[fd00::1]:8675", SshKnockURL("fd00::1", 8675)),
        ("tumbler+ssh://h/?realm=fleet%20a", SshKnockURL("h", realm="fleet a")),
        ("tumbler+ssh://h?realm=", SshKnockURL("h")),
    ],
)
def test_parse_ssh_url(text, expected):
    assert is_ssh_url(text)
    assert parse_ssh_url(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tumbler://host/", "expected tumbler\\+ssh://"),
        ("tumbler+ssh://@host/", "empty user"),
        ("tumbler+ssh://host/path", "nothing may follow"),
        ("tumbler+ssh://fd00::1/", "brackets"),
        ("tumbler+ssh://host:0/", "port"),
        ("tumbler+ssh://host/?key=x", "only query"),
        ("tumbler+ssh://host/?realm=" + "r" * 256, "longer than 255"),
    ],
)
def test_bad_ssh_urls(text, message):
    with pytest.raises(KnockUsageError, match=message):
        parse_ssh_url(text)


def test_str_round_trips():
    url = SshKnockURL("fd00::1", 9000, "bob", "a/b")
    assert str(url) == "tumbler+ssh://bob@[fd00::1]:9000/?realm=a%2Fb"
    assert parse_ssh_url(str(url)) == url
