"""The benchmark rig: a server, a client and a flood sender, each in its own network namespace.

    client  tmbb-<pid>-<n>-cli  eth0 10.214.0.2/24 + 10.214.1.1 ... /32 (one per knock)
            --veth--  srv eth-c 10.214.0.1/24, route 10.214.0.0/16 via 10.214.0.2
    flood   tmbb-<pid>-<n>-fld  eth0 10.215.0.2/24 + 10.215.1.1 ... /32 (a few hundred sources)
            --veth--  srv eth-f 10.215.0.1/24, route 10.215.0.0/16 via 10.215.0.2

Two point-to-point links instead of a bridge, so the flood never shares a queue with the
client's knocks on the way in (it still shares the server's CPU and its knock socket).
Every packet stays inside these namespaces. The namespaces, their processes and their
clean-up are a `tumbler.lab` Lab's, the same as the demo's and the tests'; what is the
bench's own is the wiring above, the agents and the listener. `Rig.cleanup` kills every
process inside the namespaces and deletes them (with their links and firewall rules); it
runs at exit, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tumbler.lab import netns
from tumbler.lab.netns import Lab, Namespace

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
if not Path(PYTHON).exists():
    PYTHON = sys.executable

SERVER_C = "10.214.0.1"
SERVER_F = "10.215.0.1"
CLIENT_GW = "10.214.0.2"
FLOOD_GW = "10.215.0.2"
# Spoofed sources beyond the flooders' own addresses: a new IPv4 source per datagram comes
# from this /13 (524,288 addresses); IPv6 floods come from /64s of FLOOD_NET6.
WIDE_FLOOD4 = "10.216.0.0/13"
SERVER_F6 = "fd00:215::1"
FLOOD_GW6 = "fd00:215::2"
FLOOD_NET6 = "fd00:216::/32"
PREFIX = "tmbb"  # the rig's namespaces: tmbb-<pid>-<n>-<role>, apart from the tests' tmb-


def client_address(i: int) -> str:
    """The i-th client source address (i from 0): 10.214.1.1, ... 10.214.x.y."""
    n = 256 + 1 + i  # skip 10.214.0.x (the server's end lives there)
    return f"10.214.{n // 256}.{n % 256}"


def flood_address(i: int) -> str:
    n = 256 + 1 + i
    return f"10.215.{n // 256}.{n % 256}"


class Agent:
    """A helper process inside a namespace that sends knocks, probes and floods on request."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = ns.popen(
            [PYTHON, "-m", "bench.agent"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            cwd=str(ROOT),
        )

    def send(self, **request) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float = 600.0) -> dict:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"agent in {self.ns.name} did not answer in {timeout:g}s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"agent in {self.ns.name} died")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"agent in {self.ns.name}: {answer['error']}")
        return answer

    def call(self, timeout: float = 600.0, **request) -> dict:
        self.send(**request)
        return self.receive(timeout)


class Rig:
    """Namespaces srv, cli and fld, linked as in the module docstring."""

    def __init__(self, clients: int = 600, flooders: int = 256) -> None:
        self.lab = Lab(prefix=PREFIX)
        self.clients = clients
        self.flooders = flooders
        self.tmp = Path(tempfile.mkdtemp(prefix="tmbb-"))
        self._cleaned = False
        self.server = self.lab.namespace("srv")
        self.client = self.lab.namespace("cli")
        self.flood = self.lab.namespace("fld")
        self._wire()
        self.client_agent = Agent(self.client)
        self.flood_agent = Agent(self.flood)

    def _wire(self) -> None:
        for link, peer in (("eth-c", self.client), ("eth-f", self.flood)):
            self.server.ip(
                "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", peer.name
            )
        # The many source addresses are /32s routed through one neighbour, so the server
        # resolves one MAC per link, never one per knock.
        self.server.batch(
            [
                f"addr add {SERVER_C}/24 dev eth-c",
                f"addr add {SERVER_F}/24 dev eth-f",
                "link set eth-c up",
                "link set eth-f up",
                f"route add 10.214.0.0/16 via {CLIENT_GW}",
                f"route add 10.215.0.0/16 via {FLOOD_GW}",
                f"route add {WIDE_FLOOD4} via {FLOOD_GW}",
                f"addr add {SERVER_F6}/64 dev eth-f nodad",
                f"route add {FLOOD_NET6} via {FLOOD_GW6}",
            ]
        )
        self.client.batch(
            [f"addr add {CLIENT_GW}/24 dev eth0", "link set eth0 up"]
            + [f"addr add {client_address(i)}/32 dev eth0" for i in range(self.clients)]
            + [f"route add default via {SERVER_C}"]
        )
        self.flood.batch(
            [f"addr add {FLOOD_GW}/24 dev eth0", "link set eth0 up"]
            + [f"addr add {FLOOD_GW6}/64 dev eth0 nodad"]
            + [f"addr add {flood_address(i)}/32 dev eth0" for i in range(self.flooders)]
            + [f"route add default via {SERVER_F}", f"route add ::/0 via {SERVER_F6}"]
        )

    def reset_firewall(self) -> None:
        """Nothing filtered in the server: an empty nftables ruleset, legacy tables flushed."""
        self.server.run(["nft", "flush", "ruleset"])
        if shutil.which("iptables-legacy"):
            for tool in ("iptables-legacy", "ip6tables-legacy"):
                for args in (["-P", "INPUT", "ACCEPT"], ["-F"], ["-X"]):
                    self.server.run([tool, *args], check=False)

    def listen(self, port: int) -> subprocess.Popen:
        """A TCP server in the server namespace that accepts and closes at once."""
        code = (
            "import socket,sys\n"
            "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            "s.bind(('0.0.0.0',int(sys.argv[1])));s.listen(4096);print('ready',flush=True)\n"
            "while True:\n c,_=s.accept();c.close()\n"
        )
        proc = self.server.popen([PYTHON, "-c", code, str(port)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        if not ready or proc.stdout.readline().strip() != "ready":
            raise RuntimeError("listener did not start")
        return proc

    def cleanup(self) -> None:
        """The lab's clean-up (every process, then the namespaces), and the rig's files."""
        if self._cleaned:
            return
        self._cleaned = True
        self.lab.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)


def leftover_namespaces() -> list[str]:
    """This run's rig namespaces still present (another run's rig may be up beside it)."""
    return netns.leftover_namespaces(f"{PREFIX}-{os.getpid()}-")


@contextlib.contextmanager
def rig(**kwargs):
    """A Rig that is removed at the end, on an exception, on Ctrl-C and on SIGTERM."""

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, on_term)
    made = None
    try:
        made = Rig(**kwargs)
        atexit.register(made.cleanup)
        yield made
    finally:
        if made is not None:
            made.cleanup()
        signal.signal(signal.SIGTERM, old)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
