"""./dev bench [--quick] [--only latency,flood,valid,memory,long,fuzz,v2,guess,fleet] ...

Builds the namespace rig (bench/rig.py), runs the chosen sections side by side in one run,
and prints one table. Asserts nothing about speed: it measures.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

from bench import fleet as fleetmod
from bench import flood as floodmod
from bench import issue11
from bench import memory as memmod
from bench import startup as startupmod
from bench.latency import Sources, measure, summary
from bench.rig import SERVER_F, WIDE_FLOOD4, leftover_namespaces, proc_rss_kib, rig
from bench.systems import TARGET, Fwknopd, Knockd, Tumblerd

SECTIONS = (
    "latency",
    "flood",
    "newsource",
    "prefix64",
    "startup",
    "valid",
    "memory",
    "long",
    "fuzz",
    "v2",
    "guess",
    "fleet",
    "signed",
)
RIG_SECTIONS = {
    "latency",
    "flood",
    "newsource",
    "prefix64",
    "startup",
    "valid",
    "memory",
    "long",
    "v2",
    "fleet",
    "signed",
}


def ms(x: float) -> str:
    return "-" if x != x else f"{x * 1000:.2f}"


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def add(self, section: str, what: str, result: str) -> None:
        self.rows.append((section, what, result))
        print(f"  {section:<10} {what:<58} {result}", flush=True)

    def render(self) -> str:
        w1 = max(len("section"), *(len(r[0]) for r in self.rows))
        w2 = max(len(r[1]) for r in self.rows)
        lines = [f"{'section':<{w1}}  {'what':<{w2}}  result", f"{'-' * w1}  {'-' * w2}  ------"]
        lines += [f"{a:<{w1}}  {b:<{w2}}  {c}" for a, b, c in self.rows]
        return "\n".join(lines)


def lat_text(s: dict) -> str:
    text = f"p50 {ms(s['p50'])}  p90 {ms(s['p90'])}  p99 {ms(s['p99'])}  max {ms(s['max'])} ms"
    text += f"  (n={s['n']}"
    if s["failed"]:
        text += f", {s['failed']} never opened"
    text += ")"
    if "exit_p50" in s:
        text += f"; from the client's exit p50 {ms(s['exit_p50'])} p99 {ms(s['exit_p99'])}"
    return text


def section_latency(r, table: Table, knocks: int) -> None:
    systems = [
        Tumblerd(r, "nftables"),
        Tumblerd(r, "iptables"),
        Tumblerd(r, "nftables", kind="fwknop", tag="fwknop door, SPA from the fwknop client"),
        Fwknopd(r),
        Fwknopd(r, exec_client=True),
        Knockd(r),
    ]
    for system in systems:
        with system:
            table.add("latency", system.name, lat_text(measure(r, system, Sources(r), knocks)))


def section_flood(r, table: Table, count: int, sources: int) -> None:
    ceiling(table)
    for doors in (1, 100, 1000):
        with Tumblerd(r, "nftables", doors=doors, policy=False, tag=f"{doors} doors") as t:
            res = floodmod.junk_rate(r, t, count, sources)
        table.add(
            "flood",
            f"tumblerd junk discarded, {doors} door(s), {sources} sources",
            f"{res['rate']:,.0f} /CPU-s  ({res['handled']:,} of {res['sent']:,} sent at "
            f"{res['send_rate']:,.0f}/s; {res['cpu']:.2f} CPU-s)",
        )
    section_workers(r, table, count, sources)
    with Tumblerd(r, "nftables", kind="fwknop", policy=False, tag="fwknop door") as t:
        res = floodmod.junk_rate(r, t, count, sources)
    table.add(
        "flood",
        f"tumblerd fwknop door, SPA-shaped junk ({floodmod.SPA_SIZE} chars), {sources} sources",
        f"{res['rate']:,.0f} /CPU-s  ({res['handled']:,} of {res['sent']:,} sent at "
        f"{res['send_rate']:,.0f}/s; {res['cpu']:.2f} CPU-s)",
    )
    with Fwknopd(r) as f:
        res = floodmod.junk_rate(r, f, count, sources)
    table.add(
        "flood",
        f"fwknopd junk discarded (random base64, {floodmod.SPA_SIZE} chars), {sources} sources",
        f"{res['rate']:,.0f} /CPU-s  ({res['handled']:,} of {res['sent']:,} sent at "
        f"{res['send_rate']:,.0f}/s; {res['cpu']:.2f} CPU-s)",
    )


def section_workers(r, table: Table, count: int, sources: int) -> None:
    """`workers = 1` and `= 2`: junk per CPU-second summed over every process of the daemon."""
    top = ceiling(table)
    cores = os.cpu_count() or 1
    for n in (1, 2):
        with Tumblerd(r, "nftables", policy=False, tag=f"workers {n}", workers=n) as t:
            res = floodmod.junk_rate(r, t, count, sources)
        shares = ", ".join(f"worker {w}: {k:,}" for w, k in sorted(res["workers"].items()))
        table.add(
            "flood",
            f"tumblerd workers {n}, junk discarded, 1 door, {sources} sources",
            f"{res['rate']:,.0f} /CPU-s summed over "
            f"{f'{n + 1} processes' if n > 1 else 'its one process'} "
            f"({res['rate'] / top:.3f} x ceiling); {res['wall_rate']:,.0f}/s of wall time "
            f"({res['handled']:,} of {res['sent']:,} sent at {res['send_rate']:,.0f}/s; "
            f"{res['cpu']:.2f} CPU-s{'; ' + shares if shares else ''})",
        )
    if cores <= 2 + 1:  # the sender is one process, unpaced: it keeps a core busy
        table.add(
            "flood",
            "tumblerd workers: scaling",
            f"not shown here: {cores} cores, and 2 workers beside the sender need more than "
            "3; the rows above give the cost per CPU-second, not the throughput of more cores",
        )


CEILING: list[float] = []
WARMUP_BASE = "10.222.0.0"  # the warm-up's sources, never used by the measured flood


def ceiling(table: Table) -> float:
    """The SHA-256 ceiling, measured once per run (the first section that needs it)."""
    if not CEILING:
        CEILING.append(floodmod.sha256_ceiling())
        table.add(
            "flood",
            "SHA-256 of 90 bytes in this Python (ceiling)",
            f"{CEILING[0]:,.0f} digests/CPU-s",
        )
    return CEILING[0]


def section_newsource(r, table: Table, count: int) -> None:
    """Junk from a new source per datagram: the verifier in-process, then live tumblerd."""
    top = ceiling(table)
    n = min(count, 200_000)
    rate = issue11.verifier_rate(1, False, n)
    table.add(
        "newsource",
        "verifier in-process, junk from 16 sources, 1 door",
        f"{rate:,.0f} /CPU-s  ({rate / top:.3f} x ceiling)",
    )
    for doors in (1, 100, 1000):
        m = n if doors == 1 else max(300, n // (doors * 2))
        rate = issue11.verifier_rate(doors, True, m)
        table.add(
            "newsource",
            f"verifier in-process, new source per datagram, {doors} door(s)",
            f"{rate:,.0f} /CPU-s  ({rate / top:.4f} x ceiling; n={m:,})",
        )
    base = WIDE_FLOOD4.split("/")[0]  # up to 393,216 sources before WARMUP_BASE
    for doors in (1, 100, 1000):
        with Tumblerd(r, "nftables", doors=doors, policy=False, tag=f"{doors} doors") as t:
            res = floodmod.junk_rate(
                r, t, count, count, base=base, warmup_base=WARMUP_BASE, distinct=count
            )
        table.add(
            "newsource",
            f"tumblerd junk discarded, {doors} door(s), a new source per datagram",
            f"{res['rate']:,.0f} /CPU-s  ({res['rate'] / top:.4f} x ceiling; "
            f"{res['handled']:,} of {res['sent']:,} sent at {res['send_rate']:,.0f}/s, "
            f"{res['shed']:,} of them shed by the new-source budget; {res['cpu']:.2f} CPU-s)",
        )


def section_prefix64(r, table: Table, rounds: int) -> None:
    """500 junk datagrams from 500 addresses of one IPv6 /64, then a valid knock (1,000 doors)."""
    ceiling(table)
    for limit, tag in ((True, "kernel /64 limit"), (False, "policy without the kernel limit")):
        res = issue11.prefix_flood(r, 1000, 500, limit, rounds)
        ok = [x for x in res["times"] if x is not None]
        c = res["counters"]
        table.add(
            "prefix64",
            f"tumblerd 1,000 doors, 500 junk from one /64 then a knock ({tag})",
            f"{len(ok)}/{len(res['times'])} opened; p50 {ms(summary(ok)['p50'])} "
            f"max {ms(max(ok) if ok else float('nan'))} ms; daemon {res['cpu']:.2f} CPU-s "
            f"in {rounds} rounds (no-door {c['no-door']:,}, shed {c['shed']:,})"
            + ("" if res["alive"] else "  DAEMON DIED"),
        )


def section_startup(r, table: Table, runs: int) -> None:
    """Exec to datagram sent, `tumbler --open`, `tumbler ssh-proxy` (with and without a
    hosts file) and `tumbler open NAME`, against exec to exit of `python3 -c pass`,
    interleaved in the rig's client namespace (bench/startup.py)."""
    for bytecode, how in ((True, "bytecode cached"), (False, "no bytecode cache")):
        res = startupmod.measure_in(r.client, runs, bytecode)
        floor = res["floor"]
        load = " ".join(f"{x:.2f}" for x in res["load"])
        table.add(
            "startup",
            f"python3 -c pass (the interpreter's floor), exec to exit, {how}",
            f"{floor * 1000:.1f} ms median (n={res['runs']}; load average {load})",
        )
        for key, what in list(startupmod.ROWS.items())[1:]:
            table.add(
                "startup",
                f"{what}, exec to datagram sent, {how}",
                f"{res[key] * 1000:.1f} ms median ({res[key] / floor:.2f} x the floor)",
            )


