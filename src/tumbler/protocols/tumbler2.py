"""The Tumbler wire protocol, version 2: pure functions, no sockets, files or clock reads.

A v2 knock is one 68-byte UDP datagram (docs/PROTOCOL.md has the layout and the reasons):

    magic (4) | key id (8) | time, u64 seconds (8) | nonce (16) | HMAC-SHA256 (32)

The MAC covers the first 36 bytes, the source address the client claims (normalised as
in v1) and the realm both sides configure. The key id lets a receiver find the one key
to try in a dict, so a datagram costs at most one MAC whatever the number of doors; the
random nonce makes two knocks in one second differ, and the time to the second lets a
receiver hold each accepted knock in a replay cache only for its window.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import struct
import unicodedata
from dataclasses import dataclass

from tumbler.addresses import Address, normalize_address
from tumbler.errors import MalformedDatagram, TumblerError

# 0x89 has the high bit set, so no ASCII text (v1's "TUMBLER1:" starts with "T") begins
# with it; "TM" names the protocol and the last byte is the version.
MAGIC = b"\x89TM\x02"
KEY_LEN = 32
KEY_ID_LEN = 8
NONCE_LEN = 16
MAC_LEN = 32
_HEADER = struct.Struct(">4s8sQ16s")  # magic, key id, time, nonce: all the MAC signs of the wire
HEADER_LEN = _HEADER.size
KEY_ID_SLICE = slice(4, 4 + KEY_ID_LEN)  # where the key id sits in a datagram
DATAGRAM_LEN = HEADER_LEN + MAC_LEN
MAX_REALM_BYTES = 255
MAX_TIME = 2**64 - 1

KEY_ID_LABEL = b"tumbler2 key id"
SALT_LABEL = b"tumbler2 passphrase\x00"
# scrypt cost: 128 * r * n bytes = 64 MiB per guess; about 0.4 s on the reference machine
# (docs/PROTOCOL.md, "Passphrases"). p = 1: parallelism would only help the guesser.
SCRYPT_N = 2**16
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MEMORY = 128 * SCRYPT_R * SCRYPT_N
_SCRYPT_MAXMEM = 2 * SCRYPT_MEMORY  # OpenSSL needs a little more than the table itself


class BadKey(TumblerError, ValueError):
    """A v2 key that is not 32 bytes, or key text that is not its canonical base64url."""


@dataclass(frozen=True, slots=True)
class Knock2:
    """The fields of a well-shaped v2 datagram; nothing in it is checked yet but its shape."""

    key_id: bytes
    time: int
    nonce: bytes
    mac: bytes
    header: bytes  # the first HEADER_LEN bytes, as received: the MAC covers them verbatim


def is_v2(data: bytes) -> bool:
    """Whether `data` has the v2 shape: exactly DATAGRAM_LEN bytes starting with MAGIC."""
    return len(data) == DATAGRAM_LEN and data[:4] == MAGIC


def parse(data: bytes) -> Knock2:
    """Split a v2 datagram into its fields, or raise MalformedDatagram.

    Only the length and the magic are checked: every other bit pattern is a possible
    knock, and none of it reaches a hash here.
    """
    if not is_v2(data):
        raise MalformedDatagram("not a 68-byte v2 datagram")
    _magic, kid, when, nonce = _HEADER.unpack_from(data)
    return Knock2(kid, when, nonce, bytes(data[HEADER_LEN:]), bytes(data[:HEADER_LEN]))


def check_key(key: bytes) -> bytes:
    """Return `key` if it is a v2 key (exactly 32 bytes), else raise BadKey."""
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_LEN:
        raise BadKey(f"a v2 key is {KEY_LEN} bytes")
    return bytes(key)


def realm_bytes(realm: str) -> bytes:
    """The realm as it enters the MAC: UTF-8, at most 255 bytes, no control characters."""
    if any(unicodedata.category(c) == "Cc" for c in realm):
        raise ValueError("a realm has no control characters")
    raw = realm.encode("utf-8")
    if len(raw) > MAX_REALM_BYTES:
        raise ValueError(f"a realm is at most {MAX_REALM_BYTES} bytes of UTF-8")
    return raw


def key_id(key: bytes) -> bytes:
    """The public name of a key: the first 8 bytes of HMAC-SHA256(key, a fixed label)."""
    return hmac.digest(check_key(key), KEY_ID_LABEL, "sha256")[:KEY_ID_LEN]


def mac_input(header: bytes, address: Address, realm: str = "") -> bytes:
    """Header, then the address and the realm, each behind a one-byte length."""
    addr = normalize_address(address).encode("ascii")
    raw_realm = realm_bytes(realm)
    return header + bytes([len(addr)]) + addr + bytes([len(raw_realm)]) + raw_realm


def compute_mac(key: bytes, header: bytes, address: Address, realm: str = "") -> bytes:
    """HMAC-SHA256 under `key` of mac_input()."""
    return hmac.digest(check_key(key), mac_input(header, address, realm), "sha256")


def build(key: bytes, now: float, nonce: bytes, address: Address, realm: str = "") -> bytes:
    """The datagram a client sends from `address` at epoch second `now` with a fresh `nonce`.

    `nonce` must be 16 bytes from a cryptographic generator (secrets.token_bytes); it is
    an argument so that this module reads no randomness either.
    """
    if len(nonce) != NONCE_LEN:
        raise ValueError(f"the nonce is {NONCE_LEN} bytes")
    seconds = math.floor(now)
    if not 0 <= seconds <= MAX_TIME:
        raise ValueError("the time does not fit an unsigned 64-bit count of seconds")
    header = _HEADER.pack(MAGIC, key_id(key), seconds, bytes(nonce))
    return header + compute_mac(key, header, address, realm)


def verify(knock: Knock2, key: bytes, address: Address, realm: str = "") -> bool:
    """Whether the knock's MAC is right for `key`, the source `address` and `realm`.

    Says nothing about time or replays: the caller checks the window with clock_offset()
    after this, so that a right MAC at a wrong time can be reported as clock skew.
    """
    expected = compute_mac(key, knock.header, address, realm)
    return hmac.compare_digest(expected, knock.mac)


def clock_offset(knock: Knock2, now: float) -> int:
    """Seconds the sender's clock is ahead of `now` (negative: behind)."""
    return knock.time - math.floor(now)


