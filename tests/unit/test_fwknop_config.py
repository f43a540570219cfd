"""Doors of fwknop kind in tumblerd's config, and `tumblerd import-fwknop` that writes them."""

from __future__ import annotations

import base64
import ipaddress
import re
from pathlib import Path

import pytest

from tests.unit.test_fwknop_access import ACCESS_CONF
from tumbler.cli.tumblerd import main as tumblerd_main
from tumbler.config.daemon import parse_config
from tumbler.errors import ConfigError
from tumbler.ports import PortSpec

KEY = base64.b64encode(b"k" * 32).decode()
HMAC_KEY = base64.b64encode(b"h" * 64).decode()


def config(door: str, common: str = "") -> str:
    return f"[common]\n{common}[door-ssh]\n   kind = fwknop\n{door}"


GOOD = f"""\
   fwknop_key_base64 = {KEY}
   fwknop_hmac_key_base64 = {HMAC_KEY}
   open = tcp/22, udp/60000-60010
"""


def test_fwknop_door_defaults() -> None:
    cfg = parse_config(config(GOOD))
    (door,) = cfg.doors
    assert door.kind == "fwknop" and door.secret is None and cfg.secret_doors == ()
    spa = door.fwknop
    assert spa is not None and cfg.fwknop_doors == (spa,)
    assert (spa.keys.key, spa.keys.hmac_key) == (b"k" * 32, b"h" * 64)
    assert (spa.keys.hmac_digest, spa.keys.mode) == ("sha256", "cbc")
    assert spa.open_ports == (PortSpec("tcp", 22, 22), PortSpec("udp", 60000, 60010))
    assert (spa.timeout, spa.max_timeout, spa.max_age) == (30, 300, 120)
    assert not spa.require_source_address and spa.require_username is None and spa.sources == ()
    assert cfg.fwknop_port == 62201 and cfg.warnings == ()
    assert KEY not in repr(door)


def test_fwknop_door_every_key() -> None:
    cfg = parse_config(
        config(
            GOOD + "   fwknop_hmac_digest = SHA3_512\n   fwknop_mode = ctr\n   timeout = 1m\n"
            "   fwknop_max_timeout = 900\n   fwknop_max_age = 30\n   fwknop_require_source = yes\n"
            "   fwknop_require_user = alice\n   fwknop_source = 10.0.0.0/8, fd00::/8\n",
            "   fwknop_port = 62202\n",
        )
    )
    spa = cfg.doors[0].fwknop
    assert spa is not None
    assert (spa.keys.hmac_digest, spa.keys.mode, spa.timeout) == ("sha3_512", "ctr", 60)
    assert (spa.max_timeout, spa.max_age, spa.require_source_address) == (900, 30, True)
    assert spa.require_username == "alice" and cfg.fwknop_port == 62202
    assert spa.sources == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def test_hmac_required_unless_allowed_with_a_warning() -> None:
    plain = "   fwknop_key = a passphrase\n   open = tcp/22\n"
    with pytest.raises(ConfigError, match="no fwknop_hmac_key_base64"):
        parse_config(config(plain))
    cfg = parse_config(config(plain + "   fwknop_allow_no_hmac = yes\n"))
    assert cfg.doors[0].fwknop is not None and cfg.doors[0].fwknop.keys.hmac_key is None
    assert any("without an HMAC" in w for w in cfg.warnings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD + "   secret = x\n",
            r"<config>:\d+: door ssh: an fwknop door has keys, not a secret",
        ),
        (
            GOOD + "   authorized_keys = /etc/tumbler/ssh-users\n",
            r"door ssh: an fwknop door has keys, not a authorized_keys",
        ),
        (f"   fwknop_hmac_key_base64 = {HMAC_KEY}\n   open = tcp/22\n", "exactly one"),
        (
            f"   fwknop_key_base64 = {KEY}\n   fwknop_hmac_key_base64 = {KEY}\n   open = tcp/22\n",
            "differ",
        ),
        (f"   fwknop_key_base64 = {KEY}\n   fwknop_hmac_key_base64 = {HMAC_KEY}\n", "needs `open`"),
        (GOOD + "   fwknop_mode = pcbc\n", "fwknop_mode: expected one of"),
        (GOOD + "   fwknop_hmac_digest = sha224\n", "fwknop_hmac_digest: expected one of"),
        (GOOD + "   fwknop_max_age = 0\n", "fwknop_max_age"),
        (GOOD + "   fwknop_require_source = maybe\n", "yes or no"),
        ("   fwknop_key_base64 = !!!\n", "fwknop_key_base64: the value is not base64"),
    ],
)
def test_bad_fwknop_doors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(config(text))


def test_fwknop_keys_need_the_kind() -> None:
    with pytest.raises(ConfigError, match="fwknop_mode needs kind = fwknop"):
        parse_config("[door-x]\n   secret = s\n   open = tcp/22\n   fwknop_mode = cbc\n")


def test_import_fwknop_output_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    access = tmp_path / "access.conf"
    access.write_text(ACCESS_CONF)
    assert tumblerd_main(["import-fwknop", str(access)]) == 0
    out, err = capsys.readouterr()
    assert "[door-fwknop-1]" in out and "[door-fwknop-3]" in out
    assert f"{access}:14: FORCE_NAT not carried over" in err
    assert "GPG-only stanza" in err and "warning: door-fwknop-3: no HMAC key" in err
    # The stanza without OPEN_PORTS gets a commented `open` for the administrator to fill.
    filled = re.sub(r"(?m)^# open = .*$", "open = tcp/22", out)
    cfg = parse_config("[common]\n" + filled)
    assert [d.name for d in cfg.doors] == ["fwknop-1", "fwknop-3"]
    empty = tmp_path / "empty.conf"
    empty.write_text("SOURCE ANY\nKEY_BASE64 __CHANGEME__\n")
    assert tumblerd_main(["import-fwknop", str(empty)]) == 1
    assert "no door could be made" in capsys.readouterr().err
