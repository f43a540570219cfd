"""fwknop Single Packet Authorization (Rijndael, optional HMAC) as fwknop 2.6 speaks it.

Pure: no sockets, files or clock reads; the time is an argument. The work is ordered by
its cost so that junk stays cheap: the shape (size and alphabet) before any cryptography,
the HMAC before decryption, the inner digest before any field is trusted.

AES comes from the `cryptography` package (the `fwknop` extra). Without it this module
still imports and `classify` still works; `crypto_missing()` says what to install, and
anything that needs AES raises `CryptoUnavailable` with that text.

The wire format (see the project's notes on fwknop SPA):

    WIRE = CT[10:] + MAC   CT  = b64("Salted__" + salt + AES(plaintext))  ('=' removed)
                           MAC = b64(HMAC(hmac_key, CT))                  ('=' removed)
    plaintext = rand:b64(user):time:version:type:b64(message)
                [:b64(nat)][:b64(server_auth)][:client_timeout]:digest
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from tumbler.addresses import normalize_address
from tumbler.errors import MalformedDatagram, TumblerError
from tumbler.ports import PortSpec, parse_port_spec

try:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    try:  # cryptography 43 moved the modes it no longer recommends
        from cryptography.hazmat.decrepit.ciphers.modes import CFB, OFB
    except ImportError:
        from cryptography.hazmat.primitives.ciphers.modes import CFB, OFB

    _CRYPTO_ERROR: str | None = None
except ImportError as exc:  # the `fwknop` extra is not installed
    _CRYPTO_ERROR = (
        "fwknop SPA needs the 'cryptography' package, which is not installed "
        f"(pip install 'tumbler[fwknop]'): {exc}"
    )

DEFAULT_PORT = 62201
MIN_PACKET = 140  # fwknopd drops shorter payloads unread
MAX_PACKET = 1500
SALT_PREFIX = "U2FsdGVkX1"  # base64 of b"Salted__"; the client drops it, the server adds it back
_SALTED = b"Salted__"
_GPG_PREFIX = b"hQ"
_MIN_GPG = 400
VERSION = "3.0.0"
RAND_LEN = 16
_MIN_ENCODED = 36  # fwknop's shortest encoded message (MIN_SPA_ENCODED_MSG_SIZE)
_MAX_KEY = 32  # Rijndael passphrase bytes
_MAX_HMAC_KEY = 128  # longest digest block (SHA3-256)
_BLOCK = 16

# Characters of the base64 text of each digest, '=' removed (HMAC and inner digest alike).
HMAC_DIGESTS: Mapping[str, int] = {
    "md5": 22,
    "sha1": 27,
    "sha256": 43,
    "sha384": 64,
    "sha512": 86,
    "sha3_256": 43,
    "sha3_512": 86,
}
DIGESTS = HMAC_DIGESTS
# The inner digest's type is told by its length; 43 and 86 are retried as SHA-3.
_DIGEST_BY_LEN: Mapping[int, tuple[str, ...]] = {
    22: ("md5",),
    27: ("sha1",),
    43: ("sha256", "sha3_256"),
    64: ("sha384",),
    86: ("sha512", "sha3_512"),
}
MODES = ("cbc", "ctr", "cfb", "ofb", "ecb", "legacy")

# Message types (fwknop's FKO_*_MSG).
COMMAND = 0
ACCESS = 1
NAT_ACCESS = 2
CLIENT_TIMEOUT_ACCESS = 3
CLIENT_TIMEOUT_NAT_ACCESS = 4
LOCAL_NAT_ACCESS = 5
CLIENT_TIMEOUT_LOCAL_NAT_ACCESS = 6
_NAT_TYPES = frozenset(
    {NAT_ACCESS, CLIENT_TIMEOUT_NAT_ACCESS, LOCAL_NAT_ACCESS, CLIENT_TIMEOUT_LOCAL_NAT_ACCESS}
)
_TIMEOUT_TYPES = frozenset(
    {CLIENT_TIMEOUT_ACCESS, CLIENT_TIMEOUT_NAT_ACCESS, CLIENT_TIMEOUT_LOCAL_NAT_ACCESS}
)

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_USER_FORBIDDEN = frozenset('"/\\[]:;|=,+*?<>')
_MAX_USER_B64 = 64
_MAX_MESSAGE_B64 = 256
_MAX_TIMESTAMP = 12
_MAX_VERSION = 8
_IPV4 = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}")
_ACCESS_ITEM = re.compile(r"(tcp|udp|icmp|none)/(\d{1,5})")
_DIGITS = re.compile(r"\d+")
_VERSION_RE = re.compile(r"[0-9.]+")
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 (fwknop's "use the packet's source address")


class CryptoUnavailable(TumblerError):
    """The `cryptography` package is missing, so no SPA packet can be opened or built."""


class SpaRejected(TumblerError):
    """A well-shaped packet that fails a check; `reason` is a short word for counters and logs."""

    def __init__(self, reason: str, detail: str = "", door: str | None = None) -> None:
        self.reason = reason
        self.door = door  # the door whose keys opened the packet, once one has
        # Set once the packet is decrypted, so a receiver can treat a repeat as a replay.
        self.replay_key: str | None = None
        self.replay_until = 0.0
        super().__init__(f"{reason}: {detail}" if detail else reason)


def crypto_missing() -> str | None:
    """Why SPA packets cannot be opened or built here, or None if they can."""
    return _CRYPTO_ERROR


def _require_crypto() -> None:
    if _CRYPTO_ERROR is not None:
        raise CryptoUnavailable(_CRYPTO_ERROR)


def b64(data: bytes) -> str:
    """Standard base64 without the '=' padding, as fwknop writes every field."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def unb64(text: str) -> bytes:
    """Decode unpadded standard base64 strictly: canonical text only, else ValueError."""
    if len(text) % 4 == 1 or not text.isascii():
        raise ValueError("not base64")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    if b64(data) != text:
        raise ValueError("not canonical base64")
    return data


