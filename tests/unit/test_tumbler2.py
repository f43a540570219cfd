"""The wire protocol, version 2: the vectors of docs/PROTOCOL.md, field by field, and the parser.

The vectors are read out of the document itself, so the spec and the code cannot drift.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import ipaddress
import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tumbler.errors import MalformedDatagram, TumblerError
from tumbler.protocols import tumbler2
from tumbler.protocols.tumbler1 import knock_digest, make_knock, parse_datagram
from tumbler.protocols.tumbler2 import (
    DATAGRAM_LEN,
    MAGIC,
    BadKey,
    Knock2,
    build,
    clock_offset,
    decode_key,
    derive_key,
    encode_key,
    is_v2,
    key_id,
    mac_input,
    parse,
    verify,
    within_window,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
_BLOCK = re.compile(r"^```vector\n(.*?)^```$", re.S | re.M)


def doc_vectors() -> dict[str, dict[str, str]]:
    """Every ```vector block of PROTOCOL.md as {name: {field: value}}."""
    vectors: dict[str, dict[str, str]] = {}
    for block in _BLOCK.findall(DOC.read_text(encoding="utf-8")):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, sep, value = line.partition(":")
            assert sep, f"vector line without a colon: {line!r}"
            fields[name.strip()] = value.strip()
        vectors[fields["name"]] = fields
    return vectors


VECTORS = doc_vectors()
V2 = sorted(n for n in VECTORS if n.startswith("v2-"))
KEY = bytes(range(32))
NONCE = bytes(range(0xA0, 0xB0))
WHEN = 1101569400  # 2004-11-27 15:30:00 UTC, the v1 vector's minute


def test_the_document_has_the_vectors_the_tests_expect():
    assert sorted(VECTORS) == ["v1", "v2-a", "v2-b", "v2-c", "v2-d"]


# --- the vectors ----------------------------------------------------------------------------


def test_v1_vector_of_the_document():
    v = VECTORS["v1"]
    assert knock_digest(v["T"], v["A"], v["S"]) == v["K"]
    datagram = v["datagram"].encode("ascii")
    assert parse_datagram(datagram) == v["K"]
    assert datagram == b"TUMBLER1: " + v["K"].encode("ascii")


def test_v1_vector_moment_is_the_v2_vectors_time():
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(WHEN, UTC)
    v = VECTORS["v1"]
    assert make_knock(v["S"], v["A"], when) == v["datagram"].encode("ascii")
    assert int(VECTORS["v2-a"]["time"]) == WHEN


@pytest.mark.parametrize("name", V2)
def test_v2_vector_builds_the_documented_datagram(name):
    v = VECTORS[name]
    key = bytes.fromhex(v["key"])
    datagram = build(key, int(v["time"]), bytes.fromhex(v["nonce"]), v["address"], v["realm"])
    assert datagram.hex() == v["datagram"]
    assert len(datagram) == DATAGRAM_LEN == 68


@pytest.mark.parametrize("name", V2)
def test_v2_vector_fields_parse_back(name):
    v = VECTORS[name]
    knock = parse(bytes.fromhex(v["datagram"]))
    assert knock.key_id.hex() == v["key id"]
    assert knock.time == int(v["time"])
    assert knock.nonce.hex() == v["nonce"]
    assert knock.mac.hex() == v["mac"]
    assert verify(knock, bytes.fromhex(v["key"]), v["address"], v["realm"])


@pytest.mark.parametrize("name", V2)
def test_v2_vector_key_text_and_key_id(name):
    v = VECTORS[name]
    key = bytes.fromhex(v["key"])
    assert encode_key(key) == v["key text"]
    assert decode_key(v["key text"]) == key
    assert key_id(key).hex() == v["key id"]
    # The key id as the document defines it, computed without the module.
    assert hmac.new(key, b"tumbler2 key id", hashlib.sha256).digest()[:8].hex() == v["key id"]


@pytest.mark.parametrize("name", V2)
def test_v2_vector_mac_is_plain_hmac_sha256_of_the_documented_input(name):
    v = VECTORS[name]
    key = bytes.fromhex(v["key"])
    datagram = bytes.fromhex(v["datagram"])
    assert mac_input(datagram[:36], v["address"], v["realm"]).hex() == v["mac input"]
    expected = hmac.new(key, bytes.fromhex(v["mac input"]), hashlib.sha256).hexdigest()
    assert expected == v["mac"]
    # The layout of the MAC input, as the document describes it.
    addr, realm = v["address"].encode(), v["realm"].encode()
    layout = datagram[:36] + bytes([len(addr)]) + addr + bytes([len(realm)]) + realm
    assert layout.hex() == v["mac input"]


@pytest.mark.parametrize("name", [n for n in V2 if "passphrase" in VECTORS[n]])
def test_v2_passphrase_vector_derives_the_documented_key(name):
    v = VECTORS[name]
    assert derive_key(v["passphrase"], v["realm"]).hex() == v["key"]


def test_the_passphrase_vectors_differ_only_by_realm():
    c, d = VECTORS["v2-c"], VECTORS["v2-d"]
    assert c["passphrase"] == d["passphrase"] and c["realm"] != d["realm"]
    assert c["key"] != d["key"]


def test_mapped_ipv6_address_makes_the_same_datagram_as_ipv4():
    a = build(KEY, WHEN, NONCE, "192.168.0.5")
    assert build(KEY, WHEN, NONCE, "::ffff:192.168.0.5") == a
    assert build(KEY, WHEN, NONCE, ipaddress.ip_address("192.168.0.5")) == a
    assert a.hex() == VECTORS["v2-a"]["datagram"]


# --- what must be refused -------------------------------------------------------------------


def _knock(address: str = "192.168.0.5", realm: str = "") -> Knock2:
    return parse(build(KEY, WHEN, NONCE, address, realm))


def test_wrong_key_is_refused():
    assert not verify(_knock(), bytes(32), "192.168.0.5")
    assert not verify(_knock(), KEY[:-1] + b"\x00", "192.168.0.5")


def test_another_address_is_refused():
    knock = _knock()
    assert verify(knock, KEY, "192.168.0.5")
    assert not verify(knock, KEY, "192.168.0.6")
    assert not verify(knock, KEY, "::1")


def test_another_realm_is_refused():
    knock = _knock(realm="fleet.example")
    assert verify(knock, KEY, "192.168.0.5", "fleet.example")
    assert not verify(knock, KEY, "192.168.0.5", "")
    assert not verify(knock, KEY, "192.168.0.5", "fleet.example2")
    assert not verify(_knock(realm=""), KEY, "192.168.0.5", "fleet.example")


def test_address_and_realm_cannot_run_into_each_other():
    # Without length prefixes, ("::1", "2x") and ("::12", "x") would hash the same bytes.
    a = mac_input(b"h" * 36, "::1", "2x")
    b = mac_input(b"h" * 36, "::12", "x")
    assert a != b


def test_a_changed_time_is_refused():
    datagram = bytearray(build(KEY, WHEN, NONCE, "192.168.0.5"))
    datagram[12:20] = (WHEN + 1).to_bytes(8, "big")
    knock = parse(bytes(datagram))
    assert knock.time == WHEN + 1
    assert not verify(knock, KEY, "192.168.0.5")


def test_every_single_bit_flip_after_the_magic_is_refused():
    datagram = build(KEY, WHEN, NONCE, "192.168.0.5")
    for bit in range(len(MAGIC) * 8, DATAGRAM_LEN * 8):
        mutated = bytearray(datagram)
        mutated[bit // 8] ^= 1 << (bit % 8)
        assert not verify(parse(bytes(mutated)), KEY, "192.168.0.5"), bit


def test_a_flipped_magic_is_not_v2():
    datagram = build(KEY, WHEN, NONCE, "192.168.0.5")
    for bit in range(len(MAGIC) * 8):
        mutated = bytearray(datagram)
        mutated[bit // 8] ^= 1 << (bit % 8)
        assert not is_v2(bytes(mutated))
        with pytest.raises(MalformedDatagram):
            parse(bytes(mutated))


@pytest.mark.parametrize("cut", [1, 2, 32, 67])
def test_truncated_datagram_is_malformed(cut):
    datagram = build(KEY, WHEN, NONCE, "192.168.0.5")
    with pytest.raises(MalformedDatagram):
        parse(datagram[:-cut])


@pytest.mark.parametrize("pad", [b"\x00", b"\n", b"\r\n", b"x" * 100])
def test_padded_datagram_is_malformed(pad):
    datagram = build(KEY, WHEN, NONCE, "192.168.0.5")
    with pytest.raises(MalformedDatagram):
        parse(datagram + pad)


def test_v1_and_v2_cannot_be_taken_for_each_other():
    v1 = VECTORS["v1"]["datagram"].encode("ascii")
    v2 = bytes.fromhex(VECTORS["v2-a"]["datagram"])
    assert not is_v2(v1)
    with pytest.raises(MalformedDatagram):
        parse(v1)
    with pytest.raises(MalformedDatagram):
        parse_datagram(v2)
    assert v2[0] >= 0x80 and all(b < 0x80 for b in v1)


def test_parse_does_no_hashing(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("hashed")

    monkeypatch.setattr(tumbler2.hmac, "digest", forbidden)
    monkeypatch.setattr(tumbler2, "normalize_address", forbidden)
    datagram = bytes.fromhex(VECTORS["v2-a"]["datagram"])
    assert parse(datagram).time == WHEN
    with pytest.raises(MalformedDatagram):
        parse(datagram + b"\x00")


# --- time -----------------------------------------------------------------------------------


def test_clock_offset_is_positive_when_the_sender_is_ahead():
    knock = _knock()
    assert clock_offset(knock, WHEN) == 0
    assert clock_offset(knock, WHEN - 187) == 187
    assert clock_offset(knock, WHEN + 187.9) == -187
    assert clock_offset(knock, WHEN + 0.999) == 0


def test_window_is_inclusive_on_both_sides():
    assert within_window(0, 0)
    assert within_window(60, 60) and within_window(-60, 60)
    assert not within_window(61, 60) and not within_window(-61, 60)


def test_two_knocks_in_one_second_differ():
    a = build(KEY, WHEN, NONCE, "192.168.0.5")
    b = build(KEY, WHEN, bytes(16), "192.168.0.5")
    assert a != b and parse(a).time == parse(b).time
    assert verify(parse(a), KEY, "192.168.0.5") and verify(parse(b), KEY, "192.168.0.5")


def test_time_to_the_second_and_in_range():
    assert parse(build(KEY, WHEN + 0.999, NONCE, "192.168.0.5")).time == WHEN
    assert parse(build(KEY, 2**64 - 1, NONCE, "192.168.0.5")).time == 2**64 - 1
    with pytest.raises(ValueError):
        build(KEY, -1, NONCE, "192.168.0.5")
    with pytest.raises(ValueError):
        build(KEY, 2**64, NONCE, "192.168.0.5")


# --- inputs a caller gets wrong -------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 12, 15, 17])
def test_nonce_must_be_16_bytes(n):
    with pytest.raises(ValueError):
        build(KEY, WHEN, bytes(n), "192.168.0.5")


@pytest.mark.parametrize("n", [0, 16, 31, 33, 64])
def test_key_must_be_32_bytes(n):
    with pytest.raises(BadKey):
        build(bytes(n), WHEN, NONCE, "192.168.0.5")
    with pytest.raises(BadKey):
        key_id(bytes(n))
    with pytest.raises(BadKey):
        encode_key(bytes(n))


def test_bad_key_is_a_tumbler_error_and_a_value_error():
    assert issubclass(BadKey, TumblerError) and issubclass(BadKey, ValueError)


def test_realm_limits():
    build(KEY, WHEN, NONCE, "192.168.0.5", "r" * 255)
    build(KEY, WHEN, NONCE, "192.168.0.5", "é" * 127)  # 254 bytes of UTF-8
    with pytest.raises(ValueError):
        build(KEY, WHEN, NONCE, "192.168.0.5", "r" * 256)
    with pytest.raises(ValueError):
        build(KEY, WHEN, NONCE, "192.168.0.5", "é" * 128)
    with pytest.raises(ValueError):
        build(KEY, WHEN, NONCE, "192.168.0.5", "fleet\n")


def test_bad_address_is_refused():
    with pytest.raises(ValueError):
        build(KEY, WHEN, NONCE, "example.org")


# --- key text -------------------------------------------------------------------------------


def test_key_text_round_trip_and_surrounding_whitespace():
    text = encode_key(KEY)
    assert len(text) == 43
    assert decode_key(text) == KEY
    assert decode_key(f"  {text}\n") == KEY


@pytest.mark.parametrize(
    "text",
    [
        "",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",  # padded
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh",  # 42 characters
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8A",  # 44 characters
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9",  # spare bits set: not canonical
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd+h8",  # standard alphabet, not url-safe
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd/h8",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd h8",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHé",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",  # hex
    ],
)
def test_key_text_other_than_the_canonical_form_is_refused(text):
    with pytest.raises(BadKey):
        decode_key(text)


@given(st.binary(min_size=32, max_size=32))
def test_key_text_round_trips_every_key(key):
    text = encode_key(key)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", text)
    assert decode_key(text) == key


# --- passphrases ----------------------------------------------------------------------------


def test_scrypt_parameters_cost_at_least_64_mib():
    assert tumbler2.SCRYPT_MEMORY == 128 * tumbler2.SCRYPT_R * tumbler2.SCRYPT_N
    assert tumbler2.SCRYPT_MEMORY >= 64 * 2**20


def test_empty_passphrase_is_refused():
    with pytest.raises(ValueError):
        derive_key("")


def test_passphrase_is_normalised_to_nfc():
    composed, decomposed = "caf\u00e9 au lait", "cafe\u0301 au lait"
    assert derive_key(composed) == derive_key(decomposed)


def test_salt_is_the_label_then_the_realm():
    assert tumbler2.passphrase_salt("") == b"tumbler2 passphrase\x00"
    assert tumbler2.passphrase_salt("fleet.example") == b"tumbler2 passphrase\x00fleet.example"


# --- purity ---------------------------------------------------------------------------------


def test_the_module_imports_nothing_that_reaches_the_world():
    tree = ast.parse(Path(tumbler2.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    allowed = {"__future__", "base64", "binascii", "hashlib", "hmac", "math", "struct"}
    allowed |= {"unicodedata", "dataclasses", "tumbler.errors"}
    allowed |= {"tumbler.addresses"}
    assert imported <= allowed


# --- properties of the parser ---------------------------------------------------------------


def _near_misses() -> st.SearchStrategy[bytes]:
    """Bytes close to a v2 datagram: the magic and its neighbours, then any tail."""
    magic = st.sampled_from([MAGIC, MAGIC[:3], b"\x89TM\x01", b"\x89TM\x03", b"TUMBLER1:", b""])
    tail = st.one_of(
        st.binary(min_size=60, max_size=70),
        st.binary(min_size=DATAGRAM_LEN - 4, max_size=DATAGRAM_LEN - 4),
    )
    return st.tuples(magic, tail).map(b"".join)


@given(st.one_of(st.binary(max_size=200), _near_misses()))
@example(b"")
@example(MAGIC)
@example(MAGIC + bytes(DATAGRAM_LEN - 4))
@example(b"\x00" * 65536)
def test_parse_raises_only_malformed(data):
    try:
        knock = parse(data)
    except MalformedDatagram:
        assert not is_v2(data)
        return
    assert is_v2(data)
    assert knock.header + knock.mac == data
    assert 0 <= knock.time < 2**64


_addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
_realms = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=60).filter(
    lambda r: len(r.encode("utf-8")) <= 255
)


@given(
    st.binary(min_size=32, max_size=32),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(min_size=16, max_size=16),
    _addresses,
    _realms,
)
def test_build_parse_verify_round_trip(key, when, nonce, address, realm):
    datagram = build(key, when, nonce, address, realm)
    assert is_v2(datagram)
    knock = parse(datagram)
    assert (knock.key_id, knock.time, knock.nonce) == (key_id(key), when, nonce)
    assert verify(knock, key, address, realm)
    assert not verify(knock, key, address, realm + "x")


def test_key_id_slice_is_the_key_id_field():
    datagram = bytes.fromhex(VECTORS["v2-a"]["datagram"])
    assert datagram[tumbler2.KEY_ID_SLICE].hex() == VECTORS["v2-a"]["key id"]
