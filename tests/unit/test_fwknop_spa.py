"""fwknop SPA: packets from the real `fwknop` client decode here, and ours decode back.

The client builds packets without sending them (`-T -B FILE`); HOME is a temporary
directory because it writes ~/.fwknoprc there.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tumbler.errors import MalformedDatagram
from tumbler.ports import PortSpec
from tumbler.protocols import fwknop as spa
from tumbler.protocols.fwknop import FwknopDoor, SpaKeys, SpaRejected

KEY = base64.b64encode(bytes(range(32))).decode()
HMAC_KEY = base64.b64encode(bytes(range(100, 164))).decode()
SSH = (PortSpec("tcp", 22, 22),)


def _fwknop() -> str:
    path = shutil.which("fwknop")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the fwknop interop tests, but `fwknop` is not installed")
        pytest.skip("the fwknop client is not installed (apt-get install fwknop-client)")
    return path


def real_packet(tmp_path: Path, *args: str, hmac: bool = True, key: bool = True) -> bytes:
    """A packet the real client builds for `-a 10.0.0.2 -A tcp/22` plus `args`, unsent."""
    out = tmp_path / f"spa-{len(list(tmp_path.iterdir()))}"
    argv = [_fwknop(), "-D", "10.0.0.1", "-T", "-B", str(out)]
    if "--save-rc-stanza" not in args:
        argv.append("--no-rc-file")
    if key:
        argv += ["--key-base64-rijndael", KEY]
    if hmac:
        argv += ["--use-hmac", "--key-base64-hmac", HMAC_KEY]
    if "-A" not in args:
        argv += ["-A", "tcp/22"]
    if "-s" not in args:
        argv += ["-a", "10.0.0.2"]
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run([*argv, *args], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out.read_bytes().strip()


def keys(**kw: str) -> SpaKeys:
    kw.setdefault("key_base64", KEY)
    kw.setdefault("hmac_key_base64", HMAC_KEY)
    return SpaKeys.from_text(**kw)


def door(**kw: object) -> FwknopDoor:
    base: dict[str, object] = {"name": "ssh", "keys": keys(), "open_ports": SSH}
    base.update(kw)
    return FwknopDoor(**base)  # type: ignore[arg-type]


# --- packets from the real client --------------------------------------------------------


@pytest.mark.parametrize(
    "digest", ["md5", "sha1", "sha256", "sha384", "sha512", "sha3_256", "sha3_512"]
)
def test_real_client_digest_types(tmp_path: Path, digest: str) -> None:
    msg = spa.open_packet(real_packet(tmp_path, "-m", digest), keys())
    assert msg.digest_type == digest
    assert msg.message == "10.0.0.2,tcp/22"
    assert msg.access == (("tcp", 22),)
    assert msg.msg_type == spa.ACCESS and msg.version == "3.0.0"
    assert abs(msg.timestamp - time.time()) < 60


@pytest.mark.parametrize("hmac_digest", list(spa.HMAC_DIGESTS))
def test_real_client_hmac_types(tmp_path: Path, hmac_digest: str) -> None:
    data = real_packet(tmp_path, "--hmac-digest-type", hmac_digest)
    msg = spa.open_packet(data, keys(hmac_digest=hmac_digest))
    assert msg.allow_ip == "10.0.0.2"
    # The same packet under the default digest type cuts the wrong MAC length: refused.
    if hmac_digest not in ("sha256", "sha3_256"):
        with pytest.raises(SpaRejected):
            spa.open_packet(data, keys())


@pytest.mark.parametrize("mode", ["cbc", "ctr", "cfb", "ofb", "ecb"])
def test_real_client_modes(tmp_path: Path, mode: str) -> None:
    data = real_packet(tmp_path, "-M", mode)
    assert spa.open_packet(data, keys(mode=mode)).message == "10.0.0.2,tcp/22"
    other = "ctr" if mode != "ctr" else "cbc"
    with pytest.raises(SpaRejected):  # HMAC passes, but the wrong mode cannot decrypt it
        spa.open_packet(data, keys(mode=other))


def test_real_client_legacy_mode_without_hmac(tmp_path: Path) -> None:
    data = real_packet(tmp_path, "-M", "legacy", "--key-rijndael", "short", hmac=False, key=False)
    legacy = SpaKeys.from_text(key="short", mode="legacy")
    assert spa.open_packet(data, legacy).message == "10.0.0.2,tcp/22"
    with pytest.raises(SpaRejected):
        spa.open_packet(data, SpaKeys.from_text(key="short", mode="cbc"))


def test_real_client_passphrase_key_and_no_hmac(tmp_path: Path) -> None:
    data = real_packet(tmp_path, "--key-rijndael", "a passphrase", hmac=False, key=False)
    assert spa.open_packet(data, SpaKeys.from_text(key="a passphrase")).user
    with pytest.raises(SpaRejected):
        spa.open_packet(data, SpaKeys.from_text(key="another one"))


def test_real_client_timeout_several_ports_and_source(tmp_path: Path) -> None:
    data = real_packet(tmp_path, "-f", "45", "-A", "tcp/22,udp/53", "-s", "-U", "alice")
    msg = spa.open_packet(data, keys())
    assert msg.msg_type == spa.CLIENT_TIMEOUT_ACCESS and msg.client_timeout == 45
    assert msg.access == (("tcp", 22), ("udp", 53)) and msg.allow_ip == spa.ANY_ADDRESS
    assert msg.user == "alice"
    wide = door(open_ports=(PortSpec("tcp", 22, 22), PortSpec("udp", 50, 60)), max_timeout=30)
    grant = spa.authorize(msg, wide, "fd00:213::2", msg.timestamp)
    assert grant.address == "fd00:213::2"  # 0.0.0.0: the packet's source, IPv6 too
    assert grant.ports == (PortSpec("tcp", 22, 22), PortSpec("udp", 53, 53))
    assert grant.timeout == 30  # the client's 45 s, capped by the door
    with pytest.raises(SpaRejected, match="port"):  # udp/53 is not among the door's ports
        spa.authorize(msg, door(), "10.0.0.2", msg.timestamp)
    with pytest.raises(SpaRejected, match="source"):
        spa.authorize(
            msg,
            door(open_ports=wide.open_ports, require_source_address=True),
            "10.0.0.2",
            msg.timestamp,
        )


def test_real_client_wrong_hmac_key_and_tampering_refused(tmp_path: Path) -> None:
    data = real_packet(tmp_path)
    other = base64.b64encode(bytes(64)).decode()
    with pytest.raises(SpaRejected) as info:
        spa.open_packet(data, keys(hmac_key_base64=other))
    assert info.value.reason == "hmac"
    flipped = data[:50] + (b"A" if data[50:51] != b"A" else b"B") + data[51:]
    with pytest.raises(SpaRejected, match="hmac"):
        spa.open_packet(flipped, keys())
    with pytest.raises(SpaRejected):  # right HMAC key, wrong encryption key
        spa.open_packet(data, keys(key_base64=base64.b64encode(b"k" * 32).decode()))


def test_real_client_old_and_future_packets_refused(tmp_path: Path) -> None:
    old = spa.open_packet(real_packet(tmp_path, "--time-offset-minus", "300s"), keys())
    ahead = spa.open_packet(real_packet(tmp_path, "--time-offset-plus", "300s"), keys())
    now = time.time()
    for msg in (old, ahead):
        with pytest.raises(SpaRejected) as info:
            spa.authorize(msg, door(), "10.0.0.2", now)
        assert info.value.reason == "age"
    assert spa.authorize(old, door(max_age=600), "10.0.0.2", now).address == "10.0.0.2"


def test_real_client_command_and_nat_messages_refused(tmp_path: Path) -> None:
    for args in (("-C", "uptime"), ("-N", "10.0.0.9,22")):
        msg = spa.open_packet(real_packet(tmp_path, *args), keys())
        with pytest.raises(SpaRejected) as info:
            spa.authorize(msg, door(), "10.0.0.2", msg.timestamp)
        assert info.value.reason == "type"
    nat = spa.open_packet(real_packet(tmp_path, "-N", "10.0.0.9,22"), keys())
    assert nat.nat_access == "10.0.0.9,22"


def test_replay_key_is_the_content_not_the_bytes(tmp_path: Path) -> None:
    data = real_packet(tmp_path)
    msg = spa.open_packet(data, keys())
    plaintext = f"{msg.encoded}:{spa._digest(msg.digest_type, msg.encoded)}"
    again = spa.wrap(plaintext, keys())  # the same plaintext under a fresh salt
    assert again != data
    assert spa.open_packet(again, keys()).replay_key() == msg.replay_key()
    assert spa.open_packet(real_packet(tmp_path), keys()).replay_key() != msg.replay_key()


def test_rc_stanza_saved_by_the_real_client_gives_the_keys(tmp_path: Path) -> None:
    from tumbler.protocols.fwknop_access import parse_fwknoprc, rc_stanza, stanza_keys

    data = real_packet(
        tmp_path, "-n", "srv", "--save-rc-stanza", "--hmac-digest-type", "sha512", "-M", "ctr"
    )
    stanzas = parse_fwknoprc((tmp_path / ".fwknoprc").read_text())
    merged = rc_stanza(stanzas, "srv")
    assert merged.get("SPA_SERVER") == "10.0.0.1" and merged.get("ACCESS") == "tcp/22"
    got = stanza_keys(merged, client=True)
    assert (got.mode, got.hmac_digest) == ("ctr", "sha512")
    assert spa.open_packet(data, got).allow_ip == "10.0.0.2"


# --- shape, and packets this module builds -----------------------------------------------


def test_classify_by_shape_only() -> None:
    good = spa.build_packet(keys(), allow_ip="10.0.0.2", ports=["tcp/22"], user="u", timestamp=1)
    assert spa.classify(good)
    assert not spa.classify(b"TUMBLER1: " + b"a" * 64)
    assert not spa.classify(b"A" * 139) and spa.classify(b"A" * 140)
    assert not spa.classify(b"A" * 1501) and spa.classify(b"A" * 1500)
    assert not spa.classify(b"A" * 199 + b"=")  # padding is stripped on the wire
    assert not spa.classify(b"A" * 199 + b"\n")
    assert not spa.classify(spa.SALT_PREFIX.encode() + good)  # a prefix tacked on: replay trick
    assert not spa.classify(b"hQ" + b"A" * 450)
    with pytest.raises(MalformedDatagram):
        spa.open_packet(b"!" * 300, keys())


@pytest.mark.parametrize("mode", spa.MODES)
@pytest.mark.parametrize("hmac_digest", list(spa.HMAC_DIGESTS))
def test_build_and_open_round_trip(mode: str, hmac_digest: str) -> None:
    k = keys(mode=mode, hmac_digest=hmac_digest)
    data = spa.build_packet(
        k, allow_ip="10.0.0.2", ports=["tcp/22"], user="bob", timestamp=1700000000, client_timeout=9
    )
    msg = spa.open_packet(data, k)
    assert (msg.user, msg.timestamp, msg.client_timeout) == ("bob", 1700000000, 9)
    grant = spa.authorize(msg, door(keys=k), "10.0.0.7", 1700000030)
    assert grant.address == "10.0.0.2" and grant.timeout == 9 and grant.door == "ssh"


@pytest.mark.parametrize("digest", list(spa.DIGESTS))
def test_inner_digest_types_round_trip(digest: str) -> None:
    text = spa.encode_plaintext(
        allow_ip="0.0.0.0", ports=["udp/53"], user="u", timestamp=5, digest_type=digest
    )
    assert spa.parse_plaintext(text.encode()).digest_type == digest


def test_inner_digest_and_fields_checked() -> None:
    text = spa.encode_plaintext(
        allow_ip="10.0.0.2", ports=["tcp/22"], user="u", timestamp=5, rand="1" * 16
    )
    body, _, digest = text.rpartition(":")
    with pytest.raises(SpaRejected, match="digest"):
        spa.parse_plaintext(f"{body.replace('1111', '2222', 1)}:{digest}".encode())
    bad_fields = [
        "123:dQ:5:3.0.0:1:MTAuMC4wLjIsdGNwLzIy",  # short random value
        "1111111111111111:dQ:5x:3.0.0:1:MTAuMC4wLjIsdGNwLzIy",  # timestamp
        "1111111111111111:dQ:5:3.0.0:9:MTAuMC4wLjIsdGNwLzIy",  # type
        "1111111111111111:dQ:5:3.0.0:1:" + spa.b64(b"10.0.0.2,tcp/0"),  # port 0
        "1111111111111111:dQ:5:3.0.0:1:" + spa.b64(b"10.0.0.256,tcp/22"),  # address
        "1111111111111111:dQ:5:3.0.0:1:" + spa.b64(b"10.0.0.2,sctp/22"),  # protocol
        "1111111111111111:" + spa.b64(b"a:b") + ":5:3.0.0:1:" + spa.b64(b"10.0.0.2,tcp/22"),
        "1111111111111111:dQ:5:3.0.0:3:" + spa.b64(b"10.0.0.2,tcp/22"),  # type 3, no timeout
        "1111111111111111:dQ:5:3.0.0:1:" + spa.b64(b"10.0.0.2,tcp/22") + ":x:y",  # extra
    ]
    for encoded in bad_fields:
        with pytest.raises(SpaRejected, match="fields"):
            spa.parse_plaintext(f"{encoded}:{spa._digest('sha256', encoded)}".encode())


def test_keys_checked_and_never_shown() -> None:
    k = keys()
    assert KEY not in repr(k) and HMAC_KEY not in repr(k) and "hmac=sha256" in repr(k)
    with pytest.raises(ValueError, match="differ"):
        SpaKeys(b"same", b"same")
    with pytest.raises(ValueError, match="1 to 32"):
        SpaKeys(b"k" * 33)
    with pytest.raises(ValueError, match="HMAC digest"):
        keys(hmac_digest="sha224")
    with pytest.raises(ValueError, match="mode"):
        keys(mode="pcbc")
    with pytest.raises(ValueError, match="KEY_BASE64"):
        keys(key_base64="not base64!")


def test_door_sources_and_username() -> None:
    import ipaddress

    k = keys()
    data = spa.build_packet(k, allow_ip="10.0.0.2", ports=["tcp/22"], user="bob", timestamp=100)
    only = door(sources=(ipaddress.ip_network("10.0.0.0/24"),))
    assert spa.decide(data, only, "10.0.0.9", 100).user == "bob"
    assert spa.decide(data, only, "::ffff:10.0.0.9", 100).address == "10.0.0.2"
    with pytest.raises(SpaRejected, match="source"):
        spa.decide(data, only, "10.0.1.9", 100)
    with pytest.raises(SpaRejected, match="user"):
        spa.decide(data, door(require_username="alice"), "10.0.0.9", 100)


def test_module_imports_and_says_what_is_missing_without_cryptography() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'cryptography' or name.startswith('cryptography.'):\n"
        "            raise ImportError('blocked for this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from tumbler.protocols import fwknop\n"
        "assert fwknop.classify(b'A' * 200)\n"
        "print(fwknop.crypto_missing())\n"
        "k = fwknop.SpaKeys(b'k' * 32)\n"
        "try:\n"
        "    fwknop.open_packet(b'A' * 200, k)\n"
        "except fwknop.CryptoUnavailable as exc:\n"
        "    print('raised', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'tumbler[fwknop]'" in out.stdout
    assert "raised fwknop SPA needs the 'cryptography' package" in out.stdout


def test_first_grant_tries_doors_in_order() -> None:
    import ipaddress

    other = door(name="other", keys=SpaKeys(b"o" * 32, b"p" * 64))
    no_hmac = door(name="plain", keys=SpaKeys(b"q" * 32))
    narrow = door(name="narrow", sources=(ipaddress.ip_network("192.0.2.0/24"),))
    k = keys()
    data = spa.build_packet(k, allow_ip="10.0.0.2", ports=["tcp/22"], user="u", timestamp=100)
    assert spa.first_grant(data, [other, no_hmac, narrow, door()], "10.0.0.9", 100).door == "ssh"
    assert spa.first_grant(data, [narrow, door()], "192.0.2.1", 100).door == "narrow"
    with pytest.raises(SpaRejected, match="no-door"):
        spa.first_grant(data, [other, no_hmac, narrow], "10.0.0.9", 100)
    with pytest.raises(SpaRejected, match="age"):  # the door whose keys fit decides
        spa.first_grant(data, [other, door()], "10.0.0.9", 1000)
    with pytest.raises(MalformedDatagram):
        spa.first_grant(b"TUMBLER1: " + b"0" * 64, [door()], "10.0.0.9", 100)
