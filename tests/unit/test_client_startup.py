"""The client's knock path imports nothing heavy: what `tumbler --open` loads before it sends.

Start-up time itself is measured in bench/ (`./dev bench --only startup`); here the test
checks the cause, the modules loaded, which does not depend on how busy the machine is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Modules the knock path has no use for, each costing milliseconds at start-up.
HEAVY = (
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
    "tumbler.client.profiles",
    "tumbler.client.sshproxy",
    "cryptography",
    "shutil",  # argparse asks it for the terminal width unless given one
    "bz2",
    "lzma",
    "pathlib",
    "unicodedata",  # the IDNA codec's, when a host name goes to getaddrinfo as text
    "encodings.idna",
)


PYTHON_IMPORTTIME = (sys.executable, "-X", "importtime", "-m", "tumbler")


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_importing_the_cli_entry_point_loads_nothing_heavy():
    code = "import sys, tumbler.cli.tumbler; print('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    modules = set(out.split())
    assert "tumbler.cli.tumbler" in modules
    assert heavy_in(modules) == []


def test_a_whole_open_run_imports_nothing_heavy(tmp_path: Path):
    # -X importtime lists every module imported during the run, up to the knock (a dry run
    # builds the datagram exactly as a real one, then prints it instead of sending).
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUMBLER_")}
    env["XDG_STATE_HOME"] = str(tmp_path)
    proc = subprocess.run(
        [*PYTHON_IMPORTTIME, "--open", "tumbler://startup-secret@127.0.0.1:8675/", "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "datagram  TUMBLER1: " in proc.stdout
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "tumbler.client.knock" in modules
    assert "hashlib" in modules
    assert heavy_in(modules) == []


def test_the_heavy_list_would_catch_a_heavy_import():
    assert heavy_in({"dataclasses", "socket"}) == ["dataclasses"]
    assert heavy_in({"tumbler.daemon.wiring"}) == ["tumbler.daemon.wiring"]


def test_help_width_is_what_argparse_would_pick(monkeypatch):
    import shutil

    from tumbler.cli.common import terminal_width

    for columns in ("60", "132"):
        monkeypatch.setenv("COLUMNS", columns)
        assert terminal_width() == shutil.get_terminal_size().columns - 2 == int(columns) - 2
