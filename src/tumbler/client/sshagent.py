"""Signing knocks with the user's SSH key: through ssh-agent, or from a private key file.

The agent protocol (draft-miller-ssh-agent) is spoken over the Unix socket named by
SSH_AUTH_SOCK, so a passphrase-protected or hardware-held key signs without tumbler ever
seeing it. A key file is read with `cryptography` (and `bcrypt` when it is encrypted); its
passphrase is asked on the terminal without echo.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tumbler.addresses import Address
from tumbler.errors import TumblerError
from tumbler.protocols import sshsig
from tumbler.protocols.sshkeys import (
    ECDSA_CURVES,
    ED25519,
    RSA,
    PublicKey,
    Signature,
    SshKeyError,
    SshSupportMissing,
    WireError,
    WireReader,
    parse_public_key,
    parse_public_key_line,
    parse_signature,
    ssh_mpint,
    ssh_string,
)

SSH_AGENT_FAILURE = 5
SSH_AGENTC_REQUEST_IDENTITIES = 11
SSH_AGENT_IDENTITIES_ANSWER = 12
SSH_AGENTC_SIGN_REQUEST = 13
SSH_AGENT_SIGN_RESPONSE = 14
SSH_AGENT_RSA_SHA2_256 = 2
SSH_AGENT_RSA_SHA2_512 = 4
# An agent answer longer than this is not an agent (OpenSSH caps its messages at 256 KiB).
MAX_AGENT_MESSAGE = 256 * 1024
MISSING_BCRYPT = (
    "encrypted SSH key files need the 'bcrypt' package: "
    "install tumbler with the ssh extra (pip install 'tumbler[ssh]'), or load the key into "
    "ssh-agent with ssh-add"
)


class AgentError(TumblerError):
    """The agent could not be reached, refused, or answered something that is not an answer."""


class Signer(Protocol):
    """Something that signs with one SSH key: the agent or a loaded key file."""

    key: PublicKey
    comment: str

    def sign(self, data: bytes) -> Signature: ...


@dataclass(frozen=True)
class Identity:
    """A key the agent holds; `key` is None for a type signed knocks do not take."""

    blob: bytes
    comment: str
    key: PublicKey | None


class AgentClient:
    """One connection to ssh-agent; use as a context manager."""

    def __init__(self, path: str | None = None, timeout: float = 60.0) -> None:
        path = path if path is not None else os.environ.get("SSH_AUTH_SOCK", "")
        if not path:
            raise AgentError("no ssh-agent: SSH_AUTH_SOCK is not set")
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Long enough for an agent that asks the user to confirm (ssh-add -c).
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise AgentError(f"cannot reach ssh-agent at {path}: {exc.strerror or exc}") from None

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def _request(self, message: bytes) -> tuple[int, WireReader]:
        try:
            self._sock.sendall(len(message).to_bytes(4, "big") + message)
            length = int.from_bytes(self._read(4), "big")
            if not 1 <= length <= MAX_AGENT_MESSAGE:
                raise AgentError("ssh-agent sent a message of impossible length")
            body = self._read(length)
        except OSError as exc:
            raise AgentError(f"ssh-agent at {self.path}: {exc.strerror or exc}") from None
        return body[0], WireReader(body[1:])

    def _read(self, n: int) -> bytes:
        chunks: list[bytes] = []
        while n:
            chunk = self._sock.recv(n)
            if not chunk:
                raise AgentError("ssh-agent closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def identities(self) -> list[Identity]:
        """The keys the agent holds, in its order."""
        kind, reader = self._request(bytes([SSH_AGENTC_REQUEST_IDENTITIES]))
        if kind != SSH_AGENT_IDENTITIES_ANSWER:
            raise AgentError("ssh-agent refused to list its keys")
        out: list[Identity] = []
        try:
            for _ in range(reader.u32()):
                blob = reader.string()
                comment = reader.string().decode("utf-8", "replace")
                try:
                    key: PublicKey | None = parse_public_key(blob)
                except SshKeyError:
                    key = None
                out.append(Identity(blob, comment, key))
            reader.end()
        except WireError:
            raise AgentError("ssh-agent sent a malformed key list") from None
        return out

    def sign(self, blob: bytes, data: bytes, flags: int = 0) -> Signature:
        """Ask the agent to sign `data` with the key `blob`."""
        request = (
            bytes([SSH_AGENTC_SIGN_REQUEST])
            + ssh_string(blob)
            + ssh_string(data)
            + flags.to_bytes(4, "big")
        )
        kind, reader = self._request(request)
        if kind == SSH_AGENT_FAILURE:
            raise AgentError("ssh-agent refused to sign (key gone, or confirmation denied)")
        if kind != SSH_AGENT_SIGN_RESPONSE:
            raise AgentError("ssh-agent sent an unexpected answer to a sign request")
        try:
            encoded = reader.string()
            reader.end()
            return parse_signature(encoded)
        except (WireError, SshKeyError):
            raise AgentError("ssh-agent sent a malformed signature") from None


def agent_flags(key: PublicKey) -> int:
    """RSA keys sign with rsa-sha2-512 (never SHA-1); other types take no flags."""
    return SSH_AGENT_RSA_SHA2_512 if key.key_type == RSA else 0


@dataclass
class AgentSigner:
    """Signs with one key held by ssh-agent; connects for each signature."""

    key: PublicKey
    comment: str
    path: str | None = None

    def sign(self, data: bytes) -> Signature:
        with AgentClient(self.path) as agent:
            return agent.sign(self.key.blob, data, agent_flags(self.key))


def agent_signers(path: str | None = None) -> list[AgentSigner]:
    """A signer for each key in the agent that signed knocks take, in the agent's order."""
    with AgentClient(path) as agent:
        return [
            AgentSigner(i.key, i.comment, path) for i in agent.identities() if i.key is not None
        ]


