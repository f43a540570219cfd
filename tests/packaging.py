"""The example config the Debian package installs, and how an administrator enables a door."""

from __future__ import annotations

from pathlib import Path

EXAMPLE_CONFIG = Path(__file__).resolve().parents[1] / "packaging" / "tumblerd.conf"


def uncomment_door(example: str, name: str) -> str:
    """The example with its commented-out `[door-NAME]` block enabled, as an admin would."""
    lines = example.splitlines()
    start = lines.index(f"# [door-{name}]")
    for i in range(start, len(lines)):
        if not lines[i].startswith("#"):
            break
        lines[i] = lines[i][2:] if i == start else lines[i][1:]
    return "\n".join(lines) + "\n"
