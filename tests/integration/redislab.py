"""Real Redis deployments on loopback for the fleet tests: a server, Sentinel, a Cluster.

Every process runs from the Debian redis-server binary with its files in a temp folder, on
ports picked here, and is stopped by the fixture that started it. Readiness is awaited
through what Redis itself reports (PING, INFO replication, SENTINEL MASTER, CLUSTER INFO).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.waiting import wait_until

SERVICE = "tumbler"  # the Sentinel service name of the fleet tests
BUS_OFFSET = 10000  # Redis Cluster talks to its peers on port + 10000


def free_tcp_port(bus_offset: int | None = None) -> int:
    """A free loopback port; with `bus_offset`, one whose cluster bus port is free too."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if bus_offset is None:
            return port
        if port + bus_offset > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + bus_offset))
            except OSError:
                continue
        return port


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed, and CI must run the fleet tests")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return binary


def redis_cli() -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-cli is not installed, and CI must run the cluster tests")
        pytest.skip("redis-cli is not installed (apt-get install redis-tools)")
    return binary


def info(client: redis.Redis, section: str) -> dict[str, Any]:
    try:
        return dict(client.info(section))
    except redis.exceptions.RedisError:
        return {}


class RedisServer:
    """A throwaway redis-server on loopback: no persistence, its files in its own folder."""

    def __init__(
        self,
        binary: str,
        folder: Path,
        *extra: str,
        port: int | None = None,
        tls: dict[str, str] | None = None,
        login: dict[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_tcp_port()
        self.extra = list(extra)
        self.tls = tls  # server files: cert, key, ca; clients then need ssl_ca_certs
        self.login = login or {}  # username and password for the test's own client
        self.url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        argv = [self.binary, "--bind", "127.0.0.1"]
        if self.tls:
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            argv += ["--tls-cert-file", self.tls["cert"], "--tls-key-file", self.tls["key"]]
            argv += ["--tls-ca-cert-file", self.tls["ca"]]
        else:
            argv += ["--port", str(self.port)]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        argv += ["--repl-diskless-sync-delay", "0"]  # a replica syncs at once, not after 5 s
        return argv + self.extra

    def start(self) -> RedisServer:
        with open(self.folder / "redis.log", "ab") as out:
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT)
        client = self.client()

        def answers() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        try:
            wait_until(answers, what=f"redis-server on {self.port} to answer")
        except BaseException:
            self.stop()  # a server that never answered is still a process to end
            raise
        finally:
            client.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye to replicas or sentinels, as when a host dies."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def client(self) -> redis.Redis:
        tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": self.tls["ca"]} if self.tls else {}
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_connect_timeout=0.2,
            socket_timeout=1,
            **self.login,
            **tls,
        )

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Sentinel(RedisServer):
    """`redis-server --sentinel` watching one primary, with short timeouts for fast tests."""

    def __init__(
        self, binary: str, folder: Path, service: str, primary: int, down_after_ms: int
    ) -> None:
        super().__init__(binary, folder)
        self.config = folder / "sentinel.conf"
        self.config.write_text(  # sentinel rewrites its config file, so it gets its own
            f"port {self.port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {service} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} 5000\n"
            f"sentinel parallel-syncs {service} 2\n"
        )

    def argv(self) -> list[str]:
        return [self.binary, str(self.config), "--sentinel"]


def replicas_online(primary: RedisServer, count: int) -> bool:
    """INFO replication on the primary lists `count` replicas, all online."""
    state = info(primary.client(), "replication")
    online = [v for k, v in state.items() if k.startswith("slave") and isinstance(v, dict)]
    return (
        state.get("role") == "master"
        and state.get("connected_slaves") == count
        and all(v.get("state") == "online" for v in online)
    )


def cluster_ok(node: RedisServer) -> bool:
    try:
        return bool(node.client().cluster("info")["cluster_state"] == "ok")
    except (redis.exceptions.RedisError, KeyError):
        return False


class SentinelSet:
    """One primary, two replicas, three sentinels: Redis's own smallest sound deployment."""

    def __init__(self, folder: Path, service: str = SERVICE) -> None:
        binary = redis_binary()
        self.service = service
        self.primary = RedisServer(binary, folder / "primary")
        self.replicas = [
            RedisServer(
                binary, folder / f"replica{n}", "--replicaof", "127.0.0.1", str(self.primary.port)
            )
            for n in (1, 2)
        ]
        self.sentinels = [
            Sentinel(binary, folder / f"sentinel{n}", service, self.primary.port, 1000)
            for n in (1, 2, 3)
        ]
        self.servers = [self.primary, *self.replicas]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self) -> SentinelSet:
        for server in self.servers:
            server.start()
        wait_until(
            lambda: replicas_online(self.primary, 2), what="both replicas in sync", timeout=30
        )
        for sentinel in self.sentinels:
            sentinel.start()
        for sentinel in self.sentinels:  # quorum needs the others; a failover needs replicas
            wait_until(
                lambda s=sentinel: self._sees_everyone(s),
                what=f"sentinel {sentinel.port} to see the other sentinels and both replicas",
                timeout=30,  # sentinels announce themselves every 2 s; a loaded machine is slow
            )
        return self

    def _sees_everyone(self, sentinel: Sentinel) -> bool:
        try:
            state = sentinel.client().sentinel_master(self.service)
        except redis.exceptions.RedisError:
            return False
        return bool(state["num-other-sentinels"] == 2 and state["num-slaves"] == 2)

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.stop()


class ClusterSet:
    """Six cluster-enabled servers joined by `redis-cli --cluster create --cluster-replicas 1`."""

    def __init__(self, folder: Path) -> None:
        binary = redis_binary()
        self.cli = redis_cli()
        self.nodes = [
            RedisServer(
                binary,
                folder / f"node{n}",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                port=free_tcp_port(BUS_OFFSET),
            )
            for n in range(6)
        ]
        self.primaries: list[RedisServer] = []
        self.replicas: list[RedisServer] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def start(self) -> ClusterSet:
        for node in self.nodes:
            node.start()
        argv = [self.cli, "--cluster", "create"]
        argv += [f"127.0.0.1:{n.port}" for n in self.nodes]
        argv += ["--cluster-replicas", "1", "--cluster-yes"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        for node in self.nodes:
            wait_until(lambda n=node: cluster_ok(n), what=f"node {node.port} ok", timeout=30)
        roles = {n.port: info(n.client(), "replication").get("role") for n in self.nodes}
        self.primaries = [n for n in self.nodes if roles[n.port] == "master"]
        self.replicas = [n for n in self.nodes if roles[n.port] == "slave"]
        assert len(self.primaries) == 3 and len(self.replicas) == 3, roles
        for primary in self.primaries:
            wait_until(lambda p=primary: replicas_online(p, 1), what="each primary's replica")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def make_tls_files(folder: Path) -> dict[str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def cert(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None, signer: Any
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
        )
        if issuer is None:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        else:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("tumbler test CA", ca_key, None, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    server = cert("127.0.0.1", key, ca.subject, ca_key)
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files["key"].chmod(0o600)
    return {k: str(v) for k, v in files.items()}
