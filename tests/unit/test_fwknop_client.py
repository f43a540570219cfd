"""The fwknop side of the client: fwknop:// URLs, .fwknoprc stanzas, packets on loopback."""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path

import pytest

from tumbler.client.fwknop import (
    FwknopURL,
    parse_fwknop_url,
    read_rc,
    send_spa,
    target_from_rc,
)
from tumbler.client.knock import KnockUsageError
from tumbler.ports import PortSpec
from tumbler.protocols import fwknop as spa

KEY = base64.b64encode(b"k" * 32).decode()
HMAC_KEY = base64.b64encode(b"h" * 64).decode()
RC = f"""\
[default]
USE_HMAC            Y

[web]
SPA_SERVER          127.0.0.1
ACCESS              tcp/22
KEY_BASE64          {KEY}
HMAC_KEY_BASE64     {HMAC_KEY}
HMAC_DIGEST_TYPE    sha512
ENCRYPTION_MODE     ofb
DIGEST_TYPE         sha384
FW_TIMEOUT          60
SPOOF_USER          carol

[gpg]
SPA_SERVER          192.0.2.9
USE_GPG             Y
"""


def test_parse_fwknop_url() -> None:
    assert parse_fwknop_url("fwknop://web@host.example/") == FwknopURL("host.example", None, "web")
    got = parse_fwknop_url("fwknop://[fd00::1]:62202/tcp/22,udp/53")
    assert got == FwknopURL(
        "fd00::1", 62202, None, (PortSpec("tcp", 22, 22), PortSpec("udp", 53, 53))
    )
    assert str(got) == "fwknop://[fd00::1]:62202/tcp/22,udp/53"
    for bad in (
        "tumbler://h/",
        "fwknop://@h/",
        "fwknop://fd00::1/",
        "fwknop://[nope]/",
        "fwknop://h:0/",
        "fwknop://h/tcp/0",
        "fwknop:///",
    ):
        with pytest.raises(KnockUsageError, match="bad URL"):
            parse_fwknop_url(bad)


def test_target_from_rc(tmp_path: Path) -> None:
    rc = tmp_path / "rc"
    rc.write_text(RC)
    rc.chmod(0o644)
    warned: list[str] = []
    stanzas = read_rc(rc, warned.append)
    assert warned and "chmod 600" in warned[0]
    target = target_from_rc(parse_fwknop_url("fwknop://127.0.0.1/"), stanzas, rc)
    assert target.stanza == "web" and target.port == spa.DEFAULT_PORT
    assert (target.keys.mode, target.keys.hmac_digest, target.digest_type) == (
        "ofb",
        "sha512",
        "sha384",
    )
    assert target.client_timeout == 60 and target.user == "carol"
    assert target.ports == (PortSpec("tcp", 22, 22),)
    assert KEY not in repr(target)
    with pytest.raises(KnockUsageError, match="GPG"):
        target_from_rc(parse_fwknop_url("fwknop://192.0.2.9/"), stanzas, rc)
    with pytest.raises(KnockUsageError, match="no stanza has SPA_SERVER"):
        target_from_rc(parse_fwknop_url("fwknop://192.0.2.77/"), stanzas, rc)
    with pytest.raises(KnockUsageError, match="no \\[nope\\] stanza"):
        target_from_rc(parse_fwknop_url("fwknop://nope@x/"), stanzas, rc)


def test_send_spa_on_loopback(tmp_path: Path) -> None:
    rc = tmp_path / "rc"
    rc.write_text(RC)
    stanzas = read_rc(rc)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    port = receiver.getsockname()[1]
    with receiver:
        url = parse_fwknop_url(f"fwknop://web@127.0.0.1:{port}/udp/53")
        target = target_from_rc(url, stanzas, rc)
        result = send_spa(target, now=1_800_000_000)
        data = receiver.recv(2048)
    assert data == result.datagram and result.allow_ip == "127.0.0.1"
    msg = spa.open_packet(data, target.keys)
    assert (msg.message, msg.user, msg.timestamp) == ("127.0.0.1,udp/53", "carol", 1_800_000_000)
    assert (msg.client_timeout, msg.digest_type) == (60, "sha384")
    dry = send_spa(target, source="0.0.0.0", now=time.time(), dry_run=True)
    assert not dry.sent and spa.open_packet(dry.datagram, target.keys).allow_ip == "0.0.0.0"


def test_tumbler_open_fwknop_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tumbler.cli.tumbler import main

    rc = tmp_path / "rc"
    rc.write_text(RC)
    rc.chmod(0o600)
    argv = ["--open", "fwknop://web@127.0.0.1/", "--fwknoprc", str(rc), "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "allow     127.0.0.1 tcp/22" in out and "[web] (mode ofb, HMAC sha512)" in out
    assert "(dry run: nothing sent)" in out and KEY not in out and HMAC_KEY not in out
    assert main([*argv, "--secret-file", str(rc)]) == 2
    assert "keys from the .fwknoprc stanza" in capsys.readouterr().err
    assert main(["--open", "tumbler://s@127.0.0.1/", "--fwknoprc", str(rc), "--dry-run"]) == 2
    assert "--fwknoprc is for fwknop:// URLs" in capsys.readouterr().err
    assert main(["--open", "fwknop://127.0.0.1/", "--fwknoprc", str(tmp_path / "no")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_profiles_of_fwknop_kind(tmp_path: Path) -> None:
    from tumbler.client.profiles import parse_profiles
    from tumbler.errors import ConfigError

    loaded = parse_profiles(
        "[host-web]\n   url = fwknop://web@[fd00::1]/tcp/22\n   fwknoprc = keys/rc\n   wait = 22\n"
        "[host-plain]\n   url = tumbler://h/\n",
        str(tmp_path / "hosts.conf"),
    )
    web = loaded.profiles["web"]
    assert web.fwknop == FwknopURL("fd00::1", None, "web", (PortSpec("tcp", 22, 22),))
    assert (web.url.host, web.url.port) == ("fd00::1", spa.DEFAULT_PORT)
    assert web.fwknoprc == str(tmp_path / "keys" / "rc")
    assert loaded.for_host("fd00::1") is web and loaded.profiles["plain"].fwknop is None
    with pytest.raises(ConfigError, match="keys from fwknoprc, not secret_file"):
        parse_profiles("[host-w]\n   url = fwknop://h/\n   secret_file = s\n")
    with pytest.raises(ConfigError, match="fwknoprc needs an fwknop:// url"):
        parse_profiles("[host-w]\n   url = tumbler://h/\n   fwknoprc = rc\n")


def test_the_url_reader_knows_fwknops_port_without_loading_the_protocol() -> None:
    from tumbler.client import fwknopurl

    assert fwknopurl.DEFAULT_PORT == spa.DEFAULT_PORT
