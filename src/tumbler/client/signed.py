"""Client side of signed knocks: `tumbler+ssh://` URLs, choosing the key, sending the datagram.

The key that signs is, in order: the key file given (through the agent when the agent holds
it, else read from the file, asking for its passphrase), else every key the agent holds
(a server ignores key ids it does not know, at no cost, as ssh tries each key in turn),
else the first of the usual key files in ~/.ssh.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tumbler.addresses import normalize_address
from tumbler.client import knock
from tumbler.client.sshagent import (
    AgentError,
    Signer,
    agent_signers,
    ask_passphrase,
    sign_knock,
    signer_for_key_file,
)
from tumbler.client.sshurl import SCHEME, URL_SHAPE, SshKnockURL, is_ssh_url, parse_ssh_url
from tumbler.protocols import sshsig

__all__ = [
    "SCHEME",
    "URL_SHAPE",
    "SignedKnockResult",
    "SshKnockURL",
    "find_signers",
    "is_ssh_url",
    "parse_ssh_url",
    "send_signed_knocks",
]

DEFAULT_KEY_FILES = ("id_ed25519", "id_ecdsa", "id_rsa")
# More keys than this in an agent is unusual; knocking with them all would be a flood.
MAX_AGENT_KEYS = 8


def find_signers(
    key_file: str | None = None,
    *,
    agent_path: str | None = None,
    home: Path | None = None,
    passphrase: Callable[[Path], bytes] = ask_passphrase,
) -> list[Signer]:
    """The keys to knock with, as the module docstring orders them."""
    if key_file is not None:
        return [signer_for_key_file(Path(key_file).expanduser(), agent_path, passphrase)]
    if agent_path or os.environ.get("SSH_AUTH_SOCK"):
        try:
            held: list[Signer] = list(agent_signers(agent_path)[:MAX_AGENT_KEYS])
        except AgentError:
            held = []
        if held:
            return held
    ssh_dir = (home if home is not None else Path.home()) / ".ssh"
    for name in DEFAULT_KEY_FILES:
        path = ssh_dir / name
        if path.exists():
            return [signer_for_key_file(path, agent_path, passphrase)]
    raise knock.KnockUsageError(
        "no SSH key to sign with: add one to ssh-agent (ssh-add), or give --ssh-key FILE"
    )


@dataclass(frozen=True)
class SignedKnockResult:
    """One signed knock as sent (or built): enough to explain it, nothing secret."""

    host: str
    target: str
    port: int
    address: str
    address_given: bool
    when: int
    realm: str
    comment: str
    fingerprint: str
    datagram: bytes
    sent: bool


def send_signed_knocks(
    host: str,
    port: int,
    signers: Sequence[Signer],
    *,
    realm: str = "",
    source: str | None = None,
    family: int = 0,
    when: int | None = None,
    send: bool = True,
) -> list[SignedKnockResult]:
    """One signed datagram per signer to `host`, from the address the kernel picks or `source`."""
    address = knock.normalize_source(source) if source is not None else None
    results: list[SignedKnockResult] = []
    sock, sockaddr = knock._connected_udp(host, port, family)
    with sock:
        if address is None:
            address = normalize_address(sock.getsockname()[0])
        for signer in signers:
            moment = int(time.time()) if when is None else when
            try:
                datagram = sign_knock(signer, address, realm, moment, os.urandom(sshsig.NONCE_LEN))
            except ValueError as exc:
                raise knock.KnockUsageError(str(exc)) from None
            if send:
                try:
                    sock.send(datagram)
                except OSError as exc:
                    raise knock.KnockError(
                        f"cannot send to {host} port {port}: {exc.strerror}"
                    ) from None
            results.append(
                SignedKnockResult(
                    host=host,
                    target=normalize_address(sockaddr[0]),
                    port=port,
                    address=address,
                    address_given=source is not None,
                    when=moment,
                    realm=realm,
                    comment=signer.comment,
                    fingerprint=signer.key.fingerprint,
                    datagram=datagram,
                    sent=send,
                )
            )
    return results