def decode_key(text: str, what: str = "key") -> bytes:
    """A `KEY_BASE64`-style value as bytes (padding optional); ValueError names `what`."""
    text = text.strip().rstrip("=")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64") from None


@dataclass(frozen=True, repr=False)
class SpaKeys:
    """One stanza's keys and algorithms; the repr never shows a key."""

    key: bytes
    hmac_key: bytes | None = None
    hmac_digest: str = "sha256"
    mode: str = "cbc"

    def __post_init__(self) -> None:
        if not 1 <= len(self.key) <= _MAX_KEY:
            raise ValueError(f"the encryption key must be 1 to {_MAX_KEY} bytes")
        if self.hmac_key is not None:
            if not 1 <= len(self.hmac_key) <= _MAX_HMAC_KEY:
                raise ValueError(f"the HMAC key must be 1 to {_MAX_HMAC_KEY} bytes")
            if hmac.compare_digest(self.key, self.hmac_key):
                raise ValueError("the encryption key and the HMAC key must differ")
        if self.hmac_digest not in HMAC_DIGESTS:
            raise ValueError(
                f"unknown HMAC digest {self.hmac_digest!r} (use {', '.join(HMAC_DIGESTS)})"
            )
        if self.mode not in MODES:
            raise ValueError(f"unknown encryption mode {self.mode!r} (use {', '.join(MODES)})")

    def __repr__(self) -> str:
        mac = self.hmac_digest if self.hmac_key is not None else "none"
        return f"SpaKeys(mode={self.mode}, hmac={mac})"

    @classmethod
    def from_text(
        cls,
        *,
        key: str | None = None,
        key_base64: str | None = None,
        hmac_key: str | None = None,
        hmac_key_base64: str | None = None,
        hmac_digest: str = "sha256",
        mode: str = "cbc",
    ) -> SpaKeys:
        """Keys as fwknop's files write them: `KEY` or `KEY_BASE64`, `HMAC_KEY[_BASE64]`."""
        if (key is None) == (key_base64 is None):
            raise ValueError("give exactly one of KEY and KEY_BASE64")
        if hmac_key is not None and hmac_key_base64 is not None:
            raise ValueError("give at most one of HMAC_KEY and HMAC_KEY_BASE64")
        raw = key.encode() if key is not None else decode_key(key_base64 or "", "KEY_BASE64")
        mac: bytes | None = None
        if hmac_key is not None:
            mac = hmac_key.encode()
        elif hmac_key_base64 is not None:
            mac = decode_key(hmac_key_base64, "HMAC_KEY_BASE64")
        return cls(raw, mac, hmac_digest.lower().replace("-", "_"), mode.lower())


