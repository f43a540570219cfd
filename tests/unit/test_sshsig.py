"""Signed knocks: the datagram, the SSHSIG message, keys from ssh-keygen, authorized_keys."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.sshkeys import KEY_SPECS, keygen_verify, make_key, need
from tumbler.client.sshagent import load_key_file, sign_knock
from tumbler.errors import MalformedDatagram
from tumbler.protocols import sshsig
from tumbler.protocols.authorized_keys import address_matches, parse_authorized_keys
from tumbler.protocols.sshkeys import (
    PublicKey,
    Signature,
    SshKeyError,
    load_verifier,
    parse_public_key,
    parse_public_key_line,
    parse_signature,
    ssh_mpint,
    ssh_string,
)

WHEN = 1_764_547_200  # 2025-12-01 00:00:00 UTC
NONCE = bytes(range(16))
ADDRESS = "192.0.2.7"
REALM = "fleet-a"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need("ssh-keygen")
    directory = tmp_path_factory.mktemp("keys")
    return {name: make_key(directory, name, kind, bits) for name, kind, bits in KEY_SPECS}


def public(path: Path) -> tuple[PublicKey, str]:
    return parse_public_key_line(path.with_name(path.name + ".pub").read_text())


def keygen_sign(path: Path, message: bytes, directory: Path) -> sshsig.Sshsig:
    """Sign `message` with `ssh-keygen -Y sign -n tumbler` and read the armoured result."""
    msg = directory / "message"
    msg.write_bytes(message)
    sig = directory / "message.sig"
    sig.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", path, "-n", "tumbler", msg],
        check=True,
        capture_output=True,
    )
    return sshsig.parse_armored(sig.read_text())


# --- keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [spec[0] for spec in KEY_SPECS])
def test_fingerprint_and_key_id_match_ssh_keygen(keys, name):
    key, comment = public(keys[name])
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{keys[name]}.pub"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert key.fingerprint == listed[1]
    assert comment == f"{name}@test"
    raw = base64.b64decode(listed[1].removeprefix("SHA256:") + "=")
    assert key.key_id == raw[:8]
    assert key.openssh(comment) == keys[name].with_name(name + ".pub").read_text().strip()


def test_public_key_refuses_bad_shapes():
    ed = ssh_string(b"ssh-ed25519")
    with pytest.raises(SshKeyError, match="32 bytes"):
        parse_public_key(ed + ssh_string(b"x" * 31))
    with pytest.raises(SshKeyError, match="trailing"):
        parse_public_key(ed + ssh_string(b"x" * 32) + b"!")
    with pytest.raises(SshKeyError, match="not supported"):
        parse_public_key(ssh_string(b"ssh-dss") + ssh_string(b"p"))
    with pytest.raises(SshKeyError, match="unknown key type"):
        parse_public_key(ssh_string(b"ssh-foo") + ssh_string(b"p"))
    small_rsa = ssh_string(b"ssh-rsa") + ssh_mpint(65537) + ssh_mpint((1 << 1023) + 1)
    with pytest.raises(SshKeyError, match="1024 bits"):
        parse_public_key(small_rsa)
    ec = ssh_string(b"ecdsa-sha2-nistp256") + ssh_string(b"nistp384") + ssh_string(b"\x04" * 65)
    with pytest.raises(SshKeyError, match="curve name"):
        parse_public_key(ec)


def test_mpint_encoding_is_minimal_twos_complement():
    assert ssh_mpint(0) == b"\x00\x00\x00\x00"
    assert ssh_mpint(0x80) == b"\x00\x00\x00\x02\x00\x80"
    assert ssh_mpint(0x7F) == b"\x00\x00\x00\x01\x7f"


# --- the signature itself, made by ssh-keygen and checked both ways -----------------------


@pytest.mark.parametrize("name", [spec[0] for spec in KEY_SPECS])
def test_ssh_keygen_signature_makes_a_knock_we_accept(keys, name, tmp_path):
    key, _ = public(keys[name])
    message = sshsig.knock_message(key.key_id, WHEN, NONCE, ADDRESS, REALM)
    made = keygen_sign(keys[name], message, tmp_path)
    assert made.public_key == key.blob
    assert (made.namespace, made.hash_algorithm) == ("tumbler", "sha512")
    knock = sshsig.parse_datagram(sshsig.encode_datagram(key.key_id, WHEN, NONCE, made.signature))
    verify = load_verifier(key)
    assert sshsig.verify_knock(key, verify, knock, ADDRESS, REALM)
    # The same knock claimed for anything else is refused.
    assert not sshsig.verify_knock(key, verify, knock, "192.0.2.8", REALM)
    assert not sshsig.verify_knock(key, verify, knock, ADDRESS, "fleet-b")
    assert not sshsig.verify_knock(key, verify, knock, ADDRESS, "")
    for changed in (
        sshsig.SignedKnock(knock.key_id, WHEN + 1, NONCE, knock.signature),
        sshsig.SignedKnock(knock.key_id, WHEN, bytes(16), knock.signature),
        sshsig.SignedKnock(bytes(8), WHEN, NONCE, knock.signature),
    ):
        assert not sshsig.verify_knock(key, verify, changed, ADDRESS, REALM)


@pytest.mark.parametrize("name", [spec[0] for spec in KEY_SPECS])
def test_file_signed_knock_passes_ssh_keygen_verify(keys, name, tmp_path):
    signer = load_key_file(keys[name])
    datagram = sign_knock(signer, f"::ffff:{ADDRESS}", REALM, WHEN, NONCE)
    knock = sshsig.parse_datagram(datagram)
    assert sshsig.verify_knock(signer.key, load_verifier(signer.key), knock, ADDRESS, REALM)
    # ssh-keygen checks the SSHSIG over the message, address normalised as v1 does it.
    message = sshsig.knock_message(knock.key_id, knock.time, knock.nonce, ADDRESS, REALM)
    armoured = sshsig.armor(sshsig.sshsig_blob(signer.key, knock.signature))
    good = keygen_verify(tmp_path, signer.key.openssh(), armoured, message)
    assert good.returncode == 0, good.stderr
    assert 'Good "tumbler" signature for knocker' in good.stdout
    other = sshsig.knock_message(knock.key_id, knock.time, knock.nonce, "192.0.2.8", REALM)
    bad = keygen_verify(tmp_path, signer.key.openssh(), armoured, other)
    assert bad.returncode != 0


def test_a_signature_by_another_key_is_refused(keys):
    ed, _ = public(keys["id_ed25519"])
    signer = load_key_file(keys["id_ecdsa256"])
    datagram = sign_knock(signer, ADDRESS, "", WHEN, NONCE)
    forged = datagram[:4] + ed.key_id + datagram[12:]
    knock = sshsig.parse_datagram(forged)
    assert not sshsig.verify_knock(ed, load_verifier(ed), knock, ADDRESS)


def test_implausible_signatures_cost_no_cryptography(keys):
    ed, _ = public(keys["id_ed25519"])
    rsa, _ = public(keys["id_rsa"])

    def must_not_run(sig: Signature, data: bytes) -> bool:
        raise AssertionError("cryptography ran for a signature that cannot fit the key")

    for key, sig in (
        (ed, Signature("ssh-ed25519", b"x" * 63)),
        (ed, Signature("ecdsa-sha2-nistp256", b"x" * 64)),
        (rsa, Signature("ssh-rsa", b"x" * 384)),  # SHA-1 RSA is refused by name
        (rsa, Signature("rsa-sha2-512", b"x" * 385)),
    ):
        knock = sshsig.SignedKnock(key.key_id, WHEN, NONCE, sig)
        assert not sshsig.verify_knock(key, must_not_run, knock, ADDRESS)


def test_rsa_sha256_signatures_are_accepted(keys):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    private = load_ssh_private_key(keys["id_rsa"].read_bytes(), None)
    key, _ = public(keys["id_rsa"])
    data = sshsig.knock_signed_data(key.key_id, WHEN, NONCE, ADDRESS)
    raw = private.sign(data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg,union-attr]
    knock = sshsig.SignedKnock(key.key_id, WHEN, NONCE, Signature("rsa-sha2-256", raw))
    assert sshsig.verify_knock(key, load_verifier(key), knock, ADDRESS)


def test_passphrase_key_file_asks_once_and_refuses_wrong(tmp_path):
    need("ssh-keygen")
    path = make_key(tmp_path, "locked", "ed25519", passphrase="correct horse")
    asked: list[Path] = []

    def answer(p: Path) -> bytes:
        asked.append(p)
        return b"correct horse"

    signer = load_key_file(path, answer)
    assert asked == [path]
    assert signer.comment == "locked@test"
    with pytest.raises(SshKeyError, match="wrong passphrase"):
        load_key_file(path, lambda p: b"wrong", attempts=2)


# --- the datagram and the message ----------------------------------------------------------


def test_datagram_layout_byte_by_byte():
    sig = Signature("ssh-ed25519", b"\x01" * 64)
    data = sshsig.encode_datagram(b"K" * 8, 0x0102030405060708, NONCE, sig)
    assert data[:4] == b"\xf5TKS"
    assert data[4:12] == b"K" * 8
    assert data[12:20] == bytes([1, 2, 3, 4, 5, 6, 7, 8])
    assert data[20:36] == NONCE
    assert data[36:] == b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x40" + b"\x01" * 64
    assert len(data) == sshsig.MIN_DATAGRAM == 119


def test_message_and_signed_data_layout():
    message = sshsig.knock_message(b"K" * 8, 7, NONCE, "2001:DB8::0:1", "r")
    address = b"2001:db8::1"
    assert message == (
        b"\xf5TKS" + b"K" * 8 + (7).to_bytes(8, "big") + NONCE
        + len(address).to_bytes(4, "big") + address + b"\x00\x00\x00\x01r"
    )  # fmt: skip
    assert sshsig.signed_data(message) == (
        b"SSHSIG\x00\x00\x00\x07tumbler\x00\x00\x00\x00\x00\x00\x00\x06sha512"
        + b"\x00\x00\x00\x40"
        + hashlib.sha512(message).digest()
    )
    # The v1 normaliser decides the address text: a mapped IPv6 address is its IPv4 form.
    assert sshsig.knock_message(b"K" * 8, 7, NONCE, "::ffff:10.0.0.1") == sshsig.knock_message(
        b"K" * 8, 7, NONCE, "10.0.0.1"
    )
    with pytest.raises(ValueError, match="realm"):
        sshsig.knock_message(b"K" * 8, 7, NONCE, "10.0.0.1", "r" * 256)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"TUMBLER1: " + b"0" * 64,
        b"\xf5TKS" + bytes(114),  # right size, signature not an encoding
        b"\xf5TKX" + bytes(36) + Signature("ssh-ed25519", bytes(64)).wire(),
        b"\xf5TKS" + bytes(36) + Signature("ssh-ed25519", bytes(64)).wire()[:-1],
        b"\xf5TKS" + bytes(32) + Signature("ssh-ed25519", bytes(64)).wire() + b"\x00",
        b"\xf5TKS" + bytes(32) + Signature("ssh-ed25519", bytes(1200)).wire(),
    ],
)
def test_malformed_datagrams_are_refused(data):
    with pytest.raises(MalformedDatagram):
        sshsig.parse_datagram(data)


def test_encoder_refuses_what_the_parser_would_drop():
    with pytest.raises(ValueError, match="too short"):
        sshsig.encode_datagram(b"K" * 8, 0, NONCE, Signature("x", b"1"))
    with pytest.raises(ValueError, match="too long"):
        sshsig.encode_datagram(b"K" * 8, 0, NONCE, Signature("rsa-sha2-512", bytes(1200)))


def test_replay_token_names_one_knock():
    sig = Signature("ssh-ed25519", bytes(64))
    a = sshsig.SignedKnock(b"K" * 8, 5, NONCE, sig)
    assert a.replay_token == b"K" * 8 + (5).to_bytes(8, "big") + NONCE
    assert a.replay_token != sshsig.SignedKnock(b"K" * 8, 5, bytes(16), sig).replay_token


@given(st.one_of(st.binary(max_size=1300), st.binary(max_size=200).map(lambda b: b"\xf5TKS" + b)))
@example(b"\xf5TKS" + bytes(32) + b"\xff\xff\xff\xff" + bytes(80))
def test_parse_datagram_raises_only_malformed(data):
    try:
        knock = sshsig.parse_datagram(data)
    except MalformedDatagram:
        return
    assert sshsig.encode_datagram(knock.key_id, knock.time, knock.nonce, knock.signature) == data


@given(
    st.binary(min_size=8, max_size=8),
    st.integers(min_value=0, max_value=(1 << 64) - 1),
    st.binary(min_size=16, max_size=16),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=64),
    st.binary(min_size=75, max_size=1000),
)
def test_encode_parse_round_trip(kid, when, nonce, algorithm, blob):
    sig = Signature(algorithm, blob)
    knock = sshsig.parse_datagram(sshsig.encode_datagram(kid, when, nonce, sig))
    assert knock == sshsig.SignedKnock(kid, when, nonce, sig)


@given(st.binary(max_size=300))
def test_key_and_signature_parsers_raise_only_their_error(data):
    for parse in (parse_public_key, parse_signature):
        try:
            parse(data)
        except SshKeyError:
            pass


@given(st.text(max_size=400))
@example("-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----")
def test_parse_armored_raises_only_its_error(text):
    try:
        sshsig.parse_armored(text)
    except SshKeyError:
        pass


# --- authorized_keys -------------------------------------------------------------------------


def test_authorized_keys_options_and_bad_lines(keys):
    lines = {n: keys[n].with_name(n + ".pub").read_text().strip() for n, _, _ in KEY_SPECS}
    ed, ec, rsa = lines["id_ed25519"], lines["id_ecdsa256"], lines["id_rsa"]
    dss_blob = ssh_string(b"ssh-dss") + ssh_string(b"\x01" * 20)
    foo_blob = ssh_string(b"ssh-foo@example.com") + ssh_string(b"x")
    text = "\n".join(
        [
            "# a comment, then a blank line",
            "",
            ed,
            f'command="echo a, b",no-pty,from="10.0.0.0/8,!10.9.9.9,192.0.2.*" {ec}',
            f"restrict,cert-authority {rsa}",
            f"ssh-dss {base64.b64encode(dss_blob).decode()} old",
            f"ssh-foo@example.com {base64.b64encode(foo_blob).decode()} new",
            "ssh-ed25519 !!!notbase64!!! broken",
            'command="unterminated ssh-ed25519 AAAA',
            f'expiry-time="20251201" {lines["id_ecdsa384"]}',
            f'bogus-opt,expiry-time="209901011200Z" {lines["id_ecdsa521"]}',
            f"no-pty {ed}",
        ]
    )
    parsed = parse_authorized_keys(text, "/etc/tumbler/ssh-users")
    assert [(k.line, k.comment) for k in parsed.keys] == [
        (3, "id_ed25519@test"),
        (4, "id_ecdsa256@test"),
        (10, "id_ecdsa384@test"),
        (11, "id_ecdsa521@test"),
    ]
    assert parsed.warnings == [
        "/etc/tumbler/ssh-users:4: options command, no-pty do not apply",
        "/etc/tumbler/ssh-users:5: cert-authority keys are not accepted for signed knocks;"
        " line skipped",
        "/etc/tumbler/ssh-users:6: key type ssh-dss is not supported for signed knocks",
        "/etc/tumbler/ssh-users:7: unknown key type ssh-foo@example.com",
        "/etc/tumbler/ssh-users:8: not a key line",
        "/etc/tumbler/ssh-users:9: not a key line (option command has no closing quote)",
        "/etc/tumbler/ssh-users:10: expiry-time without Z is read as UTC",
        "/etc/tumbler/ssh-users:11: unknown option bogus-opt; ignored",
        "/etc/tumbler/ssh-users:12: option no-pty does not apply",
        "/etc/tumbler/ssh-users:12: same key as line 3; this line is ignored",
    ]
    by_line = {k.line: k for k in parsed.keys}
    assert by_line[3].allows("203.0.113.1", WHEN)
    assert by_line[4].from_patterns == ("10.0.0.0/8", "!10.9.9.9", "192.0.2.*")
    assert by_line[4].allows("10.1.2.3", WHEN)
    assert by_line[4].allows("::ffff:192.0.2.200", WHEN)
    assert not by_line[4].allows("10.9.9.9", WHEN)
    assert not by_line[4].allows("203.0.113.1", WHEN)
    assert by_line[10].expires == WHEN  # 2025-12-01 00:00 UTC
    assert by_line[10].allows(ADDRESS, WHEN - 1)
    assert not by_line[10].allows(ADDRESS, WHEN)
    assert by_line[11].allows(ADDRESS, WHEN)
    assert by_line[3].label == f"id_ed25519@test {by_line[3].key.fingerprint}"


def test_from_patterns_follow_openssh_rules():
    assert address_matches(("2001:db8::/32",), "2001:db8::5")
    assert address_matches(("192.0.2.?",), "192.0.2.7")
    assert not address_matches(("192.0.2.?",), "192.0.2.77")
    assert not address_matches(("*", "!192.0.2.7"), "192.0.2.7")
    assert not address_matches(("host.example.com",), "192.0.2.7")
    assert not address_matches(("not/a/net",), "192.0.2.7")


@given(st.text(max_size=500))
@example('from="x')
@example("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==")
def test_authorized_keys_parser_never_raises(text):
    parsed = parse_authorized_keys(text)
    assert all(":" in w for w in parsed.warnings)


# --- without the optional extra ----------------------------------------------------------------


def test_module_imports_without_cryptography_and_says_what_is_missing(keys):
    line = keys["id_ed25519"].with_name("id_ed25519.pub").read_text()
    program = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "cryptography" or name.startswith("cryptography."):
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, Block())
from tumbler.protocols import sshsig
from tumbler.protocols.sshkeys import SshSupportMissing, load_verifier, parse_public_key_line
from tumbler.protocols.authorized_keys import parse_authorized_keys
key, _ = parse_public_key_line({line!r})
assert parse_authorized_keys({line!r}).keys[0].key == key
try:
    load_verifier(key)
except SshSupportMissing as exc:
    print(exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout
    assert "needs the 'cryptography' package" in out
    assert "tumbler[ssh]" in out


# --- the documented test vector --------------------------------------------------------------


def _doc_hex(label: str) -> bytes:
    """A hex block of docs/SIGNED-KNOCKS.md's test vector: the labelled line and its followers."""
    doc = (Path(__file__).parents[2] / "docs" / "SIGNED-KNOCKS.md").read_text()
    lines = doc[doc.index("## Test vector") :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(label + " "))
    parts = [lines[start].split(None, 1)[1]]
    for line in lines[start + 1 :]:
        if not line.startswith("              "):
            break
        parts.append(line.strip())
    return bytes.fromhex("".join(parts))


def test_documented_vector():
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from tumbler.client.sshagent import FileSigner

    signer = FileSigner(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))), "v")
    key = signer.key
    assert key.openssh() == (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
    )
    assert key.fingerprint == "SHA256:lbmsoA0yIEcEiVDRnMWuzm+nV+3ZEEpVIURqFoeSspg"
    assert key.key_id.hex() == "95b9aca00d322047"
    nonce = bytes(range(0x10, 0x20))
    message = sshsig.knock_message(key.key_id, 1101569400, nonce, "192.168.0.5")
    assert message == _doc_hex("M")
    datagram = sign_knock(signer, "192.168.0.5", "", 1101569400, nonce)
    assert datagram == _doc_hex("datagram")  # Ed25519 signatures are deterministic
    knock = sshsig.parse_datagram(datagram)
    assert sshsig.verify_knock(key, load_verifier(key), knock, "192.168.0.5")
