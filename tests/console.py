"""Run the project's console scripts by their entry-point names, wherever the code lives.

The man pages and the shell completion describe `tumbler` and `tumblerd` as installed; the
tests that keep them in step ask the installed entry points (this interpreter's), not a
module path, so they survive modules moving around.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

_RUN = """\
import sys
from importlib.metadata import entry_points
(point,) = entry_points(group="console_scripts", name=sys.argv[1])
sys.argv = [point.name, *sys.argv[2:]]
sys.exit(point.load()())
"""

# A long option as --help prints it: after a space, a comma or a bracket.
_LONG = re.compile(r"(?:^|[\s,\[|])(--[a-z][a-z0-9]*(?:-[a-z0-9]+)*)")


def run_script(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`NAME ARGS` through this interpreter's entry point; with `check`, it must exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUMBLER_")}
    env["COLUMNS"] = "100"
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, name, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert not check or proc.returncode == 0, (name, args, proc.stderr)
    return proc


def help_text(name: str, *command: str) -> str:
    return run_script(name, *command, "--help").stdout


def long_options(text: str) -> set[str]:
    """Every long option that a --help text names."""
    return set(_LONG.findall(text))


def _block(text: str, heading: str) -> list[str]:
    """The indented lines under a heading line of --help (up to the next unindented one)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    block = []
    for line in lines[start + 1 :]:
        if line and not line[0].isspace():
            break
        block.append(line)
    return block


def tumbler_commands() -> list[str]:
    """The commands `tumbler --help` lists."""
    block = _block(help_text("tumbler"), "commands")
    return [line.split()[0] for line in block if line.strip()]


def tumblerd_commands() -> list[str]:
    """The commands `tumblerd --help` lists under its COMMAND argument."""
    block = _block(help_text("tumblerd"), "positional arguments")
    # argparse puts each sub-command four spaces in, its help further right or below.
    return [line.split()[0] for line in block if re.match(r"^ {4}\S", line)]


def firewall_actions() -> list[str]:
    """The actions of `tumblerd firewall`: its positional argument's {a,b,c}."""
    block = _block(help_text("tumblerd", "firewall"), "positional arguments")
    found = re.match(r"\s+\{([a-z,-]+)\}", block[0])
    assert found, f"tumblerd firewall --help shows no {{actions}}: {block}"
    return found.group(1).split(",")


def declared_options(text: str) -> set[str]:
    """The long options a --help declares (its options: block), not those its prose names."""
    return long_options("\n".join(_block(text, "options:")))


def choices_of(text: str, option: str) -> list[str]:
    """The {a,b,c} choices that a --help's usage gives for `option`."""
    found = re.search(rf"{re.escape(option)} \{{([a-z0-9,-]+)\}}", text)
    assert found, f"no choices for {option}"
    return found.group(1).split(",")
