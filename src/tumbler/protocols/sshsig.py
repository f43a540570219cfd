"""The signed knock: one UDP datagram signed by the user's SSH key, in OpenSSH's SSHSIG form.

Pure: no sockets, files, clock reads or subprocesses; time and the nonce are arguments.
The layout, the signed message and the reasoning are in docs/SIGNED-KNOCKS.md.

    magic  4   F5 'T' 'K' 'S'
    key id 8   first 8 bytes of SHA-256(public key blob), as in its SHA256: fingerprint
    time   8   u64, seconds since the epoch, UTC
    nonce  16  random
    sig    ..  SSH signature encoding: string algorithm, string signature (to the end)

The key signs OpenSSH's SSHSIG data (namespace `tumbler`, hash sha512) over the message
below, so `ssh-keygen -Y verify -n tumbler` can check any accepted knock.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from tumbler.addresses import Address, normalize_address
from tumbler.errors import MalformedDatagram
from tumbler.protocols.sshkeys import (
    KEY_ID_LEN,
    PublicKey,
    Signature,
    SshKeyError,
    Verify,
    WireError,
    WireReader,
    parse_signature,
    signature_plausible,
    ssh_string,
)

# 0xF5 never starts UTF-8 text, so no text knock (v1's `TUMBLER1:`, fwknop's base64) can
# begin with it, and it differs from v2's first byte (0x89); `TKS` reads as "tumbler knock,
# signed" in a hex dump.
MAGIC = b"\xf5TKS"
NAMESPACE = "tumbler"
HASH_ALGORITHM = "sha512"
NONCE_LEN = 16
HEADER_LEN = len(MAGIC) + KEY_ID_LEN + 8 + NONCE_LEN
# The smallest signature encoding: two strings, the name at least "ssh-ed25519".
MIN_DATAGRAM = HEADER_LEN + 4 + len("ssh-ed25519") + 4 + 64
# An IPv6 datagram that needs no fragmentation on any link (1280 - 40 - 8); an RSA 8192
# signature (1024 bytes) still fits.
MAX_DATAGRAM = 1232
REALM_MAX = 255
SSHSIG_MAGIC = b"SSHSIG"
SSHSIG_VERSION = 1
_ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_ARMOR_END = "-----END SSH SIGNATURE-----"


@dataclass(frozen=True)
class SignedKnock:
    """A parsed signed knock; nothing in it has been checked but its shape."""

    key_id: bytes
    time: int
    nonce: bytes
    signature: Signature

    @property
    def replay_token(self) -> bytes:
        """What the replay cache claims: key id, time and nonce name one knock."""
        return self.key_id + self.time.to_bytes(8, "big") + self.nonce


def claim_token(knock: SignedKnock) -> str:
    """The replay cache's key for a signed knock (text, as the stores keep it)."""
    return "ssh:" + knock.replay_token.hex()


def looks_signed(data: bytes) -> bool:
    """Whether a datagram is of this kind, by its first bytes alone."""
    return data[: len(MAGIC)] == MAGIC


def parse_datagram(data: bytes) -> SignedKnock:
    """Read a signed knock, or raise MalformedDatagram; size and shape before anything else."""
    if not MIN_DATAGRAM <= len(data) <= MAX_DATAGRAM or not looks_signed(data):
        raise MalformedDatagram("wrong size or magic for a signed knock")
    reader = WireReader(data)
    reader.fixed(len(MAGIC))
    kid = reader.fixed(KEY_ID_LEN)
    when = reader.u64()
    nonce = reader.fixed(NONCE_LEN)
    try:
        signature = parse_signature(reader.fixed(reader.remaining()))
    except SshKeyError:
        raise MalformedDatagram("signature is not an SSH signature encoding") from None
    return SignedKnock(kid, when, nonce, signature)


def encode_datagram(kid: bytes, when: int, nonce: bytes, signature: Signature) -> bytes:
    """The datagram a client sends."""
    if len(kid) != KEY_ID_LEN or len(nonce) != NONCE_LEN:
        raise ValueError("key id must be 8 bytes and nonce 16")
    if not 0 <= when < 1 << 64:
        raise ValueError("time out of range")
    data = MAGIC + kid + when.to_bytes(8, "big") + nonce + signature.wire()
    if not MIN_DATAGRAM <= len(data) <= MAX_DATAGRAM:
        raise ValueError("signature too short or too long for a signed knock")
    return data


