"""The client's knock path imports nothing heavy: what `tumbler --open` loads before it
sends, and what `tumbler ssh-proxy` loads up to its first knock.

Start-up time itself is measured in bench/ (`./dev bench --only startup`); here the test
checks the cause, the modules loaded, which does not depend on how busy the machine is.
Each run goes through the installed console script, as a user (or ssh) starts it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# Modules the knock path has no use for, each costing milliseconds at start-up.
HEAVY = (
    "typing",  # tumbler.records.NamedTuple stands in for typing's
    "argparse",  # cli.quick reads the common forms; argparse is for the rest
    "gettext",
    "locale",
    "datetime",  # epoch seconds and time.gmtime make the minute stamp
    "ipaddress",  # tumbler.addresses parses with inet_pton
    "urllib",  # only for a %-escape in the URL
    "contextlib",
    "threading",  # ssh-proxy's relay, after the knock
    "importlib.metadata",
    "tumbler.cli.common",
    "tumbler.cli.openurl",
    "tumbler.client.signed",
    "tumbler.client.sshagent",
    "tumbler.client.fwknop",
    "tumbler.client.keygen",
    "tumbler.secretfile",  # read only for --secret-file; these runs have the secret in the URL
    "tumbler.protocols.tumbler2",
    "dataclasses",
    "inspect",
    "getpass",
    "asyncio",
    "subprocess",
    "json",
    "logging",
    "sqlite3",
    "ssl",
    "email",
    "http",
    "tumbler.daemon",
    "tumbler.config",
    "tumbler.decisions",
    "tumbler.actions",
    "tumbler.audit",
    "tumbler.client.profiles",  # only when there is a profile file
    "cryptography",
    "shutil",  # argparse asks it for the terminal width unless given one
    "bz2",
    "lzma",
    "pathlib",
    "unicodedata",  # the IDNA codec's, when a host name goes to getaddrinfo as text
    "encodings.idna",
)


# The ssh-proxy engine, which a plain knock has no use for either.
PROXY_ONLY = ("tumbler.client.sshproxy", "tumbler.client.plan", "tumbler.cli.proxy")

SCRIPT = Path(sys.executable).parent / "tumbler"
# The console script (`import re, sys; from tumbler.cli.tumbler import main`), else the
# module, which is what the script runs.
ENTRY = (str(SCRIPT),) if SCRIPT.exists() else ("-m", "tumbler")


def heavy_in(modules: set[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in heavy))


def imports_of(proc: subprocess.CompletedProcess[str]) -> set[str]:
    """The modules -X importtime listed: every one imported during the run."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUMBLER_")}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no profile file
    return env


def run_client(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", *ENTRY, *args],
        capture_output=True,
        text=True,
        env=clean_env(tmp_path),
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=check,
    )


@pytest.fixture
def udp() -> socket.socket:
    """A UDP socket on loopback for the knocks to arrive at."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(30)
    yield sock
    sock.close()


def test_importing_the_cli_entry_point_loads_nothing_heavy():
    code = "import sys, tumbler.cli.tumbler; print('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    modules = set(out.split())
    assert "tumbler.cli.tumbler" in modules
    assert heavy_in(modules) == []


def test_a_whole_open_run_imports_nothing_heavy(tmp_path: Path, udp: socket.socket):
    # -X importtime lists every module imported during the run, which ends right after the
    # datagram is sent.
    port = udp.getsockname()[1]
    run_client(tmp_path, "--open", f"tumbler://startup-secret@127.0.0.1:{port}/")
    assert udp.recv(200).startswith(b"TUMBLER1: ")


def test_what_an_open_run_imports(tmp_path: Path, udp: socket.socket):
    port = udp.getsockname()[1]
    for args in (
        ("--open", f"tumbler://startup-secret@127.0.0.1:{port}/", "-4"),
        (f"tumbler://startup-secret@127.0.0.1:{port}/", "--from", "127.0.0.1"),
    ):
        modules = imports_of(run_client(tmp_path, *args))
        assert udp.recv(200).startswith(b"TUMBLER1: ")
        assert {"tumbler.client.knock", "tumbler.cli.quick", "hashlib"} <= modules
        assert heavy_in(modules, HEAVY + PROXY_ONLY) == []


def test_a_dry_run_explains_with_datetime_and_nothing_else_heavy(tmp_path: Path):
    proc = run_client(tmp_path, "--open", "tumbler://startup-secret@127.0.0.1:8675/", "--dry-run")
    assert "datagram  TUMBLER1: " in proc.stdout
    modules = imports_of(proc)
    assert "datetime" in modules  # to show the minute, after the datagram is made
    assert heavy_in(modules - {"datetime"}, HEAVY + PROXY_ONLY) == []


def test_ssh_proxy_up_to_its_first_knock_imports_nothing_heavy(tmp_path: Path, udp: socket.socket):
    # A closed TCP port: the proxy knocks, dials in vain until --wait-timeout, and exits 1
    # without relaying; so every module it imported was imported for the knock or the dial.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    url = f"tumbler://startup-secret@127.0.0.1:{udp.getsockname()[1]}/"
    proc = run_client(
        tmp_path,
        "ssh-proxy",
        "--url",
        url,
        "--wait-timeout",
        "0.3",
        "127.0.0.1",
        str(port),
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "did not answer" in proc.stderr
    assert udp.recv(200).startswith(b"TUMBLER1: ")
    modules = imports_of(proc)
    assert {"tumbler.client.plan", "tumbler.client.sshproxy"} <= modules
    assert heavy_in(modules) == []


# --- with a profile file -----------------------------------------------------------------

# On the profile path the profile parser and the config format's reader are the point; the
# rest of the config package, the doors (dataclasses) and other knock kinds are not.
PROFILE_HEAVY = (
    *(h for h in HEAVY if h not in ("tumbler.client.profiles", "tumbler.config")),
    "tumbler.config.daemon",
    "tumbler.config.fwknop",
    "tumbler.doors",
    "tumbler.protocols.fwknop",
    "tumbler.protocols.fwknop_access",
    "tumbler.protocols.sshsig",
    "tumbler.protocols.sshkeys",
)
# The secret file is read (the profile names one): allowed here.
PROFILE_HEAVY = tuple(h for h in PROFILE_HEAVY if h != "tumbler.secretfile")

HOSTS = """\
# hosts.conf as an administrator keeps it
[host-web1]
   url = tumbler://web1.example.org/
   secret_file = web1.secret
   wait = 22                      # tumbler open web1 waits for ssh
