"""fwknop's access.conf and .fwknoprc read from text, and access.conf turned into tumblerd doors."""

from __future__ import annotations

import base64
import ipaddress

import pytest

from tumbler.errors import ConfigError
from tumbler.ports import PortSpec
from tumbler.protocols.fwknop_access import (
    convert_access_conf,
    parse_access_conf,
    parse_fwknop_ports,
    parse_fwknoprc,
    parse_sources,
    rc_stanza,
    stanza_keys,
)

KEY = base64.b64encode(b"k" * 32).decode()
HMAC_KEY = base64.b64encode(b"h" * 64).decode()

ACCESS_CONF = f"""\
# two Rijndael stanzas, one GPG stanza, one without HMAC
SOURCE              10.0.0.0/24, 192.168.1.7
OPEN_PORTS          tcp/22, udp/53, tcp/443
RESTRICT_PORTS      tcp/443
KEY_BASE64          {KEY}
HMAC_KEY_BASE64     {HMAC_KEY}
HMAC_DIGEST_TYPE    SHA512
ENCRYPTION_MODE     CTR
FW_ACCESS_TIMEOUT   45
MAX_FW_TIMEOUT      600
REQUIRE_SOURCE_ADDRESS  Y
REQUIRE_USERNAME    alice
CMD_CYCLE_OPEN      /usr/bin/logger $IP
FORCE_NAT           192.168.10.2 22

SOURCE: ANY
GPG_REMOTE_ID       ABCD1234
GPG_DECRYPT_ID      EF567890

SOURCE              ANY
KEY                 a passphrase;
"""


def test_access_conf_stanzas_in_order() -> None:
    stanzas = parse_access_conf(ACCESS_CONF)
    assert [s.name for s in stanzas] == ["10.0.0.0/24, 192.168.1.7", "ANY", "ANY"]
    first = stanzas[0]
    assert first.get("HMAC_DIGEST_TYPE") == "SHA512" and first.lines["OPEN_PORTS"] == 3
    assert first.flag("REQUIRE_SOURCE_ADDRESS")
    assert stanzas[2].get("KEY") == "a passphrase"  # a ';' ends the value, as in fwknopd
    keys = stanza_keys(first)
    assert (keys.mode, keys.hmac_digest, keys.key) == ("ctr", "sha512", b"k" * 32)
    assert parse_sources(first.name) == (
        ipaddress.ip_network("10.0.0.0/24"),
        ipaddress.ip_network("192.168.1.7/32"),
    )
    assert parse_sources("ANY") == ()


def test_access_conf_errors_name_the_line() -> None:
    with pytest.raises(ConfigError, match=r"access.conf:1: .*before the first SOURCE"):
        parse_access_conf("KEY x\nSOURCE ANY\n")
    with pytest.raises(ConfigError, match=r"access.conf:2: expected"):
        parse_access_conf("SOURCE ANY\nKEY\n")


def test_convert_access_conf() -> None:
    out = convert_access_conf(ACCESS_CONF, "/etc/fwknop/access.conf")
    assert out.doors == ["fwknop-1", "fwknop-3"]
    first = out.text.split("\n\n")[0].splitlines()
    assert first[:3] == [
        "# from /etc/fwknop/access.conf:2 (SOURCE 10.0.0.0/24, 192.168.1.7)",
        "[door-fwknop-1]",
        "kind = fwknop",
    ]
    for line in (
        "fwknop_source = 10.0.0.0/24, 192.168.1.7/32",
        f"fwknop_key_base64 = {KEY}",
        f"fwknop_hmac_key_base64 = {HMAC_KEY}",
        "fwknop_hmac_digest = sha512",
        "fwknop_mode = ctr",
        "open = tcp/22, udp/53",  # RESTRICT_PORTS took tcp/443 out
        "timeout = 45s",
        "fwknop_max_timeout = 600",
        "fwknop_max_age = 120",
        "fwknop_require_source = yes",
        "fwknop_require_user = alice",
    ):
        assert line in first
    third = out.text.split("\n\n")[1]
    assert "fwknop_key = a passphrase" in third and "fwknop_allow_no_hmac = yes" in third
    assert "# open = ..." in third
    carried = "\n".join(out.not_carried)
    assert "access.conf:13: CMD_CYCLE_OPEN not carried over" in carried
    assert "access.conf:14: FORCE_NAT not carried over: NAT" in carried
    assert "access.conf:16: stanza SOURCE ANY skipped: no Rijndael KEY" in carried
    assert any("no HMAC key" in w for w in out.warnings)
    assert any("no OPEN_PORTS" in w for w in out.warnings)


def test_convert_debian_default_access_conf_says_why_not() -> None:
    text = "SOURCE ANY\nKEY_BASE64 __CHANGEME__\nHMAC_KEY_BASE64 __CHANGEME__\n"
    out = convert_access_conf(text)
    assert out.doors == [] and out.text == ""
    assert out.not_carried == ["access.conf:1: stanza SOURCE ANY skipped: KEY_BASE64 is not base64"]


def test_fwknoprc_stanzas_merge_over_default() -> None:
    rc = f"""\
[default]
HMAC_DIGEST_TYPE    sha384
USE_HMAC            Y

[web]
SPA_SERVER          203.0.113.5
ACCESS              tcp/22,tcp/443
KEY_BASE64          {KEY}
HMAC_KEY_BASE64     {HMAC_KEY}

[nohmac]
KEY_BASE64          {KEY}
HMAC_KEY_BASE64     {HMAC_KEY}
USE_HMAC            N
"""
    stanzas = parse_fwknoprc(rc)
    web = rc_stanza(stanzas, "web")
    assert web.get("SPA_SERVER") == "203.0.113.5"
    assert stanza_keys(web, client=True).hmac_digest == "sha384"
    assert parse_fwknop_ports(web.get("ACCESS") or "") == (
        PortSpec("tcp", 22, 22),
        PortSpec("tcp", 443, 443),
    )
    assert stanza_keys(rc_stanza(stanzas, "nohmac"), client=True).hmac_key is None
    with pytest.raises(KeyError):
        rc_stanza(stanzas, "missing")
    with pytest.raises(ConfigError, match="before the first"):
        parse_fwknoprc("KEY x\n")
