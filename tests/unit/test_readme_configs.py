"""Every config example in the README is checked by the code that reads it.

The README is the first thing an administrator copies from; an example that fails
`--check-config` is a defect, so each `[common]`/`[door-...]` block goes through the
daemon's parser and each `[host-...]` block through the client's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tumbler.client.profiles import parse_profiles
from tumbler.config.daemon import parse_config

README = Path(__file__).resolve().parents[2] / "README.md"
_FILLER_DOOR = "[door-readme-filler]\n   secret = filler-only-for-the-test\n   command = true\n"


def code_blocks(text: str) -> list[tuple[int, str]]:
    """Indented code blocks (Markdown's, also inside list items): (first line, dedented text)."""
    blocks: list[tuple[int, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opens = i == 0 or not lines[i - 1].strip()
        if lines[i].startswith("    ") and lines[i].strip() and opens:
            start = i
            body: list[str] = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i])
                i += 1
            indent = min(len(b) - len(b.lstrip()) for b in body if b.strip())
            blocks.append((start + 1, "\n".join(b[indent:] for b in body).strip("\n") + "\n"))
        else:
            i += 1
    return blocks


def config_blocks(kind: str) -> list[tuple[int, str]]:
    heads = ("[common]", "[door-") if kind == "daemon" else ("[host-",)
    return [(n, b) for n, b in code_blocks(README.read_text()) if b.lstrip().startswith(heads)]


def test_the_readme_has_examples_of_both_kinds() -> None:
    assert len(config_blocks("daemon")) >= 2
    assert config_blocks("client")


@pytest.mark.parametrize(("line", "block"), config_blocks("daemon"), ids=lambda v: str(v)[:12])
def test_daemon_config_example_checks(line: int, block: str, tmp_path: Path) -> None:
    # Absolute paths the examples name are made under tmp_path, secret (and Redis password)
    # files with a secret.
    text = block.replace("/etc/tumbler/", f"{tmp_path}/").replace(
        "/var/log/tumbler/", f"{tmp_path}/log/"
    )
    for ref in re.findall(r"(?:secret_file|replay_password_file)\s*=\s*(\S+)", text):
        file = tmp_path / ref  # a relative path is relative to the config's folder
        file.write_text(f"secret-of-{file.name}\n")
        file.chmod(0o600)
    if "[door-" not in text:  # a fragment of [common] keys: give it a door to open
        text += _FILLER_DOOR
    config = parse_config(text, f"README.md:{line}", tmp_path)
    assert config.doors


@pytest.mark.parametrize(("line", "block"), config_blocks("client"), ids=lambda v: str(v)[:12])
def test_client_profile_example_checks(line: int, block: str) -> None:
    profiles = parse_profiles(block, f"README.md:{line}")
    assert profiles.profiles
