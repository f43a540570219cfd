"""Signed knocks, in process: what one verification costs per key type, and what junk costs.

`python -m bench.signed [--seconds S]` prints the rows; `./dev bench --only signed` puts
them in the table. CPU time is process time, so the rows say what the daemon's decision
costs, without the network or the kernel.

- verify: one SSHSIG signature check, by key type (keys made here by `cryptography`).
- junk, unknown key id: parse + dictionary lookup; what an unaimed flood costs.
- junk reusing a valid key id (captured from a real knock): parse, cheap checks, and at
  most `rate` verifications a second for that key id; the rest are refused unverified.
  The same flood without the rate limit shows what the limit saves.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tumbler.client.sshagent import FileSigner, sign_knock
from tumbler.decisions.signed import SignedMatch, SignedVerifier
from tumbler.protocols import sshsig
from tumbler.protocols.authorized_keys import parse_authorized_keys
from tumbler.protocols.sshkeys import Signature, load_verifier

ADDRESS = "10.215.0.9"
KEY_TYPES: list[tuple[str, Callable[[], object]]] = [
    ("ssh-ed25519", ed25519.Ed25519PrivateKey.generate),
    ("ecdsa-sha2-nistp256", lambda: ec.generate_private_key(ec.SECP256R1())),
    ("ecdsa-sha2-nistp384", lambda: ec.generate_private_key(ec.SECP384R1())),
    ("ecdsa-sha2-nistp521", lambda: ec.generate_private_key(ec.SECP521R1())),
    ("ssh-rsa 2048", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ("ssh-rsa 3072", lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072)),
    ("ssh-rsa 4096", lambda: rsa.generate_private_key(public_exponent=65537, key_size=4096)),
]


def _per_cpu_second(run: Callable[[], None], seconds: float) -> tuple[float, int]:
    """Calls of `run` per CPU-second over about `seconds` of CPU time."""
    n = 0
    start = time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(50):
            run()
        n += 50
        now = time.process_time()
        if now >= deadline:
            return n / (now - start), n


def verify_cost(seconds: float) -> list[tuple[str, float, int]]:
    """(key type, microseconds per verification, datagram size) per key type."""
    rows = []
    for name, make in KEY_TYPES:
        signer = FileSigner(make(), name)
        datagram = sign_knock(signer, ADDRESS, "", int(time.time()), os.urandom(16))
        knock = sshsig.parse_datagram(datagram)
        verify = load_verifier(signer.key)
        assert sshsig.verify_knock(signer.key, verify, knock, ADDRESS)

        def once(key=signer.key, verify=verify, knock=knock) -> None:
            sshsig.verify_knock(key, verify, knock, ADDRESS)

        rate, _ = _per_cpu_second(once, seconds)
        rows.append((name, 1e6 / rate, len(datagram)))
    return rows


def junk_rates(seconds: float) -> dict[str, float]:
    """Junk datagrams decided per CPU-second: unknown id, reused id with and without the limit."""
    signer = FileSigner(ed25519.Ed25519PrivateKey.generate(), "victim")
    keys = parse_authorized_keys(signer.key.openssh("victim")).keys
    now = time.time()
    captured = sshsig.parse_datagram(sign_knock(signer, ADDRESS, "", int(now), os.urandom(16)))
    junk = [
        sshsig.encode_datagram(
            captured.key_id, int(now), os.urandom(16), Signature("ssh-ed25519", os.urandom(64))
        )
        for _ in range(1000)
    ]
    unknown = [d[:4] + os.urandom(8) + d[12:] for d in junk]
    out: dict[str, float] = {}
    for label, data, rate in (
        ("unknown key id", unknown, 10.0),
        ("valid key id, rate-limited", junk, 10.0),
        ("valid key id, no rate limit", junk, float("inf")),
    ):
        verifier = SignedVerifier({"door": keys}, rate=rate, burst=20.0 if rate < 1e9 else 1e12)
        i = 0

        def once(verifier=verifier, data=data) -> None:
            nonlocal i
            result = verifier.match(sshsig.parse_datagram(data[i % 1000]), ADDRESS, time.time())
            assert not isinstance(result, SignedMatch)
            i += 1

        out[label], _ = _per_cpu_second(once, seconds)
    return out


def bench_key() -> tuple[str, str]:
    """A fresh Ed25519 key for a bench door: its authorized_keys line and key id (hex)."""
    signer = FileSigner(ed25519.Ed25519PrivateKey.generate(), "bench@tumbler")
    return signer.key.openssh(signer.comment) + "\n", signer.key.key_id.hex()


def rows(seconds: float) -> list[tuple[str, str]]:
    out = [
        (f"verify one knock, {name} ({size} bytes)", f"{us:,.0f} us/CPU")
        for name, us, size in verify_cost(seconds)
    ]
    out += [
        (f"junk signed knocks, {label}", f"{rate:,.0f} discarded/CPU-s")
        for label, rate in junk_rates(seconds).items()
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.signed")
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per row")
    args = parser.parse_args()
    for what, result in rows(args.seconds):
        print(f"  {'signed':<10} {what:<58} {result}", flush=True)


if __name__ == "__main__":
    main()
