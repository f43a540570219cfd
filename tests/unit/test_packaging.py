"""The systemd unit in packaging/: the settings the hardening and readiness rely on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "tumblerd.service"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's syntax: sections, `Key=value`, keys that may repeat (configparser cannot)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not Key=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key)
    assert values, f"{key}= missing"
    return values[-1]


def test_readiness_reload_and_restart(service):
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert one(service, "ExecStart") == "/usr/bin/tumblerd --config /etc/tumbler/tumblerd.conf"
    assert one(service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(service, "Restart") == "on-failure"
    assert one(service, "RestartPreventExitStatus") == "2"  # a bad config does not loop


def test_only_network_capabilities(service):
    assert set(one(service, "CapabilityBoundingSet").split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    assert one(service, "AmbientCapabilities") == ""
    assert one(service, "NoNewPrivileges") == "yes"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("UMask", "0077"),
        ("StateDirectory", "tumbler"),
        ("StateDirectoryMode", "0700"),
        ("RuntimeDirectory", "tumbler"),
        ("RuntimeDirectoryMode", "0700"),
        ("LogsDirectory", "tumbler"),
    ],
)
def test_hardening(service, key, value):
    assert one(service, key) == value


def test_address_families_and_syscalls(service):
    families = set(one(service, "RestrictAddressFamilies").split())
    assert families == {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}
    assert service["SystemCallFilter"][0] == "@system-service"
    assert "~@privileged" in " ".join(service["SystemCallFilter"][1:])


def test_installs_into_multi_user():
    unit = parse_unit(UNIT.read_text())
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["Wants"][0]


def test_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed; the unit was checked by parsing only")
    # verify insists that ExecStart exists: point it at this interpreter's tumblerd.
    tumblerd = Path(sys.executable).with_name("tumblerd")
    if not tumblerd.exists():
        pytest.skip(f"{tumblerd} is not installed")
    unit = tmp_path / "tumblerd.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/tumblerd", str(tumblerd)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", unit.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert f"{unit.name}:" not in result.stderr, result.stderr  # no warning about a line
