"""A small network-namespace lab: namespaces, veth links, listeners, clean-up.

Used by `tumblerd demo`, the namespace tests and the benchmarks (bench/rig.py builds its
namespaces here), so that all three show the same thing: real hosts, a real firewall,
real connections.

Everything a `Lab` makes lives in namespaces it created (`tmb-<pid>-<n>-<role>`),
with test addresses (10.213.0.0/24, fd00:213::/64) that exist only there, so no
packet ever leaves the machine's own namespaces. `Lab.cleanup` kills every
process it started or that still runs inside its namespaces, then deletes the
namespaces, which takes their interfaces and firewall rules with them.

Typical use (see conftest.py for the fixtures):

    lab = Lab()
    topo = lab.topology()                 # server, client a, client b on one switch
    srv = topo.server.listen(2222)        # a TCP server on both families
    assert can_connect(topo.a, topo.server4, 2222)
    lab.cleanup()
"""

from __future__ import annotations

import itertools
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tumbler.actions.firewall.runner import Runner

SUBNET4 = "10.213.0"
SUBNET6 = "fd00:213::"
BACKEND_NET = "10.214.0"  # behind the server when it routes (`Lab.backend_behind`)
BACKEND_NET6 = "fd00:214::"
BANNER = b"tumbler-lab\n"

_counter = itertools.count(1)

# A TCP server on [::] (both families) that greets each client with BANNER.
_LISTENER = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    try:
        c.sendall(%r)
    finally:
        c.close()
""" % (BANNER,)  # noqa: UP031

# Exit 0 only if a connection is made and the banner arrives.
_CONNECT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as c:
        c.settimeout(float(sys.argv[3]))
        sys.exit(0 if c.recv(64) == %r else 1)
except OSError:
    sys.exit(1)
""" % (BANNER,)  # noqa: UP031


def unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    name = f"tmb-{os.getpid()}-probe"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"'ip netns add' failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


