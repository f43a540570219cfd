"""Namespace-test helpers on top of `tumbler.lab.netns` (the lab the demo and benchmarks use too).

Everything a `Lab` makes lives in namespaces it created (`tmb-<pid>-<n>-<role>`), with
test addresses (10.213.0.0/24, fd00:213::/64) that exist only there, so no packet ever
leaves the machine's own namespaces. `Lab.cleanup` kills every process it started or that
still runs inside its namespaces, then deletes the namespaces, which takes their
interfaces and firewall rules with them.

    lab = Lab()
    topo = lab.topology()                 # server, client a, client b on one switch
    srv = topo.server.listen(2222)        # a TCP server on both families
    assert can_connect(topo.a, topo.server4, 2222)
    lab.cleanup()
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.waiting import wait_until
from tumbler.lab.netns import (
    BANNER,
    SUBNET4,
    SUBNET6,
    Lab,
    Namespace,
    Topology,
    can_connect,
    connect_all,
    leftover_namespaces,
    unavailable_reason,
)
from tumbler.lab.ready import NotReady, start_ready

__all__ = [
    "BANNER",
    "BLOCKED",
    "OPEN_WAIT",
    "SUBNET4",
    "SUBNET6",
    "TUMBLERD",
    "Lab",
    "Namespace",
    "Topology",
    "assert_reach",
    "can_connect",
    "connect_all",
    "leftover_namespaces",
    "reach",
    "start_tumblerd",
    "stop",
    "unavailable_reason",
    "wait_until",
]

TUMBLERD = (sys.executable, "-m", "tumbler.cli.tumblerd")


def start_tumblerd(
    ns: Namespace, config: str | os.PathLike[str], log: str | os.PathLike[str], timeout: float = 10
) -> subprocess.Popen[bytes]:
    """Run `tumblerd --config CONFIG` in `ns`; return once it said READY=1.

    The lab kills it at clean-up; `stop(proc)` ends it the polite way (SIGTERM) sooner. Its
    stderr goes to `tumblerd.stderr` beside the config (`log` is the config's log file),
    and is quoted if it does not become ready.
    """
    stderr_path = Path(config).parent / "tumblerd.stderr"
    with open(stderr_path, "ab") as stderr:
        try:
            return start_ready(
                ns.popen,
                [*TUMBLERD, "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                timeout=timeout,
            )
        except NotReady as exc:
            raise RuntimeError(f"tumblerd {exc}: {stderr_path.read_text()}") from None


def stop(proc: subprocess.Popen[Any], timeout: float = 10) -> int | None:
    """SIGTERM `proc` and wait for it (SIGKILL after `timeout` s); its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


BLOCKED = 0.5
"""Seconds a connection expected to be blocked is given: an open port answers in milliseconds."""
OPEN_WAIT = 10.0
"""Seconds a connection expected to open may take: the kernel answers the SYN at once, but
the listener sends its banner only when a busy machine lets it run."""


def _targets(topo: Topology) -> dict[str, tuple[Namespace, str]]:
    return {
        "a4": (topo.a, topo.server4),
        "b4": (topo.b, topo.server4),
        "a6": (topo.a, topo.server6),
        "b6": (topo.b, topo.server6),
    }


def reach(topo: Topology, port: int, *who: str, blocked: float = BLOCKED) -> dict[str, bool]:
    """Which of a4, b4, a6, b6 (all by default) can open a new connection to the server's port.

    Checked in parallel; a dropped SYN is waited for `blocked` seconds. Prefer
    `assert_reach`, which gives a connection expected to open the time a busy machine needs.
    """
    target = _targets(topo)
    names = who or tuple(target)
    results = connect_all([(target[n][0], target[n][1], port) for n in names], blocked)
    return dict(zip(names, results, strict=True))


def assert_reach(
    topo: Topology, port: int, want: dict[str, bool], blocked: float = BLOCKED
) -> None:
    """Assert which of a4, b4, a6, b6 can open a new connection to the server's port.

    Checked in parallel. One expected to open is given OPEN_WAIT seconds and passes as
    soon as the banner arrives; one expected to be blocked is given `blocked` seconds (an
    open port would answer far sooner), so a busy machine cannot make a right answer wrong.
    """
    target = _targets(topo)
    names = list(want)
    checks = [(target[n][0], target[n][1], port) for n in names]
    got = connect_all(checks, timeouts=[OPEN_WAIT if want[n] else blocked for n in names])
    assert dict(zip(names, got, strict=True)) == want
