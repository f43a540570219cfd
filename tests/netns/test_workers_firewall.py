"""`workers = 2` with a real firewall, in network namespaces: the main process alone opens.

Topology and helpers as in test_daemon_firewall (server, clients A and B, nftables). Each
`send` is a new socket, so a new source port: copies of one datagram are spread over the
workers by the kernel as any other sources are.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from tests.netns.netns import Topology, assert_reach
from tests.netns.test_daemon_firewall import (
    PORT,
    SECRET,
    Tumblerd,
    addresses,
    door,
    knock,
    openings,
    send,
)
from tests.waiting import wait_until

BACKEND = "nftables"


def serve_workers(topo: Topology, folder: Path, workers: int = 2) -> Tumblerd:
    daemon = Tumblerd(topo, folder, BACKEND, [door("ssh", SECRET)])
    text = daemon.config.read_text()
    daemon.config.write_text(text.replace("[common]\n", f"[common]\n   workers = {workers}\n", 1))
    daemon.init()
    topo.server.listen(PORT)
    return daemon.start()


def workers(daemon: Tumblerd) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = daemon.status()["workers"]
    return found


def test_workers_open_once_per_datagram_and_survive_a_kill(
    topology: Topology, tmp_path: Path
) -> None:
    topo = topology
    daemon = serve_workers(topo, tmp_path)
    assert len(workers(daemon)) == 2
    assert_reach(topo, PORT, {"a4": False, "b6": False})

    datagram = knock(topo.a, topo.server4)
    daemon.wait_opened(topo.a4)
    assert_reach(topo, PORT, {"a4": True, "b4": False})
    # The same bytes again from eight more source ports of A: both workers see copies
    # (unless the kernel sends all eight to one, a chance of 1 in 128), none opens again.
    for _ in range(8):
        send(topo.a, topo.server4, datagram)
    wait_until(lambda: daemon.counters().get("replay") == 8, "the eight copies to be refused")
    assert daemon.counters()["accepted"] == 1
    assert daemon.log_text().count(f"opened tcp/{PORT} for {topo.a4}") == 1
    assert addresses(openings(topo, BACKEND)) == [topo.a4]

    victim = workers(daemon)[1]
    os.kill(victim["pid"], signal.SIGKILL)
    daemon.wait_log(f"worker 2 (pid {victim['pid']}) died, killed by signal SIGKILL")
    wait_until(
        lambda: workers(daemon)[1]["pid"] not in (0, victim["pid"]), "worker 2 to be replaced"
    )
    knock(topo.b, topo.server6)
    daemon.wait_opened(topo.b6)
    assert_reach(topo, PORT, {"a4": True, "b6": True, "a6": False})

    pids = [w["pid"] for w in workers(daemon)]
    assert daemon.stop() == 0
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
