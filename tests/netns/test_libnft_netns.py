"""The in-process nftables path (libnftables) really changes the kernel's ruleset.

libnftables acts in the network namespace of the process that calls it, so the backend
runs in a small program started inside the server namespace, as tumblerd itself would be.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.netns.netns import BLOCKED, OPEN_WAIT, Topology, connect_all
from tumbler.actions.firewall import libnft

PORT = 2222

SCRIPT = """
import sys, time
from tumbler.actions.firewall.libnft import LibnftRunner
from tumbler.actions.firewall.nftables import NftablesBackend
from tumbler.ports import PortSpec
backend = NftablesBackend()
assert isinstance(backend.runner, LibnftRunner), type(backend.runner)
backend.init_policy(8675)
port = int(sys.argv[2])
backend.open("ssh", sys.argv[1], [PortSpec("tcp", port, port)], 60, time.time())
print(";".join(sorted(e.address for e in backend.list_open(time.time()))))
"""


def test_in_process_nftables_opens_a_port(topology: Topology) -> None:
    if libnft.load() is None:
        pytest.skip("libnftables.so.1 is not installed")
    topo = topology
    topo.server.listen(PORT)
    proc = subprocess.run(
        topo.server.argv([sys.executable, "-c", SCRIPT, topo.a4, str(PORT)]),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == topo.a4
    ruleset = topo.server.run(["nft", "list", "set", "inet", "tumbler", "open4"]).stdout
    assert f"{topo.a4} . tcp . {PORT}" in ruleset
    checks = [(topo.a, topo.server4, PORT), (topo.b, topo.server4, PORT)]
    assert connect_all(checks, timeouts=[OPEN_WAIT, BLOCKED]) == [True, False]
