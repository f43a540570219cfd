"""`workers = 2`: two receiving processes on one port, one claim per datagram, kept alive.

The kernel spreads sources over the workers by their address and port (SO_REUSEPORT), so
each test first learns which worker a source port reaches, by sending junk from it and
watching which worker's counter grows; then it knocks through the worker it means to.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import DOORS
from tests.integration.daemon import TUMBLERD, Tumblerd
from tests.waiting import wait_until
from tumbler.protocols.tumbler1 import make_knock


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Tumblerd]:
    d = Tumblerd(tmp_path, DOORS, common="   workers = 2\n")
    d.start()
    yield d
    d.stop()


def status(daemon: Tumblerd) -> dict[str, Any]:
    result = subprocess.run(
        [*TUMBLERD, "status", "--json", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def worker_counts(answer: dict[str, Any], outcome: str) -> dict[int, int]:
    return {w["worker"]: w["counters"].get(outcome, 0) for w in answer["workers"]}


def sources_by_worker(
    daemon: Tumblerd, wanted: int = 2, most: int = 64
) -> dict[int, socket.socket]:
    """A UDP socket on 127.0.0.1 for each worker, found by sending junk and watching counters."""
    found: dict[int, socket.socket] = {}
    before = worker_counts(status(daemon), "malformed")
    for _ in range(most):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.sendto(b"junk", ("127.0.0.1", daemon.port))

        def grown() -> int | None:
            now = worker_counts(status(daemon), "malformed")
            return next((w for w in now if now[w] > before.get(w, 0)), None)

        worker = wait_until(grown, what="the junk to be counted by a worker")
        before[worker] += 1
        if worker in found:
            sock.close()
        else:
            found[worker] = sock
        if len(found) == wanted:
            return found
    raise AssertionError(f"{most} source ports all reached the same worker")


def test_both_workers_carry_load_and_status_sums_them(daemon: Tumblerd) -> None:
    answer = status(daemon)
    assert [w["worker"] for w in answer["workers"]] == [1, 2]
    pids = {w["pid"] for w in answer["workers"]}
    assert len(pids) == 2 and answer["pid"] not in pids
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(64)]
    for sock in socks:
        sock.sendto(b"TUMBLER1: " + b"0" * 64, ("127.0.0.1", daemon.port))
        sock.close()

    def all_counted() -> dict[str, Any] | None:
        answer = status(daemon)
        return (
            answer
            if answer["counters"].get("no-door", 0) + answer["counters"].get("malformed", 0) == 64
            else None
        )

    answer = wait_until(all_counted, what="64 junk datagrams to be counted")
    per_worker = {w: n for w, n in worker_counts(answer, "no-door").items()}
    malformed = worker_counts(answer, "malformed")
    carried = {w: per_worker[w] + malformed[w] for w in per_worker}
    assert sum(carried.values()) == 64
    assert all(n > 0 for n in carried.values()), carried
    text = subprocess.run(
        [*TUMBLERD, "status", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert "worker 1 pid" in text and "worker 2 pid" in text


def test_a_datagram_accepted_by_one_worker_is_refused_by_the_other(daemon: Tumblerd) -> None:
    sources = sources_by_worker(daemon)
    data = make_knock("open-pAsSwOrD", "127.0.0.1", datetime.now(UTC))
    for sock in sources.values():
        sock.sendto(data, ("127.0.0.1", daemon.port))

    def decided() -> dict[str, Any] | None:
        answer = status(daemon)
        c = answer["counters"]
        return answer if c.get("accepted", 0) + c.get("replay", 0) == 2 else None

    answer = wait_until(decided, what="both copies to be decided")
    assert answer["counters"]["accepted"] == 1
    assert answer["counters"]["replay"] == 1
    accepted, replayed = worker_counts(answer, "accepted"), worker_counts(answer, "replay")
    assert sorted(accepted.values()) == [0, 1] and sorted(replayed.values()) == [0, 1]
    assert {w for w in accepted if accepted[w]} != {w for w in replayed if replayed[w]}
    wait_until(daemon.lines, what="the door's command")
    # A third copy, to either worker, is a replay too.
    sources[1].sendto(data, ("127.0.0.1", daemon.port))
    wait_until(
        lambda: status(daemon)["counters"].get("replay") == 2, what="the third copy's refusal"
    )
    assert daemon.lines() == ["open-ssh 127.0.0.1 open-ssh 127.0.0.1"]
    assert daemon.log_text().count("knock accepted: door open-ssh") == 1
    door = subprocess.run(
        [*TUMBLERD, "status", "open-ssh", "--json", "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(door.stdout)["accepted"] == 1, door.stderr


def test_a_killed_worker_is_logged_and_replaced(daemon: Tumblerd) -> None:
    victim = status(daemon)["workers"][0]
    os.kill(victim["pid"], signal.SIGKILL)
    line = f"worker 1 (pid {victim['pid']}) died, killed by signal SIGKILL; starting a new one"
    wait_until(lambda: line in daemon.log_text(), what="the worker's death to be logged")

    def replaced() -> dict[str, Any] | None:
        w = status(daemon)["workers"][0]
        return w if w["pid"] != victim["pid"] and w["pid"] > 0 and w["restarts"] == 1 else None

    new = wait_until(replaced, what="a new worker 1")
    assert daemon.alive()
    assert f"worker 1 started, pid {new['pid']}" in daemon.log_text()
    # Knocks through each worker still open.
    sources = sources_by_worker(daemon)
    sources[1].sendto(
        make_knock("open-pAsSwOrD", "127.0.0.1", datetime.now(UTC)), ("127.0.0.1", daemon.port)
    )
    wait_until(daemon.lines, what="the knock through the new worker")
    sources[2].sendto(
        make_knock("sentinel-secret", "127.0.0.1", datetime.now(UTC)), ("127.0.0.1", daemon.port)
    )
    wait_until(lambda: len(daemon.lines()) == 2, what="the knock through the other worker")


def test_a_reload_replaces_the_workers_and_keeps_the_doors(daemon: Tumblerd) -> None:
    old = {w["pid"] for w in status(daemon)["workers"]}
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "reloaded" in daemon.log_text(), what="the reload")

    def renewed() -> set[int] | None:
        pids = {w["pid"] for w in status(daemon)["workers"]}
        return pids if not pids & old else None

    wait_until(renewed, what="new workers")
    for pid in old:
        wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists(), what=f"pid {pid} to go")
    assert "died" not in daemon.log_text()
    sources = sources_by_worker(daemon)
    for sock in sources.values():
        sock.sendto(
            make_knock("open-pAsSwOrD", "127.0.0.1", datetime.now(UTC)),
            ("127.0.0.1", daemon.port),
        )
    wait_until(daemon.lines, what="the knock after the reload")
    wait_until(lambda: status(daemon)["counters"].get("replay") == 1, what="the copy's refusal")
    assert len(daemon.lines()) == 1


def test_sigterm_stops_every_worker(daemon: Tumblerd) -> None:
    pids = [w["pid"] for w in status(daemon)["workers"]]
    assert all(Path(f"/proc/{pid}").exists() for pid in pids)
    assert daemon.stop() == 0
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def test_workers_run_as_nobody_when_root(daemon: Tumblerd) -> None:
    if os.geteuid() != 0:
        pytest.skip("workers keep the daemon's user when it is not root")
    for w in status(daemon)["workers"]:
        uid_line = next(
            line
            for line in Path(f"/proc/{w['pid']}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )
        assert uid_line.split()[1] != "0", uid_line
        fds = os.listdir(f"/proc/{w['pid']}/fd")
        assert "state.db" not in " ".join(os.readlink(f"/proc/{w['pid']}/fd/{fd}") for fd in fds)


@pytest.mark.parametrize(("value", "ok"), [("2", True), ("auto", True), ("0", False), ("x", False)])
def test_check_config_validates_workers(tmp_path: Path, value: str, ok: bool) -> None:
    d = Tumblerd(tmp_path, DOORS, common=f"   workers = {value}\n")
    result = subprocess.run(
        [*TUMBLERD, "--check-config", "--config", str(d.config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode == 0) == ok, result.stderr
    if not ok:
        assert "workers" in result.stderr


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie left for whoever adopted it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def test_workers_leave_when_the_main_process_is_killed(daemon: Tumblerd) -> None:
    pids = [w["pid"] for w in status(daemon)["workers"]]
    daemon.signal(signal.SIGKILL)
    assert daemon.proc is not None
    daemon.proc.wait(10)
    for pid in pids:
        wait_until(lambda pid=pid: gone(pid), what=f"worker pid {pid} to leave")


def test_a_worker_stopped_from_outside_is_replaced_too(daemon: Tumblerd) -> None:
    victim = status(daemon)["workers"][1]
    os.kill(victim["pid"], signal.SIGTERM)
    line = f"worker 2 (pid {victim['pid']}) died, exit status 0; starting a new one"
    wait_until(lambda: line in daemon.log_text(), what="the worker's end to be logged")
    wait_until(
        lambda: status(daemon)["workers"][1]["pid"] not in (0, victim["pid"]),
        what="a new worker 2",
    )


def test_junk_of_every_shape_never_stops_a_worker(daemon: Tumblerd) -> None:
    from tumbler.protocols import sshsig, tumbler2

    pids = [w["pid"] for w in status(daemon)["workers"]]
    shapes = [
        b"",
        b"\x00" * 2000,
        sshsig.MAGIC + os.urandom(300),
        sshsig.MAGIC + b"\x00" * (sshsig.MAX_DATAGRAM - 4),
        tumbler2.MAGIC + os.urandom(tumbler2.DATAGRAM_LEN - 4),
        b"TUMBLER1: " + b"g" * 64,
        os.urandom(600),
    ]
    sent = 0
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        for _ in range(8):  # new source ports: both workers get their share
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                for data in shapes:
                    sock.sendto(data, (host, daemon.port))
                    sent += 1
    wait_until(
        lambda: sum(status(daemon)["counters"].values()) == sent, what="every datagram counted"
    )
    assert [w["pid"] for w in status(daemon)["workers"]] == pids
    log = daemon.log_text()
    assert "died" not in log and "internal error" not in log and "failed" not in log
    knock = make_knock("open-pAsSwOrD", "127.0.0.1", datetime.now(UTC))
    daemon.send(knock).close()
    wait_until(daemon.lines, what="a knock after the junk")
