"""Floods from anywhere: a new source per datagram, one IPv6 /64, and the client's start-up.

verifier_rate   in-process: digest_bytes + Verifier.match_raw on junk, a new source per
                datagram (or 16 sources), per CPU-second; the verifier alone, no budget
prefix_flood    live: junk from many addresses of one IPv6 /64 (the flood namespace's
                raw socket), then a valid knock from a fresh IPv4 address; its latency
startup         exec to exit of `tumbler --open` (which sends its datagram before it
                exits) against `python3 -c pass`, each run many times, medians
"""

from __future__ import annotations

import ipaddress
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.latency import Sources, knock_once
from bench.rig import PYTHON, SERVER_C, SERVER_F6, Rig, proc_cpu_seconds
from bench.systems import TUMBLER_PORT, Tumblerd

FLOOD64 = "fd00:216:0:1::/64"


def verifier_rate(doors: int, new_sources: bool, n: int) -> float:
    """Junk datagrams judged per CPU-second by the verifier, in this process."""
    from tumbler.config.daemon import Door
    from tumbler.decisions.verifier import Verifier
    from tumbler.protocols.tumbler1 import digest_bytes

    verifier = Verifier(
        [Door(name=f"d{i}", line=i, secret=f"secret-{i}", command="true") for i in range(doors)],
        1,
    )
    junk = [b"TUMBLER1: " + os.urandom(32).hex().encode() for _ in range(4096)]
    if new_sources:
        base = int(ipaddress.IPv4Address("10.216.0.1"))
        sources = [str(ipaddress.IPv4Address(base + i)) for i in range(n)]
    else:
        sources = [f"10.215.1.{i % 16 + 1}" for i in range(n)]
    now = time.time()
    match = verifier.match_raw
    t = time.process_time()
    for i in range(n):
        match(digest_bytes(junk[i & 4095]), sources[i], now)
    return n / (time.process_time() - t)


def prefix_flood(rig: Rig, doors: int, addresses: int, limit: bool, rounds: int) -> dict:
    """`rounds` times: `addresses` junk datagrams from as many addresses of one /64, then a
    valid knock from a fresh IPv4 address; its latency, and the daemon's CPU for it all."""
    t = Tumblerd(rig, "nftables", doors=doors, ipv6=True, limit=limit, tag=f"{doors} doors")
    times: list[float | None] = []
    sources = Sources(rig)
    with t:
        before = t.counters()
        cpu0 = proc_cpu_seconds(t.pid)
        for _ in range(rounds):
            rig.flood_agent.call(
                op="flood",
                family=6,
                prefix6=FLOOD64,
                kind="tumbler",
                dst=SERVER_F6,
                port=TUMBLER_PORT,
                count=addresses,
                sources=addresses,
                distinct=addresses,
            )
            answer = knock_once(rig, t, sources.take(), limit=10.0)
            times.append(answer["seconds"] if answer["ok"] else None)
        time.sleep(0.5)
        cpu = proc_cpu_seconds(t.pid) - cpu0
        after = t.counters()
        alive = t.alive()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("no-door", "shed", "accepted")}
    return {"times": times, "cpu": cpu, "counters": delta, "alive": alive}


def _median_run(argv: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        state = tempfile.mkdtemp(prefix="tmbb-state-")
        run_env = {**(env or os.environ), "XDG_STATE_HOME": state}
        t = time.perf_counter()
        subprocess.run(argv, check=True, env=run_env, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
        subprocess.run(["rm", "-rf", state], check=False)
    return statistics.median(times)


def startup(rig: Rig, runs: int, bytecode: bool = True) -> dict:
    """Medians of exec-to-exit: the interpreter's floor, and `tumbler --open` knocking the
    rig's server from the client namespace (interleaved so load affects both alike).

    With `bytecode`, compiled modules are cached (in the rig's folder, through
    PYTHONPYCACHEPREFIX, after a warm-up run), as an installed package has them; without,
    every module is compiled from source at each start (PYTHONDONTWRITEBYTECODE=1).
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TUMBLER_")
        and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    }
    if bytecode:
        env["PYTHONPYCACHEPREFIX"] = str(rig.tmp / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = str(rig.tmp / "no-pycache")  # empty: nothing cached
    url = f"tumbler://startup-secret@{SERVER_C}:{TUMBLER_PORT}/"
    floor = rig.client.argv([PYTHON, "-c", "pass"])
    script = Path(PYTHON).parent / "tumbler"  # the console script, as a user runs it
    client = rig.client.argv([str(script), "--open", url])
    ns_floor = rig.client.argv(["true"])
    _median_run(floor, 1, env)  # warm-up: fills the bytecode cache
    _median_run(client, 1, env)
    floors, clients, nss = [], [], []
    for _ in range(runs // 5 or 1):
        floors.append(_median_run(floor, 5, env))
        clients.append(_median_run(client, 5, env))
        nss.append(_median_run(ns_floor, 5, env))
    ns = statistics.median(nss)  # `ip netns exec` itself, subtracted from both
    return {
        "floor": statistics.median(floors) - ns,
        "client": statistics.median(clients) - ns,
        "netns": ns,
        "runs": (runs // 5 or 1) * 5,
    }