def within_window(offset: int, window: int) -> bool:
    """Whether a knock `offset` seconds off is inside a window of `window` seconds either side."""
    return -window <= offset <= window


def passphrase_salt(realm: str = "") -> bytes:
    """The scrypt salt: a fixed label, then the realm, so each realm needs its own guesses."""
    return SALT_LABEL + realm_bytes(realm)


def derive_key(passphrase: str, realm: str = "") -> bytes:
    """A v2 key from a passphrase: scrypt (64 MiB per guess) over its NFC UTF-8 bytes.

    The passphrase is normalised to NFC so that the same words typed on two systems
    that compose accents differently give the same key.
    """
    if not passphrase:
        raise ValueError("the passphrase is empty")
    raw = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return hashlib.scrypt(
        raw,
        salt=passphrase_salt(realm),
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=_SCRYPT_MAXMEM,
        dklen=KEY_LEN,
    )


def encode_key(key: bytes) -> str:
    """Key text for files and URLs: base64url without padding (43 characters)."""
    return base64.urlsafe_b64encode(check_key(key)).rstrip(b"=").decode("ascii")


def decode_key(text: str) -> bytes:
    """The key that encode_key() wrote as `text`, or BadKey; only the canonical form is taken.

    Surrounding whitespace is ignored (a key file may end in a newline); anything else
    that is not exactly the 43 characters encode_key() would write is refused, so one key
    has one spelling.
    """
    text = text.strip()
    if len(text) != 43 or not text.isascii():
        raise BadKey("a v2 key is 43 characters of base64url")
    try:
        key = base64.b64decode(text + "=", altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadKey("a v2 key is 43 characters of base64url") from e
    if len(key) != KEY_LEN or encode_key(key) != text:
        raise BadKey("a v2 key is 43 characters of base64url")
    return key
