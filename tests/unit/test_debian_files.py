"""The Debian packaging files agree with the project, and the example config is safe.

The package itself is built, installed and purged in tests/netns/test_deb_package.py (root);
these checks need neither root nor Debian's tools.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

from tests.console import run_script
from tests.packaging import EXAMPLE_CONFIG, uncomment_door

ROOT = Path(__file__).resolve().parents[2]
DEBIAN = ROOT / "debian"


def project_version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def test_changelog_version_is_the_project_version() -> None:
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    found = re.match(r"tumbler \(([^)]+)\) \w+; urgency=\w+$", first)
    assert found, first
    assert found.group(1) == project_version()  # a native package: no Debian revision


def test_man_pages_carry_the_project_version() -> None:
    for page in sorted((ROOT / "man").iterdir()):
        th = next(line for line in page.read_text().splitlines() if line.startswith(".TH "))
        assert f'"tumbler {project_version()}"' in th, (page.name, th)


def test_what_the_package_installs_exists() -> None:
    assert os.access(DEBIAN / "rules", os.X_OK)
    for line in (DEBIAN / "tumbler.manpages").read_text().split():
        assert (ROOT / line).is_file(), line
    rules = (DEBIAN / "rules").read_text()
    for source in re.findall(r"install -D -m 0644 (\S+)", rules):
        assert (ROOT / source).is_file(), source
    assert "dh_installsystemd --no-enable --no-start" in rules
    control = (DEBIAN / "control").read_text()
    for needed in ("debhelper-compat (= 13)", "dh-python", "python3-hatchling"):
        assert needed in control, needed


def test_example_config_opens_nothing() -> None:
    text = EXAMPLE_CONFIG.read_text()
    active = [line for line in text.splitlines() if line.strip().startswith("[")]
    assert active == ["[common]"]
    proc = run_script("tumblerd", "--check-config", "--config", str(EXAMPLE_CONFIG), check=False)
    assert proc.returncode == 2, proc
    assert "no [door-NAME] section" in proc.stderr, proc.stderr


@pytest.mark.parametrize("door", ["ssh", "admin", "legacy"])
def test_each_example_door_works_once_uncommented(door: str, tmp_path: Path) -> None:
    text = uncomment_door(EXAMPLE_CONFIG.read_text(), door)
    for name in re.findall(r"/etc/tumbler/(\w+)\.secret", text):
        secret = tmp_path / f"{name}.secret"
        secret.write_text(f"a long secret for {name}\n")
        secret.chmod(0o600)
        text = text.replace(f"/etc/tumbler/{name}.secret", str(secret))
    config = tmp_path / "tumblerd.conf"
    config.write_text(text)
    config.chmod(0o600)
    proc = run_script("tumblerd", "--check-config", "--config", str(config))
    assert proc.stdout.strip() == f"{config}: ok, 1 doors"
    assert proc.stderr == ""
