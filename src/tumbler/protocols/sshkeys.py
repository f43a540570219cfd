"""SSH public keys and signatures in their wire encoding (RFC 4251, 4253, 5656, 8332, 8709).

Pure: parsing and encoding need only the standard library; checking a signature needs the
`cryptography` package (the `ssh` extra), imported only when a key is first used, so that
everything else here (and the daemon's v1 and v2 doors) works without it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tumbler.errors import TumblerError

# What the `cryptography` package is for, said once, so every caller reports it the same way.
MISSING_CRYPTOGRAPHY = (
    "checking SSH signatures needs the 'cryptography' package: "
    "install tumbler with the ssh extra (pip install 'tumbler[ssh]')"
)

ED25519 = "ssh-ed25519"
RSA = "ssh-rsa"
ECDSA_CURVES = {
    "ecdsa-sha2-nistp256": ("nistp256", "sha256", 32),
    "ecdsa-sha2-nistp384": ("nistp384", "sha384", 48),
    "ecdsa-sha2-nistp521": ("nistp521", "sha512", 66),
}
# Key types a signed knock accepts, and the signature algorithms each key type may use.
# RSA with SHA-1 (`ssh-rsa` as a signature algorithm) is refused, as SSHSIG requires.
SIGNATURE_ALGORITHMS: dict[str, tuple[str, ...]] = {
    ED25519: (ED25519,),
    RSA: ("rsa-sha2-512", "rsa-sha2-256"),
    **{name: (name,) for name in ECDSA_CURVES},
}
KEY_TYPES = frozenset(SIGNATURE_ALGORITHMS)
# Key types OpenSSH knows that signed knocks do not take (said by name when met in a file).
UNSUPPORTED_KEY_TYPES = frozenset(
    {
        "ssh-dss",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        *(
            f"{t}-cert-v01@openssh.com"
            for t in (
                "ssh-ed25519",
                "ssh-rsa",
                "ssh-dss",
                "ecdsa-sha2-nistp256",
                "ecdsa-sha2-nistp384",
                "ecdsa-sha2-nistp521",
            )
        ),
        "sk-ssh-ed25519-cert-v01@openssh.com",
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    }
)
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 8192
KEY_ID_LEN = 8


class SshKeyError(TumblerError):
    """A public key, private key or signature that is not well formed, or not supported."""


class SshSupportMissing(TumblerError):
    """The optional `cryptography` package is not installed; the message says how to add it."""

    def __init__(self) -> None:
        super().__init__(MISSING_CRYPTOGRAPHY)


class WireError(ValueError):
    """Raised by WireReader; callers turn it into their own one error type."""


class WireReader:
    """A bounds-checked reader of SSH wire data: every read checks length before slicing."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def fixed(self, n: int) -> bytes:
        if n < 0 or self.remaining() < n:
            raise WireError("truncated")
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += n
        return out

    def u32(self) -> int:
        return int.from_bytes(self.fixed(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self.fixed(8), "big")

    def string(self, limit: int = 1 << 16) -> bytes:
        n = self.u32()
        if n > limit:
            raise WireError("string too long")
        return self.fixed(n)

    def name(self) -> str:
        raw = self.string(limit=64)
        if not raw or not all(0x21 <= b <= 0x7E for b in raw):
            raise WireError("not a printable name")
        return raw.decode("ascii")

    def mpint(self, limit: int = 1025) -> int:
        raw = self.string(limit=limit)
        if raw and raw[0] & 0x80:
            raise WireError("negative mpint")
        return int.from_bytes(raw, "big")

    def end(self) -> None:
        if self.remaining():
            raise WireError("trailing bytes")


def ssh_string(data: bytes) -> bytes:
    """Length-prefixed bytes, SSH's `string`."""
    return len(data).to_bytes(4, "big") + data


def ssh_mpint(value: int) -> bytes:
    """A non-negative integer as SSH's `mpint` (two's complement, minimal length)."""
    if value < 0:
        raise ValueError("negative mpint")
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b""
    return ssh_string(raw)


def fingerprint(blob: bytes) -> str:
    """The key's fingerprint as `ssh-keygen -l` prints it: SHA256:base64, no padding."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def key_id(blob: bytes) -> bytes:
    """The first 8 bytes of the SHA-256 fingerprint: finds the key, reveals nothing new."""
    return hashlib.sha256(blob).digest()[:KEY_ID_LEN]


@dataclass(frozen=True)
class Signature:
    """An SSH signature: the algorithm name and the algorithm's own signature bytes."""

    algorithm: str
    blob: bytes

    def wire(self) -> bytes:
        return ssh_string(self.algorithm.encode("ascii")) + ssh_string(self.blob)


def parse_signature(data: bytes) -> Signature:
    """Read an SSH signature encoding (string algorithm, string blob), nothing after it."""
    try:
        reader = WireReader(data)
        algorithm = reader.name()
        blob = reader.string(limit=2048)
        reader.end()
    except WireError as exc:
        raise SshKeyError(f"bad signature encoding: {exc}") from None
    return Signature(algorithm, blob)


@dataclass(frozen=True)
class PublicKey:
    """A supported SSH public key: its type, its wire blob, and the numbers inside it."""

    key_type: str
    blob: bytes
    # ed25519: (raw32,); ecdsa: (curve name, point); rsa: (e, n)
    params: tuple[Any, ...] = field(repr=False)

    @property
    def key_id(self) -> bytes:
        return key_id(self.blob)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)

    @property
    def bits(self) -> int:
        if self.key_type == ED25519:
            return 256
        if self.key_type == RSA:
            return int(self.params[1].bit_length())
        return {"nistp256": 256, "nistp384": 384, "nistp521": 521}[self.params[0]]

    def openssh(self, comment: str = "") -> str:
        """The key as one `authorized_keys` / `.pub` line."""
        text = f"{self.key_type} {base64.b64encode(self.blob).decode('ascii')}"
        return f"{text} {comment}" if comment else text