[host-lab]   # behind NAT
   url = tumbler://lab.example.org:9000/
   secret_file = ~/.config/tumbler/lab.secret
   from = 203.0.113.9
   family = 4
   wait_timeout = 20s
   retry_after = 2
[host-git]   # a signed door: read without the SSH machinery, which this run never needs
   url = tumbler+ssh://git@git.example.org/
[host-spa]   # an fwknop server: read without the SPA machinery
   url = fwknop://spa.example.org/tcp/22
[host-lo]
   url = tumbler://127.0.0.1:{port}/
   secret_file = lo.secret
"""


def hosts_file(tmp_path: Path, port: int) -> Path:
    """hosts.conf where the client looks by default (clean_env's XDG_CONFIG_HOME)."""
    folder = tmp_path / "config" / "tumbler"
    folder.mkdir(parents=True)
    (folder / "lo.secret").write_text("startup-profile-secret\n")
    (folder / "lo.secret").chmod(0o600)
    path = folder / "hosts.conf"
    path.write_text(HOSTS.format(port=port))
    path.chmod(0o600)
    return path


def closed_port() -> int:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    return port


@pytest.mark.parametrize("host", ["127.0.0.1", "lo"])
def test_ssh_proxy_with_a_hosts_file_imports_nothing_heavy(
    tmp_path: Path, udp: socket.socket, host: str
):
    # `ProxyCommand tumbler ssh-proxy %h %p`: HOST is the HostName (the first profile whose
    # url names it) or a profile's name. The TCP port is closed, as in the test above.
    hosts_file(tmp_path, udp.getsockname()[1])
    proc = run_client(
        tmp_path, "ssh-proxy", "--wait-timeout", "0.3", host, str(closed_port()), check=False
    )
    assert proc.returncode == 1, proc.stderr
    assert "did not answer" in proc.stderr
    assert udp.recv(200).startswith(b"TUMBLER1: ")
    modules = imports_of(proc)
    assert {"tumbler.client.profiles", "tumbler.config.inifile", "tumbler.secretfile"} <= modules
    assert heavy_in(modules, PROFILE_HEAVY) == []


@pytest.mark.parametrize("extra", [(), ("-v",), ("--profiles", "PATH")])
def test_open_name_imports_nothing_heavy(tmp_path: Path, udp: socket.socket, extra):
    port = udp.getsockname()[1]
    path = hosts_file(tmp_path, port)
    args = [str(path) if arg == "PATH" else arg for arg in extra]
    proc = run_client(tmp_path, "open", "lo", *args)
    assert proc.stdout == f"lo: knocked on 127.0.0.1 udp/{port}\n"
    assert udp.recv(200).startswith(b"TUMBLER1: ")
    modules = imports_of(proc)
    assert {"tumbler.client.profiles", "tumbler.config.inifile", "tumbler.secretfile"} <= modules
    assert heavy_in(modules, PROFILE_HEAVY) == []


def test_a_bad_hosts_file_is_reported_with_its_line_on_the_light_path(tmp_path: Path):
    path = hosts_file(tmp_path, 9)
    path.write_text(HOSTS.format(port=9) + "   colour = red\n")
    proc = run_client(tmp_path, "open", "lo", check=False)
    assert proc.returncode == 2
    assert f"tumbler: error: {path}:20: unknown key 'colour' in [host-lo]" in proc.stderr
    assert heavy_in(imports_of(proc), PROFILE_HEAVY) == []


def test_the_profile_heavy_list_keeps_what_the_profile_path_must_not_load():
    assert heavy_in({"tumbler.config.inifile", "tumbler.client.profiles"}, PROFILE_HEAVY) == []
    assert heavy_in({"tumbler.config.daemon", "dataclasses", "pathlib"}, PROFILE_HEAVY) == [
        "dataclasses",
        "pathlib",
        "tumbler.config.daemon",
    ]


def test_the_argparse_forms_still_load_argparse(tmp_path: Path):
    """The check above would pass vacuously if importtime listed nothing."""
    proc = run_client(tmp_path, "--version")
    assert "argparse" in imports_of(proc)


def test_the_heavy_list_would_catch_a_heavy_import():
    assert heavy_in({"dataclasses", "socket"}) == ["dataclasses"]
    assert heavy_in({"tumbler.daemon.wiring"}) == ["tumbler.daemon.wiring"]


def test_help_width_is_what_argparse_would_pick(monkeypatch):
    import shutil

    from tumbler.cli.common import terminal_width

    for columns in ("60", "132"):
        monkeypatch.setenv("COLUMNS", columns)
        assert terminal_width() == shutil.get_terminal_size().columns - 2 == int(columns) - 2
