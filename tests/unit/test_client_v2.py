"""The client's v2 side: tumbler2:// URLs, where the key comes from, the datagram it builds."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest

from tumbler.client import knock
from tumbler.client.knock import KnockOptions, KnockUsageError, parse_url, resolve_secret
from tumbler.protocols import tumbler2

KEY = bytes(range(32))
TEXT = tumbler2.encode_key(KEY)


def test_a_tumbler2_url_with_key_and_realm():
    url = parse_url(f"tumbler2://{TEXT}@host.example.org:9000/?realm=fleet.example")
    assert (url.version, url.host, url.port) == (2, "host.example.org", 9000)
    assert url.realm == "fleet.example"
    assert url.secret == TEXT
    assert TEXT not in repr(url) and TEXT not in str(url)
    assert str(url) == "tumbler2://host.example.org:9000/?realm=fleet.example"


@pytest.mark.parametrize(
    "text",
    ["tumbler2://host/", "tumbler2://host", "TUMBLER2://host/", "tumbler2://[fd00::1]:8675/"],
)
def test_tumbler2_urls_without_a_key(text):
    url = parse_url(text)
    assert url.version == 2 and url.secret is None and url.realm == ""


def test_realm_is_percent_decoded_and_without_a_slash_too():
    assert parse_url("tumbler2://host?realm=a%20b").realm == "a b"
    assert parse_url("tumbler2://host/?realm=caf%C3%A9").realm == "café"


@pytest.mark.parametrize(
    "text",
    [
        "tumbler2://host/?other=1",
        "tumbler2://host/?realm=a&x=1",
        "tumbler2://host/?realm",
        "tumbler2://host/path",
        "tumbler2://host/?realm=a%0Ab",  # a control character
        "tumbler://host/?realm=a",  # v1 has no realm
    ],
)
def test_bad_tumbler2_urls(text):
    with pytest.raises(KnockUsageError):
        parse_url(text)


def test_a_url_with_something_other_than_a_key_is_refused_without_echoing_it():
    with pytest.raises(KnockUsageError) as info:
        parse_url("tumbler2://hunter2-is-my-password@host/")
    assert "hunter2" not in str(info.value)
    assert "does not hold a v2 key" in str(info.value)


def test_v1_urls_are_unchanged():
    url = parse_url("tumbler://open-pAsSwOrD@192.0.2.7:8675/")
    assert (url.version, url.secret, url.realm) == (1, "open-pAsSwOrD", "")
    assert str(url) == "tumbler://192.0.2.7:8675/"


def test_key_from_a_file_and_from_the_environment(tmp_path):
    url = parse_url("tumbler2://host/")
    f = tmp_path / "k"
    f.write_text(TEXT + "\n")
    assert resolve_secret(url, secret_file=str(f), environ={}, prompt=None).value == TEXT
    assert resolve_secret(url, environ={"TUMBLER_SECRET": TEXT}, prompt=None).value == TEXT


def test_a_file_that_holds_no_key_is_refused(tmp_path):
    f = tmp_path / "k"
    f.write_text("open-pAsSwOrD\n")
    with pytest.raises(KnockUsageError, match=f"--secret-file {f} does not hold a v2 key"):
        resolve_secret(parse_url("tumbler2://host/"), secret_file=str(f), environ={})


def test_the_prompt_takes_a_passphrase_and_derives_the_key_with_the_realm():
    asked = []

    def prompt(label: str) -> str:
        asked.append(label)
        return "open-pAsSwOrD"

    url = parse_url("tumbler2://host/?realm=fleet.example")
    secret = resolve_secret(url, environ={}, prompt=prompt)
    assert secret.origin == "the prompt (a passphrase)"
    assert tumbler2.decode_key(secret.value) == tumbler2.derive_key(
        "open-pAsSwOrD", "fleet.example"
    )
    assert asked == ["tumbler2://host:8675/?realm=fleet.example (its passphrase)"]


def test_a_v2_knock_is_built_for_the_local_address_and_the_realm():
    when = datetime(2025, 12, 1, 2, 0, 5, 500_000, tzinfo=UTC)
    url = parse_url(f"tumbler2://{TEXT}@127.0.0.1:9/?realm=fleet.example")
    result = knock.knock_url(
        url, TEXT, KnockOptions(when=when, family=socket.AF_INET), dry_run=True
    )
    assert result.version == 2 and not result.sent
    assert result.stamp == str(int(when.timestamp()))
    parsed = tumbler2.parse(result.datagram)
    assert parsed.time == int(when.timestamp())
    assert tumbler2.verify(parsed, KEY, "127.0.0.1", "fleet.example")
    assert not tumbler2.verify(parsed, KEY, "127.0.0.1", "")
    assert result.shown == result.datagram.hex()
    assert result.digest == parsed.mac.hex()


def test_two_v2_knocks_in_one_second_differ():
    when = datetime(2025, 12, 1, 2, 0, 5, tzinfo=UTC)
    url = parse_url(f"tumbler2://{TEXT}@127.0.0.1:9/")
    a = knock.knock_url(url, TEXT, KnockOptions(when=when, family=socket.AF_INET), dry_run=True)
    b = knock.knock_url(url, TEXT, KnockOptions(when=when, family=socket.AF_INET), dry_run=True)
    assert a.datagram != b.datagram and a.stamp == b.stamp


def test_a_v2_knock_with_from():
    url = parse_url(f"tumbler2://{TEXT}@127.0.0.1:9/")
    result = knock.knock_url(
        url, TEXT, KnockOptions(source="203.0.113.9", family=socket.AF_INET), dry_run=True
    )
    assert result.address == "203.0.113.9" and result.address_given
    assert tumbler2.verify(tumbler2.parse(result.datagram), KEY, "203.0.113.9")
