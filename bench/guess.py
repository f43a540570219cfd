"""The cost of one offline guess against a captured knock, v1 against v2 with a passphrase.

    .venv/bin/python -m bench.guess [--v1 200000] [--v2 10]

v1: the eavesdropper knows the minute and the address, so a guess of the secret costs one
SHA-256 of T + A + guess. v2 (passphrase key): a guess costs one scrypt at the protocol's
parameters, then one HMAC to compare with the key id the datagram shows. Both are run the
way a guesser would in this Python, on this machine; a GPU helps v1 far more than v2.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import resource
import time

from tumbler.protocols import tumbler2


def v1_guess_seconds(n: int) -> float:
    """Seconds per guess of a v1 secret, over `n` guesses."""
    prefix = hashlib.sha256(b"10410271530" + b"192.168.0.5")
    target = bytes(32)
    guesses = [f"guess-{i}".encode() for i in range(n)]
    t0 = time.process_time()
    for g in guesses:
        h = prefix.copy()
        h.update(g)
        if h.digest() == target:
            break
    return (time.process_time() - t0) / n


def v2_guess_seconds(n: int, realm: str = "") -> float:
    """Seconds per guess of a v2 passphrase, over `n` guesses (scrypt, then the key id)."""
    target = bytes(tumbler2.KEY_ID_LEN)
    t0 = time.process_time()
    for i in range(n):
        key = tumbler2.derive_key(f"guess-{i}", realm)
        if hmac.digest(key, tumbler2.KEY_ID_LABEL, "sha256")[: tumbler2.KEY_ID_LEN] == target:
            break
    return (time.process_time() - t0) / n


def rows(v1_n: int, v2_n: int) -> list[tuple[str, str]]:
    """(what, result) rows for the bench table."""
    v1 = v1_guess_seconds(v1_n)
    v2 = v2_guess_seconds(v2_n)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kdf = f"scrypt n=2^{tumbler2.SCRYPT_N.bit_length() - 1} r={tumbler2.SCRYPT_R}"
    kdf += f" p={tumbler2.SCRYPT_P}, {tumbler2.SCRYPT_MEMORY >> 20} MiB"
    return [
        (f"v1 offline guess (one SHA-256), {v1_n:,} guesses", f"{v1 * 1e6:.3f} us CPU per guess"),
        (
            f"v2 offline guess, passphrase key ({kdf}), {v2_n} guesses",
            f"{v2 * 1e3:.1f} ms CPU per guess; peak RSS {peak:.0f} MiB",
        ),
        ("v2 passphrase guess / v1 guess", f"{v2 / v1:,.0f} times dearer"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--v1", type=int, default=200_000, help="v1 guesses to time")
    parser.add_argument("--v2", type=int, default=10, help="v2 guesses to time")
    args = parser.parse_args()
    for what, result in rows(args.v1, args.v2):
        print(f"  guess      {what:<70} {result}", flush=True)


if __name__ == "__main__":
    main()
