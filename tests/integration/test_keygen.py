"""`tumbler keygen` as a process: what it prints works on both sides, as printed."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

from tests.integration.daemon import Tumblerd
from tests.integration.test_client_cli import TUMBLER
from tests.waiting import wait_until
from tumbler.client.knock import parse_url
from tumbler.config.daemon import parse_config
from tumbler.protocols import tumbler2


def keygen(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TUMBLER, "keygen", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def split(out: str) -> tuple[str, str]:
    """(the door stanza for the server, the client's command line)."""
    stanza = out.split("# client: knock with\n")[0]
    (command,) = [x for x in out.splitlines() if x.startswith("tumbler --open")]
    return stanza, command


def url_of(command: str) -> str:
    return re.search(r"'(tumbler2://[^']*)'", command).group(1)  # type: ignore[union-attr]


def test_keygen_prints_a_stanza_and_a_url_with_the_same_fresh_key():
    a = keygen("--host", "192.0.2.7", "--door", "web", "--open", "tcp/443", "--realm", "r.example")
    b = keygen("--host", "192.0.2.7")
    assert a.returncode == 0, a.stderr
    stanza, command = split(a.stdout)
    config = parse_config(stanza, "k.conf")
    (door,) = config.doors
    assert (door.name, [str(p) for p in door.open], config.realm) == (
        "web",
        ["tcp/443"],
        "r.example",
    )
    url = parse_url(url_of(command))
    assert (url.version, url.host, url.realm) == (2, "192.0.2.7", "r.example")
    assert tumbler2.decode_key(url.secret or "") == door.key
    assert split(b.stdout)[1] != command  # a new key each time


def test_keygen_with_a_passphrase_from_a_pipe_derives_the_documented_key():
    result = keygen("--passphrase", stdin="open-pAsSwOrD\n")
    assert result.returncode == 0, result.stderr
    stanza, command = split(result.stdout)
    key = parse_config(stanza, "k.conf").doors[0].key
    assert key is not None
    assert tumbler2.encode_key(key) == "FuCtkspxAXHzEbHfzEor4qfxHi5SIO946NSWm1lb3sQ"  # vector v2-c
    assert "open-pAsSwOrD" not in result.stdout + result.stderr
    assert "HOST" in command


def test_keygen_writes_a_private_key_file_and_never_overwrites_it(tmp_path: Path):
    path = tmp_path / "door.key"
    result = keygen("--host", "h.example", "--key-file", str(path))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = tumbler2.decode_key(path.read_text())
    stanza, command = split(result.stdout)
    assert parse_config(stanza, "k.conf").doors[0].key == key
    assert tumbler2.encode_key(key) not in command
    assert command == f"tumbler --open 'tumbler2://h.example/' --secret-file {path}"
    again = keygen("--key-file", str(path))
    assert again.returncode == 2 and "does not overwrite" in again.stderr
    assert tumbler2.decode_key(path.read_text()) == key


def test_keygen_qr_draws_the_url():
    result = keygen("--host", "h.example", "--qr")
    assert result.returncode == 0, result.stderr
    drawing = [x for x in result.stdout.splitlines() if "█" in x]
    assert len(drawing) > 15 and len({len(x) for x in drawing}) == 1  # a square of blocks


def test_keygen_refuses_bad_input():
    assert keygen("--door", "no spaces").returncode == 2
    assert keygen("--open", "tcp/99999").returncode == 2
    assert keygen("--realm", "x" * 256).returncode == 2
    assert keygen("--passphrase", stdin="").returncode == 2


def test_what_keygen_prints_opens_a_real_door(tmp_path: Path):
    """The stanza goes into a real tumblerd's config, the URL into the real client."""
    result = keygen("--host", "127.0.0.1", "--realm", "lo.example", "--door", "lo")
    stanza, command = split(result.stdout)
    common, door = stanza.split("[door-lo]")
    # The door's command records the knock; its `open` would change this host's firewall.
    door = "".join(line for line in door.splitlines(keepends=True) if "open = " not in line)
    daemon = Tumblerd(
        tmp_path,
        "[door-lo]" + door + '   command = echo "%NAME% %IP%" >> OUT\n',
        common.replace("[common]\n", "").replace("# server: add to tumblerd's config", "#"),
    )
    daemon.start()
    try:
        url = url_of(command).replace("@127.0.0.1/", f"@127.0.0.1:{daemon.port}/")
        knocked = subprocess.run([TUMBLER, "--open", url], capture_output=True, text=True)
        assert knocked.returncode == 0, knocked.stderr
        wait_until(daemon.lines, what="the door's command")
        assert daemon.lines() == ["lo 127.0.0.1"]
    finally:
        daemon.stop()
