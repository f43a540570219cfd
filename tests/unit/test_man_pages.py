"""The man pages in man/: they render without a warning and say what --help and the README say.

The pages are written by hand in roff (prose on signals, files and exit statuses that
--help cannot hold); these tests keep them in step with the programs: every long option
that a --help prints, every command, every firewall action and every key of the README's
config reference must appear in the right page.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.console import (
    firewall_actions,
    help_text,
    long_options,
    tumbler_commands,
    tumblerd_commands,
)

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "man"
PAGES = {"tumbler.1": "tumbler", "tumblerd.8": "tumblerd", "tumblerd.conf.5": "tumblerd.conf"}


def _man() -> str:
    found = shutil.which("man")
    if found is None:
        reason = "man (man-db) is not installed; ./dev test installs it as root"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return found


def render(page: str) -> subprocess.CompletedProcess[str]:
    """`man -l` at 80 columns with every groff warning on (`--warnings=w`)."""
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8", "MANPAGER": "cat"}
    env.pop("MAN_KEEP_FORMATTING", None)
    return subprocess.run(
        [_man(), "--warnings=w", "-l", str(MAN / page)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


_rendered: dict[str, str] = {}


def text_of(page: str) -> str:
    if page not in _rendered:
        _rendered[page] = render(page).stdout
    return _rendered[page]


def mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


@pytest.mark.parametrize("page", sorted(PAGES))
def test_renders_without_warnings(page: str) -> None:
    proc = render(page)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    name = PAGES[page]
    section = page.rsplit(".", 1)[1]
    assert proc.stdout.startswith(f"{name.upper()}({section})"), proc.stdout[:80]
    assert re.search(rf"^NAME\n\s+{re.escape(name)} +- +\S", proc.stdout, re.MULTILINE)


def test_warnings_are_caught(tmp_path: Path) -> None:
    """The check above sees groff's warnings: an undefined macro is reported on stderr."""
    bad = tmp_path / "bad.1"
    bad.write_text(".TH BAD 1\n.SH NAME\nbad \\- page\n.XX not a macro\n")
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(
        [_man(), "--warnings=w", "-l", str(bad)], capture_output=True, text=True, env=env
    )
    assert "XX" in proc.stderr


def _tumbler_help() -> dict[str, str]:
    helps = {"tumbler": help_text("tumbler")}
    for command in tumbler_commands():
        helps[f"tumbler {command}"] = help_text("tumbler", command)
    return helps


def _tumblerd_help() -> dict[str, str]:
    helps = {"tumblerd": help_text("tumblerd")}
    for command in tumblerd_commands():
        helps[f"tumblerd {command}"] = help_text("tumblerd", command)
    return helps


@pytest.mark.parametrize(
    ("page", "helps"), [("tumbler.1", _tumbler_help), ("tumblerd.8", _tumblerd_help)]
)
def test_every_long_option_of_help_is_in_the_page(page: str, helps) -> None:
    text = text_of(page)
    missing = {
        f"{command} {option}"
        for command, help_ in helps().items()
        for option in long_options(help_)
        if not mentions(text, option)
    }
    assert not missing, f"{page} lacks {sorted(missing)}"


def test_every_command_is_in_its_page() -> None:
    client, daemon = text_of("tumbler.1"), text_of("tumblerd.8")
    commands = tumbler_commands()
    assert commands, "tumbler --help lists no commands"
    for command in commands:
        assert re.search(rf"^ +tumbler {re.escape(command)}\b", client, re.MULTILINE), command
    for command in tumblerd_commands():
        assert mentions(daemon, command), command
    for action in firewall_actions():
        assert mentions(daemon, f"firewall {action}") or mentions(daemon, action), action


def test_daemon_page_has_signals_files_and_exit_statuses() -> None:
    text = text_of("tumblerd.8")
    for heading in ("SIGNALS", "EXIT STATUS", "FILES"):
        assert re.search(rf"^{heading}$", text, re.MULTILINE), heading
    for signal in ("SIGHUP", "SIGTERM", "SIGINT"):
        assert mentions(text, signal), signal
    statuses = re.search(r"^EXIT STATUS\n(.*?)^\S", text, re.MULTILINE | re.DOTALL)
    assert statuses
    assert re.findall(r"^ {7}(\d+) ", statuses.group(1), re.MULTILINE) == ["0", "1", "2"]


def readme_config_keys() -> list[str]:
    """The keys of the README's config reference table, in order."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Config reference", 1)[1].split("\n## ", 1)[0]
    keys = re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE)
    assert len(keys) >= 10, table[:500]
    return keys


def test_every_config_key_of_the_readme_is_in_tumblerd_conf() -> None:
    text = text_of("tumblerd.conf.5")
    missing = [k for k in readme_config_keys() if not re.search(rf"^ {{7}}{k} = ", text, re.M)]
    assert not missing, f"tumblerd.conf(5) lacks {missing}"


def test_the_unit_documentation_resolves() -> None:
    """The unit's Documentation= names man pages that exist here."""
    unit = (ROOT / "packaging" / "tumblerd.service").read_text()
    line = next(x for x in unit.splitlines() if x.startswith("Documentation="))
    for name, section in re.findall(r"man:([\w.-]+)\((\d)\)", line):
        assert (MAN / f"{name}.{section}").is_file(), f"man:{name}({section})"
