"""Mutational fuzzing of the datagram path: parse, verify, replay claim (`Pipeline.decide`).

    .venv/bin/python -m bench.fuzz --seconds 60        (or --iterations N)

Seeds are valid knocks (for the doors of a small config, from a few source addresses, in
the current minute and its neighbours; v2 knocks at the edges of their window too) and
their accepted variants; each round takes a seed,
applies 1-4 random mutations (bit flips, byte edits, truncation, splices, case changes,
line endings) and feeds the result to tumblerd's deciding half, `Pipeline.decide`, built as
the daemon builds it, with a memory replay cache and the clock frozen at one moment.
Anything but a clean accept or refusal (an exception) is counted and the first few are
printed. A door opened by a mutant must be a replay-free exact knock: every accepted
datagram is checked against the protocol's own digest (v1) or MAC and window (v2).

With `--atheris` (if the atheris package is installed) the same target runs under
libFuzzer's coverage-guided mutator instead.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime, timedelta

from tumbler.client.sshagent import FileSigner, sign_knock
from tumbler.config.daemon import parse_config
from tumbler.daemon.pipeline import Pipeline, build_runtime
from tumbler.daemon.stats import Stats
from tumbler.decisions.replay.local import MemoryReplayCache
from tumbler.decisions.replay.recent import RecentClaims
from tumbler.protocols import sshsig, tumbler2
from tumbler.protocols.sshkeys import load_verifier
from tumbler.protocols.tumbler1 import knock_digest, make_knock, minute_stamp, parse_datagram

SECRETS = ["open-pAsSwOrD", "second door", "Ünïcode ☃"]
ADDRESSES = ["192.168.0.5", "10.0.0.1", "2001:db8::7", "127.0.0.1"]
NOW = datetime(2004, 11, 27, 15, 30, 30, tzinfo=UTC)
KEYS = [bytes(range(32)), bytes(range(1, 33)), bytes(32)]
REALM = "fuzz.example"

CONFIG = (
    "[common]\nreplay = memory\nstate = /nonexistent/state.db\ncontrol = /nonexistent/c\n"
    f"realm = {REALM}\n"
    + "".join(f"[door-d{i}]\nsecret = {s}\ncommand = true\n" for i, s in enumerate(SECRETS))
    + "".join(
        f"[door-k{i}]\nkey = {tumbler2.encode_key(k)}\ncommand = true\n" for i, k in enumerate(KEYS)
    )
)


def _signer() -> FileSigner:
    """A fixed Ed25519 key for the signed door, so that seeds are the same every run."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return FileSigner(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32)), "fuzz@tumbler")


SIGNER = _signer()


def seeds() -> list[bytes]:
    out = []
    for secret in SECRETS:
        for address in ADDRESSES:
            for minutes in (-1, 0, 1):
                data = make_knock(secret, address, NOW + timedelta(minutes=minutes))
                out += [data, data + b"\n", data + b"\r\n", data.upper(), data.replace(b" ", b"")]
    rng = random.Random(2)
    for key in KEYS:
        for address in ADDRESSES:
            for seconds in (-61, -60, 0, 60, 61):
                nonce = rng.randbytes(tumbler2.NONCE_LEN)
                when = NOW.timestamp() + seconds
                out.append(tumbler2.build(key, when, nonce, address, REALM))
    for address in ADDRESSES:  # signed knocks (docs/SIGNED-KNOCKS.md), a few seconds apart
        for seconds in (-30, 0, 30):
            when = int(NOW.timestamp()) + seconds
            out.append(sign_knock(SIGNER, address, REALM, when, bytes([seconds % 256]) * 16))
    return out


def claim_of(data: bytes) -> str:
    """What the replay cache holds for an accepted datagram."""
    if tumbler2.is_v2(data):
        return "2:" + tumbler2.parse(data).mac.hex()
    if sshsig.looks_signed(data):
        return sshsig.claim_token(sshsig.parse_datagram(data))
    return parse_datagram(data)


