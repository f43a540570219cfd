"""Signing knocks through a real ssh-agent, checked by our verifier and by ssh-keygen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sshkeys import KEY_SPECS, SshAgent, keygen_verify, make_key, need
from tumbler.client.sshagent import (
    AgentClient,
    AgentError,
    AgentSigner,
    FileSigner,
    agent_signers,
    sign_knock,
    signer_for_key_file,
)
from tumbler.protocols import sshsig
from tumbler.protocols.sshkeys import load_verifier, parse_public_key_line

WHEN = 1_764_547_200
NONCE = b"\x5a" * 16
ADDRESS = "198.51.100.4"
REALM = "door-a"
PASSPHRASE = "tumbler test passphrase"


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    need("ssh-keygen")
    made = {name: make_key(tmp_path, name, kind, bits) for name, kind, bits in KEY_SPECS}
    made["locked"] = make_key(tmp_path, "locked", "ed25519", passphrase=PASSPHRASE)
    return made


@pytest.fixture
def agent(tmp_path: Path, keys: dict[str, Path]) -> Iterator[SshAgent]:
    need("ssh-agent", "ssh-add")
    running = SshAgent(tmp_path).start()
    try:
        for name in [spec[0] for spec in KEY_SPECS]:
            running.add(keys[name])
        running.add(keys["locked"], PASSPHRASE)
        yield running
    finally:
        running.stop()


def public_line(path: Path) -> str:
    return path.with_name(path.name + ".pub").read_text().strip()


def test_agent_lists_the_keys_it_was_given(agent, keys):
    with AgentClient(str(agent.socket)) as client:
        identities = client.identities()
    expected = [parse_public_key_line(public_line(keys[n])) for n, _, _ in KEY_SPECS]
    expected.append(parse_public_key_line(public_line(keys["locked"])))
    assert [(i.key, i.comment) for i in identities] == expected


@pytest.mark.parametrize("name", [*(spec[0] for spec in KEY_SPECS), "locked"])
def test_agent_signed_knock_is_accepted_and_ssh_keygen_agrees(agent, keys, name, tmp_path):
    signer = next(s for s in agent_signers(str(agent.socket)) if s.comment == f"{name}@test")
    datagram = sign_knock(signer, ADDRESS, REALM, WHEN, NONCE)
    knock = sshsig.parse_datagram(datagram)
    if signer.key.key_type == "ssh-rsa":
        assert knock.signature.algorithm == "rsa-sha2-512"  # the agent was asked for SHA-512
    verify = load_verifier(signer.key)
    assert sshsig.verify_knock(signer.key, verify, knock, ADDRESS, REALM)
    assert not sshsig.verify_knock(signer.key, verify, knock, "198.51.100.5", REALM)
    assert not sshsig.verify_knock(signer.key, verify, knock, ADDRESS, "door-b")

    message = sshsig.knock_message(knock.key_id, WHEN, NONCE, ADDRESS, REALM)
    armoured = sshsig.armor(sshsig.sshsig_blob(signer.key, knock.signature))
    checked = keygen_verify(tmp_path, public_line(keys[name]), armoured, message)
    assert checked.returncode == 0, checked.stderr
    assert 'Good "tumbler" signature for knocker' in checked.stdout


def test_a_key_removed_from_the_agent_no_longer_signs(agent, keys):
    key, comment = parse_public_key_line(public_line(keys["id_ed25519"]))
    signer = AgentSigner(key, comment, str(agent.socket))
    sign_knock(signer, ADDRESS, "", WHEN, NONCE)
    agent.remove(keys["id_ed25519"])
    with pytest.raises(AgentError, match="refused to sign"):
        sign_knock(signer, ADDRESS, "", WHEN, NONCE)


def test_key_file_signs_through_the_agent_when_the_agent_holds_it(agent, keys):
    def no_prompt(path: Path) -> bytes:
        raise AssertionError("asked for a passphrase although the agent holds the key")

    signer = signer_for_key_file(keys["locked"], str(agent.socket), no_prompt)
    assert isinstance(signer, AgentSigner)
    assert signer.comment == "locked@test"


def test_key_file_not_in_the_agent_asks_for_its_passphrase(agent, keys):
    agent.remove(keys["locked"])
    asked: list[Path] = []

    def prompt(path: Path) -> bytes:
        asked.append(path)
        return PASSPHRASE.encode()

    signer = signer_for_key_file(keys["locked"], str(agent.socket), prompt)
    assert isinstance(signer, FileSigner)
    assert asked == [keys["locked"]]
    knock = sshsig.parse_datagram(sign_knock(signer, ADDRESS, REALM, WHEN, NONCE))
    assert sshsig.verify_knock(signer.key, load_verifier(signer.key), knock, ADDRESS, REALM)


def test_no_agent_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(AgentError, match="SSH_AUTH_SOCK is not set"):
        AgentClient()
    with pytest.raises(AgentError, match="cannot reach ssh-agent"):
        AgentClient(str(tmp_path / "nothing.sock"))


def test_signed_knocks_reach_a_udp_socket_from_every_agent_key(agent, keys):
    import socket

    from tumbler.client.signed import find_signers, send_signed_knocks

    signers = find_signers(agent_path=str(agent.socket))
    assert [s.comment for s in signers] == [
        *(f"{n}@test" for n, _, _ in KEY_SPECS),
        "locked@test",
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        sent = send_signed_knocks("127.0.0.1", port, signers, realm=REALM)
        for result, signer in zip(sent, signers, strict=True):
            data, source = server.recvfrom(2048)
            assert data == result.datagram
            assert result.address == source[0] == "127.0.0.1"
            assert result.fingerprint == signer.key.fingerprint
            knock = sshsig.parse_datagram(data)
            verify = load_verifier(signer.key)
            assert sshsig.verify_knock(signer.key, verify, knock, source[0], REALM)


def test_without_an_agent_the_usual_key_file_signs(keys, tmp_path, monkeypatch):
    from tumbler.client.signed import find_signers

    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    for suffix in ("", ".pub"):
        source = keys["locked"].with_name("locked" + suffix)
        (home / ".ssh" / ("id_ecdsa" + suffix)).write_bytes(source.read_bytes())
    asked: list[Path] = []

    def prompt(path: Path) -> bytes:
        asked.append(path)
        return PASSPHRASE.encode()

    [signer] = find_signers(home=home, passphrase=prompt)
    assert isinstance(signer, FileSigner)
    assert asked == [home / ".ssh" / "id_ecdsa"]
    with pytest.raises(Exception, match="no SSH key to sign with"):
        find_signers(home=tmp_path / "nobody")
