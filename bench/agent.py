"""The rig's helper, run inside the client or flood namespace: one JSON request per line in,
one JSON answer per line out.

    {"op": "knock", ...}   send a knock, then SYN until a TCP connection gets through
    {"op": "flood", ...}   send junk datagrams from many source addresses, unpaced
"""

from __future__ import annotations

import base64
import errno
import ipaddress
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime

from tumbler.protocols import tumbler2
from tumbler.protocols.tumbler1 import make_knock


def connect_once(src: str, dst: str, port: int, wait: float) -> bool:
    """One SYN from src: True if the handshake completes within `wait` seconds."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setblocking(False)
        s.bind((src, 0))
        err = s.connect_ex((dst, port))
        if err == 0:
            return True
        if err not in (errno.EINPROGRESS, errno.EAGAIN):
            return False
        _, writable, _ = select.select([], [s], [], wait)
        if not writable:
            return False
        return s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    finally:
        s.close()


def probe(src: str, dst: str, port: int, start: float, timeout: float, interval: float):
    """Seconds from `start` (perf_counter) to the first connection, or None after `timeout`."""
    deadline = start + timeout
    attempts = 0
    while time.perf_counter() < deadline:
        attempts += 1
        if connect_once(src, dst, port, interval):
            return time.perf_counter() - start, attempts
    return None, attempts


def knock(req):
    src, dst, port = req["src"], req["dst"], req["port"]
    timeout, interval = req.get("limit", 2.0), req.get("interval", 0.00025)
    kind = req["kind"]
    exit_at = None
    if kind == "exec":
        start = time.perf_counter()
        proc = subprocess.run(req["argv"], capture_output=True, text=True, check=False)
        exit_at = time.perf_counter()
        if proc.returncode != 0:
            return {"error": f"{req['argv'][0]} exited {proc.returncode}: {proc.stderr.strip()}"}
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        if kind == "tumbler":
            datagrams = [(make_knock(req["secret"], src, datetime.now(UTC)), req["knock_port"])]
        elif kind == "tumbler2":
            key = tumbler2.decode_key(req["key"])
            data = tumbler2.build(key, time.time(), os.urandom(tumbler2.NONCE_LEN), src, "")
            datagrams = [(data, req["knock_port"])]
        elif kind == "raw":
            datagrams = [(base64.b64decode(d), p) for p, d in req["datagrams"]]
        else:
            return {"error": f"unknown knock kind {kind!r}"}
        start = time.perf_counter()
        for data, udp_port in datagrams:
            s.sendto(data, (dst, udp_port))
        s.close()
    took, attempts = probe(src, dst, port, start, timeout, interval)
    answer = {"ok": took is not None, "seconds": took, "attempts": attempts}
    if exit_at is not None:
        answer["exec_seconds"] = exit_at - start
    return answer


def junk(kind: str, n: int, size: int = 0, key_id: str = "") -> list[bytes]:
    """`n` junk payloads of one kind, reproducible."""
    rng = random.Random(5)
    if kind == "tumbler":  # well-formed, random digests
        return [b"TUMBLER1: " + rng.randbytes(32).hex().encode() for _ in range(n)]
    if kind == "tumbler2":  # v2 shape: the magic, then random key ids, times, nonces, MACs
        return [tumbler2.MAGIC + rng.randbytes(tumbler2.DATAGRAM_LEN - 4) for _ in range(n)]
    if kind == "signed":  # signed-knock shape, Ed25519 size: `key_id` (hex), else random ids
        from tumbler.protocols import sshsig
        from tumbler.protocols.sshkeys import Signature

        now = int(time.time())
        return [
            sshsig.encode_datagram(
                bytes.fromhex(key_id) if key_id else rng.randbytes(8),
                now,
                rng.randbytes(16),
                Signature("ssh-ed25519", rng.randbytes(64)),
            )
            for _ in range(n)
        ]
    if kind == "fwknop":  # random base64 text of an SPA packet's size
        return [
            base64.b64encode(rng.randbytes(size * 3 // 4 + 3)).rstrip(b"=")[:size] for _ in range(n)
        ]
    if kind == "mixed":  # for the long run: mutated knocks, odd shapes, random bytes
        from bench.fuzz import mutate, seeds

        pool = seeds()
        return [mutate(rng, rng.choice(pool)) for _ in range(n)]
    raise ValueError(f"unknown junk kind {kind!r}")


def _checksum(header: bytes) -> int:
    total = sum(int.from_bytes(header[i : i + 2], "big") for i in range(0, len(header), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def packet(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 + UDP datagram from any source address (UDP checksum 0: none)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    total = 20 + len(udp) + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        0,
        0,
        64,
        17,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + udp + payload


def _sum16(data: bytes) -> int:
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def packet6(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv6 + UDP datagram from any source address (IPv6 needs the UDP checksum)."""
    s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    length = 8 + len(payload)
    pseudo = s + d + struct.pack("!IxxxB", length, 17)
    udp = struct.pack("!HHHH", sport, dport, length, 0)
    odd = b"\0" if len(payload) % 2 else b""
    checksum = ~_sum16(pseudo + udp + payload + odd) & 0xFFFF or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, length, checksum)
    return struct.pack("!IHBB", 6 << 28, length, 17, 64) + s + d + udp + payload


