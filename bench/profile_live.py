"""Profile a live tumblerd under the `newsource` flood: cProfile around the real daemon.

    .venv/bin/python -m bench.profile_live                    # 1 door, 200,000 datagrams
    .venv/bin/python -m bench.profile_live --doors 100 --count 100000 --workers 2

Builds the bench rig (root: network namespaces), starts tumblerd under `python -m cProfile`,
floods it with junk from a new source per datagram as `./dev bench --only newsource` does,
stops it (cProfile writes on a clean exit) and prints the top entries by own time. The rate
it prints is the profiled one: cProfile slows the daemon several times over. With workers,
the main process is profiled, not the workers.
"""

from __future__ import annotations

import argparse
import pstats
import tempfile
from pathlib import Path

from bench import flood as floodmod
from bench.rig import PYTHON, WIDE_FLOOD4, rig
from bench.systems import Tumblerd

WARMUP_BASE = "10.222.0.0"


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile_live")
    p.add_argument("--doors", type=int, default=1)
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="tumbler-profile-")) / "tumblerd.prof"

    class Profiled(Tumblerd):
        def tumblerd(self, *more: str) -> list[str]:
            argv = super().tumblerd(*more)
            return [PYTHON, "-m", "cProfile", "-o", str(out), *argv[1:]] if not more else argv

    with rig(clients=8, flooders=4) as r:
        base = WIDE_FLOOD4.split("/")[0]
        daemon = Profiled(r, "nftables", args.doors, policy=False, workers=args.workers)
        with daemon:
            res = floodmod.junk_rate(
                r,
                daemon,
                args.count,
                args.count,
                base=base,
                warmup_base=WARMUP_BASE,
                distinct=args.count,
            )
    print(
        f"{res['handled']:,} of {res['sent']:,} datagrams decided, {res['cpu']:.2f} CPU-s "
        f"(profiled: {res['rate']:,.0f} /CPU-s)"
    )
    pstats.Stats(str(out)).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