# --- shape ------------------------------------------------------------------------------


def classify(data: bytes) -> bool:
    """True if `data` has the shape of a Rijndael SPA packet; no cryptography is done.

    fwknopd's prechecks: 140 to 1500 bytes of the base64 alphabet, not starting with the
    salt prefix the client drops (or the GPG prefix), which an attacker might tack onto a
    captured packet to slip past a byte-for-byte replay check.
    """
    n = len(data)
    if n < MIN_PACKET or n > MAX_PACKET:
        return False
    if data.startswith(SALT_PREFIX.encode()) or (n > _MIN_GPG and data.startswith(_GPG_PREFIX)):
        return False
    return not data.translate(None, _B64_ALPHABET)


# --- HMAC and encryption ----------------------------------------------------------------


def _mac(keys: SpaKeys, text: str) -> str:
    assert keys.hmac_key is not None
    return b64(hmac.new(keys.hmac_key, text.encode("ascii"), keys.hmac_digest).digest())


def unwrap(data: bytes, keys: SpaKeys) -> str:
    """Check shape and HMAC; return the ciphertext's base64 text with its prefix restored."""
    if not classify(data):
        raise MalformedDatagram("not shaped like an fwknop SPA packet")
    text = data.decode("ascii")
    if keys.hmac_key is None:
        return SALT_PREFIX + text
    n = HMAC_DIGESTS[keys.hmac_digest]
    body, mac = text[:-n], text[-n:]
    if len(body) < _MIN_ENCODED:
        raise SpaRejected("hmac", "too short for its HMAC")
    expected = _mac(keys, SALT_PREFIX + body)
    if not hmac.compare_digest(mac.encode("ascii"), expected.encode("ascii")):
        raise SpaRejected("hmac")
    return SALT_PREFIX + body


def _key_and_iv(secret: bytes, salt: bytes, mode: str) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey (MD5, one round): AES-256 key and IV from passphrase and salt."""
    if mode == "legacy":  # fwknop before 2.5: at most 16 bytes, padded with ASCII '0'
        secret = secret[:16].ljust(16, b"0")
    derived, block = b"", b""
    while len(derived) < 48:
        block = hashlib.md5(block + secret + salt).digest()  # noqa: S324 (the format's KDF)
        derived += block
    return derived[:32], derived[32:48]


_AnyMode: TypeAlias = "modes.ModeWithInitializationVector | modes.ModeWithNonce | modes.ECB"


def _cipher(key: bytes, iv: bytes, mode: str) -> Cipher[_AnyMode]:
    chosen: _AnyMode
    if mode in ("cbc", "legacy"):
        chosen = modes.CBC(iv)
    elif mode == "ctr":
        chosen = modes.CTR(iv)  # the whole IV is the 128-bit big-endian counter
    elif mode == "cfb":
        chosen = CFB(iv)
    elif mode == "ofb":
        chosen = OFB(iv)
    elif mode == "ecb":
        chosen = modes.ECB()  # noqa: S305 (offered by fwknop; only if a stanza names it)
    else:
        raise ValueError(f"unknown encryption mode {mode!r}")
    return Cipher(algorithms.AES(key), chosen)


def decrypt(ct_text: str, keys: SpaKeys) -> bytes:
    """The plaintext inside a ciphertext's base64 text (prefix included); SpaRejected if not."""
    _require_crypto()
    try:
        raw = unb64(ct_text)
    except ValueError:
        raise SpaRejected("decrypt", "ciphertext is not base64") from None
    if len(raw) < 2 * _BLOCK or len(raw) % _BLOCK or not raw.startswith(_SALTED):
        raise SpaRejected("decrypt", "ciphertext has the wrong size")
    key, iv = _key_and_iv(keys.key, raw[8:16], keys.mode)
    decryptor = _cipher(key, iv, keys.mode).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    pad = padded[-1]
    # Every mode pads the same way (PKCS#7 to whole blocks), stream modes included.
    if not 1 <= pad <= _BLOCK or padded[-pad:] != bytes([pad]) * pad:
        raise SpaRejected("decrypt", "bad padding (wrong key or mode)")
    return padded[:-pad]


