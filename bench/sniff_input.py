"""How `tumbler sniff` reads hostile text: time per input size, which should grow linearly.

    .venv/bin/python -m bench.sniff_input            (or --max-mib 64)

Each row reads one input through `sniff.read_packets` (the CLI's reader) and prints the
seconds it took and the throughput. Inputs double in size from 1 MiB; linear time shows as a
steady MiB/s down a case's rows. The cases are the ones a hostile capture file can hold:

- one line without a newline (read, and once over `MAX_LINE` dropped, chunk by chunk);
- lines just under the cap of ` IP (` repeated, then endpoints (the IP-tag rule);
- lines just under the cap of one dotted token (the endpoint rule);
- ordinary `tcpdump -n` SYN lines, for comparison.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

from tumbler import sniff

MIB = 1 << 20
SYN = b"10:00:00.000000 IP 10.0.0.1.5000 > 10.0.0.2.42: Flags [S], seq 1, win 1, length 0\n"


def _lines(line: bytes) -> Callable[[int], bytes]:
    return lambda size: line * max(1, size // len(line))


def _capped(unit: bytes, tail: bytes = b"") -> bytes:
    count = (sniff.MAX_LINE - len(tail) - 1) // len(unit)
    return unit * count + tail + b"\n"


CASES: dict[str, Callable[[int], bytes]] = {
    "one line, no newline": lambda size: b"x" * size,
    "' IP (' lines + endpoints": _lines(_capped(b" IP (", b" 1.2.3.4.5 > 5.6.7.8.53: x")),
    "one dotted token per line": _lines(_capped(b"1.")),
    "tcpdump SYN lines": _lines(SYN),
}


def measure(data: bytes) -> tuple[float, sniff.Stats]:
    stats = sniff.Stats()
    start = time.perf_counter()
    for _ in sniff.read_packets(io.BytesIO(data), stats):
        pass
    return time.perf_counter() - start, stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-mib", type=int, default=16, help="largest input (16 MiB)")
    args = parser.parse_args(argv)
    print(f"{'case':28}  {'input':>8}  {'seconds':>8}  {'MiB/s':>7}  lines, skipped")
    for name, make in CASES.items():
        size = MIB
        while size <= args.max_mib * MIB:
            data = make(size)
            seconds, stats = measure(data)
            rate = len(data) / MIB / seconds if seconds else float("inf")
            print(
                f"{name:28}  {len(data) / MIB:6.1f} M  {seconds:8.3f}  {rate:7.1f}"
                f"  {stats.lines}, {stats.skipped}"
            )
            size *= 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
