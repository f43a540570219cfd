"""Profile the receive path: `Daemon.handle` in-process on junk, as a flood sends it.

    .venv/bin/python -m bench.profile_receive                  # 1 door, a new source each
    .venv/bin/python -m bench.profile_receive --doors 100 --sources 16 --count 50000

Prints the unprofiled rate per CPU-second, the SHA-256 ceiling, then cProfile's top entries
for a fresh daemon fed the same datagrams. Actions are stubbed; nothing leaves the process.
"""

from __future__ import annotations

import argparse
import cProfile
import ipaddress
import os
import pstats
import time

from bench.flood import sha256_ceiling
from tumbler.config.daemon import parse_config
from tumbler.daemon.wiring import Daemon
from tumbler.decisions.newsources import NewSourceBudget


def make_daemon(doors: int, budget: bool) -> Daemon:
    config = (
        "[common]\nreplay = memory\nstate = /nonexistent/state.db\ncontrol = /nonexistent/c\n"
        + "".join(f"[door-d{i}]\nsecret = secret-{i}\ncommand = true\n" for i in range(doors))
    )
    daemon = Daemon(parse_config(config, "<profile>"))
    daemon.dispatcher.spawn = lambda coro: coro.close()  # type: ignore[method-assign]
    if not budget:  # the clock stands still here: the real budget would shed after a burst
        daemon.pipeline.budget = NewSourceBudget(
            prefix_burst=1e18, first_hashes=1e18, burst_seconds=1e18
        )
    return daemon


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile_receive")
    p.add_argument("--doors", type=int, default=1)
    p.add_argument("--sources", type=int, default=0, help="0: a new source per datagram")
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--budget", action="store_true", help="keep the new-source budget")
    args = p.parse_args()
    junk = [b"TUMBLER1: " + os.urandom(32).hex().encode() for _ in range(4096)]
    base = int(ipaddress.IPv4Address("10.216.0.1"))
    n_src = args.sources or args.count
    sources = [str(ipaddress.IPv4Address(base + i % n_src)) for i in range(args.count)]
    now = time.time()

    def run(daemon: Daemon) -> None:
        handle = daemon.handle
        for i in range(args.count):
            handle(junk[i & 4095], sources[i], now)

    t = time.process_time()
    run(make_daemon(args.doors, args.budget))
    rate = args.count / (time.process_time() - t)
    print(f"{args.doors} door(s), {args.sources or 'a new'} source(s): {rate:,.0f} /CPU-s")
    print(f"SHA-256 ceiling: {sha256_ceiling():,.0f} /CPU-s")
    daemon = make_daemon(args.doors, args.budget)
    profile = cProfile.Profile()
    profile.runcall(run, daemon)
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