def encrypt(plaintext: bytes, keys: SpaKeys, salt: bytes | None = None) -> str:
    """The base64 text (prefix included, '=' removed) of the salted ciphertext."""
    _require_crypto()
    salt = secrets.token_bytes(8) if salt is None else salt
    if len(salt) != 8:
        raise ValueError("the salt is 8 bytes")
    key, iv = _key_and_iv(keys.key, salt, keys.mode)
    pad = _BLOCK - len(plaintext) % _BLOCK
    encryptor = _cipher(key, iv, keys.mode).encryptor()
    body = encryptor.update(plaintext + bytes([pad]) * pad) + encryptor.finalize()
    return b64(_SALTED + salt + body)


# --- the plaintext ----------------------------------------------------------------------


def _digest(name: str, text: str) -> str:
    return b64(hashlib.new(name, text.encode("ascii")).digest())


def _ipv4(text: str) -> bool:
    if not _IPV4.fullmatch(text):
        return False
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _valid_user(user: str) -> bool:
    return (
        0 < len(user) <= _MAX_USER_B64
        and all(0x20 <= ord(c) <= 0x7E for c in user)
        and not _USER_FORBIDDEN.intersection(user)
    )


def _b64_field(text: str, limit: int, what: str) -> str:
    if not 0 < len(text) <= limit:
        raise SpaRejected("fields", f"{what} is empty or too long")
    try:
        decoded = unb64(text).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise SpaRejected("fields", f"{what} is not base64 of ASCII") from None
    if not decoded.isprintable():
        raise SpaRejected("fields", f"{what} is not printable")
    return decoded


def _check_message(message: str, msg_type: int) -> None:
    allow, comma, rest = message.partition(",")
    if not comma or not _ipv4(allow) or not rest:
        raise SpaRejected("fields", "message is not ADDRESS,...")
    if msg_type == COMMAND:
        return
    for item in rest.split(","):
        match = _ACCESS_ITEM.fullmatch(item)
        if not match or not 1 <= int(match.group(2)) <= 65535:
            raise SpaRejected("fields", "access is not proto/port[,proto/port...]")


def _check_nat(nat: str) -> None:
    host, comma, port = nat.partition(",")
    if (
        not comma
        or not host
        or len(host) > 255
        or any(c in host for c in " /?\"'\\,")
        or not _DIGITS.fullmatch(port)
        or len(port) > 5
        or not 1 <= int(port) <= 65535
    ):
        raise SpaRejected("fields", "NAT access is not HOST,PORT")


@dataclass(frozen=True)
class SpaMessage:
    """The fields of a decrypted SPA plaintext, checked for shape but not yet authorized."""

    rand: str
    user: str
    timestamp: int
    version: str
    msg_type: int
    message: str
    nat_access: str | None
    server_auth: str | None
    client_timeout: int
    digest_type: str
    encoded: str = field(repr=False)  # the text the inner digest covers

    @property
    def allow_ip(self) -> str:
        """The address the client asks to be let in (`0.0.0.0`: the packet's source)."""
        return self.message.split(",", 1)[0]

    @property
    def access(self) -> tuple[tuple[str, int], ...]:
        """The (protocol, port) pairs an access message asks for; empty for a command."""
        if self.msg_type == COMMAND:
            return ()
        items = self.message.split(",")[1:]
        return tuple((proto, int(port)) for proto, port in (i.split("/") for i in items))

    def replay_key(self) -> str:
        """Content-based replay key: re-encrypting the same plaintext is still the same knock."""
        return hashlib.sha256(b"fwknop-spa\0" + self.encoded.encode("ascii")).hexdigest()


