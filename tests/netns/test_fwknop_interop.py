"""Packets built by `tumbler.protocols.fwknop` and by `tumbler --open fwknop://` open a real
fwknopd (Debian 2.6.10).

fwknopd runs in the server namespace (10.213.0.1) in UDP-server mode, one access.conf
stanza per mode and digest, each with its own keys and a CMD_CYCLE_OPEN that touches a
file named for the stanza, address, protocol number, first port and client timeout.
Client A (10.213.0.2) sends the datagrams; the test waits for the files. fwknopd handles
datagrams in order, so a refused packet is followed by a good one: once that one has
opened, the refused one was decided.
"""

from __future__ import annotations

import base64
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns.fwknopd import Fwknopd, Stanza, fwknopd_path
from tests.netns.netns import Namespace, Topology, wait_until
from tumbler.protocols import fwknop as spa

_SEND = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.sendto(sys.stdin.buffer.read(), (sys.argv[1], int(sys.argv[2])))\n"
)

# label, HMAC digest (None: no HMAC), mode, inner digest
CASES = [
    ("cbc", "sha256", "cbc", "sha256"),
    ("ctr", "sha512", "ctr", "sha384"),
    ("cfb", "md5", "cfb", "md5"),
    ("ofb", "sha1", "ofb", "sha512"),
    ("ecb", "sha384", "ecb", "sha1"),
    ("s3a", "sha3_256", "cbc", "sha3_256"),
    ("s3b", "sha3_512", "ctr", "sha3_512"),
    ("legacy", None, "legacy", "sha256"),  # last: a stanza without HMAC tries every packet
]


def _b64key(n: int) -> str:
    return base64.b64encode(secrets.token_bytes(n)).decode()


def send(ns: Namespace, host: str, data: bytes, port: int = spa.DEFAULT_PORT) -> None:
    ns.run([sys.executable, "-c", _SEND, host, str(port)], input=data.decode("ascii"))


@pytest.fixture
def fwknopd(topology: Topology, tmp_path: Path) -> Iterator[tuple[Fwknopd, dict[str, spa.SpaKeys]]]:
    if fwknopd_path() is None:
        pytest.fail("fwknopd is not installed: ./dev installs fwknop-server")
    stanzas, keys = [], {}
    for label, hmac_digest, mode, _ in CASES:
        key = _b64key(32) if mode != "legacy" else base64.b64encode(b"legacy16bytekey!").decode()
        mac = _b64key(64) if hmac_digest else None
        stanzas.append(Stanza(label, key, mac, hmac_digest or "sha256", mode, "tcp/22,udp/53"))
        keys[label] = spa.SpaKeys.from_text(
            key_base64=key, hmac_key_base64=mac, hmac_digest=hmac_digest or "sha256", mode=mode
        )
    folder = tmp_path / "fwknopd"
    folder.mkdir()
    yield Fwknopd(topology.server, folder, stanzas), keys


def test_fwknopd_accepts_packets_built_here(
    topology: Topology, fwknopd: tuple[Fwknopd, dict[str, spa.SpaKeys]]
) -> None:
    server, keys = fwknopd
    for label, _, _, digest in CASES:
        data = spa.build_packet(
            keys[label],
            allow_ip=topology.a4,
            ports=["tcp/22", "udp/53"],
            user="alice",
            timestamp=int(time.time()),
            client_timeout=40 if label != "cbc" else 0,
            digest_type=digest,
        )
        send(topology.a, topology.server4, data)
        # The command cycle runs once, for the first port; $CLIENT_TIMEOUT is 0 without one.
        want = [f"open-{label}-{topology.a4}-6-22-{0 if label == 'cbc' else 40}"]
        wait_until(lambda label=label, want=want: server.opened(label) == want, f"fwknopd {label}")


def test_fwknopd_refuses_a_wrong_hmac_key(
    topology: Topology, fwknopd: tuple[Fwknopd, dict[str, spa.SpaKeys]]
) -> None:
    server, keys = fwknopd
    good = keys["cbc"]
    wrong = spa.SpaKeys(good.key, secrets.token_bytes(64))
    bad = spa.build_packet(
        wrong, allow_ip=topology.a4, ports=["udp/53"], user="u", timestamp=int(time.time())
    )
    send(topology.a, topology.server4, bad)
    # fwknopd handles datagrams one by one: once the good one has opened, the bad one is done.
    ok = spa.build_packet(
        good, allow_ip=topology.a4, ports=["tcp/22"], user="u", timestamp=int(time.time())
    )
    send(topology.a, topology.server4, ok)
    wait_until(lambda: server.opened("cbc") == [f"open-cbc-{topology.a4}-6-22-0"], "the good one")
    assert [p.name for p in server.folder.glob("open-*")] == [f"open-cbc-{topology.a4}-6-22-0"]
    assert server.log_text().count("udp_server: Got UDP datagram") == 2


def test_tumbler_cli_opens_fwknopd_with_a_stanza_the_fwknop_client_saved(
    topology: Topology, fwknopd: tuple[Fwknopd, dict[str, spa.SpaKeys]], tmp_path: Path
) -> None:
    """`tumbler --open fwknop://STANZA@HOST/` with an .fwknoprc the real client wrote."""
    server, keys = fwknopd
    client = shutil.which("fwknop")
    assert client is not None, "the fwknop client is not installed: ./dev installs it"
    home = tmp_path / "home"
    home.mkdir()
    k = keys["ctr"]
    assert k.hmac_key is not None
    topology.a.run(
        [
            *("env", f"HOME={home}", client, "-n", "srv", "--save-rc-stanza", "-T"),
            *("-A", "tcp/22", "-a", topology.a4, "-D", topology.server4, "-M", "ctr"),
            *("--use-hmac", "--hmac-digest-type", "sha512", "-f", "40"),
            *("--key-base64-rijndael", base64.b64encode(k.key).decode()),
            *("--key-base64-hmac", base64.b64encode(k.hmac_key).decode()),
        ]
    )
    rc = home / ".fwknoprc"
    assert "[srv]" in rc.read_text()
    tumbler = [sys.executable, "-m", "tumbler", "--fwknoprc", str(rc), "--open"]
    topology.a.run([*tumbler, f"fwknop://srv@{topology.server4}/"])
    want = [f"open-ctr-{topology.a4}-6-22-40"]
    wait_until(lambda: server.opened("ctr") == want, "fwknopd to open for tumbler's packet")
    # The stanza found by its SPA_SERVER, ports from the URL; 0.0.0.0 becomes A's address.
    topology.a.run([*tumbler, f"fwknop://{topology.server4}/udp/53", "--from", "0.0.0.0"])
    want = [f"open-ctr-{topology.a4}-17-53-40", *want]
    wait_until(lambda: server.opened("ctr") == want, "fwknopd to open udp/53")
