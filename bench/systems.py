"""The daemons under test, each set up default-closed in the rig's server namespace.

    Tumblerd   tumbler's own daemon (nftables or iptables backend, N doors; Tumbler
               doors, or doors of kind fwknop that take fwknop SPA packets)
    Fwknopd    Debian's fwknop-server in UDP server mode (Rijndael + HMAC SPA)
    Knockd     Debian's knockd with a 3-port UDP sequence and an iptables command

Each system answers `knock(src)` with the request the client agent needs to knock from
`src`; `start` waits until the daemon serves; `stop` ends it and empties the firewall.
"""

from __future__ import annotations

import base64
import json
import os
import secrets as pysecrets
import subprocess
import time
from pathlib import Path

from bench.rig import PYTHON, SERVER_C, Rig
from tumbler.lab.ready import start_ready
from tumbler.protocols import tumbler2

TARGET = 2222  # the TCP port every door opens
TUMBLER_PORT = 8675
FWKNOP_PORT = 62201
KNOCKD_PORTS = (7000, 8000, 9000)


def _wait_for(path: Path, text: str, proc, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited {proc.returncode}: {path.read_text()[-2000:]}")
        time.sleep(0.02)
    raise RuntimeError(f"{proc.args} did not log {text!r} within {timeout:g}s")


def closed_policy(rig: Rig, udp_port: int | None) -> None:
    """The classic default-closed INPUT (iptables) that fwknopd and knockd add their rules to."""
    rules = [
        ["-P", "INPUT", "DROP"],
        ["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
        ["-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
    ]
    if udp_port is not None:
        rules.append(["-A", "INPUT", "-p", "udp", "--dport", str(udp_port), "-j", "ACCEPT"])
    for rule in rules:
        rig.server.run(["iptables", *rule])


class System:
    name = "?"
    proc: subprocess.Popen | None = None

    def __init__(self, rig: Rig) -> None:
        self.rig = rig

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self.rig.reset_firewall()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class Tumblerd(System):
    def __init__(
        self,
        rig: Rig,
        backend: str = "nftables",
        doors: int = 1,
        policy: bool = True,
        replay: str = "sqlite",
        tag: str = "",
        limit: bool = True,
        version: int = 1,
        authorized_keys: str | None = None,
        kind: str = "tumbler",
        ipv6: bool = False,
        workers: int = 1,
    ) -> None:
        super().__init__(rig)
        self.kind = kind
        self.limit = limit
        self.backend = backend
        self.doors = doors
        self.policy = policy
        self.name = f"tumblerd ({backend})" if not tag else f"tumblerd ({backend}, {tag})"
        self.dir = rig.tmp / f"tumblerd-{backend}-{doors}-{os.urandom(3).hex()}"
        self.dir.mkdir()
        self.log = self.dir / "tumblerd.log"
        self.config = self.dir / "tumblerd.conf"
        self.control = self.dir / "control.sock"
        # The door the client knocks on is the last one, so a lookup cannot stop early.
        self.secret = f"bench-secret-{pysecrets.token_hex(8)}"
        self.version = version
        self.key_text = tumbler2.encode_key(pysecrets.token_bytes(32))
        lines = [
            "[common]",
            f"port = {TUMBLER_PORT}",
            f"log = {self.log}",
            "listen = 0.0.0.0, ::" if ipv6 else "listen = 0.0.0.0",
            f"state = {self.dir / 'state.db'}",
            f"control = {self.control}",
            f"firewall = {backend}",
            f"replay = {replay}",
        ]
        if workers > 1:
            lines.append(f"workers = {workers}")
        for i in range(doors):
            if kind == "fwknop":  # keys per door; the client uses the last door's
                self.key = base64.b64encode(pysecrets.token_bytes(32)).decode()
                self.hmac = base64.b64encode(pysecrets.token_bytes(64)).decode()
                lines += [f"[door-d{i}]", "kind = fwknop", f"fwknop_key_base64 = {self.key}"]
                lines += [f"fwknop_hmac_key_base64 = {self.hmac}"]
                lines += [f"open = tcp/{TARGET}", "timeout = 1h"]
                continue
            if version == 2:
                last = i == doors - 1
                key = self.key_text if last else tumbler2.encode_key(pysecrets.token_bytes(32))
                proof = ["protocol = 2", f"key = {key}"]
            else:
                secret = self.secret if i == doors - 1 else f"other-{i}-{pysecrets.token_hex(8)}"
                proof = [f"secret = {secret}"]
            lines += [f"[door-d{i}]", *proof, f"open = tcp/{TARGET}", "timeout = 1h"]
        if authorized_keys is not None:  # a signed door beside the others (docs/SIGNED-KNOCKS.md)
            keys = self.dir / "ssh-users"
            keys.write_text(authorized_keys)
            lines += ["[door-signed]", f"authorized_keys = {keys}", f"open = tcp/{TARGET}"]
        self.config.write_text("\n".join(lines) + "\n")
        self.config.chmod(0o600)

    def tumblerd(self, *args: str) -> list[str]:
        return [PYTHON, "-m", "tumbler.cli.tumblerd", *args, "--config", str(self.config)]

    def start(self) -> None:
        if self.policy:
            self.rig.server.run(self.tumblerd("firewall", "init", "--backend", self.backend))
            if not self.limit and self.backend == "nftables":
                listing = self.rig.server.run(
                    ["nft", "-a", "list", "chain", "inet", "tumbler", "input"]
                )
                for line in listing.stdout.splitlines():
                    if "@knock" in line and "# handle" in line:
                        handle = line.rsplit("# handle", 1)[1].strip()
                        self.rig.server.run(
                            ["nft", "delete", "rule", "inet", "tumbler", "input", "handle", handle]
                        )
        with open(self.dir / "stderr", "wb") as err:
            self.proc = start_ready(
                self.rig.server.popen, self.tumblerd(), stdout=subprocess.DEVNULL, stderr=err
            )

    def knock(self, src: str) -> dict:
        if self.kind == "fwknop":  # an SPA packet the fwknop client built for `src`
            data = base64.b64encode(spa_packet(self.dir, self.key, self.hmac, src)).decode()
            return {"kind": "raw", "datagrams": [[FWKNOP_PORT, data]]}
        if self.version == 2:
            return {"kind": "tumbler2", "key": self.key_text, "knock_port": TUMBLER_PORT}
        return {"kind": "tumbler", "secret": self.secret, "knock_port": TUMBLER_PORT}

    def status(self) -> dict:
        out = subprocess.run(
            [
                PYTHON,
                "-m",
                "tumbler.cli.tumblerd",
                "status",
                "--json",
                "--config",
                str(self.config),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return json.loads(out)

    def counters(self) -> dict:
        return self.status()["counters"]

    def pids(self) -> list[int]:
        """The daemon and its receiving processes (`workers`), whose CPU time all counts."""
        return [self.pid, *(w["pid"] for w in self.status().get("workers", []))]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def fwknop_argv(key: str, hmac: str, src: str, dst: str = SERVER_C) -> list[str]:
    """The fwknop client asking tcp/TARGET for `src`, with Rijndael and HMAC keys."""
    return [
        *("fwknop", "--no-rc-file", "-A", f"tcp/{TARGET}", "-a", src, "-D", dst),
        *("--key-base64-rijndael", key, "--key-base64-hmac", hmac, "--use-hmac"),
    ]


def spa_packet(folder: Path, key: str, hmac: str, src: str) -> bytes:
    """A fresh SPA packet built by the fwknop client (-T: not sent), for sending from `src`."""
    out = folder / f"spa-{src}"
    subprocess.run(
        [*fwknop_argv(key, hmac, src), "-T", "-B", str(out)],
        capture_output=True,
        check=True,
        env={**os.environ, "HOME": str(folder)},
    )
    return out.read_text().strip().encode()


class Fwknopd(System):
    name = "fwknopd (UDP server)"

    def __init__(self, rig: Rig, exec_client: bool = False) -> None:
        super().__init__(rig)
        self.exec_client = exec_client
        if exec_client:
            self.name = "fwknopd (from exec of fwknop)"
        self.dir = rig.tmp / f"fwknopd-{os.urandom(3).hex()}"
        self.dir.mkdir()
        self.key = base64.b64encode(pysecrets.token_bytes(32)).decode()
        self.hmac = base64.b64encode(pysecrets.token_bytes(64)).decode()
        self.log = self.dir / "fwknopd.log"
        conf = self.dir / "fwknopd.conf"
        conf.write_text(
            f"ENABLE_UDP_SERVER Y;\nPCAP_INTF eth-c;\nFWKNOP_RUN_DIR {self.dir};\n"
            "FIREWALL_EXE /usr/sbin/iptables;\nENABLE_DIGEST_PERSISTENCE N;\n"
        )
        access = self.dir / "access.conf"
        access.write_text(
            f"SOURCE ANY\nKEY_BASE64 {self.key}\nHMAC_KEY_BASE64 {self.hmac}\n"
            "FW_ACCESS_TIMEOUT 3600\n"
        )
        conf.chmod(0o600)
        access.chmod(0o600)
        self.argv = [
            *("fwknopd", "-c", str(conf), "-a", str(access), "-f"),
            *("-d", str(self.dir / "digest.cache"), "-p", str(self.dir / "fwknopd.pid")),
            *("-i", "eth-c"),
        ]

    def client_argv(self, src: str, dst: str = SERVER_C) -> list[str]:
        return fwknop_argv(self.key, self.hmac, src, dst)

    def start(self) -> None:
        srv = self.rig.server
        closed_policy(self.rig, FWKNOP_PORT)
        with open(self.log, "wb") as out:
            self.proc = srv.popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        _wait_for(self.log, "Kicking off UDP server", self.proc)
        time.sleep(0.1)

    def packet(self, src: str) -> bytes:
        """A fresh SPA packet built by the fwknop client (-T: not sent), for sending from `src`."""
        return spa_packet(self.dir, self.key, self.hmac, src)

    def knock(self, src: str) -> dict:
        if self.exec_client:
            return {"kind": "exec", "argv": self.client_argv(src)}
        data = base64.b64encode(self.packet(src)).decode()
        return {"kind": "raw", "datagrams": [[FWKNOP_PORT, data]]}


class Knockd(System):
    name = "knockd (3 UDP ports)"

    def __init__(self, rig: Rig) -> None:
        super().__init__(rig)
        self.dir = rig.tmp / f"knockd-{os.urandom(3).hex()}"
        self.dir.mkdir()
        self.log = self.dir / "knockd.log"
        self.conf = self.dir / "knockd.conf"
        seq = ",".join(f"{p}:udp" for p in KNOCKD_PORTS)
        self.conf.write_text(
            "[options]\n"
            f"    logfile = {self.log}\n"
            "    interface = eth-c\n"
            "[open]\n"
            f"    sequence = {seq}\n"
            "    seq_timeout = 5\n"
            f"    command = /usr/sbin/iptables -I INPUT -s %IP% -p tcp --dport {TARGET} -j ACCEPT\n"
        )

    def start(self) -> None:
        srv = self.rig.server
        closed_policy(self.rig, None)
        with open(self.dir / "stdout", "wb") as out:
            self.proc = srv.popen(
                ["knockd", "-c", str(self.conf), "-i", "eth-c"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_for(self.log, "listening", self.proc)
        time.sleep(0.1)

    def knock(self, src: str) -> dict:
        return {"kind": "raw", "datagrams": [[p, ""] for p in KNOCKD_PORTS]}
