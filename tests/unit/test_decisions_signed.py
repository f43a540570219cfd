"""The signed-knock decision: lookup by key id, cost order, rate limit, window, options."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tumbler.client.sshagent import FileSigner, sign_knock
from tumbler.config.daemon import MAX_WINDOW_SECONDS
from tumbler.decisions import signed as signed_verifier
from tumbler.decisions.signed import Refusal, SignedMatch, SignedRefusal, SignedVerifier
from tumbler.protocols import sshsig
from tumbler.protocols.authorized_keys import parse_authorized_keys
from tumbler.protocols.sshkeys import Signature

NOW = 1_764_547_200
ADDRESS = "192.0.2.7"


@pytest.fixture
def counted(monkeypatch):
    """Count the signature verifications the verifier runs."""
    calls: list[bytes] = []
    real = signed_verifier.load_verifier

    def load(key):
        verify = real(key)

        def counting(sig, data):
            calls.append(key.key_id)
            return verify(sig, data)

        return counting

    monkeypatch.setattr(signed_verifier, "load_verifier", load)
    return calls


def signer(private=None, comment="alice@laptop"):
    return FileSigner(private or ed25519.Ed25519PrivateKey.generate(), comment)


def trust(*signers, options=""):
    text = "\n".join(f"{options} {s.key.openssh(s.comment)}".strip() for s in signers)
    return parse_authorized_keys(text, "ssh-users").keys


def knock(s, when=NOW, address=ADDRESS, realm=""):
    return sshsig.parse_datagram(sign_knock(s, address, realm, when, os.urandom(16)))


def test_accepts_a_fresh_knock_and_names_key_and_doors(counted):
    alice, bob = signer(), signer(ec.generate_private_key(ec.SECP256R1()), "bob")
    verifier = SignedVerifier({"ssh": trust(alice, bob), "web": trust(bob)})
    result = verifier.match(knock(bob, NOW - 5), ADDRESS, NOW)
    assert isinstance(result, SignedMatch)
    assert result.doors == ("ssh", "web")
    assert result.key.comment == "bob"
    assert result.offset == -5
    assert result.expires == NOW - 5 + MAX_WINDOW_SECONDS + 1
    assert result.token.startswith("ssh:")
    assert counted == [bob.key.key_id]
    only_ssh = verifier.match(knock(alice), ADDRESS, NOW)
    assert isinstance(only_ssh, SignedMatch) and only_ssh.doors == ("ssh",)


def test_unknown_key_costs_no_cryptography(counted):
    verifier = SignedVerifier({"ssh": trust(signer())})
    result = verifier.match(knock(signer()), ADDRESS, NOW)
    assert result == SignedRefusal(Refusal.UNKNOWN_KEY)
    assert counted == []


def test_implausible_signature_and_key_options_cost_no_cryptography(counted):
    alice = signer()
    verifier = SignedVerifier({"ssh": trust(alice, options='from="10.0.0.0/8"')})
    good = knock(alice, address="10.1.1.1")
    short = sshsig.SignedKnock(good.key_id, NOW, good.nonce, Signature("ssh-ed25519", b"x"))
    assert verifier.match(short, "10.1.1.1", NOW).reason is Refusal.IMPLAUSIBLE  # type: ignore[union-attr]
    elsewhere = verifier.match(knock(alice), ADDRESS, NOW)
    assert isinstance(elsewhere, SignedRefusal) and elsewhere.reason is Refusal.KEY_OPTIONS
    assert counted == []
    assert isinstance(verifier.match(good, "10.1.1.1", NOW), SignedMatch)


@pytest.mark.parametrize(
    ("address", "realm", "when"),
    [("192.0.2.8", "", NOW), (ADDRESS, "other", NOW)],
)
def test_another_address_or_realm_is_a_bad_signature(address, realm, when):
    alice = signer()
    verifier = SignedVerifier({"ssh": trust(alice)}, realm="")
    result = verifier.match(knock(alice, when, address, realm), ADDRESS, NOW)
    assert isinstance(result, SignedRefusal) and result.reason is Refusal.BAD_SIGNATURE


def test_realm_must_match_the_daemons():
    alice = signer()
    verifier = SignedVerifier({"ssh": trust(alice)}, realm="fleet-a")
    assert isinstance(verifier.match(knock(alice, realm="fleet-a"), ADDRESS, NOW), SignedMatch)
    refused = verifier.match(knock(alice, realm="fleet-b"), ADDRESS, NOW)
    assert isinstance(refused, SignedRefusal) and refused.reason is Refusal.BAD_SIGNATURE


def test_outside_the_window_reports_the_offset():
    alice = signer()
    verifier = SignedVerifier({"ssh": trust(alice)}, window=30)
    assert isinstance(verifier.match(knock(alice, NOW + 30), ADDRESS, NOW), SignedMatch)
    late = verifier.match(knock(alice, NOW + 187), ADDRESS, NOW)
    assert late == SignedRefusal(Refusal.STALE, late.key, 187)  # type: ignore[union-attr]
    early = verifier.match(knock(alice, NOW - 31), ADDRESS, NOW)
    assert isinstance(early, SignedRefusal) and early.offset == -31


def test_a_claim_outlives_a_reload_to_a_larger_window():
    alice = signer()
    sent = knock(alice, NOW)
    accepted = SignedVerifier({"ssh": trust(alice)}, window=30).match(sent, ADDRESS, NOW)
    assert isinstance(accepted, SignedMatch)
    later = NOW + 200  # past what window 30 accepts, inside what window 300 accepts
    larger = SignedVerifier({"ssh": trust(alice)}, window=300)
    assert isinstance(larger.match(sent, ADDRESS, later), SignedMatch)
    assert accepted.expires > later  # so the replay cache still refuses it
    widest = SignedVerifier({"ssh": trust(alice)}, window=MAX_WINDOW_SECONDS)
    assert isinstance(widest.match(sent, ADDRESS, accepted.expires - 1), SignedMatch)


def test_verifications_per_key_id_are_rate_limited(counted):
    alice, bob = signer(), signer(comment="bob")
    verifier = SignedVerifier({"ssh": trust(alice, bob)}, rate=2.0, burst=3.0)
    junk = knock(alice)
    junk = sshsig.SignedKnock(junk.key_id, NOW, junk.nonce, Signature("ssh-ed25519", bytes(64)))
    assert not verifier.exhausted(junk.key_id, NOW)
    reasons = [verifier.match(junk, ADDRESS, NOW).reason for _ in range(10)]  # type: ignore[union-attr]
    assert reasons == [Refusal.BAD_SIGNATURE] * 3 + [Refusal.RATE_LIMITED] * 7
    assert len(counted) == 3
    assert verifier.exhausted(junk.key_id, NOW)  # the daemon then drops it unparsed
    assert not verifier.exhausted(bob.key.key_id, NOW)
    # Another key id is not held up by the flood against alice's.
    assert isinstance(verifier.match(knock(bob), ADDRESS, NOW), SignedMatch)
    # Half a second later one verification (rate 2/s) is available again.
    assert isinstance(verifier.match(knock(alice), ADDRESS, NOW + 0.5), SignedMatch)
    assert verifier.match(junk, ADDRESS, NOW + 0.5).reason is Refusal.RATE_LIMITED  # type: ignore[union-attr]


def test_expired_key_is_refused():
    alice = signer()
    verifier = SignedVerifier({"ssh": trust(alice, options='expiry-time="20251201Z"')})
    assert isinstance(verifier.match(knock(alice, NOW - 1), ADDRESS, NOW - 1), SignedMatch)
    refused = verifier.match(knock(alice), ADDRESS, NOW)
    assert isinstance(refused, SignedRefusal) and refused.reason is Refusal.KEY_OPTIONS