def valid_text(times: list) -> str:
    ok = [t for t in times if t is not None]
    within = sum(1 for t in ok if t <= 0.1)
    s = summary(ok, len(times) - len(ok))
    return f"{within}/{len(times)} opened within 100 ms; " + lat_text(s)


def section_valid(r, table: Table, knocks: int, sources: int) -> None:
    for system in (
        Tumblerd(r, "nftables", tag="kernel per-source limit"),
        Tumblerd(r, "nftables", limit=False, tag="policy without the per-source limit"),
        Tumblerd(r, "nftables", kind="fwknop", tag="fwknop door, SPA junk"),
        Fwknopd(r),
    ):
        with system:
            res = floodmod.valid_under_flood(r, system, Sources(r), knocks, sources)
            alive = system.alive()
        table.add(
            "valid",
            f"{system.name}, unpaced flood from {sources} sources",
            valid_text(res["times"]) + ("" if alive else "  DAEMON DIED"),
        )


def section_v2(r, table: Table, count: int, knocks: int) -> None:
    """v1 and v2 side by side: junk from a new source per datagram, valid knocks under flood.

    65,536 spoofed sources and as many distinct payloads, paired one to one, so no source
    repeats within 65,536 datagrams. v1 junk is a well-formed knock with a random digest,
    v2 junk the magic then 64 random bytes (an unknown key id). v1 needs one round of
    hashing per new source and minute (3 x doors SHA-256): its 1-door row sends 65,536
    datagrams, its 1,000-door row 500 (each costs milliseconds, and a larger backlog
    would outlast the bench's wait for the queue to drain).
    """
    fresh = 65536
    for version, doors in ((1, 1), (1, 1000), (2, 1), (2, 1000)):
        n = count if version == 2 else min(count, fresh if doors == 1 else 500)
        tag = f"v{version}, {doors} doors"
        with Tumblerd(r, "nftables", doors=doors, policy=False, tag=tag, version=version) as t:
            res = floodmod.junk_rate(r, t, n, fresh, warmup=0, variety=fresh)
        table.add(
            "v2",
            f"v{version} junk discarded, {doors} door(s), a new source per datagram",
            f"{res['rate']:,.0f} /CPU-s  ({res['handled']:,} of {res['sent']:,} sent at "
            f"{res['send_rate']:,.0f}/s; {res['cpu']:.2f} CPU-s)",
        )
    with Tumblerd(r, "nftables", doors=1000, tag="v2, 1000 doors", version=2) as t:
        res = floodmod.valid_under_flood(r, t, Sources(r), knocks, fresh)
        alive = t.alive()
    table.add(
        "v2",
        "valid v2 knocks, unpaced v2-shape flood from 65,536 sources, 1,000 doors",
        valid_text(res["times"]) + ("" if alive else "  DAEMON DIED"),
    )


