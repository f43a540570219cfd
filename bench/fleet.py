"""What a fleet's replay store costs: claim latency and claims per second, in one run.

    .venv/bin/python -m bench.fleet [--claims 2000] [--seconds 5] [--clients 8]

Starts its own redis-server processes on loopback (one server; a primary with two replicas
and three sentinels), measures, and stops them. Rows:

- claim latency, one claim at a time as the daemon makes them (`ReplayCache.claim`), for
  the local SQLite store, one Redis, and Sentinel with replay_acks 0 and 1;
- claims per second through the store from `--clients` processes, for one Redis and for
  Sentinel with replay_acks 1 (this is the client side's limit as much as Redis's);
- `redis-benchmark` of the claim command itself (SET key 1 NX PX) against one primary: the
  ceiling of one primary, whatever the number of servers making the claims;
- in `./dev bench` (which has the namespace rig): knock-to-open of tumblerd with each store,
  Redis running beside it in the server namespace.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.redislab import RedisServer, Sentinel, replicas_online
from tests.waiting import wait_until

from bench.latency import percentile
from tumbler.decisions.replay import ReplayCache, SqliteReplayCache
from tumbler.decisions.replay.redis import RedisReplayCache
from tumbler.decisions.replay.redisurl import RedisAccess

SERVICE = "tumbler"


def latency(cache: ReplayCache, claims: int) -> dict[str, float]:
    for _ in range(20):  # warm-up: connections made, pages cached
        now = time.time()
        cache.claim(secrets.token_hex(32), now + 120, now)
    times = []
    for _ in range(claims):
        digest = secrets.token_hex(32)
        now = time.time()
        t0 = time.perf_counter()
        fresh = cache.claim(digest, now + 120, now)
        times.append(time.perf_counter() - t0)
        assert fresh
    return {q: percentile(times, v) * 1000 for q, v in (("p50", 0.5), ("p99", 0.99))} | {
        "max": max(times) * 1000
    }


def _claimer(url: str, acks: int | None, seconds: float, out: multiprocessing.Queue) -> None:
    cache = RedisReplayCache(url, access=RedisAccess(acks=acks))
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        now = time.time()
        if cache.claim(secrets.token_hex(32), now + 120, now):
            count += 1
    cache.close()
    out.put(count)


def cpu_seconds(server: RedisServer) -> float:
    """CPU the redis-server process has used so far (user + system), by its own count."""
    state = server.client().info("cpu")
    return float(state["used_cpu_user"]) + float(state["used_cpu_sys"])


def throughput(
    url: str, acks: int | None, clients: int, seconds: float, primary: RedisServer
) -> tuple[float, float]:
    """Claims per second, and claims per CPU-second of the primary."""
    before = cpu_seconds(primary)
    out: multiprocessing.Queue = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=_claimer, args=(url, acks, seconds, out))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds, total / (cpu_seconds(primary) - before)


def redis_benchmark(
    server: RedisServer, requests: int, clients: int, pipeline: int
) -> tuple[float, float]:
    """SET NX PX as fast as redis-benchmark sends it: per second, and per CPU-second."""
    before = cpu_seconds(server)
    argv = ["redis-benchmark", "-p", str(server.port), "-n", str(requests), "-c", str(clients)]
    argv += ["-P", str(pipeline), "-r", "100000000", "-q"]
    argv += ["SET", "tumbler:replay:__rand_int__", "1", "NX", "PX", "150000"]
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rates = re.findall(r"([0-9.]+) requests per second", text.replace("\r", "\n"))
    return float(rates[-1]), requests / (cpu_seconds(server) - before)


def measure(
    row: Callable[[str, str], None], claims: int, seconds: float, clients: int, requests: int
) -> None:
    """Start the deployments, measure each row, stop everything (also on an error)."""
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("redis-benchmark") is None:
        row("skipped", "needs redis-server and redis-benchmark (redis-tools)")
        return

    def lat(s: dict[str, float]) -> str:
        return f"p50 {s['p50']:.3f}  p99 {s['p99']:.3f}  max {s['max']:.2f} ms  (n={claims})"

    with tempfile.TemporaryDirectory(prefix="tumbler-bench-fleet-") as tmp:
        folder = Path(tmp)
        sqlite = SqliteReplayCache(str(folder / "state.db"))
        row("claim latency, local SQLite", lat(latency(sqlite, claims)))
        sqlite.close()

        single = RedisServer(binary, folder / "single")
        primary = RedisServer(binary, folder / "primary")
        replicas = [
            RedisServer(binary, folder / f"r{n}", "--replicaof", "127.0.0.1", str(primary.port))
            for n in (1, 2)
        ]
        sentinels = [
            Sentinel(binary, folder / f"s{n}", SERVICE, primary.port, 5000) for n in (1, 2, 3)
        ]
        everything = [single, primary, *replicas, *sentinels]
        try:
            for server in (single, primary, *replicas):
                server.start()
            wait_until(lambda: replicas_online(primary, 2), what="replicas in sync")
            for sentinel in sentinels:
                sentinel.start()
            hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
            sentinel_url = f"redis+sentinel://{hosts}/{SERVICE}"
            for what, url, acks in (
                ("one Redis", single.url, None),
                ("Sentinel, replay_acks 0", sentinel_url, 0),
                ("Sentinel, replay_acks 1 (the default), 2 replicas", sentinel_url, 1),
            ):
                cache = RedisReplayCache(url, access=RedisAccess(acks=acks))
                assert cache.up, what
                row(f"claim latency, {what}", lat(latency(cache, claims)))
                cache.close()
            for what, url, acks, server in (
                ("one Redis", single.url, None, single),
                ("Sentinel, replay_acks 1", sentinel_url, 1, primary),
            ):
                rate, per_cpu = throughput(url, acks, clients, seconds, server)
                row(
                    f"claims through the store, {what}, {clients} processes",
                    f"{rate:,.0f} /s; {per_cpu:,.0f} per CPU-second of the primary",
                )
            for conns, pipeline in ((50, 1), (50, 16)):
                rate, per_cpu = redis_benchmark(single, requests, conns, pipeline)
                row(
                    f"redis-benchmark SET NX PX, one primary, -c {conns} -P {pipeline}",
                    f"{rate:,.0f} /s; {per_cpu:,.0f} per CPU-second of the primary",
                )
        finally:
            for process in everything:
                process.stop()
    row("redis-server used", _version(binary))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n\n")[0])
    p.add_argument("--claims", type=int, default=2000, help="claims per latency row")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per throughput row")
    p.add_argument("--clients", type=int, default=8, help="claiming processes")
    p.add_argument("--requests", type=int, default=500_000, help="redis-benchmark requests")
    args = p.parse_args(argv)
    rows: list[tuple[str, str]] = []

    def row(what: str, result: str) -> None:
        rows.append((what, result))
        print(f"  {what:<58} {result}", flush=True)

    measure(row, args.claims, args.seconds, args.clients, args.requests)
    print()
    width = max(len(w) for w, _ in rows)
    for what, result in rows:
        print(f"{what:<{width}}  {result}")
    print(f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end")
    return 0


def _version(binary: str) -> str:
    text = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"v=([0-9.]+)", text)
    return m.group(1) if m else "?"


if __name__ == "__main__":
    sys.exit(main())


class NamespaceRedis:
    """redis-server processes inside the rig's server namespace, beside the daemon.

    The rig's namespaces are new, so fixed ports are free there; readiness is asked with
    redis-cli inside the namespace. The rig kills whatever is left in it at exit.
    """

    def __init__(self, rig: Any, folder: Path) -> None:
        self.rig = rig
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []
        self._port = 16379

    def cli(self, port: int, *args: str) -> str:
        return str(self.rig.server.run(["redis-cli", "-p", str(port), *args], check=False).stdout)

    def _start(self, argv: list[str], port: int) -> int:
        self.procs.append(
            self.rig.server.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        wait_until(lambda: self.cli(port, "ping").strip() == "PONG", what=f"redis on {port}")
        return port

    def server(self, *extra: str) -> int:
        self._port += 1
        folder = self.folder / f"redis-{self._port}"
        folder.mkdir(parents=True)
        argv = ["redis-server", "--port", str(self._port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(folder)]
        argv += ["--repl-diskless-sync-delay", "0", *extra]
        return self._start(argv, self._port)

    def sentinel(self, primary: int) -> int:
        self._port += 1
        folder = self.folder / f"sentinel-{self._port}"
        folder.mkdir(parents=True)
        config = folder / "sentinel.conf"
        config.write_text(
            f"port {self._port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 5000\n"
        )
        return self._start(["redis-server", str(config), "--sentinel"], self._port)

    def replicas_online(self, primary: int, count: int) -> bool:
        text = self.cli(primary, "info", "replication")
        return f"connected_slaves:{count}" in text and text.count("state=online") == count

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def knock_to_open(
    rig: Any, row: Callable[[str, str], None], knocks: int, text: Callable[[dict], str]
) -> None:
    """Knock-to-open with tumblerd (nftables) on SQLite, one Redis, Sentinel with acks 1."""
    from bench.latency import Sources, measure
    from bench.systems import Tumblerd

    redis = NamespaceRedis(rig, rig.tmp / "fleet")
    try:
        single = redis.server()
        primary = redis.server()
        for _ in range(2):
            redis.server("--replicaof", "127.0.0.1", str(primary))
        wait_until(lambda: redis.replicas_online(primary, 2), what="replicas in sync")
        hosts = ",".join(f"127.0.0.1:{redis.sentinel(primary)}" for _ in range(3))
        for what, replay in (
            ("local SQLite", "sqlite"),
            ("one Redis", f"redis://127.0.0.1:{single}/0"),
            ("Sentinel, replay_acks 1, 2 replicas", f"redis+sentinel://{hosts}/{SERVICE}"),
        ):
            with Tumblerd(rig, "nftables", replay=replay, tag=what) as daemon:
                row(f"knock-to-open, {what}", text(measure(rig, daemon, Sources(rig), knocks)))
    finally:
        redis.stop()