class FileSigner:
    """Signs with a private key loaded from an OpenSSH key file."""

    def __init__(self, private_key: Any, comment: str) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        if not isinstance(
            private_key,
            ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        ):
            raise SshKeyError("key type not supported for signed knocks")
        line = private_key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
        self.key, _ = parse_public_key_line(line.decode("ascii"))
        self.comment = comment
        self._private = private_key

    def sign(self, data: bytes) -> Signature:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

        private = self._private
        if isinstance(private, ed25519.Ed25519PrivateKey):
            return Signature(ED25519, private.sign(data))
        if isinstance(private, rsa.RSAPrivateKey):
            raw = private.sign(data, padding.PKCS1v15(), hashes.SHA512())
            return Signature("rsa-sha2-512", raw)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        kind = self.key.key_type
        digest: hashes.HashAlgorithm = {
            "sha256": hashes.SHA256(),
            "sha384": hashes.SHA384(),
            "sha512": hashes.SHA512(),
        }[ECDSA_CURVES[kind][1]]
        r, s = utils.decode_dss_signature(private.sign(data, ec.ECDSA(digest)))
        return Signature(kind, ssh_mpint(r) + ssh_mpint(s))


def ask_passphrase(path: Path) -> bytes:
    """Ask on the terminal, without echo, as ssh does."""
    return getpass.getpass(f"Enter passphrase for key '{path}': ").encode("utf-8")


def load_key_file(
    path: Path, passphrase: Callable[[Path], bytes] = ask_passphrase, attempts: int = 3
) -> FileSigner:
    """Load an OpenSSH private key, asking for its passphrase only if it has one."""
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.serialization import load_ssh_private_key
    except ImportError:
        raise SshSupportMissing() from None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SshKeyError(f"{path}: {exc.strerror or exc}") from None
    comment = _comment_of(path)

    def load(password: bytes | None) -> FileSigner:
        try:
            return FileSigner(load_ssh_private_key(data, password), comment)
        except UnsupportedAlgorithm as exc:
            missing = "bcrypt" in str(exc)
            raise SshKeyError(MISSING_BCRYPT if missing else f"{path}: {exc}") from None

    try:
        return load(None)
    except TypeError:
        pass  # encrypted: it needs its passphrase
    except ValueError:
        raise SshKeyError(f"{path}: not an OpenSSH private key") from None
    for _ in range(attempts):
        try:
            return load(passphrase(path))
        except ValueError:
            continue  # a wrong passphrase decrypts to bytes that fail the check
    raise SshKeyError(f"{path}: wrong passphrase")


def _comment_of(path: Path) -> str:
    """The comment of the key's `.pub` file when there is one, else the file name."""
    try:
        _, comment = parse_public_key_line(path.with_name(path.name + ".pub").read_text())
    except (OSError, SshKeyError, UnicodeDecodeError):
        return str(path)
    return comment or str(path)


def signer_for_key_file(
    path: Path,
    agent_path: str | None = None,
    passphrase: Callable[[Path], bytes] = ask_passphrase,
) -> Signer:
    """The agent when it holds this key (read from `path`.pub), else the file itself."""
    try:
        key, _ = parse_public_key_line(path.with_name(path.name + ".pub").read_text())
    except (OSError, SshKeyError, UnicodeDecodeError):
        key = None
    if key is not None and (agent_path or os.environ.get("SSH_AUTH_SOCK")):
        try:
            for signer in agent_signers(agent_path):
                if signer.key.blob == key.blob:
                    return signer
        except AgentError:
            pass
    return load_key_file(path, passphrase)


def sign_knock(signer: Signer, address: Address, realm: str, when: int, nonce: bytes) -> bytes:
    """The signed knock datagram for `address` at `when` (epoch seconds)."""
    kid = signer.key.key_id
    signature = signer.sign(sshsig.knock_signed_data(kid, when, nonce, address, realm))
    return sshsig.encode_datagram(kid, when, nonce, signature)