def section_guess(table: Table) -> None:
    from bench.guess import rows

    for what, result in rows(200_000, 10):
        table.add("guess", what, result)


def section_memory(r, table: Table, knocks: int, junk: int, sources: int) -> None:
    t = Tumblerd(r, "nftables", tag="rule scale")
    with t:
        time.sleep(1.0)
        table.add("memory", "tumblerd RSS idle", f"{proc_rss_kib(t.pid) / 1024:.1f} MiB")
        src = Sources(r)
        s1 = measure(r, t, src, knocks)
        r.flood_agent.call(
            op="flood", kind="tumbler", dst=SERVER_F, port=8675, count=junk, sources=sources
        )
        floodmod.settle(r)
        table.add(
            "memory",
            f"tumblerd RSS after {junk:,} junk datagrams from {sources:,} sources",
            f"{proc_rss_kib(t.pid) / 1024:.1f} MiB",
        )
        table.add("scale", f"knock-to-open with <{knocks + 3} addresses open", lat_text(s1))
        memmod.fill(r, 0, 1000)
        s2 = measure(r, t, src, knocks, warmup=1)
        table.add("scale", "knock-to-open with 1,000 addresses open", lat_text(s2))
        memmod.fill(r, 1000, 100_000)
        s3 = measure(r, t, src, knocks, warmup=1)
        table.add("scale", "knock-to-open with 100,000 addresses open", lat_text(s3))
        table.add(
            "memory",
            "tumblerd RSS with 100,000 addresses open (nft set)",
            f"{proc_rss_kib(t.pid) / 1024:.1f} MiB; open4 holds {memmod.open_count(r):,}",
        )


