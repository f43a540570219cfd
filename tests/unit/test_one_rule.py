"""One rule, one function: every caller of a trust-edge rule gives the same answer.

Each test feeds the same inputs to every place that applies the rule (client, daemon
config, firewall, door command, auditor, sources) and asserts they agree with the rule's
own function, on what they accept and on what they make of it.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
from pathlib import Path

import pytest

from tumbler import secretfile
from tumbler.actions import command
from tumbler.actions.firewall.base import check_door, normalise_address
from tumbler.actions.firewall.iptables import StateStore
from tumbler.addresses import normalize_address
from tumbler.audit import sniff
from tumbler.cli import proxy as proxy_cli
from tumbler.cli import sniff as sniff_cli
from tumbler.client import knock, profiles
from tumbler.config.daemon import load_config, parse_config
from tumbler.decisions.replay.local import SqliteReplayCache
from tumbler.doors import is_door_name
from tumbler.errors import ConfigError, FirewallError
from tumbler.events import canonical_address
from tumbler.ports import parse_port, parse_port_spec
from tumbler.protocols.tumbler1 import knock_digest

# --- the secret file -----------------------------------------------------------------------

SECRET_CONTENTS = [
    b"s3cret\n",
    b"s3cret",
    b"s3cret\r\n",
    b"s3cret\nsecond line\n",
    b" spaced secret \n",
    "café\n".encode(),
    "abc\u2028tail\n".encode(),  # a Unicode line separator is part of the line
    b"ab\rcd\n",  # so is a CR that does not end it
    b"\xff\xfeZq9\n",  # not UTF-8
    b"\nsecond line\n",  # empty first line
    b"x" * 5000,  # too long
]


def secret_by_client(path: Path) -> str | None:
    try:
        return knock.read_secret_file(str(path))
    except knock.KnockError:
        return None


def secret_by_daemon(path: Path) -> str | None:
    conf = path.parent / "tumblerd.conf"
    conf.write_text(f"[door-a]\n command = true\n secret_file = {path.name}\n")
    try:
        (door,) = load_config(conf).doors
    except ConfigError:
        return None
    return door.secret


def secret_by_auditor(path: Path, monkeypatch: pytest.MonkeyPatch) -> str | None:
    seen: list[list[str]] = []
    real = sniff.analyze

    def recording(packets: list[sniff.Packet], **kw: object) -> sniff.Report:
        seen.append(list(kw["secrets"]))  # type: ignore[call-overload]
        return real(packets, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sniff_cli, "analyze", recording)
    capture = path.parent / "empty.txt"
    capture.write_text("")
    if sniff_cli.main([str(capture), "--secret-file", str(path)]) != 0:
        return None
    (secrets,) = seen
    return secrets[0]


@pytest.mark.parametrize("content", SECRET_CONTENTS)
def test_secret_file_gives_one_secret_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], content
) -> None:
    path = tmp_path / "door.secret"
    path.write_bytes(content)
    path.chmod(0o600)
    try:
        expected: str | None = secretfile.read_secret_file(path).secret
    except secretfile.SecretFileError:
        expected = None
    got = {
        "client": secret_by_client(path),
        "daemon": secret_by_daemon(path),
        "auditor": secret_by_auditor(path, monkeypatch),
    }
    assert got == dict.fromkeys(got, expected)
    if content == b"s3cret\r\n":
        assert expected == "s3cret"


@pytest.mark.parametrize("content", [b"caf\xe9 Zq9\n", b"Zq9\xff\xfe\n"])
def test_secret_file_errors_show_no_byte_of_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], content
) -> None:
    path = tmp_path / "door.secret"
    path.write_bytes(content)
    messages = []
    with pytest.raises(knock.KnockError) as client_error:
        knock.read_secret_file(str(path))
    messages.append(str(client_error.value))
    conf = tmp_path / "tumblerd.conf"
    conf.write_text(f"[door-a]\n command = true\n secret_file = {path.name}\n")
    with pytest.raises(ConfigError) as config_error:
        load_config(conf)
    messages.append(str(config_error.value))
    assert sniff_cli.main(["-", "--secret-file", str(path)]) == 2
    messages.append(capsys.readouterr().err)
    for message in messages:
        assert "not UTF-8" in message
        assert "Zq9" not in message and "xe9" not in message and "xff" not in message


def test_unreadable_secret_file_exits_1_from_tumbler_and_sniff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tumbler.cli import tumbler as tumbler_cli

    missing = str(tmp_path / "absent")
    url = "tumbler://127.0.0.1:9/"
    assert tumbler_cli.main(["--open", url, "--secret-file", missing, "--dry-run"]) == 1
    assert sniff_cli.main(["-", "--secret-file", missing]) == 1


# --- the address ---------------------------------------------------------------------------

ADDRESSES = [
    "192.0.2.7",
    "2001:DB8::1",
    "2001:db8:0:0:0:0:0:1",
    "::ffff:192.0.2.7",
    "fe80::1%eth0",
    "fe80::1%$(reboot)",
    "not-an-address",
    "192.0.2.300",
]


@pytest.mark.parametrize("text", ADDRESSES)
def test_address_has_one_written_form_everywhere(text: str) -> None:
    try:
        expected: str | None = normalize_address(text)
    except ValueError:
        expected = None

    def attempt(f) -> str | None:
        try:
            return f(text)
        except (ValueError, FirewallError, knock.KnockUsageError):
            return None

    # A packet's source is the exception, by rule: `::ffff:a.b.c.d` on the wire is an IPv6
    # sender, never the IPv4 host a.b.c.d, so the sources drop it (`packet_address`).
    mapped = expected is not None and ":" in text and ":" not in expected
    assert canonical_address(text) == (None if mapped else expected)
    got = {
        "firewall": attempt(lambda t: normalise_address(t)[0]),
        "client --from": attempt(knock.normalize_source),
        "auditor": attempt(lambda t: sniff.parse_text_line(f"IP {t}.5 > 10.0.0.1.22: Flags [S]")),
    }
    auditor = got.pop("auditor")
    assert got == dict.fromkeys(got, expected)
    if "$" not in text:  # tcpdump prints no such scope id: its line grammar stops it first
        assert (auditor.src if auditor is not None else None) == expected
    if expected is not None:
        # The hash and the door command see the same form; a command takes only that form.
        assert knock_digest("12601010000", text, "s") == knock_digest("12601010000", expected, "s")
        assert command.render("%IP%", expected, "a") == expected


# --- the door name -------------------------------------------------------------------------

DOOR_NAMES = ["ssh", "a.b-c_d", "X9", "a+b", "a@b", "-x", "x" * 64, "x" * 65, "has space", "a:b"]


@pytest.mark.parametrize("name", DOOR_NAMES)
def test_door_name_rule_is_the_same_everywhere(name: str) -> None:
    expected = is_door_name(name)

    def accepts(f) -> bool:
        try:
            f()
        except (ValueError, ConfigError, FirewallError):
            return False
        return True

    got = {
        "config": accepts(lambda: parse_config(f"[door-{name}]\n secret = s\n command = t\n")),
        "firewall": accepts(lambda: check_door(name)),
        "command": accepts(lambda: command.render("%NAME%", "192.0.2.7", name)),
    }
    assert got == dict.fromkeys(got, expected)


# --- the port ------------------------------------------------------------------------------

PORTS = ["22", "1", "65535", "0", "65536", "00022", "000022", "+22", " 22", "2_2", "٢٢", "", "x"]


@pytest.mark.parametrize("text", PORTS)
def test_port_rule_is_the_same_everywhere(text: str) -> None:
    try:
        expected: int | None = parse_port(text)
    except ValueError:
        expected = None

    def value(f) -> int | None:
        try:
            return f(text)
        except (ValueError, ConfigError, knock.KnockUsageError, argparse.ArgumentTypeError):
            return None

    def config_port(t: str) -> int:
        return parse_config(f"[common]\n port = {t}\n[door-a]\n secret = s\n command = t\n").port

    def profile_port(t: str) -> int | None:
        found = profiles.parse_profiles(f"[host-a]\n url = tumbler://h/\n wait = {t}\n")
        return found.profiles["a"].wait

    got = {
        "config": value(config_port),
        "url": value(lambda t: knock.parse_url(f"tumbler://host:{t}/").port if t else None),
        "profile": value(profile_port),
        "ssh-proxy": value(proxy_cli._tcp_port),
        "port spec": value(lambda t: parse_port_spec(t).first),
    }
    if text in ("", " 22"):  # the readers of whole lines trim, or take an empty port as 8675
        got = {k: v for k, v in got.items() if k not in ("config", "url", "profile", "port spec")}
    assert got == dict.fromkeys(got, expected)


FWKNOP_PORTS = ["tcp/22", "tcp/22,udp/53", "22", " tcp/22 , udp/53 ", "tcp/22-25", "tcp/0", "x/1"]


@pytest.mark.parametrize("text", FWKNOP_PORTS)
def test_fwknop_port_list_rule_is_the_same_in_a_url_and_in_fwknop_files(text: str) -> None:
    from tumbler.client.fwknopurl import parse_fwknop_url
    from tumbler.protocols.fwknop_access import parse_fwknop_ports

    def value(f) -> tuple | None:
        try:
            return f(text)
        except (ValueError, knock.KnockUsageError):
            return None

    expected = value(parse_fwknop_ports)
    assert value(lambda t: parse_fwknop_url(f"fwknop://h/{t}").ports) == expected
    if text == "tcp/22,udp/53":
        assert expected is not None and len(expected) == 2


# --- the file permissions ------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "exposed"), [(0o600, False), (0o400, False), (0o640, True)])
def test_permission_rule_is_the_same_everywhere(tmp_path: Path, mode: int, exposed: bool) -> None:
    secret = tmp_path / "door.secret"
    secret.write_text("s3cret\n")
    secret.chmod(mode)
    client_warnings: list[str] = []
    knock.read_secret_file(str(secret), warn=client_warnings.append)
    conf = tmp_path / "tumblerd.conf"
    conf.write_text(f"[door-a]\n command = true\n secret_file = {secret.name}\n")
    conf.chmod(0o600)
    profile_file = tmp_path / "hosts.conf"
    profile_file.write_text("[host-a]\n url = tumbler://s3cret@h/\n")
    profile_file.chmod(mode)
    got = {
        "secretfile": secretfile.read_secret_file(secret).exposed,
        "client": bool(client_warnings),
        "daemon": bool(load_config(conf).warnings),
        "profiles": bool(profiles.load_profiles(profile_file).warnings),
    }
    assert got == dict.fromkeys(got, exposed)


# --- the SQLite state database -------------------------------------------------------------


def test_replay_cache_and_iptables_state_share_one_database_opened_one_way(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "state.db"
    replay = SqliteReplayCache(str(path))
    state = StateStore(str(path))
    try:
        assert replay.claim("d" * 64, 2000.0, now=1000.0)
        assert state.rows() == []
        with sqlite3.connect(path) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            assert {"replay", "firewall_iptables"} <= tables
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert os.stat(path.parent).st_mode & 0o777 == 0o700
    finally:
        replay.close()


# --- names: the registries that implement them say which are valid --------------------------


def test_config_takes_the_firewall_and_replay_names_of_their_registries() -> None:
    from tumbler.actions.firewall import BACKENDS, NAMES
    from tumbler.decisions.replay import LOCAL_STORES, REMOTE_SCHEMES

    door = "[door-a]\n secret = s\n open = tcp/22\n"
    assert set(NAMES) == {"auto", *BACKENDS}
    for name in NAMES:
        assert parse_config(f"[common]\n firewall = {name}\n{door}").firewall == name
    with pytest.raises(ConfigError):
        parse_config(f"[common]\n firewall = pf\n{door}")
    for store in LOCAL_STORES:
        assert parse_config(f"[common]\n replay = {store}\n{door}").replay.store == store
    for scheme in REMOTE_SCHEMES:
        url = f"{scheme}h/mymaster" if "sentinel" in scheme else f"{scheme}h"
        assert parse_config(f"[common]\n replay = {url}\n{door}").replay.store == url
    with pytest.raises(ConfigError):
        parse_config(f"[common]\n replay = etcd://h\n{door}")


def test_config_takes_the_sequence_source_kinds_of_their_registry() -> None:
    from tumbler.sources.spec import KINDS, SourceSpec

    door = "[door-a]\n sequence = 7000, 8000, 9000\n open = tcp/22\n"
    given = {"nflog": "nflog", "file": "file:/var/log/kern.log"}
    assert set(given) == set(KINDS)
    for kind in KINDS:
        source = parse_config(f"[common]\n sequence_source = {given[kind]}\n{door}").sequence_source
        assert source == SourceSpec.parse(given[kind])
        assert (source.kind, str(source)) == (kind, given[kind])
    with pytest.raises(ConfigError, match="sequence_source must be nflog or file:PATH"):
        parse_config(f"[common]\n sequence_source = ulog\n{door}")


@pytest.mark.parametrize(
    "text",
    [
        "inet filter tumbler_ssh",
        "ip  nat  s",
        "ip6 t s.v6",
        "bridge filter s",
        "netdev filter s",
        "inet filter",
        "inet filter s extra",
        "inet 1table s",
        "inet filter {s}",
        "inet filter s;",
    ],
)
def test_set_reference_rule_is_the_same_in_the_config_and_the_backend(text: str) -> None:
    from tumbler.actions.firewall.nftables import NftablesBackend, SetRef

    door = f"[door-a]\n secret = s\n open = tcp/22\n set = {text}\n"
    try:
        ref = SetRef.parse(text)
    except ValueError:
        with pytest.raises(ConfigError, match=r"set must be 'FAMILY TABLE SET'"):
            parse_config(door)
        with pytest.raises(FirewallError, match="expected '<family> <table> <set>'"):
            NftablesBackend(runner=object(), set_name=text)  # type: ignore[arg-type]
        return
    assert parse_config(door).doors[0].set == ref
    assert NftablesBackend(runner=object(), set_name=text).default_set == ref  # type: ignore[arg-type]