def parse_plaintext(plain: bytes) -> SpaMessage:
    """Check the inner digest, then every field strictly; SpaRejected on the first problem."""
    if not _MIN_ENCODED <= len(plain) <= MAX_PACKET or plain.translate(None, bytes(range(32, 127))):
        raise SpaRejected("fields", "plaintext is not printable ASCII of a sane size")
    text = plain.decode("ascii")
    encoded, colon, digest = text.rpartition(":")
    names = _DIGEST_BY_LEN.get(len(digest)) if colon else None
    if not names:
        raise SpaRejected("digest", "no digest of a known length")
    digest_type = ""
    for name in names:  # every candidate is computed, so timing tells nothing of a match
        if hmac.compare_digest(_digest(name, encoded).encode(), digest.encode()):
            digest_type = digest_type or name
    if not digest_type:
        raise SpaRejected("digest")
    return _parse_fields(encoded, digest_type)


def _parse_fields(encoded: str, digest_type: str) -> SpaMessage:
    fields = encoded.split(":")
    if len(fields) < 6:
        raise SpaRejected("fields", "too few fields")
    rand, user_b64, stamp, version, type_text = fields[:5]
    if len(rand) != RAND_LEN or not _DIGITS.fullmatch(rand):
        raise SpaRejected("fields", "random value is not 16 digits")
    user = _b64_field(user_b64, _MAX_USER_B64, "user")
    if not _valid_user(user):
        raise SpaRejected("fields", "user name has a forbidden character")
    if not 0 < len(stamp) <= _MAX_TIMESTAMP or not _DIGITS.fullmatch(stamp):
        raise SpaRejected("fields", "timestamp is not a number")
    if not 0 < len(version) <= _MAX_VERSION or not _VERSION_RE.fullmatch(version):
        raise SpaRejected("fields", "bad version")
    if not 0 < len(type_text) <= 2 or not _DIGITS.fullmatch(type_text) or int(type_text) > 6:
        raise SpaRejected("fields", "unknown message type")
    msg_type = int(type_text)
    rest = fields[5:]
    nat = msg_type in _NAT_TYPES
    timed = msg_type in _TIMEOUT_TYPES
    required = 1 + nat + timed  # message, then nat, then (optional auth), then timeout
    if len(rest) not in (required, required + 1):
        raise SpaRejected("fields", "wrong number of fields for the message type")
    message = _b64_field(rest[0], _MAX_MESSAGE_B64, "message")
    _check_message(message, msg_type)
    nat_access = None
    if nat:
        nat_access = _b64_field(rest[1], _MAX_MESSAGE_B64, "NAT access")
        _check_nat(nat_access)
    server_auth = None
    if len(rest) == required + 1:
        server_auth = _b64_field(rest[1 + nat], _MAX_MESSAGE_B64, "server auth")
    client_timeout = 0
    if timed:
        last = rest[-1]
        if not 0 < len(last) <= 5 or not _DIGITS.fullmatch(last) or int(last) > 65536:
            raise SpaRejected("fields", "client timeout is not a number")
        client_timeout = int(last)
    return SpaMessage(
        rand=rand,
        user=user,
        timestamp=int(stamp),
        version=version,
        msg_type=msg_type,
        message=message,
        nat_access=nat_access,
        server_auth=server_auth,
        client_timeout=client_timeout,
        digest_type=digest_type,
        encoded=encoded,
    )