def section_long(r, table: Table, seconds: float, sources: int) -> None:
    """A long mixed-junk flood: zero crashes, zero replies, zero false opens."""
    r.flood.run(
        ["nft", "-f", "-"],
        input="table inet count {\n chain pre {\n type filter hook prerouting priority -300;\n"
        " meta nfproto ipv4 counter\n"
        " icmpv6 type { nd-neighbor-solicit, nd-router-solicit, mld2-listener-report } accept\n"
        " meta nfproto ipv6 counter\n }\n}\n",
    )
    t = Tumblerd(r, "nftables", tag="long flood")
    with t:
        sent = r.flood_agent.call(
            op="flood",
            kind="mixed",
            dst=SERVER_F,
            port=8675,
            seconds=seconds,
            count=10**12,
            sources=sources,
            variety=65536,
            timeout=seconds + 120,
        )
        floodmod.settle(r)
        alive = t.alive()
        log = t.log_text()
        crashes = int(not alive) + log.count("Traceback") + log.count("internal error")
        counters = t.counters() if alive else {}
        false_opens = memmod.open_count(r, "10.215.")
        counts = r.flood.run(["nft", "list", "table", "inet", "count"]).stdout
    replies = sum(int(w) for w in _after(counts.split(), "packets"))
    r.flood.run(["nft", "delete", "table", "inet", "count"], check=False)
    table.add(
        "long",
        f"tumblerd, {seconds:g}s mixed junk from {sources:,} sources",
        f"{sent['sent']:,} sent; {crashes} crashes, {replies} replies, {false_opens} false opens; "
        f"daemon saw {sum(counters.get(k, 0) for k in counters):,} "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(counters.items()))})",
    )


def _after(words: list[str], marker: str) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == marker]


def section_fuzz(table: Table, seconds: float) -> None:
    from bench.fuzz import run

    res = run(10**12, seconds, seed=int(time.time()), quiet=False)
    table.add(
        "fuzz",
        f"mutated datagrams through Pipeline.decide, {seconds:g}s",
        f"{res['iterations']:,} inputs, {res['exceptions']} exceptions, "
        f"{res['accepted']} accepted, {res['replays_accepted']} replays accepted",
    )


def machine() -> str:
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs ({model}), kernel {platform.release()}, "
        f"Python {platform.python_version()}, load average at start {load[0]:.2f}"
    )