def mutate(rng: random.Random, data: bytes, pool: list[bytes] | None = None) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 2:
            buf.insert(pos, rng.randrange(256))
        elif op == 3 and buf:
            del buf[rng.randrange(len(buf))]
        elif op == 4:
            del buf[pos:]
        elif op == 5:
            buf[pos:pos] = rng.choice(
                [b"\n", b"\r\n", b"\r", b" ", b"\x00", b"TUMBLER1:", b"\xff", tumbler2.MAGIC]
            )
        elif op == 6:
            buf = bytearray(bytes(buf).swapcase())
        elif op == 7 and pool:
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:pos] + bytearray(other[cut:])
        elif op == 8:
            buf = bytearray(rng.randbytes(rng.randrange(0, 100)))
        else:
            buf[pos:pos] = buf[: rng.randrange(1, 8)]
    return bytes(buf)


class Target:
    """The deciding half alone: what it would open is recorded, nothing acts."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="tumbler-fuzz-")
        keys = f"{self._dir.name}/ssh-users"
        with open(keys, "w") as f:
            f.write(SIGNER.key.openssh(SIGNER.comment) + "\n")
        config = parse_config(
            CONFIG + f"[door-signed]\nauthorized_keys = {keys}\ncommand = true\n", "<fuzz>"
        )
        self.stats = Stats(logging.getLogger("bench.fuzz"))
        replay = RecentClaims(MemoryReplayCache())
        self.pipeline = Pipeline(build_runtime(config), replay, self.stats)
        self.verify = load_verifier(SIGNER.key)
        self.opened: list[tuple[bytes, str]] = []
        self.when = NOW.timestamp()

    def __call__(self, data: bytes, address: str) -> None:
        door = self.pipeline.decide(data, address, self.when).door
        if door is not None and tumbler2.is_v2(data):
            knock = tumbler2.parse(data)
            assert door.key is not None and tumbler2.verify(knock, door.key, address, REALM)
            assert tumbler2.within_window(tumbler2.clock_offset(knock, self.when), 60)
            self.opened.append((data, address))
        elif door is not None and sshsig.looks_signed(data):
            knock = sshsig.parse_datagram(data)
            assert sshsig.verify_knock(SIGNER.key, self.verify, knock, address, REALM)
            assert abs(knock.time - self.when) <= 60
            self.opened.append((data, address))
        elif door is not None:
            # Whatever opened must be an exact knock for that door, source and window.
            digest = parse_datagram(data)
            stamps = [minute_stamp(NOW + timedelta(minutes=m)) for m in (-1, 0, 1)]
            assert any(knock_digest(s, address, door.secret or "") == digest for s in stamps)
            self.opened.append((data, address))


def run(iterations: int, seconds: float, seed: int, quiet: bool = False) -> dict:
    rng = random.Random(seed)
    pool = seeds()
    target = Target()
    errors: list[str] = []
    done = 0
    deadline = time.monotonic() + seconds

    while done < iterations and time.monotonic() < deadline:
        for _ in range(1000):
            data = mutate(rng, rng.choice(pool), pool)
            address = rng.choice(ADDRESSES)
            try:
                target(data, address)
            except Exception:
                errors.append(f"{data!r} from {address}:\n{traceback.format_exc()}")
            done += 1
    replays = len(target.opened) - len({claim_of(d) for d, _ in target.opened})
    result = {
        "iterations": done,
        "exceptions": len(errors),
        "accepted": len(target.opened),
        "counters": dict(target.stats.total),
        "replays_accepted": replays,
    }
    if not quiet:
        for text in errors[:5]:
            print(text, file=sys.stderr)
    return result


def run_atheris(seconds: float) -> int:
    import atheris  # optional: pip install atheris

    target = Target()

    def one(data: bytes) -> None:
        target(data[1:], ADDRESSES[data[0] % len(ADDRESSES)] if data else ADDRESSES[0])

    atheris.Setup([sys.argv[0], f"-max_total_time={int(seconds)}"], one)
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--iterations", type=int, default=10**12)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--atheris", action="store_true", help="coverage-guided, if installed")
    args = parser.parse_args(argv)
    if args.atheris:
        return run_atheris(args.seconds)
    result = run(args.iterations, args.seconds, args.seed)
    print(
        f"fuzz: {result['iterations']} mutated datagrams through Pipeline.decide, "
        f"{result['exceptions']} exceptions, {result['accepted']} accepted "
        f"(replays accepted: {result['replays_accepted']}), counters {result['counters']}"
    )
    return 1 if result["exceptions"] or result["replays_accepted"] else 0


if __name__ == "__main__":
    sys.exit(main())