def open_packet(data: bytes, keys: SpaKeys) -> SpaMessage:
    """Shape, HMAC, decryption, inner digest and fields, in that order; the parsed message."""
    return parse_plaintext(decrypt(unwrap(data, keys), keys))


# --- a door of fwknop kind --------------------------------------------------------------


@dataclass(frozen=True)
class FwknopDoor:
    """What an access.conf stanza decides with: keys, the ports it may open, its limits."""

    name: str
    keys: SpaKeys
    open_ports: tuple[PortSpec, ...]
    timeout: int = 30  # FW_ACCESS_TIMEOUT
    max_timeout: int = 300  # MAX_FW_TIMEOUT: the most a client's own timeout gets
    max_age: int = 120  # MAX_SPA_PACKET_AGE, either side of the receiver's clock
    require_source_address: bool = False
    require_username: str | None = None
    sources: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # () = any (SOURCE)

    def admits(self, source: str) -> bool:
        """Whether a packet from `source` may be tried at all (access.conf's SOURCE)."""
        if not self.sources:
            return True
        ip = ipaddress.ip_address(normalize_address(source))
        return any(ip in net for net in self.sources)

    def __post_init__(self) -> None:
        if not self.open_ports:
            raise ValueError("an fwknop door needs the ports it may open")
        if self.timeout < 1 or self.max_timeout < 1 or self.max_age < 1:
            raise ValueError("timeouts and the packet age must be at least 1 second")


@dataclass(frozen=True)
class Grant:
    """An authorized request: open `ports` to `address` for `timeout` seconds."""

    door: str
    address: str
    ports: tuple[PortSpec, ...]
    timeout: int
    user: str
    replay_key: str
    replay_until: float  # after this no receiver's age check could accept the packet again


def _within(proto: str, port: int, allowed: Iterable[PortSpec]) -> bool:
    return any(spec.proto == proto and spec.first <= port <= spec.last for spec in allowed)


def authorize(message: SpaMessage, door: FwknopDoor, source: str, now: float) -> Grant:
    """Decide a parsed message for `door`, received from `source` at `now` (Unix seconds).

    Stricter than fwknopd where it is weak: every requested port must lie within the
    door's ports before anything happens, and command and NAT messages are refused.
    """
    try:
        return _authorize(message, door, source, now)
    except SpaRejected as exc:
        exc.door = door.name
        exc.replay_key = message.replay_key()
        exc.replay_until = message.timestamp + door.max_age + 1.0
        raise


def _authorize(message: SpaMessage, door: FwknopDoor, source: str, now: float) -> Grant:
    if not door.admits(source):
        raise SpaRejected("source", "the packet's source is not among the door's sources")
    if abs(now - message.timestamp) > door.max_age:
        raise SpaRejected(
            "age", f"timestamp {message.timestamp} is off by more than {door.max_age} s"
        )
    if message.msg_type not in (ACCESS, CLIENT_TIMEOUT_ACCESS):
        raise SpaRejected("type", f"message type {message.msg_type} is not supported")
    if door.require_username is not None and message.user != door.require_username:
        raise SpaRejected("user", "user name not allowed")
    if message.allow_ip == ANY_ADDRESS:
        if door.require_source_address:
            raise SpaRejected("source", "0.0.0.0 refused: the door requires a source address")
        address = normalize_address(source)
    else:
        address = message.allow_ip
    ports: list[PortSpec] = []
    for proto, port in message.access:
        if not _within(proto, port, door.open_ports):
            raise SpaRejected("port", f"{proto}/{port} is not among the door's ports")
        ports.append(PortSpec(proto, port, port))
    if message.client_timeout > 0:
        timeout = min(message.client_timeout, door.max_timeout)
    else:
        timeout = door.timeout
    until = message.timestamp + door.max_age + 1.0
    return Grant(
        door.name, address, tuple(ports), timeout, message.user, message.replay_key(), until
    )


