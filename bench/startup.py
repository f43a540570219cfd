"""Client start-up: exec to datagram sent, for `tumbler --open`, `tumbler ssh-proxy` and
`tumbler open NAME`.

What a user waits for is the knock on the wire, not the interpreter's exit, so the clock
stops when the datagram arrives at a UDP socket of this process; the floor is exec to exit
of `python3 -c pass` with the same interpreter. The five are interleaved, so load on the
machine weighs on all alike, and the ratio is taken within the run: `--open URL` and
`ssh-proxy --url URL HOST PORT` without a profile file, then, with a hosts file at the
default place (five profiles, the door's secret in a secret_file), `ssh-proxy HOST PORT`
as ssh's `ProxyCommand tumbler ssh-proxy %h %p` runs it, and `open NAME`.

Everything goes over the loopback of the namespace this runs in: `./dev bench` runs it in
the rig's client namespace (`python -m bench.startup --json`). By hand, run it with
`ip netns exec NS .venv/bin/python -m bench.startup --runs 40` in a namespace of your own
whose loopback is up, so that nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
HOST = "127.0.0.1"
TIMEOUT = 30.0


def _env(tmp: Path, bytecode: bool) -> dict[str, str]:
    """A clean environment: no TUMBLER_* settings, no profile file, one state directory
    (the sent-knocks memory is read and written at every knock, as for a user)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TUMBLER_")
        and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    }
    env["XDG_STATE_HOME"] = str(tmp / "state")
    env["XDG_CONFIG_HOME"] = str(tmp / "config")  # empty: ssh-proxy finds no profile file
    if bytecode:
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "no-pycache")  # empty: nothing cached
    return env


def floor_once(env: dict[str, str]) -> float:
    """Exec to exit of `python3 -c pass`: the interpreter's own start and stop."""
    t = time.perf_counter()
    subprocess.run([PYTHON, "-c", "pass"], check=True, env=env)
    return time.perf_counter() - t


def _until_datagram(udp: socket.socket, argv: list[str], env: dict[str, str]) -> tuple:
    t = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        data = udp.recv(2048)
    except TimeoutError:
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"{argv[1]}: no datagram: {err.decode(errors='replace')}") from None
    return time.perf_counter() - t, data, proc


def open_once(udp: socket.socket, env: dict[str, str], script: str, n: int) -> float:
    """Exec of `tumbler --open URL` to its datagram's arrival; a new secret each run, so
    the sent-knocks memory never runs out of fresh minutes."""
    port = udp.getsockname()[1]
    url = f"tumbler://startup-{n}@{HOST}:{port}/"
    took, data, proc = _until_datagram(udp, [script, "--open", url], env)
    _, err = proc.communicate(timeout=TIMEOUT)
    if proc.returncode != 0 or not data.startswith(b"TUMBLER1: "):
        raise RuntimeError(f"--open failed ({proc.returncode}): {err.decode(errors='replace')}")
    return took


def proxy_once(udp: socket.socket, tcp: socket.socket, env: dict[str, str], script: str, n: int):
    """Exec of `tumbler ssh-proxy --url URL HOST PORT` to its first knock's arrival; then
    the connection it makes is accepted and closed, which ends its relay."""
    port = udp.getsockname()[1]
    url = f"tumbler://startup-proxy-{n}@{HOST}:{port}/"
    argv = [script, "ssh-proxy", "--url", url, HOST, str(tcp.getsockname()[1])]
    took, data, proc = _until_datagram(udp, argv, env)
    conn, _ = tcp.accept()
    conn.close()
    _, err = proc.communicate(timeout=TIMEOUT)
    if proc.returncode != 0 or not data.startswith(b"TUMBLER1: "):
        raise RuntimeError(f"ssh-proxy failed ({proc.returncode}): {err.decode(errors='replace')}")
    return took


HOSTS = """\
# ~/.config/tumbler/hosts.conf as an administrator keeps it
[host-web1]
   url = tumbler://web1.example.org/
   secret_file = web1.secret
   wait = 22                      # tumbler open web1 waits for ssh
[host-lab]
   url = tumbler://lab.example.org:9000/
   secret_file = ~/.config/tumbler/lab.secret
   from = 203.0.113.9             # behind NAT
   wait_timeout = 20s
[host-git]
   url = tumbler+ssh://git@git.example.org/   # signed by the SSH key that logs in
[host-spa]
   url = fwknop://spa.example.org/tcp/22      # an fwknopd; keys in ~/.fwknoprc
[host-bench]
   url = tumbler://{host}:{port}/
   secret_file = bench.secret     # rewritten before each run: a new secret each time
"""


class HostsFile:
    """A profile file at the default place ($XDG_CONFIG_HOME/tumbler/hosts.conf) whose
    `bench` profile knocks on `port`, and the environment that finds it."""

    def __init__(self, tmp: Path, env: dict[str, str], port: int) -> None:
        folder = tmp / "profile-config" / "tumbler"
        folder.mkdir(parents=True)
        self.path = folder / "hosts.conf"
        self.path.write_text(HOSTS.format(host=HOST, port=port))
        self.path.chmod(0o600)
        self.secret = folder / "bench.secret"
        self.env = {**env, "XDG_CONFIG_HOME": str(tmp / "profile-config")}

    def new_secret(self, n: int) -> None:
        """Outside the clock: a fresh secret, so the sent-knocks memory never refuses."""
        self.secret.write_text(f"startup-profile-{n}\n")
        self.secret.chmod(0o600)


