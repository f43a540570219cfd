"""The daemon config's v2 keys: protocol, key, key_file, realm, window_seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tumbler.config.daemon import DEFAULT_WINDOW_SECONDS, parse_config
from tumbler.errors import ConfigError
from tumbler.protocols import tumbler2

KEY = bytes(range(32))
TEXT = tumbler2.encode_key(KEY)
OTHER = tumbler2.encode_key(bytes(range(1, 33)))


def parse(body: str, common: str = "", base: Path | None = None):
    return parse_config(f"[common]\n{common}{body}", "t.conf", base or Path("/nonexistent"))


def door(lines: str, name: str = "d") -> str:
    return f"[door-{name}]\n{lines}   command = true\n"


def test_a_key_makes_a_v2_door():
    config = parse(door(f"   key = {TEXT}\n"))
    (d,) = config.doors
    assert d.key == KEY and d.secret is None and d.protocols == (2,)
    assert config.key_doors == (d,) and config.secret_doors == ()
    assert TEXT not in repr(d) and repr(KEY) not in repr(d)


def test_defaults_window_a_minute_and_no_realm():
    config = parse(door(f"   key = {TEXT}\n"))
    assert config.window_seconds == DEFAULT_WINDOW_SECONDS == 60
    assert config.realm == ""


def test_realm_and_window_seconds():
    config = parse(door(f"   key = {TEXT}\n"), "   realm = fleet.example\n   window_seconds = 5\n")
    assert (config.realm, config.window_seconds) == ("fleet.example", 5)


@pytest.mark.parametrize("value", ["-1", "3601", "1m", "x"])
def test_bad_window_seconds_names_the_line(value):
    with pytest.raises(ConfigError, match=r"t\.conf:2: window_seconds"):
        parse(door(f"   key = {TEXT}\n"), f"   window_seconds = {value}\n")


def test_a_realm_of_more_than_255_bytes_is_refused():
    with pytest.raises(ConfigError, match=r"t\.conf:2: realm"):
        parse(door(f"   key = {TEXT}\n"), f"   realm = {'r' * 256}\n")


def test_a_door_may_take_both_versions():
    config = parse(door(f"   protocol = 1, 2\n   secret = s3cret\n   key = {TEXT}\n"))
    assert config.doors[0].protocols == (1, 2)


@pytest.mark.parametrize("spelling", ["2", "2,1", "1 2", "1,2"])
def test_protocol_spellings(spelling):
    secret = "   secret = s3cret\n" if "1" in spelling else ""
    config = parse(door(f"   protocol = {spelling}\n{secret}   key = {TEXT}\n"))
    assert config.doors[0].protocols == tuple(sorted(int(v) for v in spelling if v.isdigit()))


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (f"   protocol = 1\n   key = {TEXT}\n", "protocol 1 needs a secret"),
        ("   protocol = 2\n   secret = s3cret\n", "protocol 2 needs a key"),
        (f"   protocol = 2\n   secret = s3cret\n   key = {TEXT}\n", "a secret is for protocol 1"),
        (f"   protocol = 1\n   secret = s3cret\n   key = {TEXT}\n", "a key is for protocol 2"),
        ("   protocol = 3\n   secret = s3cret\n", "protocol is 1, 2"),
        ("   protocol = 1, 1\n   secret = s3cret\n", "protocol is 1, 2"),
        (f"   key = {TEXT}\n   sequence = 1000, 2000, 3000\n", "sequence door, not both"),
    ],
)
def test_protocol_must_match_what_the_door_holds(lines, message):
    with pytest.raises(ConfigError, match=message):
        parse(door(lines))


@pytest.mark.parametrize(
    "value",
    [
        "not-a-key",
        TEXT + "=",
        TEXT[:-1],
        KEY.hex(),
        TEXT[:-1] + "9",  # spare bits set
    ],
)
def test_a_bad_key_names_the_line_but_not_the_key(value):
    with pytest.raises(ConfigError) as info:
        parse(door(f"   key = {value}\n"))
    assert "t.conf:3: key" in str(info.value)
    assert value not in str(info.value)


def test_key_file(tmp_path):
    (tmp_path / "d.key").write_text(TEXT + "\n")
    (tmp_path / "d.key").chmod(0o600)
    config = parse(door("   key_file = d.key\n"), base=tmp_path)
    assert config.doors[0].key == KEY
    assert config.warnings == ()


def test_key_file_readable_by_others_is_warned_about(tmp_path):
    (tmp_path / "d.key").write_text(TEXT + "\n")
    (tmp_path / "d.key").chmod(0o644)
    config = parse(door("   key_file = d.key\n"), base=tmp_path)
    assert any("d.key holds a secret" in w for w in config.warnings)


def test_key_file_with_a_bad_key(tmp_path):
    (tmp_path / "d.key").write_text("hunter2\n")
    with pytest.raises(ConfigError, match=r"t\.conf:3: key_file .*d\.key") as info:
        parse(door("   key_file = d.key\n"), base=tmp_path)
    assert "hunter2" not in str(info.value)


def test_key_and_key_file_together_are_refused(tmp_path):
    (tmp_path / "d.key").write_text(TEXT + "\n")
    with pytest.raises(ConfigError, match="key or key_file, not both"):
        parse(door(f"   key = {TEXT}\n   key_file = d.key\n"), base=tmp_path)


def test_two_doors_with_one_key_are_refused():
    with pytest.raises(ConfigError, match="door b has the same key as door a"):
        parse(door(f"   key = {TEXT}\n", "a") + door(f"   key = {TEXT}\n", "b"))
    parse(door(f"   key = {TEXT}\n", "a") + door(f"   key = {OTHER}\n", "b"))


def test_a_door_needs_a_secret_a_key_or_a_sequence():
    with pytest.raises(ConfigError, match="has no secret, key, authorized_keys or sequence"):
        parse(door(""))