def decide(data: bytes, door: FwknopDoor, source: str, now: float) -> Grant:
    """Open, verify and authorize one datagram for one door; raise if it is not a grant."""
    return authorize(open_packet(data, door.keys), door, source, now)


def first_grant(data: bytes, doors: Sequence[FwknopDoor], source: str, now: float) -> Grant:
    """fwknopd's stanza loop: the first door (in order) whose keys open the packet decides it.

    A door that does not admit the source costs nothing; one whose HMAC (or, without an
    HMAC, whose decryption or digest) fails is skipped. Raises SpaRejected("no-door") when
    no door's keys open it, or the deciding door's reason.
    """
    if not classify(data):
        raise MalformedDatagram("not shaped like an fwknop SPA packet")
    for door in doors:
        if not door.admits(source):
            continue
        try:
            message = open_packet(data, door.keys)
        except SpaRejected as exc:
            if exc.reason in ("hmac", "decrypt", "digest"):
                continue
            exc.door = door.name
            raise
        return authorize(message, door, source, now)
    raise SpaRejected("no-door")


# --- the client side --------------------------------------------------------------------


def encode_plaintext(
    *,
    allow_ip: str,
    ports: Iterable[PortSpec | str],
    user: str,
    timestamp: int,
    client_timeout: int = 0,
    digest_type: str = "sha256",
    rand: str | None = None,
) -> str:
    """The plaintext (digest included) of an access request, as the fwknop client makes it."""
    if digest_type not in DIGESTS:
        raise ValueError(f"unknown digest {digest_type!r} (use {', '.join(DIGESTS)})")
    if allow_ip != ANY_ADDRESS and not _ipv4(allow_ip):
        raise ValueError("fwknop allows an IPv4 address or 0.0.0.0 (the packet's source)")
    if not _valid_user(user):
        raise ValueError(f"user name {user!r} is not allowed by fwknop")
    items = []
    for port in ports:
        spec = port if isinstance(port, PortSpec) else parse_port_spec(port)
        if spec.first != spec.last:
            raise ValueError(f"fwknop asks for single ports, not {spec}")
        items.append(f"{spec.proto}/{spec.first}")
    if not items:
        raise ValueError("ask for at least one port")
    if not 0 <= client_timeout <= 65535:
        raise ValueError("client timeout out of range")
    rand = rand if rand is not None else "".join(secrets.choice("0123456789") for _ in range(16))
    if len(rand) != RAND_LEN or not _DIGITS.fullmatch(rand):
        raise ValueError("the random value is 16 digits")
    msg_type = CLIENT_TIMEOUT_ACCESS if client_timeout else ACCESS
    fields = [rand, b64(user.encode()), str(timestamp), VERSION, str(msg_type)]
    fields.append(b64(f"{allow_ip},{','.join(items)}".encode()))
    if client_timeout:
        fields.append(str(client_timeout))
    encoded = ":".join(fields)
    return f"{encoded}:{_digest(digest_type, encoded)}"


def wrap(plaintext: str, keys: SpaKeys, salt: bytes | None = None) -> bytes:
    """Encrypt a plaintext and add the HMAC: the datagram's payload."""
    ct = encrypt(plaintext.encode("ascii"), keys, salt)
    mac = _mac(keys, ct) if keys.hmac_key is not None else ""
    data = (ct[len(SALT_PREFIX) :] + mac).encode("ascii")
    if not classify(data):
        raise ValueError("the packet came out too long or too short for fwknop")
    return data


def build_packet(
    keys: SpaKeys,
    *,
    allow_ip: str,
    ports: Iterable[PortSpec | str],
    user: str,
    timestamp: int,
    client_timeout: int = 0,
    digest_type: str = "sha256",
) -> bytes:
    """An SPA packet asking `ports` for `allow_ip` (`0.0.0.0`: the sender's address)."""
    plaintext = encode_plaintext(
        allow_ip=allow_ip,
        ports=ports,
        user=user,
        timestamp=timestamp,
        client_timeout=client_timeout,
        digest_type=digest_type,
    )
    return wrap(plaintext, keys)