def knock_message(kid: bytes, when: int, nonce: bytes, address: Address, realm: str = "") -> bytes:
    """The message the knock signs: the header fields, the claimed address and the realm.

    The address is normalised as v1 does it; address and realm are length-prefixed so that
    no two different (address, realm) pairs give the same bytes.
    """
    realm_bytes = realm.encode("utf-8")
    if len(realm_bytes) > REALM_MAX:
        raise ValueError(f"realm longer than {REALM_MAX} bytes")
    return (
        MAGIC
        + kid
        + when.to_bytes(8, "big")
        + nonce
        + ssh_string(normalize_address(address).encode("ascii"))
        + ssh_string(realm_bytes)
    )


def signed_data(message: bytes) -> bytes:
    """What the SSH key actually signs: SSHSIG's to-be-signed data for namespace `tumbler`."""
    return (
        SSHSIG_MAGIC
        + ssh_string(NAMESPACE.encode("ascii"))
        + ssh_string(b"")
        + ssh_string(HASH_ALGORITHM.encode("ascii"))
        + ssh_string(hashlib.sha512(message).digest())
    )


def knock_signed_data(
    kid: bytes, when: int, nonce: bytes, address: Address, realm: str = ""
) -> bytes:
    """The bytes a signer (agent or key file) signs for one knock."""
    return signed_data(knock_message(kid, when, nonce, address, realm))


def verify_knock(
    key: PublicKey, verify: Verify, knock: SignedKnock, address: Address, realm: str = ""
) -> bool:
    """Whether `knock` is signed by `key` for `address` and `realm`; time is not judged here.

    A signature whose algorithm or size cannot fit the key is refused before any
    cryptography runs.
    """
    if knock.key_id != key.key_id or not signature_plausible(key, knock.signature):
        return False
    try:
        data = knock_signed_data(knock.key_id, knock.time, knock.nonce, address, realm)
    except ValueError:
        return False
    return verify(knock.signature, data)


def sshsig_blob(key: PublicKey, signature: Signature) -> bytes:
    """The whole SSHSIG structure for a knock, as `ssh-keygen -Y sign` writes it."""
    return (
        SSHSIG_MAGIC
        + SSHSIG_VERSION.to_bytes(4, "big")
        + ssh_string(key.blob)
        + ssh_string(NAMESPACE.encode("ascii"))
        + ssh_string(b"")
        + ssh_string(HASH_ALGORITHM.encode("ascii"))
        + ssh_string(signature.wire())
    )


def armor(blob: bytes) -> str:
    """An SSHSIG blob in the armoured text form `ssh-keygen -Y verify -s FILE` reads."""
    text = base64.b64encode(blob).decode("ascii")
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return "\n".join([_ARMOR_BEGIN, *lines, _ARMOR_END]) + "\n"


@dataclass(frozen=True)
class Sshsig:
    """A parsed SSHSIG structure (from `ssh-keygen -Y sign`, or made by sshsig_blob)."""

    public_key: bytes
    namespace: str
    hash_algorithm: str
    signature: Signature


def parse_armored(text: str) -> Sshsig:
    """Read an armoured SSHSIG; raise SshKeyError if it is not one."""
    body = text.strip()
    if not body.startswith(_ARMOR_BEGIN) or not body.endswith(_ARMOR_END):
        raise SshKeyError("not an armoured SSH signature")
    inner = "".join(body[len(_ARMOR_BEGIN) : -len(_ARMOR_END)].split())
    try:
        blob = base64.b64decode(inner, validate=True)
        reader = WireReader(blob)
        if reader.fixed(6) != SSHSIG_MAGIC or reader.u32() != SSHSIG_VERSION:
            raise SshKeyError("not an SSHSIG version 1 signature")
        public_key = reader.string()
        namespace = reader.string(limit=256).decode("utf-8")
        reader.string()  # reserved
        hash_algorithm = reader.string(limit=64).decode("ascii")
        signature = parse_signature(reader.string())
        reader.end()
    except (ValueError, WireError) as exc:
        raise SshKeyError(f"bad SSHSIG: {exc}") from None
    return Sshsig(public_key, namespace, hash_algorithm, signature)