def flood(req):
    """Unpaced (or `pps`-paced) junk from `sources` spoofed addresses, through a raw socket.

    `distinct` packets are built (default: up to 65,536) and sent round-robin; with
    `distinct` >= `count` every datagram comes from a source not used before. `family` 6
    sends from addresses of the /64 `prefix6` (or of `sources` /64s under it, `per64`).
    """
    dst, port = req["dst"], req["port"]
    n_src = int(req.get("sources", 256))
    payloads = junk(
        req["kind"], int(req.get("variety", 4096)), req.get("size", 0), req.get("key_id", "")
    )
    # One packet per (source, payload) pairing would be too many; pair them round-robin.
    n = min(max(n_src, len(payloads)), int(req.get("distinct", 65536)))
    if req.get("family") == 6:
        net = ipaddress.IPv6Network(req["prefix6"])
        base6 = int(net.network_address)
        packets = [
            packet6(
                str(ipaddress.IPv6Address(base6 + 1 + (i % n_src))),
                dst,
                40000 + i % 20000,
                port,
                payloads[i % len(payloads)],
            )
            for i in range(n)
        ]
        family = socket.AF_INET6
    else:
        base = ipaddress.IPv4Address(req.get("base", "10.215.1.1"))
        packets = [
            packet(
                str(base + (i % n_src)), dst, 40000 + i % 20000, port, payloads[i % len(payloads)]
            )
            for i in range(n)
        ]
        family = socket.AF_INET
    sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    target = (dst, 0)
    count = int(req.get("count") or 10**12)
    deadline = time.monotonic() + float(req.get("seconds") or 10**9)
    pps = req.get("pps")
    sent = errors = 0
    n_pk = len(packets)
    begin = time.monotonic()
    chunk = 512
    send = sock.sendto
    while sent < count:
        todo = min(chunk, count - sent)
        for i in range(sent, sent + todo):
            try:
                send(packets[i % n_pk], target)
            except OSError:
                errors += 1
        sent += todo
        now = time.monotonic()
        if now > deadline:
            break
        if pps:
            ahead = sent / pps - (now - begin)
            if ahead > 0:
                time.sleep(ahead)
    elapsed = time.monotonic() - begin
    sock.close()
    return {"sent": sent - errors, "errors": errors, "seconds": elapsed}


OPS = {"knock": knock, "flood": flood}


def main() -> None:
    for line in sys.stdin:
        try:
            req = json.loads(line)
            answer = OPS[req.pop("op")](req)
        except Exception as exc:
            answer = {"error": f"{exc!r}\n{traceback.format_exc()}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