def section_signed(r, table: Table, count: int, sources: int, seconds: float) -> None:
    """Signed knocks: verify cost in process, then junk against a real tumblerd."""
    from bench import signed as signedmod

    for what, result in signedmod.rows(seconds):
        table.add("signed", what + " (in process)", result)
    public, key_id = signedmod.bench_key()
    for label, kid in (("random key ids", ""), ("a valid key id", key_id)):
        with Tumblerd(r, "nftables", policy=False, authorized_keys=public, tag="signed") as t:
            res = floodmod.junk_rate(r, t, count, sources, kind="signed", key_id=kid)
            counters = t.counters()
        verified = counters.get("signed-bad-signature", 0)
        table.add(
            "signed",
            f"tumblerd signed junk discarded, {label}, {sources} sources",
            f"{res['rate']:,.0f} /CPU-s  ({res['handled']:,} of {res['sent']:,} sent at "
            f"{res['send_rate']:,.0f}/s; {res['cpu']:.2f} CPU-s; {verified:,} verified)",
        )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="./dev bench", description=__doc__.split("\n\n")[1])
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    p.add_argument("--knocks", type=int, default=60, help="measured knocks per latency row")
    p.add_argument("--junk", type=int, default=300_000, help="datagrams per junk-rate row")
    p.add_argument("--sources", type=int, default=256, help="spoofed flood sources")
    p.add_argument("--valid", type=int, default=20, help="valid knocks during the flood")
    p.add_argument("--memory-junk", type=int, default=1_000_000)
    p.add_argument("--long", type=float, default=120.0, help="seconds of the long flood")
    p.add_argument("--fuzz", type=float, default=30.0, help="seconds of fuzzing")
    p.add_argument("--quick", action="store_true", help="a smoke run: small numbers everywhere")
    args = p.parse_args(argv)
    if args.quick:
        args.knocks, args.junk, args.valid = 10, 20_000, 3
        args.memory_junk, args.long, args.fuzz = 20_000, 3.0, 2.0
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))} (known: {', '.join(SECTIONS)})")
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces, firewalls)", file=sys.stderr)
        return 2
    print(f"machine: {machine()}")
    print(f"command: ./dev bench {' '.join(argv if argv is not None else sys.argv[1:])}")
    table = Table()
    clients = 8 * (args.knocks + 4) + args.valid * 3 + 50
    started = time.time()
    try:
        if set(only) & RIG_SECTIONS:
            with rig(clients=clients, flooders=4) as r:
                r.listen(TARGET)
                if "latency" in only:
                    section_latency(r, table, args.knocks)
                if "flood" in only:
                    section_flood(r, table, args.junk, args.sources)
                if "newsource" in only:
                    section_newsource(r, table, args.junk)
                if "prefix64" in only:
                    section_prefix64(r, table, 3 if args.quick else 5)
                if "startup" in only:
                    section_startup(r, table, 10 if args.quick else 40)
                if "valid" in only:
                    section_valid(r, table, args.valid, args.sources)
                if "memory" in only:
                    section_memory(r, table, args.knocks, args.memory_junk, 65536)
                if "long" in only:
                    section_long(r, table, args.long, 65536)
                if "v2" in only:
                    section_v2(r, table, args.junk, args.valid)
                if "fleet" in only:
                    fleetmod.knock_to_open(
                        r,
                        lambda what, result: table.add("fleet", what, result),
                        args.knocks,
                        lat_text,
                    )
                if "signed" in only:
                    section_signed(r, table, args.junk, args.sources, 0.2 if args.quick else 1.0)
    except KeyboardInterrupt:
        print("\nbench: interrupted; rig removed", file=sys.stderr)
        return 130
    if "fuzz" in only:
        section_fuzz(table, args.fuzz)
    if "guess" in only:
        section_guess(table)
    if "fleet" in only:
        claims, seconds = (200, 1.0) if args.quick else (2000, 5.0)
        fleetmod.measure(
            lambda what, result: table.add("fleet", what, result),
            claims=claims,
            seconds=seconds,
            clients=8,
            requests=50_000 if args.quick else 500_000,
        )
    print()
    print(table.render())
    print(f"\n({time.time() - started:.0f}s; rig removed: {not leftover_namespaces()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
