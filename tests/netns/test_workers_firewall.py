"""`workers = 2` with a real firewall, in network namespaces: the main process alone opens.

Topology and helpers as in test_daemon_firewall (server, clients A and B, nftables). Each
`send` is a new socket, so a new source port: copies of one datagram are spread over the
workers by the kernel as any other sources are.
"""

from __future__ import annotations

import json
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


def test_fwknop_door_with_workers_opens_once_for_the_packets_address(
    topology: Topology, tmp_path: Path
) -> None:
    """An SPA grant (its own address, ports and timeout) crosses from a worker intact."""
    from tests.netns.test_fwknop_tumblerd import (
        HMAC_KEY,
        KEY,
        Server,
        fwknop,
        spa_plaintext,
    )
    from tests.netns.test_fwknop_tumblerd import PORT as SPA_PORT
    from tests.netns.test_fwknop_tumblerd import send as send_spa
    from tumbler.protocols import fwknop as spa

    server = Server(topology, tmp_path)
    text = server.config.read_text()
    server.config.write_text(text.replace("[common]\n", "[common]\n   workers = 2\n", 1))
    server.restart()
    assert len(json.loads(server.cli("status", "--json"))["workers"]) == 2
    saved = fwknop(
        topology.a,
        tmp_path / "home",
        "-A",
        f"tcp/{SPA_PORT}",
        "-a",
        topology.a4,
        "-D",
        topology.server4,
        "-T",
    )
    data = saved.read_bytes().strip()
    send_spa(topology.a, topology.server4, data)
    server.wait_opened(topology.a4)
    for _ in range(4):  # the same bytes from B's source ports: spread over the workers
        send_spa(topology.b, topology.server4, data)
    keys = spa.SpaKeys.from_text(key_base64=KEY, hmac_key_base64=HMAC_KEY)
    again = spa.wrap(spa_plaintext(spa.open_packet(data, keys)), keys)
    send_spa(topology.b, topology.server4, again, port=8675)  # re-salted, on the other port
    wait_until(lambda: server.counters().get("replay", 0) == 5, "five replays counted")
    assert server.counters()["accepted"] == 1
    assert server.log_text().count(f"opened tcp/{SPA_PORT} for {topology.a4}") == 1