def open_name_once(udp: socket.socket, hosts: HostsFile, script: str, n: int) -> float:
    """Exec of `tumbler open bench` (a profile without `wait`: one knock) to its arrival."""
    hosts.new_secret(n)
    took, data, proc = _until_datagram(udp, [script, "open", "bench"], hosts.env)
    _, err = proc.communicate(timeout=TIMEOUT)
    if proc.returncode != 0 or not data.startswith(b"TUMBLER1: "):
        raise RuntimeError(f"open NAME failed ({proc.returncode}): {err.decode(errors='replace')}")
    return took


def proxy_profile_once(
    udp: socket.socket, tcp: socket.socket, hosts: HostsFile, script: str, n: int
) -> float:
    """Exec of `tumbler ssh-proxy HOST PORT` (ssh's %h %p; the profile found by its url's
    host) to its first knock's arrival; then its connection is accepted and closed."""
    hosts.new_secret(n)
    argv = [script, "ssh-proxy", HOST, str(tcp.getsockname()[1])]
    took, data, proc = _until_datagram(udp, argv, hosts.env)
    conn, _ = tcp.accept()
    conn.close()
    _, err = proc.communicate(timeout=TIMEOUT)
    if proc.returncode != 0 or not data.startswith(b"TUMBLER1: "):
        raise RuntimeError(
            f"ssh-proxy with profiles failed ({proc.returncode}): {err.decode(errors='replace')}"
        )
    return took


def measure(runs: int, bytecode: bool = True) -> dict:
    """Medians over `runs` interleaved rounds of floor, --open and ssh-proxy, in seconds."""
    script = str(Path(PYTHON).parent / "tumbler")  # the console script, as a user runs it
    with tempfile.TemporaryDirectory(prefix="tmbb-startup-") as folder:
        env = _env(Path(folder), bytecode)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with udp, tcp:
            udp.bind((HOST, 0))
            udp.settimeout(TIMEOUT)
            tcp.bind((HOST, 0))
            tcp.listen(8)
            tcp.settimeout(TIMEOUT)
            hosts = HostsFile(Path(folder), env, udp.getsockname()[1])
            # Warm-up: fills the bytecode cache (when there is one) and the state folder.
            floor_once(env)
            open_once(udp, env, script, -1)
            proxy_once(udp, tcp, env, script, -1)
            proxy_profile_once(udp, tcp, hosts, script, -1)
            open_name_once(udp, hosts, script, -2)
            times: dict[str, list[float]] = {key: [] for key in ROWS}
            for n in range(runs):
                times["floor"].append(floor_once(env))
                times["open"].append(open_once(udp, env, script, n))
                times["proxy"].append(proxy_once(udp, tcp, env, script, n))
                times["proxy_profile"].append(proxy_profile_once(udp, tcp, hosts, script, 2 * n))
                times["open_name"].append(open_name_once(udp, hosts, script, 2 * n + 1))
    return {
        "runs": runs,
        "bytecode": bytecode,
        **{key: statistics.median(values) for key, values in times.items()},
        "load": os.getloadavg(),
    }


# What each figure is, in the order of the rows (`floor` first, the others against it).
ROWS = {
    "floor": "python3 -c pass",
    "open": "tumbler --open URL",
    "proxy": "tumbler ssh-proxy --url URL HOST PORT",
    "proxy_profile": "tumbler ssh-proxy HOST PORT, with hosts.conf",
    "open_name": "tumbler open NAME, with hosts.conf",
}


def measure_in(namespace, runs: int, bytecode: bool = True) -> dict:
    """`measure` run inside a rig namespace (its loopback), by this file as a script."""
    argv = [PYTHON, "-m", "bench.startup", "--json", "--runs", str(runs)]
    if not bytecode:
        argv.append("--no-bytecode")
    out = subprocess.run(
        namespace.argv(argv), cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--no-bytecode", action="store_true", help="compile at every start")
    parser.add_argument("--json", action="store_true", help="one JSON object (for ./dev bench)")
    args = parser.parse_args()
    res = measure(args.runs, not args.no_bytecode)
    if args.json:
        print(json.dumps(res))
        return
    floor = res["floor"]
    print(f"load average {res['load'][0]:.2f} {res['load'][1]:.2f} {res['load'][2]:.2f}")
    print(f"{'python3 -c pass':<45} exec to exit     {floor * 1000:6.1f} ms (n={res['runs']})")
    for key, what in list(ROWS.items())[1:]:
        value = res[key]
        print(
            f"{what:<45} exec to datagram {value * 1000:6.1f} ms  {value / floor:.2f} x the floor"
        )


if __name__ == "__main__":
    main()