def parse_public_key(blob: bytes) -> PublicKey:
    """Read a public key blob and check its shape; raise SshKeyError if unusable."""
    try:
        reader = WireReader(blob)
        key_type = reader.name()
        params: tuple[Any, ...]
        if key_type == ED25519:
            raw = reader.string(limit=32)
            if len(raw) != 32:
                raise SshKeyError("ed25519 key is not 32 bytes")
            params = (raw,)
        elif key_type == RSA:
            e = reader.mpint(limit=16)
            n = reader.mpint(limit=RSA_MAX_BITS // 8 + 1)
            if e < 3 or e % 2 == 0:
                raise SshKeyError("RSA public exponent is not usable")
            if not RSA_MIN_BITS <= n.bit_length() <= RSA_MAX_BITS:
                raise SshKeyError(
                    f"RSA key of {n.bit_length()} bits (signed knocks take "
                    f"{RSA_MIN_BITS} to {RSA_MAX_BITS})"
                )
            params = (e, n)
        elif key_type in ECDSA_CURVES:
            curve, _, size = ECDSA_CURVES[key_type]
            if reader.name() != curve:
                raise SshKeyError("ECDSA curve name does not match the key type")
            point = reader.string(limit=1 + 2 * size)
            if len(point) != 1 + 2 * size or point[0] != 4:
                raise SshKeyError("ECDSA point is not uncompressed")
            params = (curve, point)
        elif key_type in UNSUPPORTED_KEY_TYPES:
            raise SshKeyError(f"key type {key_type} is not supported for signed knocks")
        else:
            raise SshKeyError(f"unknown key type {key_type}")
        reader.end()
    except WireError as exc:
        raise SshKeyError(f"bad public key encoding: {exc}") from None
    return PublicKey(key_type, bytes(blob), params)


def parse_public_key_line(line: str) -> tuple[PublicKey, str]:
    """Read a `.pub` style line (`type base64 [comment]`); return the key and its comment."""
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise SshKeyError("not a public key line")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise SshKeyError("key is not base64") from None
    key = parse_public_key(blob)
    if key.key_type != parts[0]:
        raise SshKeyError(f"key type {parts[0]} does not match the key ({key.key_type})")
    return key, parts[2].strip() if len(parts) == 3 else ""


def signature_plausible(key: PublicKey, sig: Signature) -> bool:
    """A check that costs no cryptography: the algorithm fits the key and the size fits."""
    if sig.algorithm not in SIGNATURE_ALGORITHMS[key.key_type]:
        return False
    if key.key_type == ED25519:
        return len(sig.blob) == 64
    if key.key_type == RSA:
        return 0 < len(sig.blob) <= (key.params[1].bit_length() + 7) // 8
    size = ECDSA_CURVES[key.key_type][2]
    return len(sig.blob) <= 2 * (4 + size + 1)


Verify = Callable[[Signature, bytes], bool]


def load_verifier(key: PublicKey) -> Verify:
    """A function that checks signatures by `key` over given bytes; needs `cryptography`.

    Made once per key (the daemon keeps it beside the key), so the per-knock cost is the
    signature check alone.
    """
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
    except ImportError:
        raise SshSupportMissing() from None

    if key.key_type == ED25519:
        ed_key = ed25519.Ed25519PublicKey.from_public_bytes(key.params[0])

        def verify_ed25519(sig: Signature, data: bytes) -> bool:
            if not signature_plausible(key, sig):
                return False
            try:
                ed_key.verify(sig.blob, data)
            except InvalidSignature:
                return False
            return True

        return verify_ed25519

    if key.key_type == RSA:
        rsa_key = rsa.RSAPublicNumbers(key.params[0], key.params[1]).public_key()
        modlen = (key.params[1].bit_length() + 7) // 8
        rsa_hashes = {"rsa-sha2-256": hashes.SHA256, "rsa-sha2-512": hashes.SHA512}

        def verify_rsa(sig: Signature, data: bytes) -> bool:
            if not signature_plausible(key, sig):
                return False
            # OpenSSH accepts a signature shorter than the modulus by padding it with zeros.
            blob = sig.blob.rjust(modlen, b"\x00")
            try:
                rsa_key.verify(blob, data, padding.PKCS1v15(), rsa_hashes[sig.algorithm]())
            except InvalidSignature:
                return False
            return True

        return verify_rsa

    curve_name, hash_name, _ = ECDSA_CURVES[key.key_type]
    curve: ec.EllipticCurve = {
        "nistp256": ec.SECP256R1(),
        "nistp384": ec.SECP384R1(),
        "nistp521": ec.SECP521R1(),
    }[curve_name]
    try:
        ec_key = ec.EllipticCurvePublicKey.from_encoded_point(curve, key.params[1])
    except ValueError:
        raise SshKeyError("ECDSA point is not on the curve") from None
    ec_hash: hashes.HashAlgorithm = {
        "sha256": hashes.SHA256(),
        "sha384": hashes.SHA384(),
        "sha512": hashes.SHA512(),
    }[hash_name]

    def verify_ecdsa(sig: Signature, data: bytes) -> bool:
        if not signature_plausible(key, sig):
            return False
        try:
            reader = WireReader(sig.blob)
            r, s = reader.mpint(limit=67), reader.mpint(limit=67)
            reader.end()
        except WireError:
            return False
        if not r or not s:
            return False
        der = utils.encode_dss_signature(r, s)
        try:
            ec_key.verify(der, data, ec.ECDSA(ec_hash))
        except InvalidSignature:
            return False
        return True

    return verify_ecdsa