class Namespace:
    """One named network namespace; commands run in it through `ip netns exec`."""

    def __init__(self, lab: Lab, name: str) -> None:
        self.lab = lab
        self.name = name

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, argv: Sequence[str], input: str | None = None, check: bool = True, timeout: float = 15
    ) -> subprocess.CompletedProcess[str]:
        """Run argv in this namespace; with `check`, fail loudly with its stderr."""
        proc = subprocess.run(
            self.argv(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"in {self.name}: {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start argv in this namespace; the lab kills it at clean-up."""
        proc = subprocess.Popen(self.argv(argv), **kwargs)
        self.lab.processes.append(proc)
        return proc

    def runner(self, timeout: float = 15) -> Runner:
        """A firewall runner whose commands act inside this namespace."""
        return Runner(prefix=["ip", "netns", "exec", self.name], timeout=timeout)

    def ip(self, *args: str) -> None:
        """Run `ip -n <this namespace> ...`; fail with ip's own message."""
        proc = subprocess.run(["ip", "-n", self.name, *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ip -n {self.name} {' '.join(args)}: {proc.stderr.strip()}")

    def batch(self, commands: Sequence[str]) -> None:
        """Many `ip` commands (one a line, without `ip`) in one process: `ip -n NS -batch -`.

        Hundreds of addresses are added in one go instead of one process each.
        """
        if not commands:
            return
        proc = subprocess.run(
            ["ip", "-n", self.name, "-batch", "-"],
            input="\n".join(commands) + "\n",
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ip -n {self.name} -batch: {proc.stderr.strip()}")

    def listen(self, port: int, timeout: float = 5) -> subprocess.Popen[Any]:
        """Start a TCP server on [::]:port (IPv4 and IPv6); return once it listens."""
        proc = self.popen(
            [sys.executable, "-c", _LISTENER, str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready or proc.stdout.readline().strip() != b"ready":
            proc.kill()
            raise RuntimeError(f"listener on port {port} in {self.name} did not start")
        return proc


def can_connect(ns: Namespace, host: str, port: int, timeout: float = 1.0) -> bool:
    """True if a TCP connection from `ns` to host:port gets the listener's banner."""
    return connect_all([(ns, host, port)], timeout)[0]


def connect_all(
    checks: Sequence[tuple[Namespace, str, int]],
    timeout: float = 1.0,
    timeouts: Sequence[float] | None = None,
) -> list[bool]:
    """`can_connect` for several (namespace, host, port) at once, so blocked ones wait together.

    `timeouts`, one per check, replaces `timeout` where checks may wait differently.
    """
    waits = list(timeouts) if timeouts is not None else [timeout] * len(checks)
    procs = [
        subprocess.Popen(
            ns.argv([sys.executable, "-c", _CONNECT, host, str(port), str(wait)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for (ns, host, port), wait in zip(checks, waits, strict=True)
    ]
    return [proc.wait(wait + 10) == 0 for proc, wait in zip(procs, waits, strict=True)]


@dataclass
class Topology:
    """A server and two clients, A and B, on one switch (a bridge in its own namespace)."""

    server: Namespace
    a: Namespace
    b: Namespace
    switch: Namespace
    server4: str = f"{SUBNET4}.1"
    a4: str = f"{SUBNET4}.2"
    b4: str = f"{SUBNET4}.3"
    server6: str = f"{SUBNET6}1"
    a6: str = f"{SUBNET6}2"
    b6: str = f"{SUBNET6}3"


class Lab:
    """Owns the namespaces and processes of one test; `cleanup` removes them all."""

    def __init__(self, prefix: str = "tmb") -> None:
        self.prefix = f"{prefix}-{os.getpid()}-{next(_counter)}"
        self.namespaces: list[Namespace] = []
        self.processes: list[subprocess.Popen[Any]] = []

    def namespace(self, role: str) -> Namespace:
        """A fresh namespace with loopback up."""
        ns = Namespace(self, f"{self.prefix}-{role}")
        subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True)
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def topology(self) -> Topology:
        """Server .1, A .2, B .3 (IPv4 and IPv6) on a bridge in a separate switch namespace.

        The bridge lives apart from the server so that the server's firewall
        sees only traffic addressed to it, never frames switched between A and B.
        """
        switch = self.namespace("sw")
        switch.ip("link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
        switch.ip("link", "set", "br0", "up")
        hosts = {}
        for index, role in enumerate(("srv", "a", "b"), start=1):
            ns = self.namespace(role)
            ns.run(["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"])
            port = f"port-{role}"
            switch.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
            switch.ip("link", "set", port, "master", "br0", "up")
            ns.ip("addr", "add", f"{SUBNET4}.{index}/24", "dev", "eth0")
            ns.ip("addr", "add", f"{SUBNET6}{index}/64", "dev", "eth0", "nodad")
            ns.ip("link", "set", "eth0", "up")
            hosts[role] = ns
        return Topology(hosts["srv"], hosts["a"], hosts["b"], switch)

    def backend_behind(
        self, topo: Topology, published: int, port: int, tool: str = "iptables-nft"
    ) -> Namespace:
        """A backend host behind the server, which becomes a router publishing it as Docker does.

        The backend (BACKEND_NET.2 and BACKEND_NET6 2, its gateway the server at .1 and 1)
        is reached only through the server. For each family, `tool` (iptables-nft or
        iptables-legacy, and its ip6tables twin) DNATs TCP to the server's `published` port
        to the backend's `port`, and FORWARD drops by default, jumps to DOCKER-USER first
        and accepts connections to the backend's port and established traffic, as Docker's
        rules do.
        """
        be = self.namespace("be")
        router = topo.server
        router.ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", be.name)
        be.run(["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"])
        router.ip("addr", "add", f"{BACKEND_NET}.1/24", "dev", "eth1")
        router.ip("addr", "add", f"{BACKEND_NET6}1/64", "dev", "eth1", "nodad")
        router.ip("link", "set", "eth1", "up")
        be.ip("addr", "add", f"{BACKEND_NET}.2/24", "dev", "eth0")
        be.ip("addr", "add", f"{BACKEND_NET6}2/64", "dev", "eth0", "nodad")
        be.ip("link", "set", "eth0", "up")
        be.ip("route", "add", "default", "via", f"{BACKEND_NET}.1")
        be.ip("-6", "route", "add", "default", "via", f"{BACKEND_NET6}1")
        router.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        router.run(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        for program, target, to in (
            (tool, f"{BACKEND_NET}.2", f"{BACKEND_NET}.2:{port}"),
            (
                tool.replace("iptables", "ip6tables", 1),
                f"{BACKEND_NET6}2",
                f"[{BACKEND_NET6}2]:{port}",
            ),
        ):
            rules = [
                [
                    *("-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", str(published)),
                    *("-j", "DNAT", "--to-destination", to),
                ],
                ["-N", "DOCKER-USER"],
                ["-A", "DOCKER-USER", "-j", "RETURN"],
                ["-P", "FORWARD", "DROP"],
                ["-A", "FORWARD", "-j", "DOCKER-USER"],
                [
                    *("-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"),
                    *("-j", "ACCEPT"),
                ],
                ["-A", "FORWARD", "-d", target, "-p", "tcp", "--dport", str(port), "-j", "ACCEPT"],
            ]
            for rule in rules:
                router.run([program, "-w", "5", *rule])
        return be

    def cleanup(self) -> None:
        """Kill what runs in the lab, then delete its namespaces; never raises."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        for ns in reversed(self.namespaces):
            pids = subprocess.run(
                ["ip", "netns", "pids", ns.name], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                gone = subprocess.run(
                    ["ip", "netns", "del", ns.name], capture_output=True, check=False
                ).returncode
                if gone == 0 or ns.name not in leftover_namespaces():
                    break
                time.sleep(0.05)
        self.namespaces.clear()
        self.processes.clear()


def leftover_namespaces(prefix: str = "tmb-") -> list[str]:
    """Names of namespaces that look like ours (for a final check that all are gone)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith(prefix)]
